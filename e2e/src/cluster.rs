//! A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager
//! and kube-scheduler, each a [`Supervised`] child in one work directory.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::error::{Error, IoContext, Result};
use crate::install::{KubeBinaries, ensure_debian_packages};
use crate::process::{Spec, Supervised, WorkDir, free_port, run_async};

/// The admin identity in the token file: a member of `system:masters`.
const ADMIN_USER: &str = "admin";
// Two Services per environment per tenant: a /24 fills up at about 55 tenants.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The real node's name ([`crate::node`]): its kubelet's identity is `system:node:<name>`.
pub const REAL_NODE_NAME: &str = "real-node-0";

/// What the real node's kubelet and kube-proxy need of the control plane: their tokens, the
/// CA that signs the apiserver's client certificate towards kubelets, and the apiserver's CA.
#[derive(Debug, Clone)]
pub struct NodeCredentials {
    pub kubelet_token: String,
    pub proxy_token: String,
    /// Kubelets accept only clients with a certificate from this CA: the apiserver's.
    pub kubelet_client_ca: PathBuf,
    /// The apiserver's serving certificate (self-signed), what clients verify it against.
    pub apiserver_ca: Vec<u8>,
}

pub struct Cluster {
    server: String,
    kubeconfig: PathBuf,
    node_credentials: NodeCredentials,
    // Field order is stop order: the clients of the apiserver first, etcd last.
    scheduler: Supervised,
    controller_manager: Supervised,
    apiserver: Supervised,
    etcd: Supervised,
}

