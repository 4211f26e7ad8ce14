//! Waiting on the cluster by watching, never by sleeping.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// How long a test waits for the real controllers before it calls something broken.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// Watches `name` until `condition` holds, returning the object as it was then.
/// Panics with `what` after `timeout`: in a test that is the failure to report.
pub async fn until<K, C>(api: &Api<K>, name: &str, what: &str, timeout: Duration, condition: C) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    C: Condition<K>,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(object))) => object,
        Ok(Ok(None)) => panic!("{name}: {what}: the object was deleted while waiting"),
        Ok(Err(e)) => panic!("{name}: {what}: watch failed: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!("{name}: {what}: not reached within {timeout:?}; last seen: {last:#?}")
        }
    }
}

/// Watches `name` until it no longer exists (a missing object counts as deleted).
pub async fn until_deleted<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let gone = |object: Option<&K>| object.is_none();
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, gone)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("{name}: waiting for deletion: watch failed: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!("{name}: still there after {timeout:?}; last seen: {last:#?}")
        }
    }
}

/// A pod's phase (`Pending`, `Running`, `Succeeded`, `Failed`), empty before it has one.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Waits until the pod has ended, and returns it with its log as the apiserver serves it (from
/// the kubelet's log endpoint).
pub async fn ended_with_log(pods: &Api<Pod>, name: &str, timeout: Duration) -> (Pod, String) {
    let ended = |pod: Option<&Pod>| pod.is_some_and(|p| matches!(pod_phase(p), "Succeeded" | "Failed"));
    let pod = until(pods, name, "ended", timeout, ended).await;
    let log = pods.logs(name, &LogParams::default()).await.unwrap_or_else(|e| panic!("{name}: reading its log: {e}"));
    (pod, log)
}
