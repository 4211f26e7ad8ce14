//! Signup to Ready: how long a customer waits from `POST /v1/signup` until the API says the ERP
//! is `ready`, and where that time goes. A program, not a timed test: it prints its figures next
//! to the cluster's own floor measured in the same run, and judges nothing (it exits 0 unless
//! something broke). docs/benchmarks.md explains each figure.
//!
//! ```sh
//! cargo run -q -p e2e --bin testenv -- exec -- cargo bench -p control-plane --bench signup_to_ready
//! ```
//!
//! 1. The operator in this process (the operator tests' helper, serving only this run's Tenants)
//!    and a control plane in this process on the local cluster (the API tests' harness, on
//!    PostgreSQL), as the cluster tests run them.
//! 2. The floor: bare pods created one after another with a plain client, each timed until the
//!    simulated kubelet reports it Ready.
//! 3. N signups one after another. Before each, watches on the Tenant and on the pods,
//!    Deployments, StatefulSets and Jobs of its namespace; every moment below is this process's
//!    clock when a watch event or an HTTP answer arrived.

#[path = "../../tenant-operator/tests/integration/common/mod.rs"]
mod operator;

#[allow(dead_code)]
#[path = "../tests/integration/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::fmt::Debug;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use harness::{CacheKind, Db, TestApp};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tenantry_contract::api::{Phase, Tenant};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The brief's deadline for one signup to reach `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a bare pod may take to be Ready before the floor is called broken.
const POD_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the API is asked before, and after, the cluster has said Ready. The fast rate
/// bounds the error of the mirror figure; the slow one keeps the polling out of the way.
const POLL_SLOW: Duration = Duration::from_millis(200);
const POLL_FAST: Duration = Duration::from_millis(10);
const PLAN: &str = "starter";

#[derive(Parser, Debug)]
#[command(
    about = "Signup to Ready through the control plane, the operator and the local cluster, with the cluster's floor"
)]
struct Args {
    /// Signups measured, one after another.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Bare pods timed for the floor, one after another.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    floor_pods: u32,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = tokio::select! {
        outcome = run(&args) => outcome,
        _ = e2e::process::interrupted() => Err("interrupted; this run's Tenants may be left in the cluster".into()),
    };
    match outcome {
        Ok(report) => {
            report.print();
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("signup_to_ready: {message}");
            ExitCode::FAILURE
        }
    }
}

fn progress(message: &str) {
    eprintln!("signup_to_ready: {message}");
}

async fn run(args: &Args) -> Result<Report, String> {
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let load_at_start = load_average();
    progress("starting the operator and the control plane on the local cluster");
    let operator = operator::start().await;
    let app = start_control_plane(operator.run_label(), args.runs).await;
    let env = e2e::TestEnv::shared().await;
    let floor_namespace = env.namespace(&operator.client, "bench-floor").await;

    let measured = async {
        progress(&format!("floor: {} bare pods, one after another", args.floor_pods));
        let floor = measure_floor(&operator.client, &floor_namespace, args.floor_pods).await?;
        let mut runs = Vec::new();
        for index in 0..args.runs {
            let slug = format!("s2r-{run_id}-{index}");
            let figures = measure_signup(&app, &operator, &slug).await?;
            progress(&format!("signup {}/{}: {slug} ready after {}", index + 1, args.runs, secs(figures.total)));
            runs.push(figures);
        }
        Ok::<_, String>((floor, runs))
    }
    .await;

    progress("cleaning up: deleting this run's tenants and namespaces");
    let slugs: Vec<String> = (0..args.runs).map(|index| format!("s2r-{run_id}-{index}")).collect();
    clean_up(&app, &operator, &slugs, &floor_namespace).await;
    app.stop().await;
    operator.stop().await;
    let (floor, runs) = measured?;
    Ok(Report { run_id, load_at_start, load_at_end: load_average(), floor, runs })
}

/// `TestApp::start_on_cluster`'s settings, with a signup burst that lets every measured signup
/// through at once: the default limit (5, then 10 a minute per address) would make later
/// signups wait for the rate limit, not for provisioning.
async fn start_control_plane(label: (&str, &str), runs: u32) -> TestApp {
    let labels = format!("{}={}", label.0, label.1);
    let burst = (runs + 1).to_string();
    let env = [
        ("TENANTRY_PROVISIONER", "cluster"),
        ("TENANTRY_TENANT_LABELS", labels.as_str()),
        ("TENANTRY_TENANT_DOMAIN", "erp.test"),
        ("TENANTRY_TENANT_TLS_ISSUER", "tenantry-test-issuer"),
        ("TENANTRY_SIGNUP_BURST", burst.as_str()),
    ];
    TestApp::start_with(Db::Postgres, CacheKind::InProcess, &env).await
}

