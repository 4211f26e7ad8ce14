//! What every builder shares: labels, metadata, object names, content hashes, and the turning of
//! a typed object into a [`Child`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::ApiResource;
use serde::Serialize;

use super::{BuildContext, Child};
use crate::api::labels;
use crate::model::{Environment, TenantModel};

/// The PostgreSQL role the ERP connects as (also the owner of every environment's database).
pub(crate) const DATABASE_USER: &str = "erp";
/// Name of the PostgreSQL Service, hence its host name inside the namespace.
pub(crate) const DATABASE_HOST: &str = "postgres";
pub(crate) const DATABASE_PORT: i32 = 5432;
/// Every pod of the tenant runs as this ServiceAccount, which has no token and no permissions.
pub(crate) const SERVICE_ACCOUNT: &str = "tenant-erp";
/// Pod-template annotation carrying a hash of the configuration the pods read at start, so that
/// a configuration change rolls them.
pub(crate) const CONFIG_HASH_ANNOTATION: &str = "tenantry.dev/config-hash";
/// Pod-template annotation carrying the ERP version. Images are tagged by series (`7.0`), so a
/// patch release changes nothing else in the pod template; this makes it roll the pods, which
/// pull the image again.
pub(crate) const VERSION_ANNOTATION: &str = "tenantry.dev/erp-version";

/// What a pod does, as the `app.kubernetes.io/component` label says (network policies and
/// selectors rely on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Component {
    Database,
    Server,
    Web,
    Job,
}

impl Component {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Server => "server",
            Self::Web => "web",
            Self::Job => "job",
        }
    }
}

/// Object names, in one place so that references between objects cannot drift apart.
pub(crate) mod names {
    use crate::model::Environment;

    pub(crate) fn server(environment: &Environment) -> String {
        format!("erp-server-{}", environment.name())
    }
    pub(crate) fn web(environment: &Environment) -> String {
        format!("erp-web-{}", environment.name())
    }
    pub(crate) fn server_config(environment: &Environment) -> String {
        format!("erp-config-{}", environment.name())
    }
    pub(crate) fn web_config(environment: &Environment) -> String {
        format!("web-config-{}", environment.name())
    }
    pub(crate) fn filestore(environment: &Environment) -> String {
        format!("filestore-{}", environment.name())
    }
    pub(crate) fn ingress(environment: &Environment) -> String {
        format!("erp-{}", environment.name())
    }
}

/// The labels every object of the tenant carries.
pub(crate) fn tenant_labels(model: &TenantModel) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::TENANT.to_string(), model.name.clone()),
    ])
}

/// The tenant's labels plus, where they apply, component and environment.
pub(crate) fn labels_for(
    model: &TenantModel,
    component: Option<Component>,
    environment: Option<&Environment>,
) -> BTreeMap<String, String> {
    let mut labels = tenant_labels(model);
    labels.extend(selector_labels(model, component, environment));
    labels
}

/// The smallest set of labels telling a tenant's pods apart: tenant, component, environment.
/// Workload selectors use exactly these (selectors are immutable, so they must never grow).
pub(crate) fn selector_labels(
    model: &TenantModel,
    component: Option<Component>,
    environment: Option<&Environment>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(labels::TENANT.to_string(), model.name.clone())]);
    if let Some(component) = component {
        labels.insert(labels::COMPONENT.to_string(), component.label().to_string());
    }
    if let Some(environment) = environment {
        labels.insert(labels::ENVIRONMENT.to_string(), environment.name().to_string());
    }
    labels
}

pub(crate) fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels), ..Default::default() }
}

/// Metadata of a namespaced object of the tenant.
pub(crate) fn metadata(ctx: &BuildContext, name: impl Into<String>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ctx.model.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![ctx.owner.clone()]),
        ..Default::default()
    }
}

/// A typed object as a [`Child`] (kind, namespace and name read from the object itself).
pub(crate) fn child<K>(object: &K, create_only: bool) -> Child
where
    K: kube::Resource<DynamicType = ()> + Serialize,
{
    let meta = object.meta();
    let mut body = serde_json::to_value(object).expect("k8s-openapi objects always serialise to JSON");
    // What the operator wants, as a hash on the object: a change of it is a difference the
    // field-by-field comparison sees even when the change only removes fields (which comparing
    // what is wanted against what is there cannot see), also after a restart.
    let hash = content_hash(&body);
    let desired_hash = u64::from_str_radix(&hash, 16).expect("content_hash gives 16 hex digits");
    let metadata = body["metadata"].as_object_mut().expect("every object has metadata");
    let annotations = metadata.entry("annotations").or_insert_with(|| serde_json::json!({}));
    annotations[DESIRED_HASH_ANNOTATION] = serde_json::Value::String(hash);
    Child {
        resource: ApiResource::erase::<K>(&()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        body,
        desired_hash,
        create_only,
    }
}

/// On every child: [`content_hash`] of the rest of the object as the operator wants it.
pub const DESIRED_HASH_ANNOTATION: &str = "tenantry.dev/desired-hash";

/// A stable hash of `value`'s JSON, as 16 hex digits. FNV-1a rather than std's `DefaultHasher`,
/// whose output may change between Rust releases: these hashes end up in object names and
/// annotations, and a new operator build must not rename Jobs or roll every pod.
pub(crate) fn content_hash(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).expect("k8s-openapi objects always serialise to JSON");
    let hash = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

/// The first 8 hex digits of [`content_hash`], for names (short enough to keep Job and pod
/// names within their limits, long enough that two different specs practically never collide).
pub(crate) fn short_hash(value: &impl Serialize) -> String {
    content_hash(value)[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_tell_contents_apart() {
        // Pinned: a different value would rename every Job after an operator upgrade.
        assert_eq!(content_hash(&"production"), "d793d356e42afe08");
        assert_eq!(short_hash(&"production"), "d793d356");
        assert_ne!(content_hash(&["production"]), content_hash(&["production", "test"]));
    }
}
