//! The simulated kubelet: the one part of the cluster that is not real, because no container
//! runtime exists on these machines.
//!
//! It does what a kubelet reports, not what it runs: it registers Nodes with capacity and a live
//! `Ready` condition, marks pods bound to them Running and Ready (or, for run-to-completion pods,
//! Succeeded), confirms graceful pod deletions, and binds pending PersistentVolumeClaims to
//! hostPath PersistentVolumes, so the real controllers (Deployment, ReplicaSet, StatefulSet, Job,
//! namespace, garbage collector) and the real scheduler see what they would on a real cluster.
//!
//! A test can ask for failure with the pod annotation [`FAIL_ANNOTATION`] (usually set in a
//! template): a run-to-completion pod (restart policy `Never` or `OnFailure`, e.g. a Job's) then
//! ends `Failed` with exit code 1; a long-running pod keeps crash-looping and never gets Ready.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::error::{IoContext, Result};

/// Set to `"true"` on a pod to make the simulated kubelet fail it.
pub const FAIL_ANNOTATION: &str = "kubelet.tenantry.dev/fail";
/// Every node this kubelet registers carries this label.
pub const NODE_LABEL: &str = "kubelet.tenantry.dev/simulated";
const HEARTBEAT: Duration = Duration::from_secs(10);

/// What one simulated node offers.
#[derive(Debug, Clone)]
pub struct NodeCapacity {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

impl Default for NodeCapacity {
    fn default() -> Self {
        Self { cpu: "16".into(), memory: "64Gi".into(), pods: 110 }
    }
}

pub struct SimulatedKubelet {
    client: Client,
    nodes: Vec<String>,
    capacity: NodeCapacity,
    volumes_dir: PathBuf,
    pod_ips: Arc<Mutex<HashMap<String, String>>>,
}

impl SimulatedKubelet {
    /// `nodes` simulated nodes named `sim-node-<i>`; hostPath volumes go under `volumes_dir`.
    pub fn new(client: Client, nodes: usize, capacity: NodeCapacity, volumes_dir: PathBuf) -> Self {
        Self {
            client,
            nodes: (0..nodes).map(|i| format!("sim-node-{i}")).collect(),
            capacity,
            volumes_dir,
            pod_ips: Arc::default(),
        }
    }

    pub fn node_names(&self) -> &[String] {
        &self.nodes
    }

