//! The provisioning worker and the status mirror against the test environment's real cluster,
//! PostgreSQL and SQLite: Tenants really reach the apiserver (or a manifests directory), and a
//! process really dies between commit and apply.

use crate::operator;

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use control_plane::domain::plan::PlanSpec;
use control_plane::failpoint;
use control_plane::provision::desired::{self, MANAGED_BY, MANAGED_BY_LABEL};
use control_plane::provision::{
    FIELD_MANAGER, Provisioner, ProvisionerSetting, Wakeup, WorkerMetrics, WorkerSettings, run_status_mirror,
    run_worker,
};
use control_plane::secrets::Sealer;
use control_plane::slug::Slug;
use control_plane::store::{
    NewTenant, ProvisionJob, ProvisionOp, ProvisioningState, Store, TENANT_READY, Tenant, TenantChange,
};
use e2e::TestEnv;
use e2e::wait::{until, until_deleted};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use rand::Rng;
use serde_json::json;
use tenantry_contract::api::Tenant as TenantObject;
use tokio::sync::watch;

const TIMEOUT: Duration = Duration::from_secs(90);
const PLAN: &str = "business";

// What the crash test hands the process it kills.
const CRASH_DATABASE_VAR: &str = "TENANTRY_TEST_CRASH_DATABASE";
const CRASH_SLUG_VAR: &str = "TENANTRY_TEST_CRASH_SLUG";
/// The crashing child's lease: long enough to outlive it, short enough not to slow the test.
const CRASH_LEASE: Duration = Duration::from_secs(5);
/// What `std::process::abort` dies of (Linux).
const SIGABRT: i32 = 6;

#[tokio::test]
async fn outbox_survives_crash() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    operator::install_crd(&client).await;
    let (store, url) = postgres_store("crash").await;
    let slug = unique_slug("crash");

    // A separate process commits the tenant, claims its job and dies before applying it.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg(crate::harness::test_name(module_path!(), "crash_child"))
        .args(["--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CRASH_DATABASE_VAR, &url)
        .env(CRASH_SLUG_VAR, &slug)
        .env(failpoint::VAR, failpoint::AFTER_CLAIM)
        .env("KUBECONFIG", env.kubeconfig_path().await)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("the child died in time").unwrap();
    assert_eq!(status.signal(), Some(SIGABRT), "the child was killed by the failpoint: {status:?}");

    // Committed, claimed, never applied.
    let tenant = store.tenant(&slug).await.expect("the dead process committed the tenant");
    assert_eq!(tenant.provisioning, ProvisioningState::Waiting);
    assert_eq!(store.pending_provision_jobs().await.unwrap(), 1);
    let tenants: Api<TenantObject> = Api::all(client.clone());
    assert!(tenants.get_opt(&slug).await.unwrap().is_none(), "nothing applied the Tenant before the crash");

    // A new worker takes the job over once the dead one's lease runs out.
    let worker = Worker::start(&store, Provisioner::Cluster(client.clone()), WorkerSettings::default());
    let applied =
        until(&tenants, &slug, "applied after the crash", TIMEOUT, |t: Option<&TenantObject>| t.is_some()).await;
    assert_eq!(applied.spec, desired_object(&store, &slug).await.spec);
    assert_eq!(applied.labels().get(MANAGED_BY_LABEL).map(String::as_str), Some(MANAGED_BY));
    eventually("the tenant shows applied", || provisioning_is(&store, &slug, ProvisioningState::Applied)).await;
    assert_eq!(store.pending_provision_jobs().await.unwrap(), 0);
    worker.stop().await;
    remove_tenant(&tenants, &slug).await;
}

/// The process `outbox_survives_crash` kills: not a test of its own (ignored; run only by it).
#[tokio::test]
#[ignore = "run by outbox_survives_crash in a process of its own"]
async fn crash_child() {
    let url = std::env::var(CRASH_DATABASE_VAR).expect("run by outbox_survives_crash only");
    let slug = std::env::var(CRASH_SLUG_VAR).expect("run by outbox_survives_crash only");
    let store = Store::connect(&url).await.unwrap();
    create_tenant(&store, &slug).await;
    let kubeconfig = std::env::var("KUBECONFIG").expect("the parent passes its KUBECONFIG");
    let provisioner = Provisioner::from_setting(&ProvisionerSetting::Cluster, Some(&kubeconfig)).await.unwrap();
    let settings = WorkerSettings { lease: CRASH_LEASE, ..WorkerSettings::default() };
    let (_stop, shutdown) = watch::channel(false);
    // Returns only if the failpoint did not fire; the parent then sees a clean exit and fails.
    tokio::time::timeout(TIMEOUT, run_worker(store, provisioner, settings, shutdown)).await.ok();
}

#[tokio::test]
async fn manifests_provisioner_writes_yaml() {
    let data = tempfile::tempdir().unwrap();
    let store = sqlite_store(data.path()).await;
    let dir = data.path().join("gitops").join("tenants");
    // Created on demand, as a fresh GitOps checkout may lack it.
    let provisioner = Provisioner::from_setting(&ProvisionerSetting::Manifests(dir.clone()), None).await.unwrap();
    let slug = unique_slug("yaml");
    create_tenant(&store, &slug).await;
    let worker = Worker::start(&store, provisioner, WorkerSettings::default());

    let file = dir.join(format!("{slug}.yaml"));
    eventually("the tenant shows applied", || provisioning_is(&store, &slug, ProvisioningState::Applied)).await;
    let written: TenantObject = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written.name_any(), slug);
    assert_eq!(written.spec, desired_object(&store, &slug).await.spec);
    assert_eq!(written.labels().get(MANAGED_BY_LABEL).map(String::as_str), Some(MANAGED_BY));
    assert_eq!(files_in(&dir), [format!("{slug}.yaml")], "nothing but the manifest, no temporary file");

    store.delete_tenant(&slug).await.unwrap();
    worker.wakeup.poke();
    eventually("the tenant shows deleted", || provisioning_is(&store, &slug, ProvisioningState::Deleted)).await;
    assert!(!file.exists(), "the manifest is removed with the tenant");
    assert!(files_in(&dir).is_empty());
    assert_eq!(worker.metrics.failed.get(), 0);
    worker.stop().await;
}

