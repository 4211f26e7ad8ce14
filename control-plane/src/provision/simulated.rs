//! Whether the cluster's workloads are simulated: the local test environment registers its
//! simulated nodes with the label below, and they only pretend to run pods. While one of them
//! accepts pods (is not cordoned) tenants may land there, and the pages say so plainly, so nobody
//! takes a demo's "ready" for a running ERP. `testenv demo --real` cordons them and places every
//! tenant on the environment's real node: its tenants' ERPs answer, and the notice is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use super::worker::{sleep_or_shutdown, stopping};

/// The label the test environment's simulated kubelet puts on every node it registers.
pub const SIMULATED_NODE_LABEL: &str = "kubelet.tenantry.dev/simulated";
/// Nodes come and go rarely; a minute is soon enough for a notice.
const RECHECK: Duration = Duration::from_secs(60);

/// Shared by every HTTP worker; false until a check finds simulated nodes.
#[derive(Debug, Clone, Default)]
pub struct SimulatedWorkloads(Arc<AtomicBool>);

impl SimulatedWorkloads {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, simulated: bool) {
        self.0.store(simulated, Ordering::Relaxed);
    }
}

/// Whether any of the simulated `nodes` accepts new pods: a cordoned node takes none.
fn any_accepts_pods(nodes: &[Node]) -> bool {
    nodes.iter().any(|node| node.spec.as_ref().and_then(|spec| spec.unschedulable) != Some(true))
}

/// Checks the cluster's nodes now and then every minute until shutdown. A cluster that does not
/// let the control plane list nodes is taken as real (the notice is for test environments).
pub async fn run_detection(client: kube::Client, flag: SimulatedWorkloads, mut shutdown: watch::Receiver<bool>) {
    let nodes: Api<Node> = Api::all(client);
    let params = ListParams::default().labels(&format!("{SIMULATED_NODE_LABEL}=true"));
    loop {
        match nodes.list(&params).await {
            Ok(list) => flag.set(any_accepts_pods(&list.items)),
            Err(error) => tracing::debug!(%error, "nodes not listed; workloads taken as real"),
        }
        sleep_or_shutdown(RECHECK, &mut shutdown).await;
        if stopping(&shutdown) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::NodeSpec;

    use super::*;

    fn node(unschedulable: Option<bool>) -> Node {
        Node { spec: Some(NodeSpec { unschedulable, ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn only_cordoned_simulated_nodes_make_workloads_real() {
        assert!(!any_accepts_pods(&[]), "no simulated node");
        assert!(!any_accepts_pods(&[node(Some(true)), node(Some(true))]), "all cordoned");
        assert!(any_accepts_pods(&[node(Some(true)), node(None)]));
        assert!(any_accepts_pods(&[node(Some(false))]));
        assert!(any_accepts_pods(&[Node::default()]), "no spec: schedulable");
    }
}
