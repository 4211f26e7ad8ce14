//! The environment as a whole: the `testenv` command owns one ([`Environment`]); tests reach one
//! through [`TestEnv::shared`].
//!
//! `TestEnv::shared()` attaches to the environment named by `TENANTRY_TESTENV` (a state file that
//! `testenv up` and `testenv exec` write), so under `testenv exec -- cargo nextest run`, whose
//! runner starts a process per test, every test shares one cluster. Without that variable
//! (plain `cargo test`) each test binary starts what its tests ask for, once, and shares it
//! between its tests; the work directory's reaper stops it when the binary exits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::cluster::{Cluster, kube_config};
use crate::error::{Error, IoContext, Result};
use crate::install::{NODE_PACKAGES, ensure_all, ensure_debian_packages, ensure_kubernetes};
use crate::kubelet::{NodeCapacity, SimulatedKubelet};
use crate::node::RealNode;
use crate::postgres::{Postgres, PostgresServer};
use crate::process::WorkDir;
use crate::redis_server::Redis;
use crate::s3_server::{S3Endpoint, S3Server};

/// Names the state file of a running environment.
pub const STATE_VAR: &str = "TENANTRY_TESTENV";
/// Simulated nodes in a cluster.
const NODES: usize = 2;

/// What a client needs to use a running environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvInfo {
    pub kubeconfig: PathBuf,
    pub server: String,
    /// The real node's addresses.
    pub real_node: RealNodeInfo,
    pub postgres: Postgres,
    pub redis_url: String,
    pub s3: S3Endpoint,
}

impl EnvInfo {
    /// Shell `export` lines for a person or a script.
    pub fn exports(&self, state_file: &Path) -> String {
        format!(
            "export KUBECONFIG={}\nexport DATABASE_URL={}\nexport REDIS_URL={}\n\
             export AWS_ENDPOINT_URL={}\nexport AWS_REGION={}\nexport AWS_ACCESS_KEY_ID={}\n\
             export AWS_SECRET_ACCESS_KEY={}\nexport AWS_ALLOW_HTTP=true\nexport {STATE_VAR}={}\n",
            self.kubeconfig.display(),
            self.postgres.url("postgres"),
            self.redis_url,
            self.s3.endpoint,
            self.s3.region,
            self.s3.access_key_id,
            self.s3.secret_access_key,
            state_file.display(),
        )
    }

    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| Error::State { path: path.to_path_buf(), message: e.to_string() })
    }
}

/// Where the real node is ([`crate::node`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RealNodeInfo {
    pub name: String,
    /// The node's address (its InternalIP): its NodePorts and its kubelet.
    pub address: std::net::Ipv4Addr,
    /// This host's end of the link: the apiserver's address and the pods' DNS server.
    pub host_address: std::net::Ipv4Addr,
    /// The pods' network.
    pub pod_cidr: String,
    /// The Services' addresses, reachable from this host (routed through the node).
    pub service_cidr: String,
}

impl RealNodeInfo {
    fn of(node: &RealNode) -> Self {
        let link = node.link();
        Self {
            name: crate::cluster::REAL_NODE_NAME.to_string(),
            address: link.node,
            host_address: link.host,
            pod_cidr: link.pod_cidr(),
            service_cidr: link.service_cidr(),
        }
    }
}

/// A whole environment owned by this process: cluster with a real node and simulated nodes,
/// PostgreSQL, Redis and an S3-protocol server. Dropping it stops everything and removes its directory.
pub struct Environment {
    info: EnvInfo,
    state_file: PathBuf,
    kubelet: tokio::task::JoinHandle<Result<()>>,
    // Stop order: services, then the cluster, then the directory.
    _s3: S3Server,
    _redis: Redis,
    _postgres: PostgresServer,
    node: RealNode,
    cluster: Cluster,
    workdir: Arc<WorkDir>,
}

impl Environment {
    /// Installs what is missing and brings the programs' images up to date with the workspace
    /// (cargo builds the programs if they are not), starts everything on the current runtime and
    /// writes the state file that [`TestEnv::shared`] attaches to.
    pub async fn start() -> Result<Self> {
        tokio::task::spawn_blocking(|| {
            ensure_all()?;
            // The programs' images carry the workspace's binaries as they are now: after the test
            // suite's build, cargo has nothing to do.
            crate::images::ensure_programs(&crate::programs::build(&crate::images::PROGRAM_BINARIES)?)
        })
        .await
        .expect("installer panicked")?;
        let workdir = WorkDir::create("env")?;
        let (cluster, node, kubelet) = start_cluster(&workdir).await?;
        let (postgres, redis, s3) = tokio::try_join!(
            PostgresServer::start(&workdir),
            Redis::start(&workdir),
            S3Server::start(&workdir, node.link().host)
        )?;
        let info = EnvInfo {
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            server: cluster.server().to_string(),
            real_node: RealNodeInfo::of(&node),
            postgres: postgres.connection().clone(),
            redis_url: redis.url(),
            s3: s3.endpoint().clone(),
        };
        let state_file = workdir.join("env.json");
        let json = serde_json::to_string_pretty(&info).expect("serialisable");
        std::fs::write(&state_file, json).context(|| format!("writing {}", state_file.display()))?;
        Ok(Self {
            info,
            state_file,
            kubelet: tokio::spawn(kubelet.run()),
            _s3: s3,
            _redis: redis,
            _postgres: postgres,
            node,
            cluster,
            workdir,
        })
    }