#[tokio::test]
async fn apply_is_idempotent_and_follows_changes() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    operator::install_crd(&client).await;
    let (store, _) = postgres_store("follow").await;
    let slug = unique_slug("follow");
    create_tenant(&store, &slug).await;
    let change = TenantChange { display_name: Some("Acme Two".into()), licensed_seats: Some(7), ..Default::default() };
    store.change_tenant(&slug, &change).await.unwrap();

    // Polls once an hour: after the first round only a poke makes it claim again.
    let settings = WorkerSettings { poll_interval: Duration::from_secs(3600), ..WorkerSettings::default() };
    let worker = Worker::start(&store, Provisioner::Cluster(client.clone()), settings);
    let tenants: Api<TenantObject> = Api::all(client.clone());
    eventually("the tenant shows applied", || provisioning_is(&store, &slug, ProvisioningState::Applied)).await;
    assert_eq!(store.pending_provision_jobs().await.unwrap(), 0);
    assert_eq!(worker.metrics.applied.get(), 1, "the older job was superseded, not applied");
    let applied = tenants.get(&slug).await.unwrap();
    let newest = desired_object(&store, &slug).await;
    assert_eq!(applied.spec, newest.spec);
    assert_eq!((applied.spec.display_name.as_str(), applied.spec.seats), ("Acme Two", 7));
    let managers: Vec<_> = applied.managed_fields().iter().filter_map(|f| f.manager.clone()).collect();
    assert!(managers.contains(&FIELD_MANAGER.to_string()), "{managers:?}");

    // Applying the same object again changes nothing, not even the generation.
    let generation = applied.metadata.generation;
    let provisioner = Provisioner::Cluster(client.clone());
    let again = ProvisionJob {
        id: 0,
        tenant: slug.clone(),
        op: ProvisionOp::Apply,
        object: serde_json::to_value(&newest).unwrap(),
        attempts: 0,
    };
    provisioner.execute(&again).await.unwrap();
    provisioner.execute(&again).await.unwrap();
    let reapplied = tenants.get(&slug).await.unwrap();
    assert_eq!(reapplied.metadata.generation, generation);
    assert_eq!(reapplied.spec, newest.spec);

    // A later change reaches the cluster as soon as the worker is poked.
    store.change_tenant(&slug, &TenantChange { licensed_seats: Some(9), ..Default::default() }).await.unwrap();
    worker.wakeup.poke();
    let followed =
        until(&tenants, &slug, "9 seats", TIMEOUT, |t: Option<&TenantObject>| t.is_some_and(|t| t.spec.seats == 9))
            .await;
    assert_eq!(followed.spec, desired_object(&store, &slug).await.spec);
    assert_eq!(followed.spec.display_name, "Acme Two");

    // Deleting the tenant deletes its Tenant; deleting what is gone is done too.
    store.delete_tenant(&slug).await.unwrap();
    worker.wakeup.poke();
    until_deleted(&tenants, &slug, TIMEOUT).await;
    eventually("the tenant shows deleted", || provisioning_is(&store, &slug, ProvisioningState::Deleted)).await;
    let gone = ProvisionJob { op: ProvisionOp::Delete, ..again };
    provisioner.execute(&gone).await.unwrap();
    assert_eq!(worker.metrics.failed.get(), 0);
    worker.stop().await;
}

