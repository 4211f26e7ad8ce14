//! The operator's Prometheus metrics, served as OpenMetrics text on `/metrics` (see
//! [`crate::http`]).
//!
//! Label values must come from small fixed sets (error reasons, kinds, verbs, phases), never from
//! tenant names or error messages, so the number of series stays bounded.
//!
//! [`CountRequestsLayer`] counts every request a kube client sends (reads and watches included),
//! when layered onto the client with `ClientBuilder::with_layer`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reconcile duration buckets, in seconds: 1 ms … 30 s.
const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: String,
    verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// The operator's metrics and the registry that encodes them. Cheap to clone; clones share
/// everything.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    reconciles: Counter,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    api_writes: Family<WriteLabels, Counter>,
    api_requests: Family<RequestLabels, Counter>,
    leader: Gauge,
    backups: Family<OutcomeLabels, Counter>,
    tenants: Family<PhaseLabels, Gauge>,
    /// Phases `tenants` has a series for, so that phases no longer reported drop to zero.
    tenant_phases: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Counter::default();
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        let reconcile_duration = Histogram::new(DURATION_BUCKETS);
        let api_writes = Family::<WriteLabels, Counter>::default();
        let api_requests = Family::<RequestLabels, Counter>::default();
        let leader = Gauge::default();
        let backups = Family::<OutcomeLabels, Counter>::default();
        let tenants = Family::<PhaseLabels, Gauge>::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register("tenantry_operator_reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "tenantry_operator_reconcile_errors",
            "Reconciles that failed, by reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "tenantry_operator_reconcile_duration_seconds",
            "How long reconciles took",
            reconcile_duration.clone(),
        );
        registry.register(
            "tenantry_operator_api_writes",
            "Writes to the Kubernetes API, by object kind and verb",
            api_writes.clone(),
        );
        registry.register(
            "tenantry_operator_api_requests",
            "Requests sent to the Kubernetes API, by verb (get, create, update, patch, delete, watch) and resource",
            api_requests.clone(),
        );
        registry.register("tenantry_operator_leader", "1 while this replica holds the leader lease", leader.clone());
        registry.register("tenantry_operator_tenants", "Tenants by status phase", tenants.clone());
        registry.register(
            "tenantry_operator_backups",
            "Backups finished, by outcome (completed, failed)",
            backups.clone(),
        );
        let inner = Inner {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            api_writes,
            api_requests,
            leader,
            backups,
            tenants,
            tenant_phases: Mutex::new(BTreeSet::new()),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Times one reconcile: when the returned guard is dropped, the reconcile is counted and its
    /// duration observed.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer { metrics: self.clone(), started: Instant::now() }
    }

    /// Counts one reconcile that took `duration`.
    pub fn observe_reconcile(&self, duration: Duration) {
        self.inner.reconciles.inc();
        self.inner.reconcile_duration.observe(duration.as_secs_f64());
    }

    /// Counts a backup that finished: `completed` or `failed`.
    pub fn backup_finished(&self, outcome: &str) {
        self.inner.backups.get_or_create(&OutcomeLabels { outcome: outcome.to_string() }).inc();
    }

    /// Counts a failed reconcile; `reason` is a short fixed word (`invalid_spec`, `api`, …).
    pub fn reconcile_error(&self, reason: &str) {
        self.inner.reconcile_errors.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc();
    }

    /// Counts a write to the Kubernetes API, e.g. `("Deployment", "apply")`,
    /// `("Tenant", "patch_status")`.
    pub fn api_write(&self, kind: &str, verb: &str) {
        let labels = WriteLabels { kind: kind.to_string(), verb: verb.to_string() };
        self.inner.api_writes.get_or_create(&labels).inc();
    }

    /// Counts one request sent to the Kubernetes API; `verb` is one of [`request_verb`]'s,
    /// `resource` one of [`request_resource`]'s.
    pub fn api_request(&self, verb: &str, resource: &str) {
        let labels = RequestLabels { verb: verb.to_string(), resource: resource.to_string() };
        self.inner.api_requests.get_or_create(&labels).inc();
    }

    /// A layer for `kube::client::ClientBuilder::with_layer` that counts every request of the
    /// client in `tenantry_operator_api_requests_total`.
    pub fn count_requests(&self) -> CountRequestsLayer {
        CountRequestsLayer { metrics: self.clone() }
    }

    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    /// Sets the number of Tenants in one phase.
    pub fn set_tenants(&self, phase: &str, count: i64) {
        self.lock_phases().insert(phase.to_string());
        self.inner.tenants.get_or_create(&PhaseLabels { phase: phase.to_string() }).set(count);
    }

    /// Sets the number of Tenants in every phase at once; phases reported before but missing now
    /// are set to zero.
    pub fn set_tenant_counts<'a>(&self, counts: impl IntoIterator<Item = (&'a str, i64)>) {
        let mut phases = self.lock_phases();
        let mut stale = phases.clone();
        for (phase, count) in counts {
            stale.remove(phase);
            phases.insert(phase.to_string());
            self.inner.tenants.get_or_create(&PhaseLabels { phase: phase.to_string() }).set(count);
        }
        for phase in stale {
            self.inner.tenants.get_or_create(&PhaseLabels { phase }).set(0);
        }
    }

    /// Everything in OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
            .expect("encoding into a String cannot fail");
        text
    }

    fn lock_phases(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.inner.tenant_phases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Returned by [`Metrics::reconcile_timer`]; records the reconcile when dropped.
#[must_use = "the reconcile is recorded when the timer is dropped"]
pub struct ReconcileTimer {
    metrics: Metrics,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics.observe_reconcile(self.started.elapsed());
    }
}