    pub fn info(&self) -> &EnvInfo {
        &self.info
    }

    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    /// Fails with the log tail of the first process that has died.
    pub fn check_alive(&self) -> Result<()> {
        self.cluster.check_alive()?;
        self.node.check_alive()?;
        self._postgres.process().check_alive()?;
        self._redis.process().check_alive()?;
        self._s3.process().check_alive()
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.kubelet.abort();
    }
}

/// Starts the control plane with the real node and registers the simulated nodes; the returned
/// kubelet still has to be run (on a runtime that lives as long as the cluster).
async fn start_cluster(workdir: &Arc<WorkDir>) -> Result<(Cluster, RealNode, SimulatedKubelet)> {
    let binaries = tokio::task::spawn_blocking(|| {
        ensure_debian_packages(NODE_PACKAGES)?;
        ensure_kubernetes()
    })
    .await
    .expect("installer panicked")?;
    let sandbox = {
        let workdir = workdir.clone();
        tokio::task::spawn_blocking(move || RealNode::prepare(&workdir)).await.expect("node set-up panicked")?
    };
    let cluster = Cluster::start(workdir, &binaries, sandbox.link.host, &sandbox.link.service_cidr()).await?;
    let client = Client::try_from(kube_config(cluster.kubeconfig()).await?)?;
    let node = RealNode::start(workdir, sandbox, &binaries, &cluster, &client).await?;
    let kubelet = SimulatedKubelet::new(client, NODES, NodeCapacity::default(), workdir.join("volumes"));
    kubelet.register_nodes().await?;
    Ok((cluster, node, kubelet))
}

/// The environment as tests see it.
pub struct TestEnv {
    attached: Option<EnvInfo>,
}

/// In-process pieces, started on first use and kept until the process exits.
static WORKDIR: OnceLock<std::result::Result<Arc<WorkDir>, String>> = OnceLock::new();
static CLUSTER: OnceCell<std::result::Result<ClusterHandle, String>> = OnceCell::const_new();
static POSTGRES: OnceCell<std::result::Result<PostgresServer, String>> = OnceCell::const_new();
static REDIS: OnceCell<std::result::Result<Redis, String>> = OnceCell::const_new();
static S3: OnceCell<std::result::Result<S3Server, String>> = OnceCell::const_new();

struct ClusterHandle {
    kubeconfig: PathBuf,
    config: kube::Config,
    real_node: RealNodeInfo,
}

