//! Whether a tenant's own stack fits its own ResourceQuota.
//!
//! The figures come from the objects the builders make, read the way the apiserver's quota
//! admission reads them, not from a formula over the plan: a builder that forgets a container's
//! resources makes the check fail instead of letting the LimitRange fill in figures nobody
//! counted. A tenant runs, at the worst moment, every pod of every Deployment plus its rolling
//! update's surge, the StatefulSet's pods and every Job the operator may run (they all start
//! together when the tenant is created, and a version change starts a Job while it rolls the
//! server). All of those must fit the quota together, whatever order they start in; a pod that
//! does not is refused by the apiserver and, for a Job, retried until it gives up.

use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;

use crate::build::{self, BuildContext, Child};
use crate::model::TenantModel;
use crate::profile::ImageDefaults;
use crate::quantity;

/// What a tenant's stack holds at its peak, in the units the quota counts: millicores, bytes,
/// pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub cpu_requests_milli: u64,
    pub cpu_limits_milli: u64,
    pub memory_requests: u64,
    pub memory_limits: u64,
    /// Requested by the PersistentVolumeClaims.
    pub storage: u64,
    pub pods: u64,
}

impl Footprint {
    fn add(&mut self, pod: &PodFigures, count: u64) {
        self.cpu_requests_milli += pod.cpu_requests_milli * count;
        self.cpu_limits_milli += pod.cpu_limits_milli * count;
        self.memory_requests += pod.memory_requests * count;
        self.memory_limits += pod.memory_limits * count;
        self.pods += count;
    }
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pods, CPU limits {}, memory limits {}, storage {}",
            self.pods,
            cpu(self.cpu_limits_milli),
            bytes(self.memory_limits),
            bytes(self.storage)
        )
    }
}

/// One pod's figures as quota admission counts them: per resource, the larger of the sum over
/// its containers and the largest init container (init containers run one at a time, before
/// the others).
#[derive(Debug, Clone, Copy, Default)]
struct PodFigures {
    cpu_requests_milli: u64,
    cpu_limits_milli: u64,
    memory_requests: u64,
    memory_limits: u64,
}

/// Checks that the tenant's running stack fits its quota; every reason why not otherwise, each
/// naming the quota field or the container at fault.
pub fn check(model: &TenantModel, images: &ImageDefaults) -> Result<Footprint, Vec<String>> {
    // A suspended tenant runs nothing, but must fit again when it resumes.
    let running = TenantModel { suspended: false, ..model.clone() };
    let no_ingress_controller = Default::default();
    // Where pods run changes no figure.
    let anywhere = Default::default();
    let ctx = BuildContext {
        model: &running,
        // The owner does not change any figure.
        owner: OwnerReference {
            api_version: "tenantry.dev/v1alpha1".into(),
            kind: "Tenant".into(),
            name: model.name.clone(),
            ..Default::default()
        },
        images,
        ingress_controller_namespace: &no_ingress_controller,
        placement: &anywhere,
        backup_store_ports: &[],
    };
    let mut children = build::desired(&ctx);
    // A backup's Job runs beside everything else, one at a time per tenant.
    if let (Some(backups), Some(production)) = (&model.backups, model.environments.first()) {
        use build::backup::{AgentTask, BackupWork, agent_job};
        let work = BackupWork {
            backup_id: "19700101T000000Z-00000000",
            environment: production,
            kind: Default::default(),
            operation: None,
            owner: ctx.owner.clone(),
        };
        let job = agent_job(&ctx, backups, &work, AgentTask::Backup, &images.agent);
        children.push(build::child_of(&job));
    }
    let footprint = footprint(&children)?;
    let quota = &model.resources.quota;
    let mut problems = Vec::new();
    let what = "the tenant's own workloads (every Deployment with its rolling-update surge, the StatefulSet and \
                every Job) need";
    if let Some(hard) = &quota.cpu
        && footprint.cpu_limits_milli > milli(hard)
    {
        problems.push(format!(
            "spec.resources.quota.cpu: {what} CPU limits of {} at once, more than the quota's {hard}",
            cpu(footprint.cpu_limits_milli)
        ));
    }
    if let Some(hard) = &quota.memory
        && footprint.memory_limits > whole(hard)
    {
        problems.push(format!(
            "spec.resources.quota.memory: {what} memory limits of {} at once, more than the quota's {hard}",
            bytes(footprint.memory_limits)
        ));
    }
    if let Some(hard) = &quota.storage
        && footprint.storage > whole(hard)
    {
        problems.push(format!(
            "spec.resources.quota.storage: the tenant's volumes request {}, more than the quota's {hard}",
            bytes(footprint.storage)
        ));
    }
    if let Some(hard) = quota.pods
        && footprint.pods > u64::from(hard)
    {
        problems.push(format!(
            "spec.resources.quota.pods: {what} {} pods at once, more than the quota's {hard}",
            footprint.pods
        ));
    }
    if problems.is_empty() { Ok(footprint) } else { Err(problems) }
}