/// The verb of a request to the Kubernetes API, from its HTTP method: `get` (also lists),
/// `create`, `update`, `patch`, `delete` (also collections), or `watch` (a GET with
/// `watch=true`/`watch=1`).
pub fn request_verb(method: &http::Method, uri: &http::Uri) -> &'static str {
    match *method {
        http::Method::GET => {
            let watching =
                uri.query().is_some_and(|query| query.split('&').any(|pair| matches!(pair, "watch=true" | "watch=1")));
            if watching { "watch" } else { "get" }
        }
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// The resource (plural) a request to the Kubernetes API is about, from its path:
/// `/api/v1/namespaces/a/secrets/b` → `secrets`, `/apis/apps/v1/deployments` → `deployments`,
/// `/api/v1/namespaces/a` → `namespaces`; `other` for paths outside the resource API.
pub fn request_resource(uri: &http::Uri) -> String {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return "other".into(),
    };
    match rest {
        ["namespaces", _namespace, resource, ..] => resource.to_string(),
        [resource, ..] if !resource.is_empty() => resource.to_string(),
        _ => "other".into(),
    }
}

/// See [`Metrics::count_requests`].
#[derive(Clone, Debug)]
pub struct CountRequestsLayer {
    metrics: Metrics,
}

impl<S> tower_layer::Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> CountRequests<S> {
        CountRequests { inner, metrics: self.metrics.clone() }
    }
}