impl Cluster {
    /// Starts the control plane; the apiserver listens on `address` only (the host's end of the
    /// real node's link, so that the node, its pods and this host all reach it there).
    pub async fn start(
        workdir: &Arc<WorkDir>,
        binaries: &KubeBinaries,
        address: Ipv4Addr,
        service_cidr: &str,
    ) -> Result<Self> {
        ensure_debian_packages(&["openssl"])?;
        let etcd = start_etcd(workdir, binaries).await?;

        let pki = workdir.join("pki");
        fs::create_dir_all(&pki).context(|| format!("creating {}", pki.display()))?;
        let sa_key = pki.join("sa.key");
        let sa_pub = pki.join("sa.pub");
        run_async(Spec::new("openssl", "openssl").args(["genrsa", "-out", &path_str(&sa_key), "2048"])).await?;
        run_async(Spec::new("openssl", "openssl").args([
            "rsa",
            "-in",
            &path_str(&sa_key),
            "-pubout",
            "-out",
            &path_str(&sa_pub),
        ]))
        .await?;
        let token = random_token();
        let (kubelet_token, proxy_token) = (random_token(), random_token());
        let tokens = pki.join("tokens.csv");
        // The kubelet as the Node authorizer expects it; kube-proxy as the default RBAC binding
        // `system:node-proxier` names it.
        let node_user = format!("system:node:{REAL_NODE_NAME}");
        fs::write(
            &tokens,
            format!(
                "{token},{ADMIN_USER},{ADMIN_USER},system:masters\n\
                 {kubelet_token},{node_user},{node_user},system:nodes\n\
                 {proxy_token},system:kube-proxy,system:kube-proxy\n"
            ),
        )
        .context(|| format!("writing {}", tokens.display()))?;
        let kubelet_client = kubelet_client_certificate(&pki).await?;

        let port = free_port_on(address)?;
        let server = format!("https://{address}:{port}");
        let apiserver = Supervised::spawn(
            workdir,
            Spec::new("kube-apiserver", &binaries.apiserver).args([
                format!("--etcd-servers={}", etcd.1),
                format!("--bind-address={address}"),
                format!("--advertise-address={address}"),
                format!("--secure-port={port}"),
                "--insecure-port=0".into(),
                format!("--cert-dir={}", path_str(&pki)),
                format!("--token-auth-file={}", path_str(&tokens)),
                "--authorization-mode=Node,RBAC".into(),
                // The real node is reached at its address, not its name (no DNS for nodes).
                "--kubelet-preferred-address-types=InternalIP".into(),
                format!("--kubelet-client-certificate={}", path_str(&kubelet_client.certificate)),
                format!("--kubelet-client-key={}", path_str(&kubelet_client.key)),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                format!("--service-account-key-file={}", path_str(&sa_pub)),
                format!("--service-account-signing-key-file={}", path_str(&sa_key)),
                format!("--service-cluster-ip-range={service_cidr}"),
                "--allow-privileged=true".into(),
                // Pods get their ServiceAccount's token as a projected volume (bound, expiring,
                // refreshed by the kubelet through the TokenRequest API), as from v1.21 on by
                // default: the real node's pods that talk to the apiserver (the chart's operator
                // and control plane) use it; no token Secrets are made.
                "--feature-gates=BoundServiceAccountTokenVolume=true".into(),
                "--profiling=false".into(),
            ]),
        )?;
        let http =
            reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(Duration::from_secs(5)).build()?;
        let readyz = format!("{server}/readyz");
        apiserver
            .wait_ready("kube-apiserver /readyz", START_TIMEOUT, || {
                let request = http.get(&readyz).bearer_auth(&token);
                async move {
                    let response = request.send().await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    if status.is_success() && body.trim() == "ok" {
                        Ok(())
                    } else {
                        Err(format!(
                            "{status}: {}",
                            body.lines().filter(|l| l.contains("failed")).collect::<Vec<_>>().join("; ")
                        ))
                    }
                }
            })
            .await?;

        let kubeconfig = workdir.join("kubeconfig");
        let ca = fs::read(pki.join("apiserver.crt")).context(|| "reading the apiserver's certificate".into())?;
        fs::write(&kubeconfig, kubeconfig_yaml(&server, &token, &ca))
            .context(|| format!("writing {}", kubeconfig.display()))?;

        // What kube-controller-manager and kube-scheduler have in common: the admin kubeconfig,
        // no leader election (one of each), and only a secure port of their own on loopback.
        // v1.20 still serves plain HTTP on fixed ports (10252, 10251) unless told `--port=0`,
        // which would keep two environments from running side by side.
        let controller_manager_port = free_port()?;
        let scheduler_port = free_port()?;
        let kc = path_str(&kubeconfig);
        let common = |secure_port: u16| {
            [
                format!("--kubeconfig={kc}"),
                format!("--authentication-kubeconfig={kc}"),
                format!("--authorization-kubeconfig={kc}"),
                "--leader-elect=false".into(),
                "--port=0".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={secure_port}"),
                "--profiling=false".into(),
            ]
        };
        let controller_manager = Supervised::spawn(
            workdir,
            Spec::new("kube-controller-manager", &binaries.controller_manager)
                .args(common(controller_manager_port))
                .args([
                    format!("--service-account-private-key-file={}", path_str(&sa_key)),
                    format!("--root-ca-file={}", path_str(&pki.join("apiserver.crt"))),
                    "--controllers=*,-serviceaccount-token".into(),
                ]),
        )?;
        let scheduler =
            Supervised::spawn(workdir, Spec::new("kube-scheduler", &binaries.scheduler).args(common(scheduler_port)))?;

        // Both serve /healthz without authentication; waiting for it turns a component that
        // cannot start into an error quoting its log, instead of a test timing out later.
        tokio::try_join!(
            wait_healthy(&http, &controller_manager, controller_manager_port),
            wait_healthy(&http, &scheduler, scheduler_port),
        )?;

        let node_credentials =
            NodeCredentials { kubelet_token, proxy_token, kubelet_client_ca: kubelet_client.ca, apiserver_ca: ca };
        let cluster =
            Self { server, kubeconfig, node_credentials, scheduler, controller_manager, apiserver, etcd: etcd.0 };
        cluster.check_alive()?;
        Ok(cluster)
    }

    /// `https://<address>:<port>`
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn node_credentials(&self) -> &NodeCredentials {
        &self.node_credentials
    }

    /// An admin kubeconfig for kubectl and for the project's binaries.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Fails with the log tail of the first component that has died.
    pub fn check_alive(&self) -> Result<()> {
        for component in self.components() {
            component.check_alive()?;
        }
        Ok(())
    }

