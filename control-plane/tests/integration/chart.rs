//! `control_plane_rbac_is_sufficient_and_least`: the chart's init container imports the chart's
//! plan catalogue; then the control-plane binary, configured as the chart's container is and
//! holding nothing but a token of the chart's ServiceAccount, takes a signup to a Ready tenant
//! on the local cluster (the real operator reconciles it), shows the master password from the
//! operator's Secret, says its workloads are simulated, and deletes the tenant; everything else
//! is refused to that account.

use crate::operator;

use crate::harness;

use std::time::Duration;

use e2e::TestEnv;
use e2e::helm::{HelmSdk, PodIdentity, Release, ServiceAccountAccess, tenantry_chart};
use e2e::process::{Spec, Supervised, WorkDir, free_port};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tenantry_contract::api::{Phase, Tenant};

const RELEASE: &str = "cp";
const ACCOUNT: &str = "cp-tenantry-control-plane";

/// The control plane under test: a child process, its address and the environment it runs with.
struct ControlPlane {
    process: Supervised,
    url: String,
    env: Vec<(String, String)>,
    http: reqwest::Client,
}

impl ControlPlane {
    /// `control-plane token issue …` with the server's own environment, as NOTES.txt says to
    /// mint the first admin token.
    async fn issue_token(&self, role: &str) -> String {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_control-plane"))
            .args(["token", "issue", "--role", role])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "token issue: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` (the mirror and the node check have no event a test could await).
    async fn until(&self, path: &str, token: Option<&str>, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + operator::TIMEOUT;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let mut request = self.http.get(format!("{}{path}", self.url));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let text = request.send().await.unwrap().text().await.unwrap();
            if done(&text) {
                return;
            }
            self.process.check_alive().unwrap();
            assert!(tokio::time::Instant::now() < deadline, "{path} never showed {what}: {text}");
            tick.tick().await;
        }
    }

    /// Opens the tenant's page with `session` and presses "Show the master password":
    /// (status, page text).
    async fn reveal(&self, slug: &str, session: &str) -> (u16, String) {
        harness::reveal_master_password(&self.url, slug, session).await
    }
}

/// A plan of the catalogue given to the chart (`controlPlane.plans`).
fn catalogue_plan() -> Value {
    let mut plan = harness::plan_body("chart-solo", 5);
    plan["display_name"] = json!("Chart Solo");
    plan["price_per_seat_month"]["minor"] = json!(1500);
    plan
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|item| item.as_str().unwrap().to_string()).collect()
}

