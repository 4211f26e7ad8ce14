//! The real node: a kubelet and kube-proxy built from the same Kubernetes source as the control
//! plane, Debian's containerd and runc, the bridge CNI plugin with host-local addresses and
//! portmap — all inside namespaces of the environment's own ([`sandbox`]), so two environments
//! on one machine never share iptables rules, bridges, mounts or images.
//!
//! It sits beside the simulated nodes ([`crate::kubelet`]) and takes only the pods that ask for
//! it: it is tainted [`REAL_NODE_TAINT`] and labelled [`REAL_NODE_LABEL`], so a pod needs the
//! toleration and (to land nowhere else) the node selector, which [`place_on_real_node`] adds.
//!
//! Images come from the environment's own registry ([`crate::images`]), which containerd uses
//! in place of Docker Hub: the product's images, built from the repository's Dockerfiles, under
//! the names the operator renders. The sandbox and busybox images are made here and imported
//! from archives ([`image`]); the kubelet never removes an image (its garbage collection is
//! off), since nothing could pull those back.

mod dns;
pub mod image;
mod sandbox;

use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PodSpec, Toleration};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};

use dns::ClusterDns;
pub use sandbox::{Link, Sandbox};

use crate::cluster::{Cluster, REAL_NODE_NAME, kubeconfig_yaml};
use crate::error::{Error, IoContext, Result};
use crate::images::{Registry, images_dir};
use crate::install::KubeBinaries;
use crate::process::{Spec, Supervised, WorkDir, run_async};
use image::{BUSYBOX_IMAGE, ImageFile, PAUSE_IMAGE};

/// Label of the real node (value `"true"`).
pub const REAL_NODE_LABEL: &str = "kubelet.tenantry.dev/real";
/// Taint of the real node (effect `NoSchedule`): only pods that tolerate it land there.
pub const REAL_NODE_TAINT: &str = "tenantry.dev/real-node";
/// The cluster's DNS domain, as the kubelet writes it into pods.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The running node. Dropping it stops everything in it.
pub struct RealNode {
    dns_feed: tokio::task::JoinHandle<()>,
    // Field order is stop order; the sandbox last takes every process of the node with it.
    dns: Arc<ClusterDns>,
    kube_proxy: Supervised,
    kubelet: Supervised,
    containerd: Supervised,
    registry: Registry,
    sandbox: Sandbox,
}

impl RealNode {
    /// The namespaces and the link, made before the control plane starts: the apiserver listens
    /// on the link's host address.
    pub fn prepare(workdir: &Arc<WorkDir>) -> Result<Sandbox> {
        Sandbox::create(workdir)
    }