// ---------------------------------------------------------------------------------------------
// Watches

/// Follows `api` in a task, calling `record` with the local time of each object event; the
/// returned receiver resolves once the initial list is done, i.e. once no later event can be
/// missed.
fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    mut record: impl FnMut(Instant, &K) + Send + 'static,
) -> (JoinHandle<()>, oneshot::Receiver<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let (synced, synced_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut synced = Some(synced);
        let mut events = watcher(api, config).boxed();
        while let Some(event) = events.next().await {
            let now = Instant::now();
            match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => record(now, &object),
                Ok(watcher::Event::InitDone) => {
                    if let Some(synced) = synced.take() {
                        let _ = synced.send(());
                    }
                }
                Ok(_) => {}
                // The watch is restarted by the next poll of the stream; a missed moment shows
                // up as an error of the run below, not as a wrong figure.
                Err(e) => progress(&format!("watch error: {e}")),
            }
        }
    });
    (task, synced_rx)
}

/// When a pod was first seen, and first seen Ready (or finished, for a Job's pod).
#[derive(Debug, Clone)]
struct PodTimes {
    name: String,
    seen: Instant,
    ready: Option<Instant>,
}

/// Everything the watches saw of one signup, in this process's clock.
#[derive(Debug, Default)]
struct Timeline {
    tenant_seen: Option<Instant>,
    children_applied: Option<Instant>,
    tenant_ready: Option<Instant>,
    /// Deployments, StatefulSets and Jobs by uid: when each was first seen.
    workloads: HashMap<String, Instant>,
    pods: HashMap<String, PodTimes>,
}

fn record_pod(times: &mut HashMap<String, PodTimes>, key: String, now: Instant, pod: &Pod) {
    let entry = times.entry(key).or_insert_with(|| PodTimes { name: pod.name_any(), seen: now, ready: None });
    if entry.ready.is_none() && pod_done(pod) {
        entry.ready = Some(now);
    }
}

/// Ready, or (a Job's pod) finished: either way the kubelet's part is over.
fn pod_done(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
        || status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The reconcile writes a status only after applying every child; an apply error shows as the
/// Ready condition's message instead of the "… not ready" list (as in the operator's
/// convergence bench).
fn children_applied(tenant: &Tenant) -> bool {
    let Some(status) = &tenant.status else { return false };
    match status.phase {
        Some(Phase::Ready) => true,
        Some(Phase::Provisioning | Phase::Degraded) => {
            status.conditions.iter().any(|c| c.type_ == "Ready" && c.message.ends_with(" not ready"))
        }
        _ => false,
    }
}

/// The watches of one signup, started before it.
struct SignupWatches {
    timeline: Arc<watch::Sender<Timeline>>,
    tasks: Vec<JoinHandle<()>>,
}

impl SignupWatches {
    async fn start(operator: &operator::Operator, slug: &str) -> Result<Self, String> {
        let client = &operator.client;
        let namespace = format!("tenant-{slug}");
        let timeline = Arc::new(watch::channel(Timeline::default()).0);
        let (label, value) = operator.run_label();
        let tenant_config =
            watcher::Config::default().labels(&format!("{label}={value}")).fields(&format!("metadata.name={slug}"));
        let sink = timeline.clone();
        let mut started = vec![follow(Api::<Tenant>::all(client.clone()), tenant_config, move |now, tenant| {
            sink.send_modify(|t| {
                t.tenant_seen.get_or_insert(now);
                if children_applied(tenant) {
                    t.children_applied.get_or_insert(now);
                }
                if tenant.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Ready)) {
                    t.tenant_ready.get_or_insert(now);
                }
            });
        })];
        let sink = timeline.clone();
        started.push(follow(Api::<Pod>::namespaced(client.clone(), &namespace), watcher::Config::default(), {
            move |now, pod| sink.send_modify(|t| record_pod(&mut t.pods, uid(pod), now, pod))
        }));
        started.push(workload_watch::<Deployment>(client, &namespace, &timeline));
        started.push(workload_watch::<StatefulSet>(client, &namespace, &timeline));
        started.push(workload_watch::<Job>(client, &namespace, &timeline));
        let mut tasks = Vec::new();
        let mut synced = Vec::new();
        for (task, ready) in started {
            tasks.push(task);
            synced.push(ready);
        }
        let watches = Self { timeline, tasks };
        for ready in synced {
            tokio::time::timeout(POD_TIMEOUT, ready)
                .await
                .map_err(|_| format!("the watches of {slug} did not list within {POD_TIMEOUT:?}"))?
                .map_err(|_| format!("a watch of {slug} ended before it listed"))?;
        }
        Ok(watches)
    }
}