#[track_caller]
fn assert_forbidden<T: std::fmt::Debug>(result: kube::Result<T>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn control_plane_rbac_is_sufficient_and_least() {
    let operator = operator::start().await;
    let admin = operator.client.clone();
    let env = TestEnv::shared().await;
    let namespace = env.namespace(&admin, "chart-control-plane").await;
    let postgres = env.postgres().await;
    let database = namespace.replace('-', "_");
    postgres.create_database(&database).await.unwrap();

    // One replica on the test environment's PostgreSQL, Tenants labelled for this test's
    // operator, and the simulated-node check on (the local demo's setting).
    let (label, run) = operator.run_label();
    let values = json!({
        "operator": {"replicas": 1, "leaderElection": {"enabled": false}},
        "controlPlane": {
            "replicas": 1,
            "logFormat": "text",
            "database": {"url": postgres.url(&database)},
            "redis": {"existingSecret": {"name": ""}},
            "detectSimulatedNodes": true,
            "tenants": {"domain": "erp.test", "tlsIssuer": "tenantry-test-issuer", "labels": {label: run}},
            "plans": [catalogue_plan()],
        },
    });
    let helm = HelmSdk::ensure_async().await.unwrap();
    let chart = helm.render(&tenantry_chart(), &Release::new(RELEASE, &namespace, values)).await.unwrap();
    chart
        .only(&["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"])
        .apply(&admin)
        .await
        .unwrap();
    let access =
        ServiceAccountAccess::request(&admin, &env.kubeconfig_path().await, &namespace, ACCOUNT).await.unwrap();

    let workdir = WorkDir::create("chart-control-plane").unwrap();
    let pod = PodIdentity { name: format!("{ACCOUNT}-0"), namespace: namespace.clone() };
    let port = free_port().unwrap();
    // What a pod has beyond its environment: its own port, a writable data directory and, in
    // place of the mounted account token, the kubeconfig holding it.
    let local = [
        ("KUBECONFIG".to_string(), access.kubeconfig.display().to_string()),
        ("TENANTRY_LISTEN".to_string(), format!("127.0.0.1:{port}")),
        ("TENANTRY_DATA_DIR".to_string(), workdir.join("data").display().to_string()),
        // `testenv exec` exports the shared Redis; blank is unset, as the chart leaves it.
        ("REDIS_URL".to_string(), String::new()),
    ];
    let pod_spec = chart.get("Deployment", ACCOUNT).unwrap()["spec"]["template"]["spec"].clone();

    // The init container imports the chart's catalogue, from the ConfigMap it mounts.
    let catalogue =
        chart.get("ConfigMap", &format!("{ACCOUNT}-plans")).unwrap()["data"]["plans.yaml"].as_str().unwrap();
    let mount = pod_spec["initContainers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "plans")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    let plans_dir = workdir.join("plans");
    std::fs::create_dir_all(&plans_dir).unwrap();
    std::fs::write(plans_dir.join("plans.yaml"), catalogue).unwrap();
    let import_args: Vec<String> = strings(&pod_spec["initContainers"][0]["args"])
        .into_iter()
        .map(|arg| arg.replace(&mount, &plans_dir.display().to_string()))
        .collect();
    let mut import_env = chart.container_env(ACCOUNT, "import-plans", &pod).unwrap();
    import_env.extend(local.iter().cloned());
    let imported = tokio::process::Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args(&import_args)
        .envs(import_env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&imported.stdout);
    assert!(imported.status.success(), "{said}{}", String::from_utf8_lossy(&imported.stderr));
    assert!(said.contains("chart-solo: created (version 1)"), "{said}");

    let mut server_env = chart.container_env(ACCOUNT, "control-plane", &pod).unwrap();
    server_env.extend(local.iter().cloned());
    let mut spec = Spec::new("control-plane", env!("CARGO_BIN_EXE_control-plane"))
        .args(strings(&pod_spec["containers"][0]["args"]));
    for (name, value) in &server_env {
        spec = spec.env(name, value);
    }
    let process = Supervised::spawn(&workdir, spec).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let readyz = format!("{url}/readyz");
    process
        .wait_ready("control-plane /readyz", operator::TIMEOUT, || {
            let request = http.get(&readyz);
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                if response.status().is_success() { Ok(()) } else { Err(response.status().to_string()) }
            }
        })
        .await
        .unwrap();
    let control_plane = ControlPlane { process, url, env: server_env, http };
    let provider = control_plane.issue_token("provider-admin").await;
    // The catalogue is the chart's, not the built-in one.
    let (status, plans) = control_plane.call(reqwest::Method::GET, "/v1/plans", Some(&provider), None).await;
    assert_eq!(status, 200, "{plans}");
    let names: Vec<&str> = plans.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["chart-solo"]);

    // Sufficient. Nodes listed: the pages say the workloads are simulated.
    control_plane
        .until("/signup", None, "the simulated-workloads notice", |page| page.contains("Simulated workloads."))
        .await;

    // A signup is applied as a Tenant (server-side apply), the operator makes it Ready, and the
    // status mirror (list/watch) brings that back.
    let slug = operator.name("chart");
    let signup = json!({"company_name": "Chart Ltd", "slug": slug, "admin_email": "ada@chart.test", "plan": "chart-solo", "seats": 2});
    let (status, body) = control_plane.call(reqwest::Method::POST, "/v1/signup", None, Some(signup)).await;
    assert_eq!(status, 202, "{body}");
    let session = body["token"].as_str().unwrap().to_string();
    e2e::wait::until(&operator.tenants(), &slug, "applied", operator::TIMEOUT, |t: Option<&Tenant>| t.is_some()).await;
    operator.wait_phase(&slug, Phase::Ready).await;
    let path = format!("/v1/tenants/{slug}");
    control_plane.until(&path, Some(&provider), "ready", |text| text.contains(r#""provisioning":"ready""#)).await;

    // The master password, read from the operator's Secret with the account's one Secret grant.
    let tenant_namespace = format!("tenant-{slug}");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &tenant_namespace);
    let secret = secrets.get(tenantry_contract::names::secrets::MASTER_PASSWORD).await.unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let (status, page) = control_plane.reveal(&slug, &session).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&password), "the page shows the Secret's password");

    // Deleted through the API: the Tenant goes (delete), and the mirror sees it go.
    let (status, body) = control_plane.call(reqwest::Method::DELETE, &path, Some(&provider), None).await;
    assert_eq!(status, 200, "{body}");
    e2e::wait::until_deleted(&operator.tenants(), &slug, operator::TIMEOUT).await;
    control_plane.until(&path, Some(&provider), "deleted", |text| text.contains(r#""provisioning":"deleted""#)).await;
    control_plane.process.check_alive().unwrap();

    // Least: nothing beyond Tenants, that one Secret name and the Nodes list.
    let client = &access.client;
    let tenant_secrets: Api<Secret> = Api::namespaced(client.clone(), &tenant_namespace);
    assert_forbidden(
        tenant_secrets.get(tenantry_contract::names::secrets::DATABASE).await,
        "the tenant's database Secret",
    );
    assert_forbidden(tenant_secrets.list(&ListParams::default()).await, "listing the tenant's Secrets");
    assert_forbidden(
        Api::<Secret>::namespaced(client.clone(), "kube-system").get("any").await,
        "a Secret in kube-system",
    );
    let status_patch = Patch::Merge(json!({"status": {"phase": "Ready"}}));
    assert_forbidden(
        Api::<Tenant>::all(client.clone()).patch_status(&slug, &PatchParams::default(), &status_patch).await,
        "writing a Tenant's status (the operator's)",
    );
    let namespace_object = Namespace {
        metadata: ObjectMeta { name: Some(format!("{namespace}-x")), ..Default::default() },
        ..Default::default()
    };
    assert_forbidden(
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace_object).await,
        "creating a Namespace",
    );
    assert_forbidden(Api::<Deployment>::all(client.clone()).list(&ListParams::default()).await, "listing Deployments");
    assert_forbidden(Api::<Pod>::all(client.clone()).list(&ListParams::default()).await, "listing Pods");

    drop(control_plane);
    let _ = Api::<Namespace>::all(admin.clone()).delete(&tenant_namespace, &DeleteParams::default()).await;
    chart.uninstall(&admin).await.unwrap();
    operator.stop().await;
}
