//! Convergence benchmark of `tenant-operator` against the local control plane: a program, not a
//! timed test. It prints its figures next to a baseline measured in the same run and judges
//! nothing; docs/benchmarks.md explains how to run it and what each figure means.
//!
//! ```sh
//! cargo bench -p tenant-operator --bench convergence -- --tenants 200
//! ```
//!
//! 1. The operator: the real binary, as a child process serving only this run's Tenants. N
//!    Tenants are created at once; a watch on them records when each has all its children
//!    applied (the reconcile writes a status only after applying every child) and when each is
//!    Ready. Then a quiet window and a touch of every Tenant count the writes of a converged
//!    operator, which should be none.
//! 2. The baseline: a plain kube client POSTs the same objects (same builders, same bodies, minus
//!    the owner reference) for N other tenants, with the operator's concurrency and order, and no
//!    logic at all.
//!
//! Both are measured in several rounds (`--rounds`, at least two), alternating which goes first
//! (operator then baseline, then baseline then operator, …), each on fresh namespaces and only
//! once the controllers have finished with what the previous measurement created: on a shared
//! machine a single pair measured minutes apart compares two different machines. The report
//! gives every run, the spread of the ratio, and beside it the figures that do not depend on
//! the machine's load (API requests and operator CPU per Tenant).

#[path = "../tests/integration/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::TestEnv;
use e2e::kubelet::{NODE_LABEL, NodeCapacity, SimulatedKubelet};
use e2e::process::{Spec, Supervised, WorkDir};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, conditions, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenant_operator::api::{DeletionPolicy, Phase, Tenant, TenantSpec, labels};
use tenant_operator::build::{self, BuildContext, Child, GeneratedSecrets};
use tenant_operator::controller::OperatorConfig;
use tenant_operator::profile::ImageDefaults;
use tenant_operator::validate::validate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The label that selects one run's Tenants (the operator's `--tenant-selector`).
const RUN_LABEL: &str = "bench.tenantry.dev/run";
/// The label that tells one round's Tenants from another's.
const ROUND_LABEL: &str = "bench.tenantry.dev/round";
/// On the baseline's namespaces, so that they can be found and deleted.
const BASELINE_LABEL: &str = "bench.tenantry.dev/baseline";
/// The baseline's objects carry this instead of `app.kubernetes.io/managed-by=tenantry`, so the
/// operator (which watches every object managed by `tenantry`) never sees them.
const BASELINE_MANAGER: &str = "tenantry-bench-baseline";
/// What one simulated node offers (the e2e kubelet's default).
const NODE_PODS: f64 = 110.0;
const NODE_CPU: f64 = 16.0;
const NODE_MEMORY: f64 = 64.0 * 1024.0 * 1024.0 * 1024.0;
/// Fill nodes to this share at most.
const NODE_FILL: f64 = 0.85;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Parser, Debug)]
#[command(about = "Convergence benchmark of tenant-operator against the local Kubernetes control plane")]
struct Args {
    /// Tenants created at once (1 to 2000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=2000))]
    tenants: u32,
    /// Rounds, each measuring the operator and the baseline once (alternating which goes
    /// first); every round adds 2 × N tenants to the cluster.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// The operator's --concurrency, and how many tenants the baseline writes at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Give every Tenant a test environment as well as production (more objects per Tenant).
    #[arg(long)]
    with_test_env: bool,
    /// Seconds to watch a converged operator for writes before touching every Tenant.
    #[arg(long, default_value_t = 20)]
    quiet_secs: u64,
    /// Give up waiting (for children applied, for Ready) after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    /// Give up when no Tenant made progress for this many seconds.
    #[arg(long, default_value_t = 300)]
    stall_secs: u64,
    /// Simulated nodes (default: enough for every Tenant's pods; the environment has two).
    #[arg(long)]
    nodes: Option<usize>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("convergence: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What the measurements run against.
struct Bench {
    client: Client,
    attached: bool,
    nodes: usize,
    /// Simulated nodes this run registered (removed at the end).
    added_nodes: Vec<String>,
    kubelet: AbortOnDrop,
    operator: OperatorProcess,
    objects_per_tenant: usize,
    needs: PodNeeds,
}

async fn run(args: Args) -> Result<(), String> {
    let n = args.tenants as usize;
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let spec = tenant_spec(args.with_test_env);
    // Interrupted while setting up, the operator (if started) is stopped as `set_up` is dropped.
    let bench = tokio::select! {
        bench = set_up(&args, &run_id, &spec) => bench?,
        _ = e2e::process::interrupted() => return Err("interrupted".into()),
    };

    let measured = tokio::select! {
        measured = measure(&bench, &args, &run_id, &spec) => Some(measured),
        _ = e2e::process::interrupted() => {
            progress("interrupted: cleaning up (interrupt again to leave everything as it is)");
            None
        }
    };

    progress("cleaning up");
    let cleaned = tokio::select! {
        cleaned = clean_up(&bench, &run_id, n, args.rounds) => cleaned,
        _ = e2e::process::interrupted() => Err(format!("interrupted while cleaning up: run {run_id}'s objects are left")),
    };
    // The operator is stopped by now; its figures were taken while it ran.
    let log = bench.operator.keep_log();

    let outcome = match measured {
        Some(Ok(rounds)) => {
            let report = Report {
                run_id,
                attached: bench.attached,
                nodes: bench.nodes,
                tenants: n,
                objects_per_tenant: bench.objects_per_tenant,
                concurrency: args.concurrency,
                quiet_secs: args.quiet_secs,
                needs: bench.needs,
                rounds,
                log,
            };
            report.print();
            Ok(())
        }
        Some(Err(e)) => Err(format!("{e} (operator log: {})", log.display())),
        None => Err("interrupted".into()),
    };
    if let Err(e) = cleaned {
        eprintln!("convergence: clean-up incomplete: {e}");
    }
    outcome
}

/// Attaches to (or starts) the local control plane, installs the CRD, adds simulated nodes for
/// every Tenant's pods, and starts the operator.
async fn set_up(args: &Args, run_id: &str, spec: &TenantSpec) -> Result<Bench, String> {
    let n = args.tenants as usize;
    let attached = std::env::var_os("TENANTRY_TESTENV").is_some();
    progress(if attached { "attaching to the running environment" } else { "starting the local control plane" });
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let kubeconfig = env.kubeconfig_path().await;
    install_crd(&client).await?;
    warn_about_leftovers(&client).await?;

    let template = tenant_children(&format!("bt-{run_id}-0000"), spec, dummy_owner(), &GeneratedSecrets::generate());
    let objects_per_tenant = template.len();
    let needs = pod_needs(&template);
    // Every round's Tenants, the operator's and the baseline's, exist until the end.
    let all_tenants = 2 * n * args.rounds as usize;
    let cluster_ips = template
        .iter()
        .filter(|c| c.resource.kind == "Service" && c.body["spec"]["clusterIP"].as_str() != Some("None"))
        .count();
    check_service_range(&client, run_id, all_tenants * cluster_ips).await?;

    // The environment's two nodes hold the pods of about 70 Tenants; the simulated kubelet of this
    // run drives those two as well as the ones it adds.
    let nodes = args.nodes.unwrap_or_else(|| needs.nodes_for(all_tenants)).max(2);
    let nodes_api: Api<Node> = Api::all(client.clone());
    let nodes_before: BTreeSet<String> = nodes_api
        .list_metadata(&ListParams::default())
        .await
        .map_err(kube_error)?
        .iter()
        .map(|n| n.name_any())
        .collect();
    let kubelet = SimulatedKubelet::new(
        client.clone(),
        nodes,
        NodeCapacity::default(),
        std::env::temp_dir().join(format!("tenantry-bench-{run_id}-volumes")),
    );
    let added_nodes: Vec<String> =
        kubelet.node_names().iter().filter(|n| !nodes_before.contains(*n)).cloned().collect();
    kubelet.register_nodes().await.map_err(|e| format!("registering simulated nodes: {e}"))?;
    let kubelet = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = kubelet.run().await {
            eprintln!("convergence: the bench's simulated kubelet stopped: {e}");
        }
    }));

    let operator = OperatorProcess::start(&kubeconfig, run_id, args.concurrency)?;
    operator.wait_ready(Duration::from_secs(120)).await?;
    Ok(Bench { client, attached, nodes, added_nodes, kubelet, operator, objects_per_tenant, needs })
}