    /// Starts the image registry and containerd, imports the images made here, starts the
    /// kubelet, waits until the node is Ready, then starts kube-proxy and the cluster DNS
    /// ([`dns`]).
    pub async fn start(
        workdir: &Arc<WorkDir>,
        sandbox: Sandbox,
        binaries: &KubeBinaries,
        cluster: &Cluster,
        client: &Client,
    ) -> Result<Self> {
        let dir = sandbox.dir.clone();
        let path = |name: &str| dir.join(name).display().to_string();
        let socket = dir.join("containerd.sock");
        let registry = tokio::task::spawn_blocking({
            let (workdir, host) = (workdir.clone(), sandbox.link.host);
            move || Registry::start(&workdir, &images_dir(), host)
        })
        .await
        .expect("the registry's start panicked")?;
        fs::write(dir.join("containerd.toml"), containerd_config(&dir, &socket, registry.address()))
            .context(|| "writing containerd's configuration".into())?;
        fs::create_dir_all(dir.join("cni")).context(|| "creating the CNI configuration's folder".into())?;
        fs::write(dir.join("cni/10-tenantry.conflist"), cni_config(&sandbox.link, &dir))
            .context(|| "writing the CNI configuration".into())?;
        let containerd = Supervised::spawn(
            workdir,
            sandbox.spec("containerd", "containerd").args(["--config", &path("containerd.toml")]),
        )?;
        containerd
            .wait_ready("containerd", READY_TIMEOUT, || {
                let socket = socket.clone();
                async move {
                    let spec =
                        Spec::new("ctr", "ctr").arg("--address").arg(socket.display().to_string()).arg("version");
                    run_async(spec).await.map(drop).map_err(|e| e.to_string())
                }
            })
            .await?;
        import_images(&dir, &socket, binaries).await?;

        let credentials = cluster.node_credentials();
        fs::write(
            dir.join("kubelet.kubeconfig"),
            kubeconfig_yaml(cluster.server(), &credentials.kubelet_token, &credentials.apiserver_ca),
        )
        .context(|| "writing the kubelet's kubeconfig".into())?;
        fs::write(
            dir.join("kube-proxy.kubeconfig"),
            kubeconfig_yaml(cluster.server(), &credentials.proxy_token, &credentials.apiserver_ca),
        )
        .context(|| "writing kube-proxy's kubeconfig".into())?;
        // Pods resolve through the cluster's DNS at the host's end of the link.
        fs::write(dir.join("resolv.conf"), format!("nameserver {}\n", sandbox.link.host))
            .context(|| "writing the node's resolv.conf".into())?;
        let link = sandbox.link;
        let kubelet = Supervised::spawn(
            workdir,
            sandbox.spec("kubelet", &binaries.kubelet).args([
                format!("--kubeconfig={}", path("kubelet.kubeconfig")),
                format!("--root-dir={}", path("kubelet")),
                format!("--volume-plugin-dir={}", path("kubelet-plugins")),
                "--container-runtime=remote".into(),
                format!("--container-runtime-endpoint=unix://{}", socket.display()),
                format!("--hostname-override={REAL_NODE_NAME}"),
                format!("--node-ip={}", link.node),
                format!("--address={}", link.node),
                "--read-only-port=0".into(),
                "--healthz-bind-address=127.0.0.1".into(),
                // Only the apiserver, with its client certificate, talks to the kubelet.
                "--anonymous-auth=false".into(),
                format!("--client-ca-file={}", credentials.kubelet_client_ca.display()),
                "--authorization-mode=AlwaysAllow".into(),
                "--cgroup-driver=cgroupfs".into(),
                format!("--cgroup-root={}", sandbox.cgroup_root()),
                // A shared machine: no swap check, no eviction for its disk or memory, and never
                // a removed image (there is no registry to pull it back from).
                "--fail-swap-on=false".into(),
                "--eviction-hard=memory.available<1Mi,nodefs.available<1%,imagefs.available<1%".into(),
                "--image-gc-high-threshold=100".into(),
                "--image-gc-low-threshold=99".into(),
                format!("--resolv-conf={}", path("resolv.conf")),
                format!("--cluster-dns={}", link.host),
                format!("--cluster-domain={CLUSTER_DOMAIN}"),
                format!("--register-with-taints={REAL_NODE_TAINT}=true:NoSchedule"),
                format!("--node-labels={REAL_NODE_LABEL}=true"),
                "--v=1".into(),
            ]),
        )?;
        wait_ready(client, || check_alive(&sandbox, &[&containerd, &kubelet]), kubelet.log_path()).await?;
        // Once the node is registered: kube-proxy reads the node's address from it.
        let kube_proxy = Supervised::spawn(
            workdir,
            sandbox.spec("kube-proxy", &binaries.kube_proxy).args([
                format!("--kubeconfig={}", path("kube-proxy.kubeconfig")),
                format!("--hostname-override={REAL_NODE_NAME}"),
                format!("--cluster-cidr={}", link.pod_cidr()),
                "--proxy-mode=iptables".into(),
                // Never a machine-wide setting: conntrack's limits and timeouts stay as they are.
                "--conntrack-max-per-core=0".into(),
                "--conntrack-tcp-timeout-established=0".into(),
                "--conntrack-tcp-timeout-close-wait=0".into(),
                "--oom-score-adj=0".into(),
                "--healthz-bind-address=127.0.0.1:10256".into(),
                "--metrics-bind-address=127.0.0.1:10249".into(),
            ]),
        )?;
        let dns = Arc::new(ClusterDns::start(workdir, &sandbox.link).await?);
        let dns_feed = tokio::spawn({
            let (dns, client) = (dns.clone(), client.clone());
            async move {
                if let Err(e) = dns.run(client).await {
                    tracing::error!(error = %e, "the cluster DNS stopped following the Services");
                }
            }
        });
        Ok(Self { dns_feed, dns, kube_proxy, kubelet, containerd, registry, sandbox })
    }

