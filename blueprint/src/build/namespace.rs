//! The tenant's namespace and what bounds everything in it: quota, default container
//! resources, and the ServiceAccount its pods run as.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::common::{SERVICE_ACCOUNT, child, metadata, tenant_labels};
use super::pod::{DEFAULT_CPU_LIMIT, DEFAULT_CPU_REQUEST, DEFAULT_MEMORY_LIMIT, DEFAULT_MEMORY_REQUEST};
use super::{BuildContext, Child};
use crate::model::Quota;

pub(crate) const QUOTA: &str = "tenant-quota";
pub(crate) const LIMITS: &str = "tenant-limits";

/// Namespace, ResourceQuota (when the plan sets one), LimitRange, ServiceAccount.
pub(crate) fn children(ctx: &BuildContext) -> Vec<Child> {
    let mut children = vec![child(&namespace(ctx), false)];
    if let Some(quota) = resource_quota(ctx) {
        children.push(child(&quota, false));
    }
    children.push(child(&limit_range(ctx), false));
    children.push(child(&service_account(ctx), false));
    children
}

fn namespace(ctx: &BuildContext) -> Namespace {
    let mut labels = tenant_labels(ctx.model);
    // Enforced by the PodSecurity admission of Kubernetes >= 1.23, ignored by older ones; every
    // pod the builders make satisfies it either way.
    labels.insert("pod-security.kubernetes.io/enforce".into(), "restricted".into());
    Namespace {
        metadata: ObjectMeta {
            name: Some(ctx.model.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![ctx.owner.clone()]),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Only what the plan sets; `None` when it sets nothing (an empty quota would still make
/// Kubernetes demand requests and limits from every pod for nothing).
fn resource_quota(ctx: &BuildContext) -> Option<ResourceQuota> {
    let hard = quota_hard(&ctx.model.resources.quota);
    if hard.is_empty() {
        return None;
    }
    Some(ResourceQuota {
        metadata: metadata(ctx, QUOTA, tenant_labels(ctx.model)),
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..Default::default() }),
        ..Default::default()
    })
}

fn quota_hard(quota: &Quota) -> BTreeMap<String, Quantity> {
    let mut hard = BTreeMap::new();
    let mut set = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            hard.insert(name.to_string(), Quantity(value));
        }
    };
    set("limits.cpu", quota.cpu.clone());
    set("limits.memory", quota.memory.clone());
    set("requests.storage", quota.storage.clone());
    set("pods", quota.pods.map(|pods| pods.to_string()));
    hard
}

/// Defaults only, no minimum or maximum: a quota on `limits.*` refuses pods whose containers
/// have no limits. Every container the builders make sets its own (the same defaults where the
/// plan sets nothing); these only cover a container added to the namespace by other means.
fn limit_range(ctx: &BuildContext) -> LimitRange {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([("cpu".to_string(), Quantity(cpu.into())), ("memory".to_string(), Quantity(memory.into()))])
    };
    LimitRange {
        metadata: metadata(ctx, LIMITS, tenant_labels(ctx.model)),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(quantities(DEFAULT_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)),
                default: Some(quantities(DEFAULT_CPU_LIMIT, DEFAULT_MEMORY_LIMIT)),
                ..Default::default()
            }],
        }),
    }
}

/// The ERP needs no access to the Kubernetes API, so its pods get no token at all.
fn service_account(ctx: &BuildContext) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(ctx, SERVICE_ACCOUNT, tenant_labels(ctx.model)),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture::{Fixture, fixture};

    #[test]
    fn namespace_enforces_restricted_pods_and_is_owned_by_the_tenant() {
        let fx = Fixture::new(fixture());
        let namespace = namespace(&fx.ctx());
        assert_eq!(namespace.metadata.name.as_deref(), Some("tenant-acme"));
        assert_eq!(namespace.metadata.namespace, None);
        assert_eq!(namespace.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(namespace.metadata.owner_references.unwrap()[0].name, "acme");
    }

    #[test]
    fn quota_holds_only_what_the_plan_sets() {
        let mut model = fixture();
        model.resources.quota =
            Quota { cpu: Some("4".into()), memory: None, storage: Some("50Gi".into()), pods: Some(20) };
        let fx = Fixture::new(model);
        let hard = resource_quota(&fx.ctx()).unwrap().spec.unwrap().hard.unwrap();
        let hard: BTreeMap<&str, &str> = hard.iter().map(|(k, v)| (k.as_str(), v.0.as_str())).collect();
        assert_eq!(hard, BTreeMap::from([("limits.cpu", "4"), ("requests.storage", "50Gi"), ("pods", "20")]));

        let mut model = fixture();
        model.resources.quota = Quota::default();
        let fx = Fixture::new(model);
        assert!(resource_quota(&fx.ctx()).is_none());
        assert!(!children(&fx.ctx()).iter().any(|c| c.resource.kind == "ResourceQuota"));
    }

    #[test]
    fn service_account_has_no_token() {
        let fx = Fixture::new(fixture());
        assert_eq!(service_account(&fx.ctx()).automount_service_account_token, Some(false));
    }
}