    /// Registers the nodes and reports them Ready; returns once the scheduler can use them.
    pub async fn register_nodes(&self) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        for (index, name) in self.nodes.iter().enumerate() {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([
                        ("kubernetes.io/hostname".into(), name.clone()),
                        ("kubernetes.io/os".into(), "linux".into()),
                        ("kubernetes.io/arch".into(), "amd64".into()),
                        (NODE_LABEL.into(), "true".into()),
                    ])),
                    ..Default::default()
                },
                ..Default::default()
            };
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            self.report_node_status(&nodes, name, index).await?;
        }
        Ok(())
    }

    async fn report_node_status(&self, nodes: &Api<Node>, name: &str, index: usize) -> Result<()> {
        let now = now();
        let condition = |kind: &str, status: &str, reason: &str| json!({"type": kind, "status": status, "reason": reason, "lastHeartbeatTime": now, "lastTransitionTime": now});
        let resources = json!({
            "cpu": self.capacity.cpu,
            "memory": self.capacity.memory,
            "pods": self.capacity.pods.to_string(),
            "ephemeral-storage": "100Gi",
        });
        let status = json!({"status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                condition("Ready", "True", "KubeletReady"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": format!("127.0.10.{}", index + 1)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "tenantry simulated kubelet",
                "containerRuntimeVersion": "simulated://0", "kubeletVersion": "v1.20.2",
                "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux", "architecture": "amd64",
            },
        }});
        nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        Ok(())
    }

    /// Runs until the returned future is dropped: node heartbeats, pod status, volume binding.
    pub async fn run(self) -> Result<()> {
        let this = Arc::new(self);
        let heartbeat = this.clone().heartbeat();
        let pods = this.clone().drive_pods();
        let volumes = this.clone().bind_volumes();
        tokio::try_join!(heartbeat, pods, volumes)?;
        Ok(())
    }

    async fn heartbeat(self: Arc<Self>) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            for (index, name) in self.nodes.iter().enumerate() {
                if let Err(e) = self.report_node_status(&nodes, name, index).await {
                    tracing::warn!(node = %name, error = %e, "node heartbeat failed");
                }
            }
        }
    }

    async fn drive_pods(self: Arc<Self>) -> Result<()> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields("spec.nodeName!=");
        let mut events = watcher(pods, config).default_backoff().applied_objects().boxed();
        // The watcher retries by itself (with backoff); an error is reported and the watch goes on.
        while let Some(event) = events.next().await {
            match event {
                Ok(pod) => {
                    if let Err(e) = self.drive_pod(&pod).await {
                        tracing::warn!(pod = %pod.name_any(), error = %e, "could not update pod");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "pod watch error"),
            }
        }
        Ok(())
    }

    async fn drive_pod(&self, pod: &Pod) -> Result<()> {
        let Some(spec) = &pod.spec else { return Ok(()) };
        let Some(node) = spec.node_name.as_deref() else { return Ok(()) };
        let Some(node_index) = self.nodes.iter().position(|n| n == node) else {
            return Ok(());
        };
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let name = pod.name_any();

        if pod.metadata.deletion_timestamp.is_some() {
            // A real kubelet kills the containers, then confirms with a zero-grace delete.
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
                ..Default::default()
            };
            return match api.delete(&name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
                Err(e) => Err(e.into()),
            };
        }

        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.as_deref().unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed") {
            return Ok(());
        }
        let wants_failure = pod.annotations().get(FAIL_ANNOTATION).is_some_and(|v| v == "true");
        let runs_to_completion = spec.restart_policy.as_deref().is_some_and(|p| p != "Always");
        let outcome = match (runs_to_completion, wants_failure) {
            (true, false) => Outcome::Succeeded,
            (true, true) => Outcome::Failed,
            (false, false) => Outcome::Running,
            (false, true) => Outcome::CrashLooping,
        };
        let current_ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        if phase == outcome.phase() && current_ready == outcome.ready() && status.pod_ip.is_some() {
            return Ok(());
        }

        let pod_ip =
            status.pod_ip.clone().unwrap_or_else(|| self.allocate_ip(pod.metadata.uid.as_deref().unwrap_or(&name)));
        let started = status.start_time.clone().map(|t| t.0.to_string()).unwrap_or_else(now);
        let patch = desired_status(spec, outcome, &pod_ip, &format!("127.0.10.{}", node_index + 1), &started);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// Pod IPs unique across the simulated nodes, from 10.244.0.0/16.
    fn allocate_ip(&self, key: &str) -> String {
        let mut ips = self.pod_ips.lock().unwrap_or_else(|e| e.into_inner());
        let n = ips.len();
        ips.entry(key.to_string()).or_insert_with(|| format!("10.244.{}.{}", n / 250 % 256, n % 250 + 2)).clone()
    }

    async fn bind_volumes(self: Arc<Self>) -> Result<()> {
        let claims: Api<PersistentVolumeClaim> = Api::all(self.client.clone());
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let mut events = watcher(claims, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(claim) => {
                    if let Err(e) = self.provide_volume(&volumes, &claim).await {
                        tracing::warn!(claim = %claim.name_any(), error = %e, "could not provide a volume");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claim watch error"),
            }
        }
        Ok(())
    }

    /// Plays a local-path provisioner: one hostPath volume pre-bound to each unbound claim, a
    /// directory of the work directory made here, world-writable (as local-path provisioners
    /// make theirs) so that a pod's own user can write there. Every node of the environment is
    /// on this machine, so the directory is the same wherever the pod lands; on the real node it
    /// is what the container writes to, and a database in it outlives its pod.
    async fn provide_volume(&self, volumes: &Api<PersistentVolume>, claim: &PersistentVolumeClaim) -> Result<()> {
        let Some(spec) = &claim.spec else { return Ok(()) };
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if spec.volume_name.is_some() || phase != Some("Pending") || claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(uid) = claim.metadata.uid.as_deref() else { return Ok(()) };
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "1Gi".into());
        let name = format!("pvc-{uid}");
        let path = self.volumes_dir.join(&name);
        std::fs::create_dir_all(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777)))
            .context(|| format!("making the volume {}", path.display()))?;
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {NODE_LABEL: "true"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
                "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
                "hostPath": {"path": path.display().to_string(), "type": "Directory"},
                "claimRef": {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": claim.namespace(), "name": claim.name_any(), "uid": uid,
                },
            },
        }))
        .expect("a well-formed PersistentVolume");
        match volumes.create(&PostParams::default(), &volume).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Running,
    CrashLooping,
    Succeeded,
    Failed,
}

impl Outcome {
    fn phase(self) -> &'static str {
        match self {
            Self::Running | Self::CrashLooping => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }

    fn ready(self) -> bool {
        self == Self::Running
    }
}

/// The pod status a kubelet would report for `outcome` (a merge patch of `status`).
fn desired_status(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    outcome: Outcome,
    pod_ip: &str,
    host_ip: &str,
    started: &str,
) -> Value {
    let now = now();
    let state = |exit_code: i32| -> Value {
        match outcome {
            Outcome::Running => json!({"running": {"startedAt": started}}),
            Outcome::CrashLooping => json!({"waiting": {"reason": "CrashLoopBackOff", "message": "simulated failure"}}),
            Outcome::Succeeded | Outcome::Failed => json!({"terminated": {
                "exitCode": exit_code,
                "reason": if exit_code == 0 { "Completed" } else { "Error" },
                "startedAt": started, "finishedAt": now,
            }}),
        }
    };
    let exit_code = if outcome == Outcome::Failed { 1 } else { 0 };
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "containerID": format!("simulated://{}", c.name),
                "ready": outcome.ready(), "started": outcome == Outcome::Running,
                "restartCount": if outcome == Outcome::CrashLooping { 1 } else { 0 },
                "state": state(exit_code),
            })
        })
        .collect();
    let init_containers: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}},
            })
        })
        .collect();
    let flag = |b: bool| if b { "True" } else { "False" };
    let condition = |kind: &str, status: bool| json!({"type": kind, "status": flag(status), "lastTransitionTime": now});
    let ready = outcome.ready();
    json!({"status": {
        "phase": outcome.phase(),
        "hostIP": host_ip,
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "conditions": [
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "containerStatuses": containers,
        "initContainerStatuses": init_containers,
    }})
}

fn now() -> String {
    Time(Timestamp::now()).0.to_string()
}