impl Drop for SignupWatches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn workload_watch<K>(
    client: &Client,
    namespace: &str,
    timeline: &Arc<watch::Sender<Timeline>>,
) -> (JoinHandle<()>, oneshot::Receiver<()>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let sink = timeline.clone();
    follow(Api::<K>::namespaced(client.clone(), namespace), watcher::Config::default(), move |now, object| {
        sink.send_modify(|t| {
            t.workloads.entry(uid(object)).or_insert(now);
        });
    })
}

fn uid<K: Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_else(|| object.name_any())
}

// ---------------------------------------------------------------------------------------------
// One signup

/// The moments of one signup, as durations, and its pod count.
struct SignupFigures {
    total: Duration,
    answered: Duration,
    applied: Duration,
    workloads_created: Duration,
    children_applied: Duration,
    operator_ready: Duration,
    kubelet: Duration,
    mirror: Duration,
    pods: usize,
    /// The pod that took longest from first seen to Ready, and how long.
    slowest_pod: (String, Duration),
}

impl SignupFigures {
    /// Total minus the kubelet's intervals: what the control plane, the operator and the
    /// cluster's controllers took while no pod of the tenant was waiting for the kubelet.
    fn added(&self) -> Duration {
        self.total.saturating_sub(self.kubelet)
    }
}

async fn measure_signup(app: &TestApp, operator: &operator::Operator, slug: &str) -> Result<SignupFigures, String> {
    let watches = SignupWatches::start(operator, slug).await?;
    let mut timeline = watches.timeline.subscribe();
    let body = json!({"company_name": format!("Signup bench {slug}"), "slug": slug,
                      "admin_email": format!("ada@{slug}.example.com"), "plan": PLAN, "seats": 2});

    let signup_sent = Instant::now();
    let reply = app.call("POST", "/v1/signup", None, Some(body)).await;
    let answered = Instant::now();
    if reply.status != 202 {
        return Err(format!("POST /v1/signup for {slug} answered {}: {}", reply.status, reply.text));
    }
    let token = reply.body["token"].as_str().ok_or("the signup answer has no token")?.to_string();

    let path = format!("/v1/tenants/{slug}");
    let deadline = signup_sent + READY_TIMEOUT;
    let api_ready = loop {
        let reply = app.get(&path, &token).await;
        let at = Instant::now();
        if reply.status != 200 {
            return Err(format!("GET {path} answered {}: {}", reply.status, reply.text));
        }
        if reply.body["provisioning"] == "ready" {
            break at;
        }
        if at >= deadline {
            return Err(format!("{slug} was not ready within {READY_TIMEOUT:?}; the API said {}", reply.text));
        }
        let cluster_ready = timeline.borrow().tenant_ready.is_some();
        if cluster_ready {
            tokio::time::sleep(POLL_FAST).await;
        } else {
            // Switch to the fast rate the moment the cluster says Ready.
            tokio::select! {
                _ = tokio::time::sleep(POLL_SLOW) => {}
                _ = timeline.wait_for(|t| t.tenant_ready.is_some()) => {}
            }
        }
    };
    // The Tenant's Ready event may reach this process a moment after the API's answer.
    let seen = tokio::time::timeout(Duration::from_secs(5), timeline.wait_for(|t| t.tenant_ready.is_some()))
        .await
        .is_ok_and(|watching| watching.is_ok());
    if !seen {
        return Err(format!("the API said {slug} is ready, but the Tenant watch never saw Ready"));
    }
    drop(watches);
    let timeline = timeline.borrow();
    figures(&timeline, signup_sent, answered, api_ready)
}