/// The peak figures of a set of built objects; refuses a container without explicit CPU and
/// memory requests and limits, or with a request above its limit (the apiserver refuses such
/// a pod).
pub fn footprint(children: &[Child]) -> Result<Footprint, Vec<String>> {
    let mut total = Footprint::default();
    let mut problems = Vec::new();
    for child in children {
        let owner = format!("{} {}", child.resource.kind, child.name);
        let (pod, count) = match child.resource.kind.as_str() {
            "Deployment" => {
                let spec = decode::<Deployment>(child).spec.unwrap_or_default();
                let replicas = spec.replicas.unwrap_or(1).max(0);
                (spec.template.spec, count(replicas) + surge(spec.strategy.as_ref(), replicas))
            }
            "StatefulSet" => {
                // A StatefulSet's rolling update replaces pods one by one: no surge.
                let spec = decode::<StatefulSet>(child).spec.unwrap_or_default();
                (spec.template.spec, count(spec.replicas.unwrap_or(1)))
            }
            "Job" => {
                let spec = decode::<Job>(child).spec.unwrap_or_default();
                (spec.template.spec, count(spec.parallelism.unwrap_or(1)))
            }
            "PersistentVolumeClaim" => {
                let claim = decode::<PersistentVolumeClaim>(child);
                let requested = claim.spec.and_then(|s| s.resources).and_then(|r| r.requests);
                if let Some(storage) = requested.as_ref().and_then(|r| r.get("storage")) {
                    total.storage += whole(&storage.0);
                }
                continue;
            }
            _ => continue,
        };
        match pod_figures(&owner, &pod.unwrap_or_default()) {
            Ok(figures) => total.add(&figures, count),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() { Ok(total) } else { Err(problems) }
}

fn decode<T: DeserializeOwned>(child: &Child) -> T {
    serde_json::from_value(child.body.clone()).expect("the builders make well-formed objects")
}

fn count(replicas: i32) -> u64 {
    u64::try_from(replicas).unwrap_or(0)
}

/// The extra pods a rolling update may run: `maxSurge` (25 % by default), a percentage of the
/// replicas rounded up, as the Deployment controller does.
fn surge(strategy: Option<&DeploymentStrategy>, replicas: i32) -> u64 {
    let strategy = strategy.cloned().unwrap_or_default();
    if strategy.type_.as_deref() == Some("Recreate") {
        return 0;
    }
    let max_surge = strategy
        .rolling_update
        .and_then(|update| update.max_surge)
        .unwrap_or_else(|| IntOrString::String("25%".into()));
    match max_surge {
        IntOrString::Int(pods) => count(pods),
        IntOrString::String(text) => {
            let percent: u64 = text.trim_end_matches('%').parse().unwrap_or(100);
            (count(replicas) * percent).div_ceil(100)
        }
    }
}

fn pod_figures(owner: &str, pod: &PodSpec) -> Result<PodFigures, Vec<String>> {
    let mut problems = Vec::new();
    let mut containers = PodFigures::default();
    let mut init = PodFigures::default();
    for container in &pod.containers {
        let figures = container_figures(owner, container, &mut problems);
        containers.cpu_requests_milli += figures.cpu_requests_milli;
        containers.cpu_limits_milli += figures.cpu_limits_milli;
        containers.memory_requests += figures.memory_requests;
        containers.memory_limits += figures.memory_limits;
    }
    for container in pod.init_containers.iter().flatten() {
        let figures = container_figures(owner, container, &mut problems);
        init.cpu_requests_milli = init.cpu_requests_milli.max(figures.cpu_requests_milli);
        init.cpu_limits_milli = init.cpu_limits_milli.max(figures.cpu_limits_milli);
        init.memory_requests = init.memory_requests.max(figures.memory_requests);
        init.memory_limits = init.memory_limits.max(figures.memory_limits);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(PodFigures {
        cpu_requests_milli: containers.cpu_requests_milli.max(init.cpu_requests_milli),
        cpu_limits_milli: containers.cpu_limits_milli.max(init.cpu_limits_milli),
        memory_requests: containers.memory_requests.max(init.memory_requests),
        memory_limits: containers.memory_limits.max(init.memory_limits),
    })
}

fn container_figures(owner: &str, container: &Container, problems: &mut Vec<String>) -> PodFigures {
    let resources = container.resources.clone().unwrap_or_default();
    let mut figure = |kind: &str, resource: &str| -> Option<String> {
        let map = if kind == "request" { &resources.requests } else { &resources.limits };
        let value = map.as_ref().and_then(|m| m.get(resource)).map(|Quantity(q)| q.clone());
        if value.is_none() {
            problems.push(format!("{owner}: container {} sets no {resource} {kind}", container.name));
        }
        value
    };
    let (cpu_request, cpu_limit) = (figure("request", "cpu"), figure("limit", "cpu"));
    let (memory_request, memory_limit) = (figure("request", "memory"), figure("limit", "memory"));
    let figures = PodFigures {
        cpu_requests_milli: cpu_request.as_deref().map_or(0, milli),
        cpu_limits_milli: cpu_limit.as_deref().map_or(0, milli),
        memory_requests: memory_request.as_deref().map_or(0, whole),
        memory_limits: memory_limit.as_deref().map_or(0, whole),
    };
    for (resource, request, limit, shown) in [
        ("cpu", figures.cpu_requests_milli, figures.cpu_limits_milli, (&cpu_request, &cpu_limit)),
        ("memory", figures.memory_requests, figures.memory_limits, (&memory_request, &memory_limit)),
    ] {
        if let (Some(shown_request), Some(shown_limit)) = shown
            && request > limit
        {
            problems.push(format!(
                "{owner}: container {}'s {resource} request {shown_request} is above its limit {shown_limit}",
                container.name
            ));
        }
    }
    figures
}

/// A quantity in thousandths (millicores), rounded up as the apiserver rounds (`MilliValue`).
/// Quantities reaching here were validated; a malformed one counts as zero.
fn milli(text: &str) -> u64 {
    round_up(quantity::parse(text).unwrap_or(0.0) * 1000.0)
}

/// A quantity in whole units (bytes), rounded up as the apiserver rounds (`Value`).
fn whole(text: &str) -> u64 {
    round_up(quantity::parse(text).unwrap_or(0.0))
}

/// Within floating-point noise of a whole number is that number (`0.1` CPU is 100m, not 101m).
fn round_up(value: f64) -> u64 {
    let nearest = value.round();
    let rounded = if (value - nearest).abs() <= 1e-9 * nearest.abs().max(1.0) { nearest } else { value.ceil() };
    rounded.max(0.0) as u64
}

fn cpu(milli: u64) -> String {
    if milli.is_multiple_of(1000) { format!("{}", milli / 1000) } else { format!("{milli}m") }
}

fn bytes(value: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    for (suffix, unit) in UNITS {
        if value >= unit && value.is_multiple_of(unit) {
            return format!("{}{suffix}", value / unit);
        }
    }
    for (suffix, unit) in UNITS {
        if value >= unit {
            return format!("{:.2}{suffix}", value as f64 / unit as f64);
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests;
