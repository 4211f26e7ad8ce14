//! One control plane per test, on port 0, against a fresh database (SQLite in a temporary
//! directory, or a new database on the test environment's PostgreSQL) and either the in-process
//! cache or the test environment's Redis under a key prefix of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use control_plane::app::{self, Running};
use control_plane::auth::{Keys, Role};
use control_plane::cache::Cache;
use control_plane::config::{Layer, Settings};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    InProcess,
    Redis,
}

pub struct TestApp {
    pub url: String,
    pub http: reqwest::Client,
    pub keys: Keys,
    pub provider: String,
    pub billing: String,
    pub running: Option<Running>,
    _dir: tempfile::TempDir,
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

/// A new, empty database on the test environment's PostgreSQL: its URL.
pub async fn new_postgres_database() -> String {
    let postgres = e2e::TestEnv::shared().await.postgres().await;
    let name = unique("api");
    postgres.create_database(&name).await.unwrap();
    postgres.url(&name)
}

/// The test environment's Redis with every key under `prefix`.
pub async fn redis_cache(prefix: &str) -> Cache {
    let url = e2e::TestEnv::shared().await.redis_url().await;
    Cache::connect_with_prefix(Some(&url), prefix).await.unwrap()
}

impl TestApp {
    pub async fn start(db: Db, cache: CacheKind) -> Self {
        Self::start_with(db, cache, &[]).await
    }

    pub async fn start_with(db: Db, cache: CacheKind, extra_env: &[(&str, &str)]) -> Self {
        let mut env = extra_env.to_vec();
        let database;
        if db == Db::Postgres && !extra_env.iter().any(|(name, _)| *name == "DATABASE_URL") {
            database = new_postgres_database().await;
            env.push(("DATABASE_URL", &database));
        }
        let cache = match cache {
            CacheKind::InProcess => Cache::in_process(),
            CacheKind::Redis => redis_cache(&format!("{}:", unique("api"))).await,
        };
        Self::start_on(cache, &env).await
    }

    /// A control plane with `cache` and these settings (over the tests' defaults): a test that
    /// restarts a server on the same database and cache passes `DATABASE_URL` and the cache.
    pub async fn start_on(cache: Cache, extra_env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        env.insert("TENANTRY_DATA_DIR".to_string(), dir.path().display().to_string());
        env.insert("TENANTRY_LISTEN".to_string(), "127.0.0.1:0".to_string());
        env.insert("TENANTRY_PROVISIONER".to_string(), "none".to_string());
        // The tests' webhook receivers listen on loopback, which is refused unless allowed.
        env.insert("TENANTRY_WEBHOOK_ALLOWED_NETWORKS".to_string(), "127.0.0.0/8".to_string());
        for (name, value) in extra_env {
            env.insert((*name).to_string(), (*value).to_string());
        }
        let settings = Settings::from_sources(Layer::default(), &env, Layer::default()).unwrap();
        let keys = settings.jwt_keys().unwrap();
        let running = app::start_with_cache(settings, cache).await.unwrap();
        let hour = Duration::from_secs(3600);
        Self {
            url: running.url(),
            http: reqwest::Client::new(),
            provider: keys.issue(Role::ProviderAdmin, None, "ops@provider.test", hour).unwrap(),
            billing: keys.issue(Role::BillingReader, None, "billing@provider.test", hour).unwrap(),
            keys,
            running: Some(running),
            _dir: dir,
        }
    }

    /// A control plane that provisions into the local cluster, giving every Tenant `label`
    /// (so that only one test's operator serves them) and a host under `erp.test`. Used by the
    /// cluster tests (`status.rs`, `browser.rs`), not by the API tests that share this file.
    pub async fn start_on_cluster(label: (&str, &str)) -> Self {
        let labels = format!("{}={}", label.0, label.1);
        // The shared test environment, found (or started) the way every other test finds it,
        // not whatever cluster the ambient `KUBECONFIG` names.
        let kubeconfig = e2e::TestEnv::shared().await.kubeconfig_path().await.display().to_string();
        let env = [
            ("KUBECONFIG", kubeconfig.as_str()),
            ("TENANTRY_PROVISIONER", "cluster"),
            ("TENANTRY_TENANT_LABELS", labels.as_str()),
            ("TENANTRY_TENANT_DOMAIN", "erp.test"),
            ("TENANTRY_TENANT_TLS_ISSUER", "tenantry-test-issuer"),
        ];
        Self::start_with(Db::Postgres, CacheKind::InProcess, &env).await
    }