    pub fn components(&self) -> [&Supervised; 4] {
        [&self.etcd, &self.apiserver, &self.controller_manager, &self.scheduler]
    }
}

async fn start_etcd(workdir: &Arc<WorkDir>, binaries: &KubeBinaries) -> Result<(Supervised, String)> {
    let client_url = format!("http://127.0.0.1:{}", free_port()?);
    let peer_url = format!("http://127.0.0.1:{}", free_port()?);
    let etcd = Supervised::spawn(
        workdir,
        Spec::new("etcd", &binaries.etcd).args([
            "--name=default".to_string(),
            format!("--data-dir={}", path_str(&workdir.join("etcd"))),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--log-level=warn".into(),
        ]),
    )?;
    let health = format!("{client_url}/health");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    etcd.wait_ready("etcd /health", START_TIMEOUT, || {
        let request = http.get(&health);
        async move {
            let body = request.send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
            if body.contains(r#""health":"true""#) { Ok(()) } else { Err(body) }
        }
    })
    .await?;
    Ok((etcd, client_url))
}

async fn wait_healthy(http: &reqwest::Client, component: &Supervised, port: u16) -> Result<()> {
    let url = format!("https://127.0.0.1:{port}/healthz");
    component
        .wait_ready(&format!("{} /healthz", component.name()), START_TIMEOUT, || {
            let request = http.get(&url);
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status.is_success() { Ok(()) } else { Err(format!("{status}: {body}")) }
            }
        })
        .await
}

/// The apiserver's client certificate towards kubelets, from a CA of this run's own.
struct KubeletClient {
    ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

async fn kubelet_client_certificate(pki: &Path) -> Result<KubeletClient> {
    let (ca_key, ca) = (pki.join("kubelet-client-ca.key"), pki.join("kubelet-client-ca.crt"));
    let (key, request, certificate) = (
        pki.join("apiserver-kubelet-client.key"),
        pki.join("apiserver-kubelet-client.csr"),
        pki.join("apiserver-kubelet-client.crt"),
    );
    let openssl = |args: &[&str]| run_async(Spec::new("openssl", "openssl").args(args.iter().copied()));
    let (ca_key, ca_path, key_path, request_path, certificate_path) =
        (path_str(&ca_key), path_str(&ca), path_str(&key), path_str(&request), path_str(&certificate));
    openssl(&["genrsa", "-out", &ca_key, "2048"]).await?;
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &ca_key,
        "-subj",
        "/CN=tenantry-kubelet-client-ca",
        "-days",
        "2",
        "-out",
        &ca_path,
    ])
    .await?;
    openssl(&["genrsa", "-out", &key_path, "2048"]).await?;
    openssl(&["req", "-new", "-key", &key_path, "-subj", "/O=system:masters/CN=kube-apiserver", "-out", &request_path])
        .await?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &request_path,
        "-CA",
        &ca_path,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &certificate_path,
    ])
    .await?;
    Ok(KubeletClient { ca, certificate, key })
}

/// A free TCP port on `address` (the apiserver's, not loopback).
fn free_port_on(address: Ipv4Addr) -> Result<u16> {
    let listener = std::net::TcpListener::bind((address, 0)).context(|| format!("finding a free port on {address}"))?;
    Ok(listener.local_addr().context(|| "finding a free port".into())?.port())
}

pub(crate) fn kubeconfig_yaml(server: &str, token: &str, ca_bundle: &[u8]) -> String {
    // `--cert-dir` makes the apiserver a serving certificate signed by a CA of its own for this
    // run; the file holds both, so clients verify the connection against it.
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_bundle);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: tenantry-local
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {ADMIN_USER}
  user:
    token: {token}
contexts:
- name: tenantry-local
  context:
    cluster: tenantry-local
    user: {ADMIN_USER}
    namespace: default
current-context: tenantry-local
"
    )
}

/// Loads a kubeconfig file into a kube client configuration.
pub async fn kube_config(kubeconfig: &Path) -> Result<kube::Config> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::KubeConfig(format!("{}: {e}", kubeconfig.display())))?;
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| Error::KubeConfig(format!("{}: {e}", kubeconfig.display())))
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}