fn figures(t: &Timeline, signup_sent: Instant, answered: Instant, api_ready: Instant) -> Result<SignupFigures, String> {
    let missing = |what: &str| format!("the watches missed {what}");
    let tenant_seen = t.tenant_seen.ok_or_else(|| missing("the Tenant's creation"))?;
    let children = t.children_applied.ok_or_else(|| missing("the status after the children were applied"))?;
    let tenant_ready = t.tenant_ready.ok_or_else(|| missing("the Tenant's Ready status"))?;
    let last_workload = t.workloads.values().max().copied().ok_or_else(|| missing("every workload"))?;
    let intervals: Vec<(Instant, Instant)> =
        t.pods.values().map(|pod| (pod.seen, pod.ready.unwrap_or(api_ready).min(api_ready))).collect();
    let slowest_pod = t
        .pods
        .values()
        .map(|pod| (pod.name.clone(), pod.ready.unwrap_or(api_ready).saturating_duration_since(pod.seen)))
        .max_by_key(|(_, waited)| *waited)
        .unwrap_or_default();
    Ok(SignupFigures {
        total: api_ready - signup_sent,
        answered: answered - signup_sent,
        applied: tenant_seen.saturating_duration_since(signup_sent),
        workloads_created: last_workload.saturating_duration_since(tenant_seen),
        children_applied: children.saturating_duration_since(tenant_seen),
        operator_ready: tenant_ready.saturating_duration_since(tenant_seen),
        kubelet: union_length(intervals),
        mirror: api_ready.saturating_duration_since(tenant_ready),
        pods: t.pods.len(),
        slowest_pod,
    })
}

/// The length of the union of `intervals`: time during which at least one of them was open.
/// Overlapping intervals count once.
fn union_length(mut intervals: Vec<(Instant, Instant)>) -> Duration {
    intervals.retain(|(start, end)| end > start);
    intervals.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in intervals {
        current = match current {
            Some((open, close)) if start <= close => Some((open, close.max(end))),
            Some((open, close)) => {
                total += close - open;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(Duration::ZERO, |(open, close)| close - open)
}

// ---------------------------------------------------------------------------------------------
// The floor

struct FloorFigures {
    /// First seen in the watch → Ready: the same measure as a tenant pod's kubelet interval.
    seen_to_ready: Vec<Duration>,
    /// The create request sent → Ready seen.
    create_to_ready: Vec<Duration>,
}

async fn measure_floor(client: &Client, namespace: &str, pods: u32) -> Result<FloorFigures, String> {
    let times = Arc::new(watch::channel(HashMap::<String, PodTimes>::new()).0);
    let sink = times.clone();
    let (task, synced) = follow(Api::<Pod>::namespaced(client.clone(), namespace), watcher::Config::default(), {
        move |now, pod: &Pod| sink.send_modify(|t| record_pod(t, pod.name_any(), now, pod))
    });
    let outcome = async {
        synced.await.map_err(|_| "the floor's pod watch ended before it listed".to_string())?;
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let mut observed = times.subscribe();
        let mut figures = FloorFigures { seen_to_ready: Vec::new(), create_to_ready: Vec::new() };
        for index in 0..pods {
            let name = format!("floor-{index}");
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.2"}]}
            }))
            .expect("a valid pod");
            let sent = Instant::now();
            api.create(&PostParams::default(), &pod).await.map_err(|e| format!("creating pod {name}: {e}"))?;
            let ready = tokio::time::timeout(
                POD_TIMEOUT,
                observed.wait_for(|t| t.get(&name).is_some_and(|pod| pod.ready.is_some())),
            )
            .await
            .map_err(|_| format!("pod {name} in {namespace} was not Ready within {POD_TIMEOUT:?}"))?
            .map_err(|_| "the floor's pod watch ended".to_string())?
            .get(&name)
            .cloned()
            .expect("waited for it");
            let ready_at = ready.ready.expect("waited for it");
            figures.seen_to_ready.push(ready_at.saturating_duration_since(ready.seen));
            figures.create_to_ready.push(ready_at - sent);
        }
        Ok(figures)
    }
    .await;
    task.abort();
    outcome
}

// ---------------------------------------------------------------------------------------------
// Clean-up

