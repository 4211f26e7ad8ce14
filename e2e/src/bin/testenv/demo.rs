//! `testenv demo`: the product whole on one machine. The local cluster (with its simulated
//! kubelet), PostgreSQL and Redis, the Tenant CRD, the real `tenant-operator` and the real
//! `control-plane serve --provisioner cluster`, each a supervised child; then the signup URL and a
//! provider-admin token, and everything runs until Ctrl-C or SIGTERM.
//!
//! With `--real` the tenants' pods run for real: the simulated nodes are cordoned and the
//! operator places every tenant on the environment's real node (its node selector and the
//! toleration of the node's taint), where the images built from the repository's Dockerfiles
//! run. Each tenant's web client is announced once the tenant is ready, at its Service's
//! address, which this machine reaches through the real node.
//!
//! Two work directories hold the logs and state: `tenantry-env-…` (cluster, PostgreSQL, Redis)
//! and `tenantry-demo-…` (control plane, its data directory with its keys, operator). Both are
//! removed at exit, by their owners or, if this process is killed, by their reapers.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::Environment;
use e2e::cluster::kube_config;
use e2e::node::{REAL_NODE_LABEL, REAL_NODE_TAINT};
use e2e::process::{Spec, Supervised, WorkDir, free_port, run_async};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::signal::unix::{SignalKind, signal};

use e2e::programs::{self, CONTROL_PLANE, TENANT_OPERATOR};

/// The two programs the demo runs, as cargo built them.
struct Binaries {
    control_plane: PathBuf,
    operator: PathBuf,
}

impl Binaries {
    fn build() -> Result<Self, String> {
        let mut built = programs::build(&[CONTROL_PLANE, TENANT_OPERATOR]).map_err(|e| e.to_string())?;
        let mut take = |name: &str| built.remove(name).ok_or_else(|| format!("cargo built no {name}"));
        Ok(Self { control_plane: take(CONTROL_PLANE)?, operator: take(TENANT_OPERATOR)? })
    }
}

/// The control plane's database on the environment's PostgreSQL.
const DATABASE: &str = "tenantry";
/// cert-manager ClusterIssuer named in every Tenant's ingress. None exists in the local cluster:
/// the setting is required with a tenant domain (tenants are served over HTTPS only), and it
/// makes the Tenants what a provider's would be.
const TLS_ISSUER: &str = "letsencrypt";
/// How long the printed provider-admin token stays valid.
const TOKEN_TTL: &str = "12h";
/// Where the operator keeps its leader Lease: a namespace every cluster has.
const LEASE_NAMESPACE: &str = "default";
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The Service in front of a tenant's production web client, as the operator names it.
const WEB_SERVICE: &str = "erp-web-production";
/// How often the children are checked while the demo runs.
const CHECK_EVERY: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Port of the control plane on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Tenants get `<slug>.<domain>` as their ERP address.
    #[arg(long, default_value = "erp.example.com")]
    tenant_domain: String,
    /// Run the tenants' ERPs for real, on the environment's real node (each takes a few minutes
    /// to its first Ready: its images are pulled and its databases initialised).
    #[arg(long)]
    real: bool,
}

/// What runs for the demo. Fields drop in order: the control plane, the operator, their
/// directory, then the cluster and services they use.
struct Demo {
    control_plane: Supervised,
    operator: Supervised,
    workdir: Arc<WorkDir>,
    env: Environment,
    url: String,
    operator_url: String,
    real: bool,
}

impl Demo {
    /// Fails with the name and log tail of the first child that has died.
    fn check_alive(&self) -> e2e::Result<()> {
        self.control_plane.check_alive()?;
        self.operator.check_alive()?;
        self.env.check_alive()
    }
}