/// One round: the operator and the baseline, in `order`.
struct Round {
    operator_first: bool,
    operator: OperatorFigures,
    baseline: Baseline,
}

/// The rounds, alternating which of the operator and the baseline goes first, so that neither
/// always meets the machine in the same state. Each measurement starts once the controllers
/// are done with what the previous one created (its Tenants Ready, its workloads available),
/// on names never used before. Stops early when the operator did not get every Tenant Ready.
async fn measure(bench: &Bench, args: &Args, run_id: &str, spec: &TenantSpec) -> Result<Vec<Round>, String> {
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let operator_first = round % 2 == 1;
        progress(&format!(
            "round {round}/{}: {}",
            args.rounds,
            if operator_first { "operator, then baseline" } else { "baseline, then operator" }
        ));
        let last_round = round == args.rounds;
        let (operator, baseline) = if operator_first {
            let operator = measure_operator(&bench.client, args, run_id, round, spec, &bench.operator).await?;
            let baseline = measure_baseline(&bench.client, args, run_id, round, spec).await?;
            if !last_round {
                wait_baseline_settled(&bench.client, args, run_id, round).await?;
            }
            (operator, baseline)
        } else {
            let baseline = measure_baseline(&bench.client, args, run_id, round, spec).await?;
            wait_baseline_settled(&bench.client, args, run_id, round).await?;
            let operator = measure_operator(&bench.client, args, run_id, round, spec, &bench.operator).await?;
            (operator, baseline)
        };
        // The operator's Tenants being Ready says its workloads are settled.
        let complete = operator.ready.all_after.is_some();
        rounds.push(Round { operator_first, operator, baseline });
        if !complete {
            progress("not every Tenant got Ready: no further rounds");
            break;
        }
    }
    Ok(rounds)
}

async fn clean_up(bench: &Bench, run_id: &str, n: usize, rounds: u32) -> Result<(), String> {
    let cleaned = delete_run(&bench.client, run_id, n, rounds, &bench.operator).await;
    bench.kubelet.0.abort();
    let nodes = remove_nodes(&bench.client, &bench.added_nodes, run_id).await;
    cleaned.and(nodes)
}

// ---------------------------------------------------------------------------------------------
// The operator

struct OperatorFigures {
    creation: Duration,
    applied: Waited,
    ready: Waited,
    /// Operator metrics: before the Tenants, when all had their children applied, when all
    /// were Ready (or when the wait ended).
    at_start: Scrape,
    at_applied: Scrape,
    at_ready: Scrape,
    /// Only when every Tenant got Ready.
    converged: Option<Converged>,
    verified: Verified,
    peak_rss_kib: u64,
    /// The operator's CPU time (user + system) from the creation of the Tenants.
    cpu_to_applied: Duration,
    cpu_to_ready: Duration,
    rss_kib: u64,
}

/// The operator's metrics once every Tenant is Ready.
struct Converged {
    /// Once no reconcile has finished for a few seconds.
    settled: Scrape,
    /// After the quiet window.
    after_quiet: Scrape,
    /// After touching every Tenant and waiting for their reconciles.
    after_touch: Scrape,
}

/// How long until every Tenant reached a state, or how far it got.
struct Waited {
    reached: usize,
    /// Since the first Tenant's creation began; `None` when not every Tenant got there.
    all_after: Option<Duration>,
    /// The time at which half of them had got there.
    median: Option<Duration>,
    /// Why the wait ended early (a timeout, no progress).
    gave_up: Option<String>,
}

struct Verified {
    expected: usize,
    found: usize,
    missing: Vec<String>,
}