    pub fn link(&self) -> &Link {
        &self.sandbox.link
    }

    /// Fails with the log tail of the first of the node's programs that has died.
    pub fn check_alive(&self) -> Result<()> {
        check_alive(&self.sandbox, &[&self.containerd, &self.kubelet, &self.kube_proxy])?;
        self.registry.check_alive()?;
        self.dns.check_alive()
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.dns_feed.abort();
    }
}

fn check_alive(sandbox: &Sandbox, programs: &[&Supervised]) -> Result<()> {
    sandbox.check_alive()?;
    programs.iter().try_for_each(|program| program.check_alive())
}

/// Watches the node until it is Ready, failing early if one of its programs dies.
async fn wait_ready(client: &Client, alive: impl Fn() -> Result<()>, log: &std::path::Path) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = |node: Option<&Node>| {
        node.and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let wait = tokio::time::timeout(READY_TIMEOUT, await_condition(nodes, REAL_NODE_NAME, ready));
    tokio::pin!(wait);
    loop {
        tokio::select! {
            result = &mut wait => return match result {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(Error::Prerequisite(format!("watching the real node: {e}"))),
                Err(_) => Err(Error::Prerequisite(format!(
                    "the real node was not Ready after {READY_TIMEOUT:?}; see {}",
                    log.display()
                ))),
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => alive()?,
        }
    }
}

/// Makes `pod` land on the real node: the taint tolerated, the label required.
pub fn place_on_real_node(pod: &mut PodSpec) {
    pod.node_selector.get_or_insert_with(Default::default).insert(REAL_NODE_LABEL.into(), "true".into());
    pod.tolerations.get_or_insert_with(Vec::new).push(Toleration {
        key: Some(REAL_NODE_TAINT.into()),
        operator: Some("Exists".into()),
        ..Default::default()
    });
}

/// The sandbox image and the busybox image, written once per environment and imported.
async fn import_images(dir: &std::path::Path, socket: &std::path::Path, binaries: &KubeBinaries) -> Result<()> {
    let busybox = std::path::Path::new("/bin/busybox");
    let archives = [
        (
            dir.join("pause.tar"),
            PAUSE_IMAGE,
            vec![ImageFile { path: "pause", source: &binaries.pause, mode: 0o755 }],
            vec![],
            vec!["/pause"],
        ),
        (
            dir.join("busybox.tar"),
            BUSYBOX_IMAGE,
            vec![ImageFile { path: "bin/busybox", source: busybox, mode: 0o755 }],
            BUSYBOX_COMMANDS.iter().map(|c| (format!("bin/{c}"), "busybox")).collect(),
            vec!["/bin/sh"],
        ),
    ];
    for (archive, name, files, links, entrypoint) in archives {
        image::write_archive(&archive, name, &files, &links, &entrypoint)?;
        run_async(
            Spec::new("ctr", "ctr")
                .arg("--address")
                .arg(socket.display().to_string())
                .args(["-n", "k8s.io", "images", "import"])
                .arg(archive.display().to_string()),
        )
        .await?;
    }
    Ok(())
}

/// The commands of the busybox image, as links to it.
const BUSYBOX_COMMANDS: &[&str] =
    &["sh", "cat", "echo", "env", "hostname", "httpd", "ip", "ls", "nc", "nslookup", "sleep", "wget"];

fn containerd_config(dir: &std::path::Path, socket: &std::path::Path, registry: SocketAddr) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  # Lowering a process's OOM score needs a capability this host's containers lack.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  # Docker Hub's names come from the environment's registry: this network reaches no other.
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://{registry}"]
"#,
        root = dir.join("containerd/root").display(),
        state = dir.join("containerd/state").display(),
        socket = socket.display(),
        cni = dir.join("cni").display(),
    )
}

fn cni_config(link: &Link, dir: &std::path::Path) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "tenantry",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                // A pod reaching itself through its Service.
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": link.pod_cidr() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("ipam").display().to_string(),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    }))
    .expect("serialisable")
}