    pub fn tenant_admin(&self, slug: &str) -> String {
        self.keys.issue(Role::TenantAdmin, Some(slug), "admin@tenant.test", Duration::from_secs(3600)).unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.unwrap();
        }
    }

    /// Any request; `token` None sends no Authorization header.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("POST", path, Some(token), Some(body)).await
    }

    /// A tenant on `plan`, made by the provider, licensed for the plan's maximum (so that its
    /// seats are bounded by the plan).
    pub async fn tenant(&self, slug: &str, plan: &str) -> Value {
        let plan_reply = self.get(&format!("/v1/plans/{plan}"), &self.provider).await;
        let max_seats = plan_reply.body["max_seats"].as_u64().unwrap_or_else(|| panic!("{plan_reply:?}"));
        self.tenant_licensed(slug, plan, max_seats).await
    }

    /// A tenant on `plan` with `seats` licensed.
    pub async fn tenant_licensed(&self, slug: &str, plan: &str, seats: u64) -> Value {
        let body = json!({"slug": slug, "display_name": slug, "owner_email": format!("owner@{slug}.test"), "plan": plan, "seats": seats});
        let reply = self.post("/v1/tenants", &self.provider, body).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.body
    }

    /// A plan named `name` allowing `max_seats`.
    pub async fn plan(&self, name: &str, max_seats: u32) -> Value {
        let reply = self.post("/v1/plans", &self.provider, plan_body(name, max_seats)).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.body
    }
}

pub fn plan_body(name: &str, max_seats: u32) -> Value {
    json!({
        "name": name,
        "display_name": format!("Plan {name}"),
        "price_per_seat_month": {"minor": 1900, "currency": "EUR"},
        "max_seats": max_seats,
        "max_concurrent_users": max_seats,
        "database_size_limit": "5Gi",
        "resources": {},
        "test_environment": false,
        "module_policy": "certified_only",
        "backup_retention_days": 7,
        "trial_days": 0
    })
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type =
            headers.get("content-type").and_then(|value| value.to_str().ok()).unwrap_or_default().to_string();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, content_type, headers, body, text }
    }

    /// A problem+json error with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        assert_eq!(self.body["code"], code, "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
    }
}

/// Opens `/t/{slug}` of the server at `base_url` with `session` and presses "Show the master
/// password", as a browser would (the page's CSRF cookie and field): (status, page text).
pub async fn reveal_master_password(base_url: &str, slug: &str, session: &str) -> (u16, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http
        .get(format!("{base_url}/t/{slug}"))
        .header("cookie", format!("tenantry_session={session}"))
        .send()
        .await
        .unwrap();
    let csrf_cookie =
        page.headers().get_all("set-cookie").iter().filter_map(|value| value.to_str().ok()).find_map(|value| {
            value.strip_prefix("tenantry_csrf=").map(|rest| rest.split(';').next().unwrap().to_string())
        });
    let text = page.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let Some(start) = text.find(marker) else { return (0, text) };
    let csrf = text[start + marker.len()..].split('"').next().unwrap().to_string();
    let cookie = format!("tenantry_session={session}; tenantry_csrf={}", csrf_cookie.unwrap_or_else(|| csrf.clone()));
    let response = http
        .post(format!("{base_url}/t/{slug}/password"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The name libtest knows the test function `function` of module `module` (its
/// `module_path!()`) by, to run that one test again in a child process of this binary.
pub fn test_name(module: &str, function: &str) -> String {
    let within_crate = module.split_once("::").map_or("", |(_, rest)| rest);
    if within_crate.is_empty() { function.to_string() } else { format!("{within_crate}::{function}") }
}
