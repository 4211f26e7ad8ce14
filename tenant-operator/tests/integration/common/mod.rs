//! The operator under test, in this test's process, against the shared local cluster. Each test
//! gets an operator of its own that serves only the Tenants it labels, so tests (and the test
//! processes nextest runs side by side) never reconcile each other's Tenants.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::TestEnv;
use e2e::wait::until;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::conditions;
use kube::{Client, ResourceExt};
use rand::Rng;
use serde_json::json;
use tenant_operator::api::{Phase, Tenant, TenantSpec};
use tenant_operator::controller::{OperatorConfig, run};
use tenant_operator::http::Readiness;
use tenant_operator::metrics::Metrics;
use tokio::sync::OnceCell;

pub const TIMEOUT: Duration = Duration::from_secs(120);
const RUN_LABEL: &str = "tenantry.dev/test-run";

pub struct Operator {
    pub client: Client,
    pub metrics: Metrics,
    run_id: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Installs the CRD (once per process) and starts an operator for this test.
pub async fn start() -> Operator {
    start_with(|_| {}).await
}

/// [`start`] with the configuration changed by `configure`.
pub async fn start_with(configure: impl FnOnce(&mut OperatorConfig)) -> Operator {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    install_crd(&client).await;
    let run_id = format!("{:08x}", rand::rng().random::<u32>());
    let mut config = OperatorConfig {
        tenant_selector: Some(format!("{RUN_LABEL}={run_id}")),
        concurrency: 4,
        ..OperatorConfig::default()
    };
    configure(&mut config);
    let metrics = Metrics::new();
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(client.clone(), config, metrics.clone(), Readiness::new(), async {
        let _ = stop.await;
    }));
    Operator { client, metrics, run_id, shutdown: Some(shutdown), task }
}

pub async fn install_crd(client: &Client) {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            for (_, crd) in tenant_operator::controller::crds() {
                install_one(client, crd).await;
            }
        })
        .await;
}

/// Create or replace, as `kubectl create`/`replace` would: one test process creates it, the
/// others find it (or lose the race to create it, which is as good).
async fn install_one(client: &Client, mut crd: CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    match crds.get_opt(&name).await.unwrap() {
        None => match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => panic!("creating the CRD: {e}"),
        },
        Some(existing) => {
            crd.metadata.resource_version = existing.resource_version();
            match crds.replace(&name, &PostParams::default(), &crd).await {
                Ok(_) => {}
                // Another process replaced it first with the same definition.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => panic!("replacing the CRD: {e}"),
            }
        }
    }
    until(&crds, &name, "Established", TIMEOUT, conditions::is_crd_established()).await;
}

impl Operator {
    pub fn tenants(&self) -> Api<Tenant> {
        Api::all(self.client.clone())
    }

    /// The label (key, value) that makes a Tenant this operator's.
    pub fn run_label(&self) -> (&'static str, &str) {
        (RUN_LABEL, &self.run_id)
    }

    /// A unique Tenant name with `prefix`.
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{:06x}", rand::rng().random_range(0..0xff_ffffu32))
    }

    /// Creates a Tenant this operator serves.
    /// Creates the Tenant. One with [`spec`]'s sample host gets a host of its own instead
    /// ([`host_of`]): the operator refuses a second Tenant with a host another one has.
    pub async fn create(&self, name: &str, mut spec: TenantSpec) -> Tenant {
        if let Some(ingress) = spec.ingress.as_mut().filter(|ingress| ingress.host == SAMPLE_HOST) {
            ingress.host = host_of(name);
        }
        let mut tenant = Tenant::new(name, spec);
        tenant.metadata.labels = Some(BTreeMap::from([(RUN_LABEL.to_string(), self.run_id.clone())]));
        self.tenants().create(&PostParams::default(), &tenant).await.unwrap()
    }

    /// Merge-patches the Tenant's spec.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.tenants().patch(name, &PatchParams::default(), &Patch::Merge(&json!({ "spec": spec }))).await.unwrap();
    }

    pub async fn wait_phase(&self, name: &str, phase: Phase) -> Tenant {
        self.wait_phase_within(name, phase, TIMEOUT).await
    }

    /// [`Operator::wait_phase`] with a timeout of its own (real workloads take minutes).
    pub async fn wait_phase_within(&self, name: &str, phase: Phase, timeout: Duration) -> Tenant {
        let generation = self.tenants().get(name).await.unwrap().metadata.generation;
        until(&self.tenants(), name, &format!("phase {phase}"), timeout, move |t: Option<&Tenant>| {
            let status = t.and_then(|t| t.status.as_ref()).filter(|s| s.observed_generation >= generation);
            // An invalid spec stays invalid: say why now rather than at the timeout.
            if let Some(status) = status.filter(|s| s.phase == Some(Phase::Invalid) && phase != Phase::Invalid) {
                panic!("the Tenant is invalid: {:?}", status.conditions);
            }
            status.is_some_and(|s| s.phase == Some(phase))
        })
        .await
    }

    /// Counter values from the operator's metrics, summed over their labels.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics
            .encode()
            .lines()
            .filter(|line| line.starts_with(name) && !line.starts_with('#'))
            .filter(|line| line[name.len()..].starts_with(['{', ' ']))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Changes the Tenant's metadata (not its spec), which triggers a reconcile, and waits until
    /// a reconcile has finished after it.
    pub async fn poke(&self, name: &str, value: &str) {
        let reconciles = "tenantry_operator_reconciles_total";
        let before = self.metric(reconciles);
        let patch = json!({"metadata": {"annotations": {"test.tenantry.dev/poke": value}}});
        self.tenants().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while self.metric(reconciles) <= before {
            assert!(tokio::time::Instant::now() < deadline, "no reconcile happened after the poke");
            tick.tick().await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // A controller that does not end when asked would hang a real operator's shutdown.
        let stopped = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
        assert!(stopped.is_ok(), "the operator did not stop within 30 s of its shutdown signal");
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The host of [`spec`]'s ingress.
pub const SAMPLE_HOST: &str = "acme.example.com";

/// The host each created Tenant gets instead of the sample one.
pub fn host_of(name: &str) -> String {
    format!("{name}.example.com")
}

/// A Tenant with production and test environments behind an ingress with cert-manager TLS.
pub fn spec(with_test: bool) -> TenantSpec {
    serde_json::from_value(json!({
        "displayName": "Acme Corp",
        "plan": "business",
        "seats": 12,
        "erp": {"profile": "tryton", "version": "7.0.59", "modules": ["party"]},
        "resources": {
            "server": {"cpuRequest": "250m", "memoryRequest": "512Mi", "cpuLimit": "2", "memoryLimit": "2Gi"},
            "databaseStorage": "20Gi",
            "filestoreStorage": "5Gi",
            "quota": {"cpu": "20", "memory": "20Gi", "storage": "100Gi", "pods": 30}
        },
        "environments": if with_test { json!({"production": {}, "test": {"version": "7.2.3"}}) } else { json!({"production": {}}) },
        "ingress": {"host": SAMPLE_HOST, "className": "nginx", "tlsIssuer": "letsencrypt"},
    }))
    .unwrap()
}
