//! Whether the cluster's workloads are simulated: the local test environment registers its nodes
//! with the label below and only pretends to run pods. The pages say so plainly, so nobody takes
//! a demo's "ready" for a running ERP.

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

/// Checks the cluster's nodes now and then every minute until shutdown. A cluster that does not
/// let the control plane list nodes is taken as real (the notice is for test environments).
pub async fn run_detection(client: kube::Client, flag: SimulatedWorkloads, mut shutdown: watch::Receiver<bool>) {
    let nodes: Api<Node> = Api::all(client);
    let params = ListParams::default().labels(&format!("{SIMULATED_NODE_LABEL}=true")).limit(1);
    loop {
        match nodes.list_metadata(&params).await {
            Ok(list) => flag.set(!list.items.is_empty()),
            Err(error) => tracing::debug!(%error, "nodes not listed; workloads taken as real"),
        }
        sleep_or_shutdown(RECHECK, &mut shutdown).await;
        if stopping(&shutdown) {
            return;
        }
    }
}