pub async fn run(args: DemoArgs) -> Result<ExitCode, String> {
    let listen = control_plane_address(args.port)?;
    let started = Instant::now();
    progress("building control-plane and tenant-operator (cargo build)");
    let binaries = tokio::task::spawn_blocking(Binaries::build).await.expect("the build runner panicked")?;
    progress("starting the local cluster, PostgreSQL and Redis (installing what is missing)");
    let demo = start(&binaries, listen, &args.tenant_domain, args.real).await?;
    let token = provider_admin_token(&binaries.control_plane, &demo.workdir).await?;

    // Before anything is printed: whoever reads it may stop us at once, and a signal that came
    // before its handler would end the process without the clean stop.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("a SIGINT handler: {e}"))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("a SIGTERM handler: {e}"))?;
    progress(&format!("ready in {:.0?}", started.elapsed()));
    print!("{}", banner(&demo, &token));

    let mut check = tokio::time::interval(CHECK_EVERY);
    let outcome = {
        let announcements = announce_ready_tenants(&demo);
        tokio::pin!(announcements);
        loop {
            tokio::select! {
                biased;
                _ = interrupt.recv() => break Ok(()),
                _ = terminate.recv() => break Ok(()),
                ended = &mut announcements, if demo.real => break Err(ended),
                _ = check.tick() => {
                    if let Err(died) = demo.check_alive() {
                        // Ctrl-C in a terminal reaches the children too: one may be gone a moment
                        // before our own signal is handled. That is a stop, not a crash.
                        let stopping = tokio::time::timeout(Duration::from_millis(500), async {
                            tokio::select! {
                                _ = interrupt.recv() => {},
                                _ = terminate.recv() => {},
                            }
                        });
                        break if stopping.await.is_ok() { Ok(()) } else { Err(died.to_string()) };
                    }
                }
            }
        }
    };
    progress("stopping");
    drop(demo);
    match outcome {
        Ok(()) => {
            progress("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(died) => Err(format!("the demo stopped because a part of it died: {died}")),
    }
}

/// 127.0.0.1:`port`, checked free now so that a taken port is named before anything starts.
fn control_plane_address(port: u16) -> Result<SocketAddr, String> {
    let port = if port == 0 { free_port().map_err(|e| e.to_string())? } else { port };
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(address)
        .map(drop)
        .map_err(|e| format!("cannot listen on {address} ({e}); choose another port with --port"))?;
    Ok(address)
}

async fn start(binaries: &Binaries, listen: SocketAddr, tenant_domain: &str, real: bool) -> Result<Demo, String> {
    let env = Environment::start().await.map_err(|e| e.to_string())?;
    let info = env.info().clone();
    let kubeconfig = info.kubeconfig.display().to_string();

    progress("installing the Tenant CRD");
    install_crds(&info.kubeconfig, &binaries.operator).await?;
    let placement = if real {
        progress("cordoning the simulated nodes: tenants go to the real node");
        cordon_simulated_nodes(&info.kubeconfig).await?;
        vec![
            "--node-selector".to_string(),
            format!("{REAL_NODE_LABEL}=true"),
            "--tolerations".to_string(),
            format!("{REAL_NODE_TAINT}:NoSchedule"),
        ]
    } else {
        Vec::new()
    };

    let workdir = WorkDir::create("demo").map_err(|e| e.to_string())?;
    progress("starting tenant-operator");
    let operator_address = SocketAddr::from(([127, 0, 0, 1], free_port().map_err(|e| e.to_string())?));
    // With leader election, as it is deployed.
    let operator = Supervised::spawn(
        &workdir,
        Spec::new("tenant-operator", &binaries.operator)
            .args(["run", "--leader-election=true", "--lease-namespace", LEASE_NAMESPACE, "--log-format", "text"])
            .args(["--listen".to_string(), operator_address.to_string()])
            .args(placement)
            .env("KUBECONFIG", &kubeconfig),
    )
    .map_err(|e| e.to_string())?;
    let operator_url = format!("http://{operator_address}");
    // Leading, then ready: the leader's /readyz waits for its Tenant cache. (A Tenant created
    // before that is still reconciled: the cache lists every Tenant when it syncs.)
    let leading = |body: &str| body.lines().any(|line| line.trim() == "tenantry_operator_leader 1");
    wait_for(&operator, &format!("{operator_url}/metrics"), "tenant-operator leading", leading).await?;
    wait_for(&operator, &format!("{operator_url}/readyz"), "tenant-operator /readyz", |_| true).await?;

    progress("starting control-plane");
    info.postgres.create_database(DATABASE).await.map_err(|e| format!("creating database {DATABASE}: {e}"))?;
    let control_plane = Supervised::spawn(
        &workdir,
        Spec::new("control-plane", &binaries.control_plane)
            .args(["serve", "--provisioner", "cluster", "--listen", &listen.to_string()])
            .env("KUBECONFIG", &kubeconfig)
            .env("DATABASE_URL", info.postgres.url(DATABASE))
            .env("REDIS_URL", &info.redis_url)
            .env("TENANTRY_DATA_DIR", data_dir(&workdir))
            .env("TENANTRY_TENANT_DOMAIN", tenant_domain)
            .env("TENANTRY_TENANT_TLS_ISSUER", TLS_ISSUER)
            .env("TENANTRY_LOG_FORMAT", "text"),
    )
    .map_err(|e| e.to_string())?;
    let url = format!("http://{listen}");
    wait_for(&control_plane, &format!("{url}/readyz"), "control-plane /readyz", |_| true).await?;
    Ok(Demo { control_plane, operator, workdir, env, url, operator_url, real })
}

/// A client of the environment's cluster with its admin's kubeconfig.
async fn cluster_client(kubeconfig: &Path) -> Result<kube::Client, String> {
    let config = kube_config(kubeconfig).await.map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| format!("a client of the local cluster: {e}"))
}

/// Marks every simulated node unschedulable (`kubectl cordon`): new pods go elsewhere, and the
/// control plane, which looks for simulated nodes that accept pods, shows no notice.
async fn cordon_simulated_nodes(kubeconfig: &Path) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(cluster_client(kubeconfig).await?);
    let simulated = nodes
        .list_metadata(&ListParams::default().labels(&format!("{}=true", e2e::kubelet::NODE_LABEL)))
        .await
        .map_err(|e| format!("listing the simulated nodes: {e}"))?;
    let cordon = Patch::Merge(serde_json::json!({"spec": {"unschedulable": true}}));
    for node in simulated.items {
        let name = node.metadata.name.unwrap_or_default();
        nodes.patch(&name, &PatchParams::default(), &cordon).await.map_err(|e| format!("cordoning {name}: {e}"))?;
    }
    Ok(())
}