impl TestEnv {
    /// The environment shared by this test binary (or, under `testenv exec`, by the whole run).
    /// Panics with the reason when the environment cannot be reached; a test cannot go on then.
    pub async fn shared() -> &'static TestEnv {
        static SHARED: OnceLock<TestEnv> = OnceLock::new();
        if let Some(env) = SHARED.get() {
            return env;
        }
        let attached = std::env::var_os(STATE_VAR).map(|path| {
            EnvInfo::read(Path::new(&path)).unwrap_or_else(|e| panic!("{STATE_VAR} names no usable environment: {e}"))
        });
        SHARED.get_or_init(|| TestEnv { attached })
    }

    /// A fresh client of the cluster, bound to the calling test's runtime.
    pub async fn client(&self) -> Client {
        let config = self.kube_config().await;
        Client::try_from(config).unwrap_or_else(|e| panic!("kube client: {e}"))
    }

    pub async fn kube_config(&self) -> kube::Config {
        match &self.attached {
            Some(info) => kube_config(&info.kubeconfig).await.unwrap_or_else(|e| panic!("{e}")),
            None => self.in_process_cluster().await.config.clone(),
        }
    }

    /// A folder every test process using this environment shares, removed with the environment:
    /// its work directory under `testenv exec`, this process's own otherwise.
    pub fn shared_dir(&self) -> PathBuf {
        match &self.attached {
            Some(info) => {
                info.kubeconfig.parent().expect("the kubeconfig is in the environment's directory").to_path_buf()
            }
            None => workdir().unwrap_or_else(|e| panic!("no work directory: {e}")).path().to_path_buf(),
        }
    }

    pub async fn kubeconfig_path(&self) -> PathBuf {
        match &self.attached {
            Some(info) => info.kubeconfig.clone(),
            None => self.in_process_cluster().await.kubeconfig.clone(),
        }
    }

    /// Where the real node is.
    pub async fn real_node(&self) -> RealNodeInfo {
        match &self.attached {
            Some(info) => info.real_node.clone(),
            None => self.in_process_cluster().await.real_node.clone(),
        }
    }

    /// Creates a namespace of its own for one test: `<prefix>-<random>`.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> String {
        let suffix: u32 = rand::rng().random_range(0..0xff_ffff);
        let name = format!("{prefix}-{suffix:06x}");
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let namespace = k8s_openapi::api::core::v1::Namespace {
            metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        // A pod is admitted only once its ServiceAccount exists; the controller makes
        // `default` within moments, and a test's first pod should not race it.
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let made = |account: Option<&ServiceAccount>| account.is_some();
        crate::wait::until(
            &accounts,
            "default",
            "made by the ServiceAccount controller",
            Duration::from_secs(60),
            made,
        )
        .await;
        name
    }

    /// The private PostgreSQL server.
    pub async fn postgres(&self) -> &Postgres {
        if let Some(info) = &self.attached {
            return &info.postgres;
        }
        let server = POSTGRES
            .get_or_init(|| async { PostgresServer::start(&workdir()?).await.map_err(|e| e.to_string()) })
            .await
            .as_ref()
            .unwrap_or_else(|e| panic!("PostgreSQL did not start: {e}"));
        server.connection()
    }

    /// `redis://…` of the private Redis server.
    pub async fn redis_url(&self) -> String {
        if let Some(info) = &self.attached {
            return info.redis_url.clone();
        }
        REDIS
            .get_or_init(|| async { Redis::start(&workdir()?).await.map_err(|e| e.to_string()) })
            .await
            .as_ref()
            .unwrap_or_else(|e| panic!("Redis did not start: {e}"))
            .url()
    }

    /// The private S3-protocol server (endpoint and credentials); tests create their own buckets.
    pub async fn s3(&self) -> &S3Endpoint {
        if let Some(info) = &self.attached {
            return &info.s3;
        }
        // Where the real node's pods reach it too (backups taken in the cluster).
        let address = self.real_node().await.host_address;
        S3.get_or_init(|| async { S3Server::start(&workdir()?, address).await.map_err(|e| e.to_string()) })
            .await
            .as_ref()
            .unwrap_or_else(|e| panic!("the S3 server did not start: {e}"))
            .endpoint()
    }

    async fn in_process_cluster(&self) -> &'static ClusterHandle {
        CLUSTER
            .get_or_init(start_in_process_cluster)
            .await
            .as_ref()
            .unwrap_or_else(|e| panic!("the local Kubernetes cluster did not start: {e}"))
    }
}

fn workdir() -> std::result::Result<Arc<WorkDir>, String> {
    WORKDIR.get_or_init(|| WorkDir::create("test").map_err(|e| e.to_string())).clone()
}

/// Each `#[tokio::test]` has its own runtime, gone when the test ends; the kubelet must outlive
/// them all, so the cluster starts on a thread with a runtime of its own that lives as long as
/// the process.
async fn start_in_process_cluster() -> std::result::Result<ClusterHandle, String> {
    let workdir = workdir()?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("testenv-cluster".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the simulated kubelet");
            runtime.block_on(async move {
                let started = async {
                    let (cluster, node, kubelet) = start_cluster(&workdir).await?;
                    let config = kube_config(cluster.kubeconfig()).await?;
                    Ok::<_, Error>((cluster, node, kubelet, config))
                }
                .await;
                match started {
                    Ok((cluster, node, kubelet, config)) => {
                        let handle = ClusterHandle {
                            kubeconfig: cluster.kubeconfig().to_path_buf(),
                            config,
                            real_node: RealNodeInfo::of(&node),
                        };
                        let _ = sender.send(Ok(handle));
                        if let Err(e) = kubelet.run().await {
                            tracing::error!(error = %e, "the simulated kubelet stopped");
                        }
                        // Keep the cluster until the process exits; the reaper stops it then.
                        std::mem::forget(cluster);
                        std::mem::forget(node);
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        let _ = sender.send(Err(e.to_string()));
                    }
                }
            });
        })
        .map_err(|e| format!("starting the cluster thread: {e}"))?;
    receiver.await.map_err(|_| "the cluster thread ended before the cluster started".to_string())?
}