/// Counts each request, then passes it on unchanged. It sits outside kube's own retry layer, so a
/// request retried after a 429 counts once.
#[derive(Clone, Debug)]
pub struct CountRequests<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> tower_service::Service<http::Request<B>> for CountRequests<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.metrics.api_request(request_verb(request.method(), request.uri()), &request_resource(request.uri()));
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix:?} in:\n{text}"))
    }

    #[test]
    fn counts_show_up_in_the_encoded_text() {
        let metrics = Metrics::new();
        let shared = metrics.clone();
        drop(shared.reconcile_timer());
        shared.observe_reconcile(Duration::from_millis(40));
        metrics.reconcile_error("invalid_spec");
        metrics.reconcile_error("invalid_spec");
        metrics.reconcile_error("api");
        metrics.api_write("Deployment", "apply");
        metrics.api_write("Tenant", "patch_status");
        metrics.api_write("Tenant", "patch_status");
        metrics.set_leader(true);
        metrics.set_tenant_counts([("Ready", 3), ("Provisioning", 1)]);
        metrics.set_tenant_counts([("Ready", 4)]);

        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE tenantry_operator_reconciles counter"), "{text}");
        assert_eq!(line(&text, "tenantry_operator_reconciles_total "), "tenantry_operator_reconciles_total 2");
        assert_eq!(
            line(&text, "tenantry_operator_reconcile_errors_total{reason=\"invalid_spec\"}").split(' ').nth(1),
            Some("2")
        );
        assert_eq!(
            line(&text, "tenantry_operator_reconcile_errors_total{reason=\"api\"}").split(' ').nth(1),
            Some("1")
        );
        assert_eq!(
            line(&text, "tenantry_operator_api_writes_total{kind=\"Tenant\",verb=\"patch_status\"}").split(' ').nth(1),
            Some("2")
        );
        assert!(text.contains("# TYPE tenantry_operator_reconcile_duration_seconds histogram"), "{text}");
        assert_eq!(
            line(&text, "tenantry_operator_reconcile_duration_seconds_count"),
            "tenantry_operator_reconcile_duration_seconds_count 2"
        );
        assert!(text.contains("tenantry_operator_reconcile_duration_seconds_bucket{le=\"0.001\"}"), "{text}");
        assert!(text.contains("tenantry_operator_reconcile_duration_seconds_bucket{le=\"30.0\"}"), "{text}");
        assert_eq!(
            line(&text, "tenantry_operator_reconcile_duration_seconds_bucket{le=\"0.05\"}"),
            "tenantry_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 2"
        );
        assert_eq!(line(&text, "tenantry_operator_leader "), "tenantry_operator_leader 1");
        assert_eq!(
            line(&text, "tenantry_operator_tenants{phase=\"Ready\"}"),
            "tenantry_operator_tenants{phase=\"Ready\"} 4"
        );
        assert_eq!(
            line(&text, "tenantry_operator_tenants{phase=\"Provisioning\"}"),
            "tenantry_operator_tenants{phase=\"Provisioning\"} 0"
        );

        metrics.set_leader(false);
        assert_eq!(line(&metrics.encode(), "tenantry_operator_leader "), "tenantry_operator_leader 0");
    }

    #[test]
    fn verbs_come_from_the_method_and_the_watch_parameter() {
        let verb = |method: http::Method, uri: &str| request_verb(&method, &uri.parse().unwrap());
        assert_eq!(verb(http::Method::GET, "/api/v1/namespaces/a/pods/b"), "get");
        assert_eq!(verb(http::Method::GET, "/api/v1/pods?labelSelector=a%3Db"), "get");
        assert_eq!(verb(http::Method::GET, "/api/v1/pods?watch=true&resourceVersion=1"), "watch");
        assert_eq!(verb(http::Method::GET, "/api/v1/pods?resourceVersion=1&watch=1"), "watch");
        assert_eq!(verb(http::Method::GET, "/api/v1/pods?watch=false"), "get");
        assert_eq!(verb(http::Method::GET, "/api/v1/pods?allowWatchBookmarks=true"), "get");
        assert_eq!(verb(http::Method::POST, "/api/v1/namespaces"), "create");
        assert_eq!(verb(http::Method::PUT, "/api/v1/namespaces/a"), "update");
        assert_eq!(verb(http::Method::PATCH, "/api/v1/namespaces/a?fieldManager=x"), "patch");
        assert_eq!(verb(http::Method::DELETE, "/api/v1/namespaces/a"), "delete");
        assert_eq!(verb(http::Method::OPTIONS, "/"), "other");
    }

    #[test]
    fn resources_come_from_the_path() {
        let resource = |uri: &str| request_resource(&uri.parse().unwrap());
        assert_eq!(resource("/api/v1/namespaces/a/secrets/b"), "secrets");
        assert_eq!(resource("/api/v1/namespaces/a/pods?watch=true"), "pods");
        assert_eq!(resource("/api/v1/namespaces/a"), "namespaces");
        assert_eq!(resource("/api/v1/namespaces"), "namespaces");
        assert_eq!(resource("/apis/apps/v1/namespaces/t/deployments/erp/status"), "deployments");
        assert_eq!(resource("/apis/tenantry.dev/v1alpha1/tenants/a/status"), "tenants");
        assert_eq!(resource("/apis/coordination.k8s.io/v1/namespaces/x/leases/y"), "leases");
        assert_eq!(resource("/version"), "other");
        assert_eq!(resource("/apis"), "other");
    }

    /// Through a real kube client: every request is counted once, whether or not it reached a
    /// server (nothing listens on the port).
    #[tokio::test]
    async fn a_kube_client_with_the_layer_counts_its_requests() {
        use k8s_openapi::api::core::v1::Namespace;
        use kube::api::{Api, PostParams, WatchParams};

        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let metrics = Metrics::new();
        let client =
            kube::client::ClientBuilder::try_from(config).unwrap().with_layer(&metrics.count_requests()).build();
        let namespaces: Api<Namespace> = Api::all(client);
        assert!(namespaces.get_opt("a").await.is_err());
        assert!(namespaces.list(&Default::default()).await.is_err());
        assert!(namespaces.create(&PostParams::default(), &Namespace::default()).await.is_err());
        assert!(namespaces.watch(&WatchParams::default(), "0").await.is_err());

        let text = metrics.encode();
        assert_eq!(
            line(&text, "tenantry_operator_api_requests_total{verb=\"get\",resource=\"namespaces\"}").split(' ').nth(1),
            Some("2")
        );
        assert_eq!(
            line(&text, "tenantry_operator_api_requests_total{verb=\"create\",resource=\"namespaces\"}")
                .split(' ')
                .nth(1),
            Some("1")
        );
        assert_eq!(
            line(&text, "tenantry_operator_api_requests_total{verb=\"watch\",resource=\"namespaces\"}")
                .split(' ')
                .nth(1),
            Some("1")
        );
    }
}