#[tokio::test]
async fn status_is_mirrored_from_the_tenant_status() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    operator::install_crd(&client).await;
    let (store, _) = postgres_store("mirror").await;
    // An endpoint, so every `tenant.ready` event becomes a delivery the test can count.
    let sealer = Sealer::new(rand::rng().random());
    store
        .create_webhook("https://hooks.example.com/tenantry", &[TENANT_READY.to_string()], &sealer.seal(b"s3cret"))
        .await
        .unwrap();
    let slug = unique_slug("mirror");
    create_tenant(&store, &slug).await;
    let worker = Worker::start(&store, Provisioner::Cluster(client.clone()), WorkerSettings::default());
    let tenants: Api<TenantObject> = Api::all(client.clone());
    until(&tenants, &slug, "applied", TIMEOUT, |t: Option<&TenantObject>| t.is_some()).await;
    worker.stop().await;

    let (stop_mirror, shutdown) = watch::channel(false);
    let mirror = tokio::spawn(run_status_mirror(store.clone(), client.clone(), shutdown));
    // No status yet: still `applied` (as the worker left it), not reset by the mirror.
    eventually("applied", || provisioning_is(&store, &slug, ProvisioningState::Applied)).await;

    // As the operator would write it, through the status subresource.
    let url = format!("https://{slug}.tenants.example.com");
    set_status(&tenants, &slug, json!({"phase": "Provisioning", "conditions": [condition("False", "Starting")]})).await;
    eventually("provisioning", || provisioning_is(&store, &slug, ProvisioningState::Provisioning)).await;
    set_status(&tenants, &slug, json!({"phase": "Ready", "url": url, "conditions": [condition("True", "AllReady")]}))
        .await;
    let ready = eventually("ready", || async {
        let tenant = store.tenant(&slug).await.unwrap();
        (tenant.provisioning == ProvisioningState::Ready).then_some(tenant)
    })
    .await;
    assert_eq!(ready.url.as_deref(), Some(url.as_str()));
    assert_eq!(ready.conditions[0]["type"], "Ready");
    assert_eq!(ready.conditions[0]["status"], "True");
    assert_eq!(ready.conditions[0]["reason"], "AllReady");

    // Still ready after another status change: no second event.
    set_status(&tenants, &slug, json!({"phase": "Ready", "url": url, "conditions": [condition("True", "StillReady")]}))
        .await;
    eventually("the new condition", || async {
        let tenant = store.tenant(&slug).await.unwrap();
        (tenant.conditions[0]["reason"] == "StillReady").then_some(())
    })
    .await;
    let deliveries = store.claim_deliveries(100, Duration::from_secs(60)).await.unwrap();
    let ready_events: Vec<_> = deliveries.iter().filter(|d| d.event_type == TENANT_READY).collect();
    assert_eq!(ready_events.len(), 1, "exactly one tenant.ready: {deliveries:?}");

    let _ = stop_mirror.send(true);
    tokio::time::timeout(Duration::from_secs(10), mirror).await.expect("the mirror stops when asked").unwrap();
    remove_tenant(&tenants, &slug).await;
}