/// Deletes the run's tenants through the API and waits for the operator to finish with them
/// (its finalizer), then deletes their retained namespaces and the floor's namespace. Best
/// effort: what fails is reported, not fatal.
async fn clean_up(app: &TestApp, operator: &operator::Operator, slugs: &[String], floor_namespace: &str) {
    let tenants = operator.tenants();
    for slug in slugs {
        let reply = app.call("DELETE", &format!("/v1/tenants/{slug}"), Some(&app.provider), None).await;
        if reply.status != 200 && reply.status != 404 {
            progress(&format!("deleting tenant {slug}: {} {}", reply.status, reply.text));
        }
    }
    let gone = async {
        for slug in slugs {
            let absent = |tenant: Option<&Tenant>| tenant.is_none();
            let _ = kube::runtime::wait::await_condition(tenants.clone(), slug, absent).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(120), gone).await.is_err() {
        progress("some Tenants were still being deleted after 120 s");
    }
    let namespaces: Api<Namespace> = Api::all(operator.client.clone());
    let names = slugs.iter().map(|slug| format!("tenant-{slug}")).chain([floor_namespace.to_string()]);
    for name in names {
        match namespaces.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => progress(&format!("deleting namespace {name}: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report

struct Report {
    run_id: String,
    load_at_start: String,
    load_at_end: String,
    floor: FloorFigures,
    runs: Vec<SignupFigures>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// (median, min, max); the median of an even count is the mean of the middle two.
fn spread(values: impl IntoIterator<Item = Duration>) -> (Duration, Duration, Duration) {
    let mut values: Vec<Duration> = values.into_iter().collect();
    values.sort();
    let n = values.len();
    if n == 0 {
        return (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    }
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2 };
    (median, values[0], values[n - 1])
}

fn secs(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}

fn row(label: &str, values: impl IntoIterator<Item = Duration>) {
    let (median, min, max) = spread(values);
    println!("  {label:<58} {:>9} {:>9} {:>9}", secs(median), secs(min), secs(max));
}

impl Report {
    fn print(&self) {
        let runs = &self.runs;
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let pods: Vec<usize> = runs.iter().map(|r| r.pods).collect();
        println!();
        println!("signup to Ready (run {})", self.run_id);
        println!(
            "  machine      {cpus} CPUs; load average {} at start, {} at the end",
            self.load_at_start, self.load_at_end
        );
        println!("  cluster      local Kubernetes v1.20.2 of the test environment, simulated kubelet");
        println!(
            "  setup        operator and control plane (PostgreSQL, in-process cache) in this process; plan {PLAN}, 2 seats"
        );
        println!("  workload     {} signups one after another; pods per tenant {pods:?}", runs.len());
        println!();
        println!("  {:<58} {:>9} {:>9} {:>9}", "per signup", "median", "min", "max");
        row("total: POST /v1/signup -> GET /v1/tenants/{slug} says ready", runs.iter().map(|r| r.total));
        row("  the signup's 202 answer", runs.iter().map(|r| r.answered));
        row("(a) control plane: POST -> Tenant in the cluster", runs.iter().map(|r| r.applied));
        row("(b) operator: Tenant -> last workload created", runs.iter().map(|r| r.workloads_created));
        row("    operator: Tenant -> status \"children applied\"", runs.iter().map(|r| r.children_applied));
        row("    operator: Tenant -> status Ready", runs.iter().map(|r| r.operator_ready));
        row("(c) kubelet: some pod created, not yet Ready", runs.iter().map(|r| r.kubelet));
        row("(d) mirror: Tenant Ready -> the API says ready", runs.iter().map(|r| r.mirror));
        row("added by control plane + operator = total - (c)", runs.iter().map(SignupFigures::added));
        println!();
        println!("  each signup     total     (a)       (b)   Ready(b)    (c)       (d)     added   slowest pod");
        for (index, r) in runs.iter().enumerate() {
            let (pod, waited) = &r.slowest_pod;
            println!(
                "  {:>3}        {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   {} {pod}",
                index + 1,
                secs(r.total),
                secs(r.applied),
                secs(r.workloads_created),
                secs(r.operator_ready),
                secs(r.kubelet),
                secs(r.mirror),
                secs(r.added()),
                secs(*waited),
            );
        }
        println!();
        println!(
            "floor (the cluster alone): {} bare pods created with a plain client, one after another",
            self.floor.seen_to_ready.len()
        );
        row("pod first seen -> Ready (as (c) counts a pod)", self.floor.seen_to_ready.iter().copied());
        row("create request sent -> Ready seen", self.floor.create_to_ready.iter().copied());
        println!();
        println!("definitions (every moment is this process's clock when a watch event or an answer arrived)");
        println!("  (c) is the length of the union of the tenant's pod intervals [first seen, first seen Ready");
        println!("      or finished]: time during which at least one pod had been created and was not yet Ready;");
        println!("      overlapping pods count once. The intervals lie inside (b)'s Tenant -> Ready. A pod's");
        println!("      interval holds the scheduler's binding too, and for a pod with a volume claim the wait");
        println!("      for the claim to be bound (the simulated provisioner, then the scheduler's retry).");
        println!("  added = total - (c): the control plane, the operator and the cluster's controllers, while");
        println!("      no pod of the tenant waited for the kubelet. total = (a) + Tenant -> Ready + (d).");
    }
}