async fn measure_operator(
    client: &Client,
    args: &Args,
    run_id: &str,
    round: u32,
    spec: &TenantSpec,
    operator: &OperatorProcess,
) -> Result<OperatorFigures, String> {
    let n = args.tenants as usize;
    let timeout = Duration::from_secs(args.timeout_secs);
    let selector = format!("{RUN_LABEL}={run_id},{ROUND_LABEL}={round}");
    let tenants: Api<Tenant> = Api::all(client.clone());

    // Follow the Tenants from before they exist, so nothing is missed.
    let (sender, mut watch_progress) = watch::channel(TenantProgress::default());
    let follower = tokio::spawn(follow_tenants(tenants.clone(), selector.clone(), sender));
    let _stop_follower = AbortOnDrop(follower);
    watch_progress.wait_for(|p| p.synced).await.map_err(|_| "the Tenant watch stopped".to_string())?;

    let at_start = operator.scrape().await?;
    let cpu_at_start = e2e::process::cpu_time(operator.process.pid())?;
    let names: Vec<String> = (0..n).map(|i| operator_tenant(run_id, round, i)).collect();
    progress(&format!("operator: creating {n} Tenants"));
    let started = Instant::now();
    let created = stream::iter(names.iter().cloned())
        .map(|name| {
            let tenants = tenants.clone();
            let mut tenant = Tenant::new(&name, spec.clone());
            // Every Tenant has a host of its own: the operator refuses a host another one has.
            if let Some(ingress) = tenant.spec.ingress.as_mut() {
                ingress.host = common::host_of(&name);
            }
            tenant.metadata.labels = Some(BTreeMap::from([
                (RUN_LABEL.to_string(), run_id.to_string()),
                (ROUND_LABEL.to_string(), round.to_string()),
            ]));
            async move { tenants.create(&PostParams::default(), &tenant).await.map(drop).map_err(kube_error) }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let creation = started.elapsed();
    if let Some(Err(e)) = created.into_iter().find(Result::is_err) {
        return Err(format!("creating a Tenant: {e}"));
    }

    progress("waiting until every Tenant has all its children applied");
    let limits = (timeout, Duration::from_secs(args.stall_secs));
    let applied = wait_all(&mut watch_progress, operator, started, limits, n, |p| &p.applied).await?;
    let at_applied = operator.scrape().await?;
    let cpu_to_applied = e2e::process::cpu_time(operator.process.pid())? - cpu_at_start;
    let ready = if applied.gave_up.is_none() {
        progress("waiting until every Tenant is Ready");
        wait_all(&mut watch_progress, operator, started, limits, n, |p| &p.ready).await?
    } else {
        Waited { reached: watch_progress.borrow().ready.len(), all_after: None, median: None, gave_up: None }
    };
    let at_ready = operator.scrape().await?;
    let cpu_to_ready = e2e::process::cpu_time(operator.process.pid())? - cpu_at_start;

    progress("counting the children by label");
    let verified = verify_children(client, &names, spec).await?;
    let converged = match ready.all_after {
        Some(_) => Some(watch_converged(&tenants, &names, args, operator).await?),
        None => None,
    };
    let (peak_rss_kib, rss_kib) = e2e::process::resident_memory_kib(operator.process.pid())?;

    Ok(OperatorFigures {
        creation,
        applied,
        ready,
        at_start,
        at_applied,
        at_ready,
        converged,
        verified,
        peak_rss_kib,
        rss_kib,
        cpu_to_applied,
        cpu_to_ready,
    })
}

/// Counts the writes of the converged operator: in a quiet window, then after touching every
/// Tenant (a metadata change: one reconcile each, like a resync).
async fn watch_converged(
    tenants: &Api<Tenant>,
    names: &[String],
    args: &Args,
    operator: &OperatorProcess,
) -> Result<Converged, String> {
    // The watch sees a Tenant Ready as soon as its status is written, while its reconcile may
    // still be publishing the phase's event: the quiet window starts once reconciles stop.
    progress("waiting until the operator has no reconcile running");
    let settled = settle(operator).await?;
    progress(&format!("watching the converged operator for {} s", args.quiet_secs));
    tokio::time::sleep(Duration::from_secs(args.quiet_secs)).await;
    let after_quiet = operator.scrape().await?;

    progress("touching every Tenant (an annotation: one reconcile each, like a resync)");
    let reconciles_before = after_quiet.reconciles();
    let stamp = format!("{}", rand::random::<u32>());
    let touched = stream::iter(names.iter().cloned())
        .map(|name| {
            let tenants = tenants.clone();
            let patch = json!({"metadata": {"annotations": {"bench.tenantry.dev/touch": stamp}}});
            async move { tenants.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(kube_error) }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(e)) = touched.into_iter().find(Result::is_err) {
        return Err(format!("touching a Tenant: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if operator.scrape().await?.reconciles() >= reconciles_before + names.len() as f64 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the touched Tenants were not all reconciled within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Whatever those reconciles write has been sent by the time they are counted; a little more
    // time catches anything they set off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_touch = operator.scrape().await?;
    Ok(Converged { settled, after_quiet, after_touch })
}

#[derive(Default)]
struct TenantProgress {
    synced: bool,
    /// When each Tenant was first seen with all its children applied.
    applied: HashMap<String, Instant>,
    /// When each Tenant was first seen Ready.
    ready: HashMap<String, Instant>,
}

async fn follow_tenants(tenants: Api<Tenant>, selector: String, progress: watch::Sender<TenantProgress>) {
    let mut events = watcher(tenants, watcher::Config::default().labels(&selector)).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(tenant) | watcher::Event::InitApply(tenant)) => {
                let now = Instant::now();
                let name = tenant.name_any();
                let (applied, ready) = (children_applied(&tenant), is_ready(&tenant));
                progress.send_if_modified(|p| {
                    let mut changed = false;
                    if applied && !p.applied.contains_key(&name) {
                        p.applied.insert(name.clone(), now);
                        changed = true;
                    }
                    if ready && !p.ready.contains_key(&name) {
                        p.ready.insert(name.clone(), now);
                        changed = true;
                    }
                    changed
                });
            }
            Ok(watcher::Event::InitDone) => {
                progress.send_modify(|p| p.synced = true);
            }
            Ok(_) => {}
            // The watcher retries by itself, with backoff.
            Err(e) => eprintln!("convergence: Tenant watch error: {e}"),
        }
    }
}

/// The reconcile writes a status only after applying every child; an apply error shows as the
/// Ready condition's message instead of the "… not ready" list.
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

fn is_ready(tenant: &Tenant) -> bool {
    tenant.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Ready))
}

async fn wait_all(
    progress: &mut watch::Receiver<TenantProgress>,
    operator: &OperatorProcess,
    started: Instant,
    limits: (Duration, Duration),
    n: usize,
    pick: fn(&TenantProgress) -> &HashMap<String, Instant>,
) -> Result<Waited, String> {
    let (timeout, stall) = limits;
    let deadline = started + timeout;
    let mut report_at = Instant::now() + Duration::from_secs(10);
    let mut last_counts = (usize::MAX, usize::MAX);
    let mut last_change = Instant::now();
    let mut gave_up = None;
    loop {
        operator.check_alive()?;
        let counts = {
            let p = progress.borrow();
            (p.applied.len(), p.ready.len())
        };
        if counts != last_counts {
            (last_counts, last_change) = (counts, Instant::now());
        }
        let reached = pick(&progress.borrow()).len();
        if reached >= n {
            break;
        }
        let complaint = || last_complaint(operator.log()).unwrap_or_else(|| "none".into());
        if last_change.elapsed() >= stall {
            gave_up = Some(format!(
                "no Tenant made progress for {} s; the operator's last complaint: {}",
                stall.as_secs(),
                complaint()
            ));
            break;
        }
        if Instant::now() >= deadline {
            gave_up = Some(format!(
                "gave up after {} s (--timeout-secs); the operator's last complaint: {}",
                timeout.as_secs(),
                complaint()
            ));
            break;
        }
        if Instant::now() >= report_at {
            let p = progress.borrow();
            eprintln!(
                "convergence:   {:>5.0} s: children applied {}/{n}, Ready {}/{n}",
                started.elapsed().as_secs_f64(),
                p.applied.len(),
                p.ready.len()
            );
            report_at += Duration::from_secs(10);
        }
        let wake = deadline.min(report_at).min(Instant::now() + Duration::from_secs(1));
        let _ = tokio::time::timeout_at(wake.into(), progress.changed()).await;
    }
    let p = progress.borrow();
    let mut times: Vec<Duration> = pick(&p).values().map(|t| t.saturating_duration_since(started)).collect();
    times.sort();
    let reached = times.len();
    Ok(Waited {
        reached,
        all_after: (reached >= n).then(|| times[n - 1]),
        median: (reached > n / 2).then(|| times[n / 2]),
        gave_up,
    })
}

/// Waits until no reconcile has finished for 3 s (at most 60 s), then returns the metrics.
async fn settle(operator: &OperatorProcess) -> Result<Scrape, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = operator.scrape().await?;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = operator.scrape().await?;
        if now.reconciles() != last.reconciles() {
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(3) || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Every object the builders say the Tenants need exists, found by label.
async fn verify_children(client: &Client, names: &[String], spec: &TenantSpec) -> Result<Verified, String> {
    let mut expected = BTreeSet::new();
    for name in names {
        for child in tenant_children(name, spec, dummy_owner(), &fixed_secrets()) {
            expected.insert((child.resource.kind.clone(), child.namespace.clone().unwrap_or_default(), child.name));
        }
    }
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
    let ours: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut found = BTreeSet::new();
    let mut kinds = build::managed_kinds();
    kinds.push(ApiResource::erase::<Namespace>(&()));
    for resource in kinds {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let objects = api.list_metadata(&ListParams::default().labels(&managed)).await.map_err(kube_error)?;
        for object in objects {
            let tenant = object.labels().get(labels::TENANT).map(String::as_str).unwrap_or_default();
            if ours.contains(tenant) {
                found.insert((resource.kind.clone(), object.namespace().unwrap_or_default(), object.name_any()));
            }
        }
    }
    let missing: Vec<String> =
        expected.difference(&found).take(5).map(|(kind, ns, name)| format!("{kind} {ns}/{name}")).collect();
    Ok(Verified { expected: expected.len(), found: expected.intersection(&found).count(), missing })
}

// ---------------------------------------------------------------------------------------------
// The baseline

struct Baseline {
    objects: usize,
    elapsed: Duration,
    errors: usize,
    first_error: Option<String>,
}

async fn measure_baseline(
    client: &Client,
    args: &Args,
    run_id: &str,
    round: u32,
    spec: &TenantSpec,
) -> Result<Baseline, String> {
    let n = args.tenants as usize;
    progress(&format!("baseline: building the objects of {n} tenants"));
    // Built before the clock starts: generating the secrets (a SHA-512 crypt each) is not what is
    // measured.
    let prepared: Vec<Vec<(ApiResource, Option<String>, DynamicObject)>> = (0..n)
        .map(|i| {
            let name = baseline_tenant(run_id, round, i);
            tenant_children(&name, spec, dummy_owner(), &GeneratedSecrets::generate())
                .into_iter()
                .map(|child| baseline_object(child, run_id))
                .collect::<Result<Vec<_>, String>>()
        })
        .collect::<Result<_, _>>()?;
    let objects: usize = prepared.iter().map(Vec::len).sum();

    progress(&format!("baseline: creating {objects} objects with plain POSTs"));
    let started = Instant::now();
    let results = stream::iter(prepared)
        .map(|tenant| {
            let client = client.clone();
            async move {
                // One tenant's objects in order (its namespace first), as the operator does.
                let mut created = 0;
                for (resource, namespace, object) in tenant {
                    let api: Api<DynamicObject> = match &namespace {
                        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                        None => Api::all_with(client.clone(), &resource),
                    };
                    match api.create(&PostParams::default(), &object).await {
                        Ok(_) => created += 1,
                        Err(e) => return (created, Some(format!("{} {}: {e}", resource.kind, object.name_any()))),
                    }
                }
                (created, None)
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    let created: usize = results.iter().map(|(created, _)| created).sum();
    let errors: Vec<String> = results.into_iter().filter_map(|(_, error)| error).collect();
    Ok(Baseline { objects: created, elapsed, errors: errors.len(), first_error: errors.into_iter().next() })
}

/// A child as the baseline creates it: no owner reference (there is no Tenant), not labelled as
/// managed by `tenantry` (so the operator's watches ignore it), otherwise the same body.
fn baseline_object(child: Child, run_id: &str) -> Result<(ApiResource, Option<String>, DynamicObject), String> {
    let mut body = child.body;
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("ownerReferences");
    }
    relabel(&mut body);
    if child.namespace.is_none() {
        body["metadata"]["labels"][BASELINE_LABEL] = json!(run_id);
    }
    let object: DynamicObject =
        serde_json::from_value(body).map_err(|e| format!("{} {}: {e}", child.resource.kind, child.name))?;
    Ok((child.resource, child.namespace, object))
}

/// The names of round `round`'s Tenants: fresh namespaces for every measurement.
fn operator_tenant(run_id: &str, round: u32, i: usize) -> String {
    format!("bt-{run_id}-{round}-{i:04}")
}

fn baseline_tenant(run_id: &str, round: u32, i: usize) -> String {
    format!("bb-{run_id}-{round}-{i:04}")
}

/// Waits until the controllers are done with round `round`'s baseline: every Deployment and
/// StatefulSet available, every Job succeeded, in all its namespaces. (The operator's Tenants
/// need no such wait: being Ready says the same of theirs.)
async fn wait_baseline_settled(client: &Client, args: &Args, run_id: &str, round: u32) -> Result<(), String> {
    progress("waiting until the controllers are done with the baseline's workloads");
    let prefix = format!("tenant-{}", baseline_tenant(run_id, round, 0).trim_end_matches("0000"));
    let selector = format!("{}={BASELINE_MANAGER}", labels::MANAGED_BY);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    loop {
        let mut waiting = 0;
        let mut total = 0;
        for resource in [
            ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
            ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
            ApiResource::erase::<k8s_openapi::api::batch::v1::Job>(&()),
        ] {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let list = api.list(&ListParams::default().labels(&selector)).await.map_err(kube_error)?;
            for object in list.items.iter().filter(|o| o.namespace().is_some_and(|ns| ns.starts_with(&prefix))) {
                total += 1;
                let ready = match tenant_operator::children::summarize(&resource.kind, object) {
                    Some(readiness) => readiness == tenant_operator::status::Readiness::Ready,
                    None => true,
                };
                if !ready {
                    waiting += 1;
                }
            }
        }
        if waiting == 0 && total > 0 {
            progress(&format!("  baseline settled after {:.0} s", started.elapsed().as_secs_f64()));
            // A moment more for what the last changes set off (endpoints, quota usage).
            tokio::time::sleep(Duration::from_secs(5)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the baseline's workloads were not settled after {} s: {waiting}/{total} waiting",
                deadline.duration_since(started).as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn relabel(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == labels::MANAGED_BY && item == labels::MANAGER {
                    *item = json!(BASELINE_MANAGER);
                } else {
                    relabel(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(relabel),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// What a Tenant is made of

/// The integration tests' Tenant, deleted with its namespace.
fn tenant_spec(with_test: bool) -> TenantSpec {
    TenantSpec { deletion_policy: DeletionPolicy::Delete, ..common::spec(with_test) }
}

/// What the operator creates for a Tenant, in its order: the namespace, the generated secrets,
/// the rest.
fn tenant_children(name: &str, spec: &TenantSpec, owner: OwnerReference, secrets: &GeneratedSecrets) -> Vec<Child> {
    let images = ImageDefaults::default();
    let model = validate(name, spec, &images).expect("the bench's Tenant is valid");
    let config = OperatorConfig::default();
    let ctx = BuildContext {
        model: &model,
        owner,
        images: &images,
        ingress_controller_namespace: &config.ingress_controller_namespace,
        placement: &config.placement,
        backup_store_ports: &config.backup_store_ports,
    };
    let desired = build::desired(&ctx);
    let (namespace, rest): (Vec<Child>, Vec<Child>) = desired.into_iter().partition(|c| c.namespace.is_none());
    namespace.into_iter().chain(build::secrets(&ctx, secrets)).chain(rest).collect()
}

fn dummy_owner() -> OwnerReference {
    OwnerReference {
        api_version: "tenantry.dev/v1alpha1".into(),
        kind: "Tenant".into(),
        name: "bench".into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Secret values for when only the objects' names matter.
fn fixed_secrets() -> GeneratedSecrets {
    GeneratedSecrets {
        database_password: "x".into(),
        master_password: "x".into(),
        master_password_hash: "x".into(),
        backup_key: "x".into(),
        backup_recipient: "x".into(),
    }
}

/// What one Tenant's pods ask of the nodes (Job pods included: a finished pod may still count).
#[derive(Debug, Clone, Copy)]
struct PodNeeds {
    pods: f64,
    cpu: f64,
    memory: f64,
}

impl PodNeeds {
    fn nodes_for(&self, tenants: usize) -> usize {
        let n = tenants as f64;
        let share = (self.pods / NODE_PODS).max(self.cpu / NODE_CPU).max(self.memory / NODE_MEMORY);
        (n * share / NODE_FILL).ceil() as usize
    }
}

fn pod_needs(children: &[Child]) -> PodNeeds {
    let quantity = |value: &Value| value.as_str().and_then(|q| tenant_operator::quantity::parse(q).ok());
    let defaults = children
        .iter()
        .find(|c| c.resource.kind == "LimitRange")
        .and_then(|c| c.body["spec"]["limits"].as_array())
        .and_then(|limits| limits.iter().find(|l| l["type"] == "Container"))
        .map(|l| l["defaultRequest"].clone())
        .unwrap_or(Value::Null);
    let mut needs = PodNeeds { pods: 0.0, cpu: 0.0, memory: 0.0 };
    for child in children {
        let replicas = match child.resource.kind.as_str() {
            "Deployment" | "StatefulSet" => child.body["spec"]["replicas"].as_f64().unwrap_or(1.0),
            "Job" => 1.0,
            _ => continue,
        };
        let pod = &child.body["spec"]["template"]["spec"];
        needs.pods += replicas;
        for container in pod["containers"].as_array().into_iter().flatten() {
            let request = |resource: &str| {
                quantity(&container["resources"]["requests"][resource])
                    .or_else(|| quantity(&container["resources"]["limits"][resource]))
                    .or_else(|| quantity(&defaults[resource]))
                    .unwrap_or(0.0)
            };
            needs.cpu += replicas * request("cpu");
            needs.memory += replicas * request("memory");
        }
    }
    needs
}

// ---------------------------------------------------------------------------------------------
// The operator's process

/// The operator binary. A supervised child of the e2e crate: stopped when dropped, and by the
/// work directory's reaper if this process dies without dropping it (a signal, a crash).
struct OperatorProcess {
    process: Supervised,
    port: u16,
    /// Where the log is copied when the operator stops (the work directory is removed).
    kept_log: PathBuf,
}

impl OperatorProcess {
    fn start(kubeconfig: &Path, run_id: &str, concurrency: u16) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let workdir = WorkDir::create("bench").map_err(|e| e.to_string())?;
        let spec = Spec::new("tenant-operator", env!("CARGO_BIN_EXE_tenant-operator"))
            .args(["--leader-election=false", "--log-format", "text"])
            .arg(format!("--tenant-selector={RUN_LABEL}={run_id}"))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--concurrency={concurrency}"))
            .env("KUBECONFIG", kubeconfig.display().to_string())
            // `TENANTRY_BENCH_OPERATOR_LOG` (a `RUST_LOG` filter) to see more of what it does.
            .env("RUST_LOG", std::env::var("TENANTRY_BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()));
        let process = Supervised::spawn(&workdir, spec).map_err(|e| format!("starting the operator: {e}"))?;
        let kept_log = std::env::temp_dir().join(format!("tenantry-bench-{run_id}-operator.log"));
        Ok(Self { process, port, kept_log })
    }

    fn log(&self) -> &Path {
        self.process.log_path()
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Ok((200, _)) = http_get(self.port, "/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the operator was not ready within {timeout:?}:\n{}", self.process.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn check_alive(&self) -> Result<(), String> {
        self.process.check_alive().map_err(|e| e.to_string())
    }

    async fn scrape(&self) -> Result<Scrape, String> {
        self.check_alive()?;
        let (status, body) = http_get(self.port, "/metrics").await?;
        if status != 200 {
            return Err(format!("/metrics answered {status}"));
        }
        Ok(Scrape::parse(&body))
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(&self) {
        self.process.stop(Duration::from_secs(10));
    }

    /// Copies the log out of the work directory; returns where it is.
    fn keep_log(&self) -> PathBuf {
        match std::fs::copy(self.log(), &self.kept_log) {
            Ok(_) => self.kept_log.clone(),
            Err(_) => self.log().to_path_buf(),
        }
    }
}

/// The operator's last warning about a reconcile (else its last warning or error), without colours.
fn last_complaint(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let plain = |line: &str| {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(start) = rest.find('\x1b') {
            out.push_str(&rest[..start]);
            rest = rest[start..].find('m').map_or("", |end| &rest[start + end + 1..]);
        }
        out.push_str(rest);
        out
    };
    let lines: Vec<String> = text.lines().map(plain).collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("reconcile failed"))
        .or_else(|| lines.iter().rev().find(|l| l.contains("WARN") || l.contains("ERROR")))?;
    Some(line.chars().take(600).collect())
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (the operator's /metrics and /readyz).
async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("GET {path}: timed out"))?
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("GET {path}: no HTTP response"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// The operator's metrics at one moment: (name, labels, value).
#[derive(Debug, Clone, Default)]
struct Scrape(Vec<(String, String, f64)>);

const REQUESTS: &str = "tenantry_operator_api_requests_total";
const WRITES: &str = "tenantry_operator_api_writes_total";
const WRITE_VERBS: [&str; 4] = ["create", "update", "patch", "delete"];

impl Scrape {
    fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.to_string(), labels.to_string(), value.parse().ok()?))
            })
            .collect();
        Self(samples)
    }

    fn sum(&self, name: &str, labels: impl Fn(&str) -> bool) -> f64 {
        self.0.iter().filter(|(n, l, _)| n == name && labels(l)).map(|(_, _, v)| v).sum()
    }

    /// Request counts summed by one label, over the series `filter` accepts.
    fn requests_by(&self, by: &str, filter: impl Fn(&str) -> bool) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for (name, labels, value) in &self.0 {
            if name == REQUESTS
                && filter(labels)
                && let Some(key) = label(labels, by)
            {
                *sums.entry(key.to_string()).or_insert(0.0) += value;
            }
        }
        sums
    }

    fn requests(&self) -> f64 {
        self.sum(REQUESTS, |_| true)
    }

    fn reads(&self) -> f64 {
        self.sum(REQUESTS, |labels| label(labels, "verb") == Some("get"))
    }

    fn writes(&self) -> f64 {
        self.sum(REQUESTS, |labels| label(labels, "verb").is_some_and(|verb| WRITE_VERBS.contains(&verb)))
    }

    fn reconciles(&self) -> f64 {
        self.sum("tenantry_operator_reconciles_total", |_| true)
    }

    fn reconcile_errors(&self) -> f64 {
        self.sum("tenantry_operator_reconcile_errors_total", |_| true)
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up and clean-up

/// Create or replace, not server-side apply: a v1.20 apiserver applies a new CRD without the v1
/// defaults and then refuses a schema with defaults (as in tests/integration/common/mod.rs).
async fn install_crd(client: &Client) -> Result<(), String> {
    for (_, crd) in tenant_operator::controller::crds() {
        install_one(client, crd).await?;
    }
    Ok(())
}

async fn install_one(client: &Client, mut crd: CustomResourceDefinition) -> Result<(), String> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    match crds.get_opt(&name).await.map_err(kube_error)? {
        None => match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(format!("creating the CRD: {e}")),
        },
        Some(existing) => {
            crd.metadata.resource_version = existing.resource_version();
            crds.replace(&name, &PostParams::default(), &crd).await.map_err(kube_error)?;
        }
    }
    let established = kube::runtime::wait::await_condition(crds, &name, conditions::is_crd_established());
    match tokio::time::timeout(Duration::from_secs(60), established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("waiting for the CRD: {e}")),
        Err(_) => Err("the CRD was not established within 60 s".into()),
    }
}

/// Fails early when the cluster's Service IP range cannot hold `needed` more ClusterIPs (the
/// reconciles would otherwise stall on "range is full"): creates, then deletes, a Service with
/// the address `needed` places after the first one. The range is not readable through the API,
/// and a dry run does not check it.
async fn check_service_range(client: &Client, run_id: &str, needed: usize) -> Result<(), String> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let first = services.get("kubernetes").await.map_err(kube_error)?.spec.and_then(|s| s.cluster_ip);
    let Some(first) = first.and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else { return Ok(()) };
    // Some room for what else the cluster runs.
    let Some(probe) = u32::from(first).checked_add(needed as u32 + 16).map(Ipv4Addr::from) else { return Ok(()) };
    let name = format!("bench-range-probe-{run_id}");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"clusterIP": probe.to_string(), "ports": [{"port": 80}]},
    }))
    .expect("a well-formed Service");
    match services.create(&PostParams::default(), &service).await {
        Ok(_) => {
            services.delete(&name, &DeleteParams::default()).await.map_err(kube_error)?;
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.message.contains("not in the valid range") => Err(format!(
            "this run needs about {needed} ClusterIPs (its Tenants and the baseline's), more than the cluster's \
             Service range holds: {} (the e2e environment's range is set in e2e/src/cluster.rs, SERVICE_CIDR; \
             see docs/benchmarks.md)",
            status.message
        )),
        // E.g. the address is taken: it is in the range.
        Err(_) => Ok(()),
    }
}

/// Namespaces of earlier runs still being deleted keep the controller-manager busy, which slows
/// this run's Tenants on their way to Ready: say so.
async fn warn_about_leftovers(client: &Client) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let terminating = namespaces
        .list_metadata(&ListParams::default())
        .await
        .map_err(kube_error)?
        .iter()
        .filter(|ns| {
            let name = ns.name_any();
            (name.starts_with("tenant-bt-") || name.starts_with("tenant-bb-"))
                && ns.metadata.deletion_timestamp.is_some()
        })
        .count();
    if terminating > 0 {
        eprintln!(
            "convergence: warning: {terminating} namespaces of earlier runs are still terminating; the \
             controller-manager is busy with them, so time-to-Ready will be slower than on an idle cluster"
        );
    }
    Ok(())
}

/// Deletes this run's Tenants (the operator deletes their namespaces) and the baseline's
/// namespaces, then stops the operator. Namespaces finish terminating in the background.
async fn delete_run(
    client: &Client,
    run_id: &str,
    n: usize,
    rounds: u32,
    operator: &OperatorProcess,
) -> Result<(), String> {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let selector = format!("{RUN_LABEL}={run_id}");
    let mut outcome = Ok(());
    if let Err(e) = tenants.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&selector)).await
    {
        outcome = Err(format!("deleting the Tenants: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match tenants.list_metadata(&ListParams::default().labels(&selector)).await {
            Ok(list) if list.items.is_empty() => break,
            Ok(list) if Instant::now() > deadline || operator.check_alive().is_err() => {
                outcome = Err(format!("{} Tenants still there (finalizer) after 300 s", list.items.len()));
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => {
                outcome = Err(format!("listing the Tenants: {e}"));
                break;
            }
        }
    }
    operator.stop();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let baseline: Vec<String> = (1..=rounds)
        .flat_map(|round| (0..n).map(move |i| format!("tenant-{}", baseline_tenant(run_id, round, i))))
        .collect();
    let deleted = stream::iter(baseline)
        .map(|name| {
            let namespaces = namespaces.clone();
            async move {
                match namespaces.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(e)) = deleted.into_iter().find(Result::is_err) {
        outcome = outcome.and(Err(format!("deleting a baseline namespace: {e}")));
    }
    outcome
}

/// Removes the nodes this run added (the pod garbage collector then removes their pods) and asks
/// for the deletion of the volumes of this run's claims (done once the claims are gone).
async fn remove_nodes(client: &Client, added: &[String], run_id: &str) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in added {
        match nodes.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(format!("deleting node {name}: {e}")),
        }
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let ours = [format!("tenant-bt-{run_id}-"), format!("tenant-bb-{run_id}-")];
    let list = volumes.list(&ListParams::default().labels(&format!("{NODE_LABEL}=true"))).await.map_err(kube_error)?;
    for volume in list {
        let claim_namespace = volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|c| c.namespace.clone())
            .unwrap_or_default();
        if ours.iter().any(|prefix| claim_namespace.starts_with(prefix.as_str())) {
            let _ = volumes.delete(&volume.name_any(), &DeleteParams::default()).await;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report

struct Report {
    run_id: String,
    attached: bool,
    nodes: usize,
    tenants: usize,
    objects_per_tenant: usize,
    concurrency: u16,
    quiet_secs: u64,
    needs: PodNeeds,
    rounds: Vec<Round>,
    log: PathBuf,
}

/// The figures of one round that the summary compares.
struct RoundFigures {
    operator_rate: Option<f64>,
    baseline_rate: Option<f64>,
    ratio: Option<f64>,
    requests_to_ready: f64,
    cpu_ms_per_tenant: f64,
    converged_writes: Option<(f64, f64)>,
}

impl Report {
    fn print(&self) {
        let n = self.tenants;
        let objects = n * self.objects_per_tenant;
        let cpus = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0);

        println!();
        println!("tenant-operator convergence (run {})", self.run_id);
        println!(
            "  cluster      local Kubernetes v1.20.2 ({}), {} simulated nodes, {cpus} CPUs shared by everything",
            if self.attached { "attached via TENANTRY_TESTENV" } else { "started by this run" },
            self.nodes
        );
        println!(
            "  workload     {n} Tenants x {} objects = {objects} objects; {} pods, {:.2} CPU, {:.0} MiB requested per Tenant",
            self.objects_per_tenant,
            self.needs.pods,
            self.needs.cpu,
            self.needs.memory / MIB
        );
        println!("  concurrency  {} (operator --concurrency; baseline tenants written at once)", self.concurrency);
        println!(
            "  rounds       {} (operator and baseline alternate which goes first; fresh namespaces, controllers idle before each)",
            self.rounds.len()
        );

        let mut figures = Vec::new();
        for (index, round) in self.rounds.iter().enumerate() {
            println!();
            println!(
                "round {} ({})",
                index + 1,
                if round.operator_first { "operator first" } else { "baseline first" }
            );
            figures.push(self.print_round(round));
        }

        println!();
        println!("runs compared (objects/s of the operator and of the baseline in the same round)");
        for (index, (round, f)) in self.rounds.iter().zip(&figures).enumerate() {
            let rate = |rate: Option<f64>| rate.map_or("   none".to_string(), |r| format!("{r:>7.1}"));
            println!(
                "  round {}  {:<15} operator {} objects/s   baseline {} objects/s   ratio {}",
                index + 1,
                if round.operator_first { "operator first" } else { "baseline first" },
                rate(f.operator_rate),
                rate(f.baseline_rate),
                f.ratio.map_or("none".to_string(), |r| format!("{r:.2}"))
            );
        }
        let mut ratios: Vec<f64> = figures.iter().filter_map(|f| f.ratio).collect();
        ratios.sort_by(f64::total_cmp);
        let median_ratio = median(&ratios);
        match median_ratio {
            Some(median) => println!(
                "ratio operator / baseline objects/s   median {median:.2}, min {:.2}, max {:.2} (spread {:.2}, {} rounds)",
                ratios[0],
                ratios[ratios.len() - 1],
                ratios[ratios.len() - 1] - ratios[0],
                ratios.len()
            ),
            None => println!("ratio operator / baseline objects/s   none (no round had both complete)"),
        }
        let list = |values: Vec<String>| values.join(", ");
        println!();
        println!("figures that do not depend on the machine's load (operator, each round)");
        let requests: Vec<f64> = figures.iter().map(|f| f.requests_to_ready).collect();
        let most_requests = requests.iter().copied().fold(0.0, f64::max);
        println!(
            "  API requests per Tenant until Ready   {}   (minimum {}: one per object a Tenant has; worst {:.2}x)",
            list(requests.iter().map(|r| format!("{r:.1}")).collect()),
            self.objects_per_tenant,
            most_requests / self.objects_per_tenant as f64
        );
        println!(
            "  operator CPU per Tenant until Ready   {} ms",
            list(figures.iter().map(|f| format!("{:.1}", f.cpu_ms_per_tenant)).collect())
        );

        println!();
        println!("goals");
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        match median_ratio {
            Some(ratio) => {
                println!("  convergence >= 0.7x baseline throughput   {} (median {ratio:.2}x)", verdict(ratio >= 0.7))
            }
            None => println!("  convergence >= 0.7x baseline throughput   not measured"),
        }
        let request_goal = 1.2 * self.objects_per_tenant as f64;
        println!(
            "  <= {request_goal:.0} API requests per Tenant until Ready   {} (at most {most_requests:.1})",
            verdict(most_requests <= request_goal)
        );
        let converged: Vec<(f64, f64)> = figures.iter().filter_map(|f| f.converged_writes).collect();
        if converged.len() == figures.len() {
            let quiet: f64 = converged.iter().map(|(quiet, _)| quiet).sum();
            let touch: f64 = converged.iter().map(|(_, touch)| touch).sum();
            println!(
                "  zero writes once converged                {} ({quiet} + {touch})",
                verdict(quiet == 0.0 && touch == 0.0)
            );
        } else {
            println!("  zero writes once converged                not measured in every round");
        }
        let peak_mib = self.rounds.iter().map(|r| r.operator.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        if n >= 2000 {
            println!(
                "  RSS < 100 MB at 2,000 Tenants             {} ({peak_mib:.1} MiB)",
                verdict(peak_mib * MIB < 100e6)
            );
        } else {
            println!(
                "  RSS < 100 MB at 2,000 Tenants             not measured here ({peak_mib:.1} MiB at {n}; use --tenants 2000)"
            );
        }
        println!();
        println!("operator log: {}", self.log.display());
    }

    /// One round's operator and baseline figures.
    fn print_round(&self, round: &Round) -> RoundFigures {
        let n = self.tenants;
        let per = |value: f64| value / n as f64;
        let objects = n * self.objects_per_tenant;
        let op = &round.operator;
        let reached = |waited: &Waited| match (waited.all_after, &waited.gave_up) {
            (Some(after), _) => format!("{:>8.1} s", after.as_secs_f64()),
            (None, Some(why)) => format!("NOT reached: {}/{n} ({why})", waited.reached),
            (None, None) => format!("NOT reached: {}/{n}", waited.reached),
        };
        let median = |waited: &Waited| match waited.median {
            Some(median) => format!("(median Tenant {:.1} s)", median.as_secs_f64()),
            None => String::new(),
        };
        let operator_rate = op.applied.all_after.map(|after| objects as f64 / after.as_secs_f64());
        println!("  operator (the release binary, its own process)");
        println!("    Tenants created in           {:>8.1} s", op.creation.as_secs_f64());
        match operator_rate {
            Some(rate) => println!(
                "    all children applied after   {}   {rate:>7.1} objects/s   {}",
                reached(&op.applied),
                median(&op.applied)
            ),
            None => println!("    all children applied after   {}", reached(&op.applied)),
        }
        println!(
            "    children found by label      {:>8} / {}{}",
            op.verified.found,
            op.verified.expected,
            if op.verified.missing.is_empty() {
                String::new()
            } else {
                format!("   missing e.g. {}", op.verified.missing.join(", "))
            }
        );
        println!("    all Tenants Ready after      {}   {}", reached(&op.ready), median(&op.ready));
        let to_applied = op.at_applied.requests() - op.at_start.requests();
        let to_ready = op.at_ready.requests() - op.at_start.requests();
        println!(
            "    API requests per Tenant      {:>8.1} until applied, {:.1} until Ready   ({})",
            per(to_applied),
            per(to_ready),
            verbs(&op.at_start, &op.at_ready, n)
        );
        println!(
            "    reads per Tenant             {:>8.1} until Ready   ({})",
            per(op.at_ready.reads() - op.at_start.reads()),
            reads(&op.at_start, &op.at_ready, n)
        );
        let settled = op.converged.as_ref().map_or(&op.at_ready, |c| &c.settled);
        println!(
            "    API writes per Tenant        {:>8.1} until applied, {:.1} until settled   ({})",
            per(op.at_applied.writes() - op.at_start.writes()),
            per(settled.writes() - op.at_start.writes()),
            write_groups(&op.at_start, settled, n)
        );
        println!(
            "    reconciles per Tenant        {:>8.1} until Ready   (failed: {:.0})",
            per(op.at_ready.reconciles() - op.at_start.reconciles()),
            op.at_ready.reconcile_errors() - op.at_start.reconcile_errors()
        );
        let converged_writes = op.converged.as_ref().map(|c| {
            let quiet_writes = c.after_quiet.writes() - c.settled.writes();
            let touch_writes = c.after_touch.writes() - c.after_quiet.writes();
            println!(
                "    writes once converged        {:>8.0} in a {} s quiet window ({:.0} requests, {:.0} reconciles){}",
                quiet_writes,
                self.quiet_secs,
                c.after_quiet.requests() - c.settled.requests(),
                c.after_quiet.reconciles() - c.settled.reconciles(),
                writes_by_kind(&c.settled, &c.after_quiet, 1)
            );
            println!(
                "                                 {:>8.0} after touching every Tenant ({:.0} reconciles, {:.1} reads per Tenant){}",
                touch_writes,
                c.after_touch.reconciles() - c.after_quiet.reconciles(),
                per(c.after_touch.requests() - c.after_quiet.requests() - touch_writes),
                writes_by_kind(&c.after_quiet, &c.after_touch, 1)
            );
            (quiet_writes, touch_writes)
        });
        if converged_writes.is_none() {
            println!("    writes once converged        not measured (not every Tenant got Ready)");
        }
        let cpu_ms_per_tenant = op.cpu_to_ready.as_secs_f64() * 1000.0 / n as f64;
        println!(
            "    operator CPU time            {:>8.1} s until applied, {:.1} s until Ready   ({cpu_ms_per_tenant:.1} ms per Tenant)",
            op.cpu_to_applied.as_secs_f64(),
            op.cpu_to_ready.as_secs_f64(),
        );
        println!(
            "    peak RSS (VmHWM)             {:>8.1} MiB   (now {:.1} MiB)",
            op.peak_rss_kib as f64 / 1024.0,
            op.rss_kib as f64 / 1024.0
        );

        let baseline = &round.baseline;
        let baseline_complete = baseline.errors == 0;
        let baseline_rate = baseline.objects as f64 / baseline.elapsed.as_secs_f64();
        println!("  baseline (a plain kube client: POST each object, no reads, no logic)");
        println!(
            "    {} objects created in     {:>8.1} s   {:>7.1} objects/s{}",
            baseline.objects,
            baseline.elapsed.as_secs_f64(),
            baseline_rate,
            match &baseline.first_error {
                Some(e) => format!("   ({} tenants failed, e.g. {e})", baseline.errors),
                None => String::new(),
            }
        );
        let baseline_rate = baseline_complete.then_some(baseline_rate);
        RoundFigures {
            operator_rate,
            baseline_rate,
            ratio: operator_rate.zip(baseline_rate).map(|(operator, baseline)| operator / baseline),
            requests_to_ready: per(to_ready),
            cpu_ms_per_tenant,
            converged_writes,
        }
    }
}

/// The middle value of sorted `values` (the mean of the two middle ones for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        len if len % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

/// Writes between two scrapes by kind and verb (from `tenantry_operator_api_writes_total`), per
/// `n`; empty when there were none.
fn writes_by_kind(from: &Scrape, to: &Scrape, n: usize) -> String {
    let before: HashMap<&str, f64> =
        from.0.iter().filter(|(name, ..)| name == WRITES).map(|(_, l, v)| (l.as_str(), *v)).collect();
    let parts: Vec<String> =
        to.0.iter()
            .filter(|(name, ..)| name == WRITES)
            .map(|(_, labels, value)| (labels, value - before.get(labels.as_str()).copied().unwrap_or(0.0)))
            .filter(|(_, delta)| *delta > 0.0)
            .map(|(labels, delta)| format!("{} {}", labels.replace('"', ""), delta / n as f64))
            .collect();
    if parts.is_empty() { String::new() } else { format!(": {}", parts.join(", ")) }
}

/// Writes per Tenant between two scrapes: to children, to the Tenant's status, events, and the
/// rest (the finalizer, which kube's finalizer helper writes uncounted by the reconcile).
fn write_groups(from: &Scrape, to: &Scrape, n: usize) -> String {
    let delta = |labels: &dyn Fn(&str) -> bool| to.sum(WRITES, labels) - from.sum(WRITES, labels);
    let status = delta(&|l| l.contains("kind=\"Tenant\""));
    let events = delta(&|l| l.contains("kind=\"Event\""));
    let children = delta(&|l| !l.contains("kind=\"Tenant\"") && !l.contains("kind=\"Event\""));
    let other = (to.writes() - from.writes()) - status - events - children;
    let per = |v: f64| v / n as f64;
    format!(
        "children {:.1}, status {:.1}, events {:.1}, other {:.1}",
        per(children),
        per(status),
        per(events),
        per(other)
    )
}

/// The value of one label in a series' label text (`verb="get",resource="pods"`).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
}

fn verbs(from: &Scrape, to: &Scrape, n: usize) -> String {
    per_key(from.requests_by("verb", |_| true), to.requests_by("verb", |_| true), n)
}

/// Reads (GETs that are not watches) per Tenant, by resource.
fn reads(from: &Scrape, to: &Scrape, n: usize) -> String {
    let gets = |labels: &str| label(labels, "verb") == Some("get");
    per_key(from.requests_by("resource", gets), to.requests_by("resource", gets), n)
}

fn per_key(before: BTreeMap<String, f64>, after: BTreeMap<String, f64>, n: usize) -> String {
    after
        .into_iter()
        .map(|(key, value)| (key.clone(), value - before.get(&key).copied().unwrap_or(0.0)))
        .filter(|(_, delta)| *delta > 0.0)
        .map(|(key, delta)| format!("{key} {:.1}", delta / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn progress(message: &str) {
    eprintln!("convergence: {message}");
}

fn kube_error(e: kube::Error) -> String {
    e.to_string()
}