// --- helpers -------------------------------------------------------------------------------------

/// A worker on its own task, stopped through its shutdown channel.
struct Worker {
    wakeup: Wakeup,
    metrics: WorkerMetrics,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    fn start(store: &Store, provisioner: Provisioner, settings: WorkerSettings) -> Self {
        let (stop, shutdown) = watch::channel(false);
        let (wakeup, metrics) = (settings.wakeup.clone(), settings.metrics.clone());
        let task = tokio::spawn(run_worker(store.clone(), provisioner, settings, shutdown));
        Self { wakeup, metrics, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("the worker stops when asked").unwrap();
    }
}

/// A fresh, migrated PostgreSQL database with the plan; also returns its URL.
async fn postgres_store(prefix: &str) -> (Store, String) {
    let postgres = TestEnv::shared().await.postgres().await;
    let name = format!("provision_{prefix}_{:08x}", rand::rng().random::<u32>());
    postgres.create_database(&name).await.unwrap();
    let url = postgres.url(&name);
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.create_plan(&plan()).await.unwrap();
    (store, url)
}

async fn sqlite_store(dir: &Path) -> Store {
    let store = Store::connect(&format!("sqlite:{}", dir.join("tenantry.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    store.create_plan(&plan()).await.unwrap();
    store
}

/// The default catalogue's business plan: what a fresh install serves.
fn plan() -> PlanSpec {
    control_plane::catalogue::default_plans().into_iter().find(|plan| plan.name == PLAN).expect("the business plan")
}

fn unique_slug(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand::rng().random_range(0..0xff_ffffu32))
}

async fn create_tenant(store: &Store, slug: &str) -> Tenant {
    let new = NewTenant {
        slug: Slug::parse(slug).unwrap(),
        display_name: "Acme".into(),
        owner_email: "owner@acme.example.com".into(),
        plan: PLAN.into(),
        licensed_seats: 5,
        erp_version: "7.0.1".into(),
        first_seat: Some("owner@acme.example.com".into()),
        host: None,
        generated_host: None,
    };
    store.create_tenant(&new).await.unwrap()
}

/// The Tenant the store wants now, computed the way the outbox row was.
async fn desired_object(store: &Store, slug: &str) -> TenantObject {
    let tenant = store.tenant(slug).await.unwrap();
    let plan = store.plan_version(&tenant.plan, tenant.plan_version).await.unwrap();
    desired::tenant_object(&tenant, &plan)
}

async fn provisioning_is(store: &Store, slug: &str, state: ProvisioningState) -> Option<()> {
    (store.tenant(slug).await.unwrap().provisioning == state).then_some(())
}

/// Polls the store (which cannot be watched) until `probe` yields, or panics after `TIMEOUT`.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not reached within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_status(tenants: &Api<TenantObject>, slug: &str, status: serde_json::Value) {
    // A merge patch replaces the conditions list as a whole, as the operator's status write does.
    tenants.patch_status(slug, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await.unwrap();
}

fn condition(status: &str, reason: &str) -> serde_json::Value {
    json!({
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": format!("{reason} (set by the test)"),
        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

async fn remove_tenant(tenants: &Api<TenantObject>, slug: &str) {
    match tenants.delete(slug, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(e) => panic!("removing Tenant {slug}: {e}"),
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}
