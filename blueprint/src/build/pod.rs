//! Pieces of pod specs: security contexts, resources, probes, environment variables, volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::BuildContext;
use super::DATABASE_SECRET;
use super::common::{DATABASE_HOST, DATABASE_PORT, SERVICE_ACCOUNT, metadata};
use super::secrets::keys;
use crate::model::Compute;
use crate::profile::{self, Image};

/// Pod-level half of the "restricted" Pod Security Standard: never root, the runtime's default
/// seccomp profile. `fs_group` makes mounted volumes writable by the image's user.
pub(crate) fn restricted_pod(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// Container-level half of "restricted": no privilege escalation, no capabilities.
pub(crate) fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        run_as_non_root: Some(true),
        ..Default::default()
    }
}

/// What a container gets for a quantity the plan leaves unset: the namespace LimitRange's
/// defaults, written into the container so that every pod's figures can be read from its spec
/// (the quota fit check sums them) instead of depending on admission.
pub(crate) const DEFAULT_CPU_REQUEST: &str = "100m";
pub(crate) const DEFAULT_CPU_LIMIT: &str = "1";
pub(crate) const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
pub(crate) const DEFAULT_MEMORY_LIMIT: &str = "1Gi";

/// Explicit requests and limits for CPU and memory, from the model's quantities passed through
/// unchanged. A request without a limit also becomes the limit (a default limit may be below
/// the request and get the pod refused); a limit without a request also becomes the request,
/// as Kubernetes does; neither takes the defaults above.
pub(crate) fn resources(compute: &Compute) -> ResourceRequirements {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for (name, request, limit, default_request, default_limit) in [
        ("cpu", &compute.cpu_request, &compute.cpu_limit, DEFAULT_CPU_REQUEST, DEFAULT_CPU_LIMIT),
        ("memory", &compute.memory_request, &compute.memory_limit, DEFAULT_MEMORY_REQUEST, DEFAULT_MEMORY_LIMIT),
    ] {
        let (request, limit) = match (request, limit) {
            (Some(request), Some(limit)) => (request.clone(), limit.clone()),
            (Some(request), None) => (request.clone(), request.clone()),
            (None, Some(limit)) => (limit.clone(), limit.clone()),
            (None, None) => (default_request.to_string(), default_limit.to_string()),
        };
        requests.insert(name.to_string(), Quantity(request));
        limits.insert(name.to_string(), Quantity(limit));
    }
    ResourceRequirements { requests: Some(requests), limits: Some(limits), ..Default::default() }
}

/// Series-tagged images (`tryton/tryton:7.0`) move with every patch release: pull them whenever
/// a pod starts so that a restart really runs the latest patch.
pub(crate) fn pull_policy(image: &Image) -> Option<String> {
    match image {
        Image::Series(_) => Some("Always".into()),
        Image::Version(_) | Image::Fixed(_) => None,
    }
}

pub(crate) fn readiness_probe(probe: &profile::Probe, port: i32) -> Probe {
    Probe { period_seconds: Some(10), failure_threshold: Some(3), ..action(probe, port) }
}

/// Liveness waits longer and tolerates more failures than readiness: restarting an ERP server
/// that is merely busy would make things worse.
pub(crate) fn liveness_probe(probe: &profile::Probe, port: i32) -> Probe {
    Probe {
        initial_delay_seconds: Some(30),
        period_seconds: Some(20),
        failure_threshold: Some(6),
        ..action(probe, port)
    }
}

fn action(probe: &profile::Probe, port: i32) -> Probe {
    match probe {
        profile::Probe::Tcp => Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port), ..Default::default() }),
            ..Default::default()
        },
        profile::Probe::Http { path } => Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

pub(crate) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

pub(crate) fn config_map_volume(volume: &str, config_map: &str) -> Volume {
    Volume {
        name: volume.into(),
        config_map: Some(ConfigMapVolumeSource { name: config_map.into(), ..Default::default() }),
        ..Default::default()
    }
}

/// A Secret as files readable by the pod's user and group only.
pub(crate) fn secret_volume(volume: &str, secret: &str) -> Volume {
    Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn empty_dir_volume(volume: &str) -> Volume {
    Volume { name: volume.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }
}

pub(crate) fn claim_volume(volume: &str, claim: &str) -> Volume {
    Volume {
        name: volume.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How often a Job's pod may fail before the Job gives up.
pub(crate) const JOB_BACKOFF_LIMIT: i32 = 10;

/// What every pod of the tenant shares: the token-less ServiceAccount, the restricted security
/// context, and no service links (Kubernetes would otherwise put `POSTGRES_PORT=tcp://…` and
/// the like into every container's environment, where images that read `POSTGRES_*` or
/// `*_PORT` variables take them for configuration).
pub(crate) fn base_pod_spec(ctx: &BuildContext, user: i64) -> PodSpec {
    let mut pod = PodSpec {
        service_account_name: Some(SERVICE_ACCOUNT.into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(restricted_pod(user)),
        ..Default::default()
    };
    ctx.placement.apply_to(&mut pod);
    pod
}

/// Connection settings for `psql` and `pg_isready` (libpq's environment variables).
pub(crate) fn libpq_env(database: &str) -> Vec<EnvVar> {
    vec![
        env("PGHOST", DATABASE_HOST),
        env("PGPORT", DATABASE_PORT.to_string()),
        secret_env("PGUSER", DATABASE_SECRET, keys::USERNAME),
        secret_env("PGPASSWORD", DATABASE_SECRET, keys::PASSWORD),
        env("PGDATABASE", database),
    ]
}

/// A claim of `size` on the cluster's default storage class.
pub(crate) fn read_write_once_claim(
    ctx: &BuildContext,
    name: &str,
    labels: BTreeMap<String, String>,
    size: &str,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: metadata(ctx, name, labels),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size.to_string()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantities(map: &Option<BTreeMap<String, Quantity>>) -> BTreeMap<&str, &str> {
        map.iter().flatten().map(|(k, v)| (k.as_str(), v.0.as_str())).collect()
    }

    #[test]
    fn resources_pass_quantities_through_and_are_always_explicit() {
        let compute = Compute {
            cpu_request: Some("250m".into()),
            cpu_limit: Some("2".into()),
            memory_request: Some("1.5Gi".into()),
            memory_limit: None,
        };
        let given = resources(&compute);
        assert_eq!(quantities(&given.requests), BTreeMap::from([("cpu", "250m"), ("memory", "1.5Gi")]));
        assert_eq!(quantities(&given.limits), BTreeMap::from([("cpu", "2"), ("memory", "1.5Gi")]));

        let compute = Compute { cpu_limit: Some("50m".into()), ..Default::default() };
        let defaulted = resources(&compute);
        assert_eq!(quantities(&defaulted.requests), BTreeMap::from([("cpu", "50m"), ("memory", "128Mi")]));
        assert_eq!(quantities(&defaulted.limits), BTreeMap::from([("cpu", "50m"), ("memory", "1Gi")]));
    }
}