/// Prints, once per tenant, where its production web client answers from this machine: the
/// address of its Service, which the host reaches through the real node. Runs until the watch
/// fails (then says why).
async fn announce_ready_tenants(demo: &Demo) -> String {
    let client = match cluster_client(&demo.env.info().kubeconfig).await {
        Ok(client) => client,
        Err(error) => return error,
    };
    // The Tenant kind through the dynamic API: this crate does not depend on the operator's.
    let kind = ApiResource::from_gvk(&GroupVersionKind::gvk("tenantry.dev", "v1alpha1", "Tenant"));
    let tenants: Api<DynamicObject> = Api::all_with(client.clone(), &kind);
    let mut announced = std::collections::BTreeSet::new();
    let mut events = watcher(tenants, watcher::Config::default()).default_backoff().applied_objects().boxed();
    loop {
        let tenant = match events.next().await {
            Some(Ok(tenant)) => tenant,
            Some(Err(error)) => return format!("watching Tenants: {error}"),
            None => return "the Tenant watch ended".into(),
        };
        let name = tenant.name_any();
        let ready = tenant.data["status"]["phase"] == "Ready";
        if !ready || announced.contains(&name) {
            continue;
        }
        let services: Api<Service> = Api::namespaced(client.clone(), &tenantry_contract::names::namespace_of(&name));
        let address = services.get_opt(WEB_SERVICE).await.ok().flatten().and_then(|service| {
            let spec = service.spec?;
            Some((spec.cluster_ip?, spec.ports?.first()?.port))
        });
        if let Some((ip, port)) = address {
            println!("  tenant {name:<16} ready: web client at http://{ip}:{port}/");
            announced.insert(name);
        }
    }
}

/// The control plane's data directory (its generated JWT and sealing keys), inside the demo's
/// work directory so that it goes with it.
fn data_dir(workdir: &WorkDir) -> String {
    workdir.join("control-plane-data").display().to_string()
}

