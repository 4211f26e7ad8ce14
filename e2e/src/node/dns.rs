//! Cluster DNS for the real node's pods: Debian's dnsmasq on the host's end of the node's link
//! (the address the kubelet gives pods as their name server), answering from a hosts file this
//! module keeps equal to the cluster's Services.
//!
//! Why dnsmasq and not CoreDNS: CoreDNS is neither packaged by Debian nor reachable from here,
//! while dnsmasq is, and a hosts file it rereads on `SIGHUP` is all the cluster's names need:
//! - a Service with an address: `<service>.<namespace>.svc.cluster.local` → that address;
//! - a headless Service: the same name → each ready endpoint's address, and
//!   `<hostname>.<service>.<namespace>.svc.cluster.local` → the endpoint with that hostname
//!   (a StatefulSet's pods).
//!
//! Names under `cluster.local` that no Service has get NXDOMAIN at once (`--local`); other names
//! are not resolved (this machine's network is closed). The pods' search path (`<namespace>
//! .svc.cluster.local …`, written by the kubelet) makes a bare Service name resolve.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{CLUSTER_DOMAIN, Link};
use crate::error::{IoContext, Result};
use crate::process::{Spec, Supervised, WorkDir};

/// dnsmasq serving the cluster's names; [`ClusterDns::run`] keeps them current.
pub struct ClusterDns {
    hosts: PathBuf,
    process: Supervised,
}

impl ClusterDns {
    /// Starts dnsmasq and waits until it answers: before then a `SIGHUP` would end it (its
    /// handler is not installed yet), and the first change comes at once.
    pub async fn start(workdir: &Arc<WorkDir>, link: &Link) -> Result<Self> {
        let hosts = workdir.join("node/cluster-dns.hosts");
        fs::write(&hosts, "").context(|| format!("writing {}", hosts.display()))?;
        let process = Supervised::spawn(
            workdir,
            Spec::new("cluster-dns", "dnsmasq").args([
                "--keep-in-foreground".to_string(),
                "--log-facility=-".into(),
                "--conf-file=/dev/null".into(),
                // No pid file, no /etc/hosts, no upstream: only the cluster's names.
                "--pid-file".into(),
                "--no-hosts".into(),
                "--no-resolv".into(),
                format!("--addn-hosts={}", hosts.display()),
                format!("--local=/{CLUSTER_DOMAIN}/"),
                format!("--listen-address={}", link.host),
                "--bind-interfaces".into(),
                "--port=53".into(),
                // The hosts file is in the work directory, which only root may read.
                "--user=root".into(),
                // Answers change with the Services: never cached by a pod's resolver.
                "--local-ttl=0".into(),
            ]),
        )?;
        let server = std::net::SocketAddr::from((link.host, 53));
        process.wait_ready("cluster DNS", Duration::from_secs(30), || answers(server)).await?;
        Ok(Self { hosts, process })
    }

    pub fn check_alive(&self) -> Result<()> {
        self.process.check_alive()
    }

    /// Watches Services and Endpoints and rewrites the names whenever they change; returns only
    /// if the watches end.
    pub async fn run(&self, client: Client) -> Result<()> {
        let (services, service_writer) = reflector::store::<Service>();
        let (endpoints, endpoint_writer) = reflector::store::<Endpoints>();
        let service_events = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(service_writer)
            .map(drop)
            .boxed();
        let endpoint_events = watcher(Api::<Endpoints>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(endpoint_writer)
            .map(drop)
            .boxed();
        let mut changes = futures::stream::select(service_events, endpoint_events);
        let mut written = String::new();
        while changes.next().await.is_some() {
            let records = records(&services.state(), &endpoints.state());
            if records != written {
                let partial = self.hosts.with_extension("partial");
                fs::write(&partial, &records).context(|| format!("writing {}", partial.display()))?;
                fs::rename(&partial, &self.hosts).context(|| format!("replacing {}", self.hosts.display()))?;
                // dnsmasq rereads its hosts files on SIGHUP.
                let _ = kill(Pid::from_raw(self.process.pid() as i32), Signal::SIGHUP);
                written = records;
            }
        }
        Ok(())
    }
}

/// Whether the DNS server at `server` answers a query (any answer: an unknown name under the
/// cluster's domain gets NXDOMAIN).
async fn answers(server: std::net::SocketAddr) -> std::result::Result<(), String> {
    let socket = tokio::net::UdpSocket::bind(("0.0.0.0", 0)).await.map_err(|e| e.to_string())?;
    let id: u16 = rand::random();
    let mut query = id.to_be_bytes().to_vec();
    // Recursion desired, one question; no answer, authority or additional records.
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["readiness-probe", "cluster", "local"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    // The root, then type A, class IN.
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&query, server).await.map_err(|e| e.to_string())?;
    let mut reply = [0u8; 512];
    let received = tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut reply))
        .await
        .map_err(|_| "no answer yet".to_string())?
        .map_err(|e| e.to_string())?;
    if received >= 2 && reply[..2] == id.to_be_bytes() { Ok(()) } else { Err("a stray reply".into()) }
}

/// The hosts file of the cluster's names: one `<address> <name>` line each, sorted.
fn records(services: &[Arc<Service>], endpoints: &[Arc<Endpoints>]) -> String {
    let mut lines = BTreeSet::new();
    for service in services {
        let namespace = service.namespace().unwrap_or_default();
        let name = format!("{}.{namespace}.svc.{CLUSTER_DOMAIN}", service.name_any());
        match service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) {
            Some("None") => {
                let Some(endpoints) = endpoints.iter().find(|e| {
                    e.name_any() == service.name_any() && e.namespace().as_deref() == Some(namespace.as_str())
                }) else {
                    continue;
                };
                for address in endpoints.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten()) {
                    lines.insert(format!("{} {name}", address.ip));
                    if let Some(hostname) = &address.hostname {
                        lines.insert(format!("{} {hostname}.{name}", address.ip));
                    }
                }
            }
            Some(address) if !address.is_empty() => {
                lines.insert(format!("{address} {name}"));
            }
            _ => {}
        }
    }
    lines.into_iter().map(|line| line + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn services_and_headless_endpoints_become_names() {
        let service = |name: &str, ip: &str| -> Arc<Service> {
            Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": name, "namespace": "t1"}, "spec": {"clusterIP": ip}}),
                )
                .unwrap(),
            )
        };
        let endpoints: Arc<Endpoints> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "db", "namespace": "t1"},
                "subsets": [{"addresses": [{"ip": "10.232.0.7", "hostname": "db-0"}]}],
            }))
            .unwrap(),
        );
        let hosts = records(&[service("web", "10.0.3.4"), service("db", "None"), service("pending", "")], &[endpoints]);
        assert_eq!(
            hosts,
            "10.0.3.4 web.t1.svc.cluster.local\n\
             10.232.0.7 db-0.db.t1.svc.cluster.local\n\
             10.232.0.7 db.t1.svc.cluster.local\n"
        );
    }
}