/// Creates the CRDs from `tenant-operator crd` (YAML documents), as `kubectl create -f` would,
/// and waits until each is established. The apiserver reads the YAML itself, so no YAML parser
/// is needed here.
async fn install_crds(kubeconfig: &Path, operator: &Path) -> Result<(), String> {
    let yaml = run_async(Spec::new("tenant-operator crd", operator).arg("crd")).await.map_err(|e| e.to_string())?;
    let client = cluster_client(kubeconfig).await?;
    for document in yaml.split("\n---\n") {
        let mut request = kube::core::Request::new("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            .create(&PostParams::default(), document.as_bytes().to_vec())
            .map_err(|e| format!("building the CRD request: {e}"))?;
        request.headers_mut().insert("content-type", "application/yaml".parse().expect("a valid header value"));
        let crd: CustomResourceDefinition =
            client.request(request).await.map_err(|e| format!("creating a CRD: {e}"))?;
        let name = crd.metadata.name.unwrap_or_default();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        match tokio::time::timeout(START_TIMEOUT, await_condition(crds, &name, conditions::is_crd_established())).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("watching the CRD {name}: {e}")),
            Err(_) => return Err(format!("the CRD {name} was not established within {START_TIMEOUT:?}")),
        }
    }
    Ok(())
}

/// Polls `url` until it answers 200 with a body that `wanted` accepts; fails early, with the
/// log tail, if the process dies.
async fn wait_for(process: &Supervised, url: &str, what: &str, wanted: fn(&str) -> bool) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("an HTTP client: {e}"))?;
    process
        .wait_ready(what, START_TIMEOUT, || {
            let request = http.get(url).send();
            async move {
                let response = request.await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.text().await.map_err(|e| e.to_string())?;
                if status == reqwest::StatusCode::OK && wanted(&body) {
                    Ok(())
                } else {
                    Err(format!("{status}: {}", body.lines().next().unwrap_or_default()))
                }
            }
        })
        .await
        .map_err(|e| e.to_string())
}

/// `control-plane token issue --role provider-admin` on the server's data directory, so the
/// token is signed with the key the server verifies with.
async fn provider_admin_token(control_plane: &Path, workdir: &WorkDir) -> Result<String, String> {
    let output = tokio::process::Command::new(control_plane)
        .args(["token", "issue", "--role", "provider-admin", "--subject", "demo:provider-admin"])
        .args(["--ttl", TOKEN_TTL])
        .env("TENANTRY_DATA_DIR", data_dir(workdir))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running control-plane token issue: {e}"))?;
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || token.is_empty() {
        return Err(format!(
            "control-plane token issue failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(token)
}

/// What the person who started the demo needs, on stdout in one write.
fn banner(demo: &Demo, token: &str) -> String {
    let url = &demo.url;
    let info = demo.env.info();
    let workloads = if demo.real {
        "Tenants run for real on the cluster's real node. Each one's web client is announced
below when it is ready (a few minutes after signing up); log in as `admin` with the
password its admin reads on the tenant's page."
    } else {
        "The cluster's nodes are simulated: tenants reach Ready, but no ERP runs and their addresses
do not answer. `testenv demo --real` runs them for real."
    };
    format!(
        "
Tenantry is running: control plane, tenant operator and a local Kubernetes cluster.
{workloads}

  sign up            {url}/signup
  provider admin     open {url}/login and paste this token (valid {TOKEN_TTL}):

{token}

  API                curl -H \"Authorization: Bearer $TOKEN\" {url}/v1/tenants
  cluster            export KUBECONFIG={kubeconfig}   then: kubectl get tenants -w
  operator metrics   {operator}/metrics
  logs               {demo_dir}/control-plane.log and tenant-operator.log; the cluster's in {env_dir}
  work directories   {demo_dir} {env_dir} (removed at exit)

Ctrl-C stops everything.
",
        kubeconfig = info.kubeconfig.display(),
        operator = demo.operator_url,
        demo_dir = demo.workdir.path().display(),
        env_dir = demo.env.workdir().display(),
    )
}

fn progress(message: &str) {
    eprintln!("testenv demo: {message}");
}
