//! The pure builders: a validated [`TenantModel`] in, the Kubernetes objects the tenant needs
//! out. Nothing here talks to a cluster, so every object is unit-tested from small fixtures.
//!
//! Every object carries the tenant's labels and an owner reference to its Tenant; names are
//! stable, except Jobs, whose names end in a hash of the work they do. Only fields that a
//! Kubernetes 1.20 apiserver knows are used.
//!
//! A suspended tenant runs nothing: its workloads are scaled to zero and its Jobs are not
//! wanted (all data, configuration and Services stay).

pub mod backup;
mod common;
mod config;
mod database;
mod erp;
mod ingress;
mod namespace;
mod network;
mod pod;
mod secrets;

/// Small models and contexts for unit tests, here and in the operator's (feature `fixtures`).
#[cfg(any(test, feature = "fixtures"))]
pub mod fixture;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, PersistentVolumeClaim, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::ApiResource;

use crate::model::TenantModel;
use crate::placement::Placement;
use crate::profile::ImageDefaults;

pub use secrets::GeneratedSecrets;

/// One object the operator wants to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub resource: ApiResource,
    /// `None` for the Namespace itself.
    pub namespace: Option<String>,
    pub name: String,
    /// The full object: apiVersion, kind, metadata (labels, annotations, ownerReferences), spec.
    pub body: serde_json::Value,
    /// [`DESIRED_HASH_ANNOTATION`](common::DESIRED_HASH_ANNOTATION) of `body`, as a number.
    pub desired_hash: u64,
    /// Created once and never updated. The generated Secrets: updating them would lose the
    /// passwords the database and the ERP were initialised with. And Jobs: a Job runs once, its
    /// pod template is immutable, and its name already says what it does (new work is a new
    /// name), so a later change of something incidental (resources, a seat count in the
    /// configuration) neither reruns it nor makes an update the apiserver refuses.
    pub create_only: bool,
}

pub struct BuildContext<'a> {
    pub model: &'a TenantModel,
    /// The Tenant (controller: true, blockOwnerDeletion: true).
    pub owner: OwnerReference,
    pub images: &'a ImageDefaults,
    /// Labels selecting the namespace(s) of the ingress controller (NetworkPolicy
    /// namespaceSelector). Empty means "no ingress controller known": the web pods then accept
    /// no traffic at all rather than traffic from every namespace.
    pub ingress_controller_namespace: &'a BTreeMap<String, String>,
    /// Node selector and tolerations of every pod.
    pub placement: &'a Placement,
    /// The TCP ports the backup store listens on (443 for the clouds' stores), the only ones
    /// backup pods may reach outside the namespace.
    pub backup_store_ports: &'a [i32],
}

/// The generated Secrets: the PostgreSQL user's and the ERP master password's (the contract's
/// names, [`tenantry_contract::names::secrets`]).
pub use tenantry_contract::names::secrets::{
    BACKUP_KEY, DATABASE as DATABASE_SECRET, MASTER_PASSWORD as MASTER_PASSWORD_SECRET,
};

/// Everything the tenant needs except the generated Secrets, in apply order: the Namespace,
/// then what constrains pods (quota, limits, network policies) before any pod exists, then
/// configuration, then workloads. The caller creates [`secrets`] right after the Namespace.
pub fn desired(ctx: &BuildContext) -> Vec<Child> {
    let mut children = namespace::children(ctx);
    children.extend(network::children(ctx));
    children.extend(config::children(ctx));
    children.extend(database::children(ctx));
    for environment in &ctx.model.environments {
        children.extend(erp::children(ctx, environment));
    }
    children.extend(ingress::children(ctx));
    children
}

/// A typed object built elsewhere (a backup's Job) as a [`Child`] the caller applies.
pub fn child_of<K>(object: &K) -> Child
where
    K: kube::Resource<DynamicType = ()> + serde::Serialize,
{
    common::child(object, true)
}

/// The generated Secrets (create_only), from values made once by the caller.
pub fn secrets(ctx: &BuildContext, values: &GeneratedSecrets) -> Vec<Child> {
    secrets::children(ctx, values)
}

/// Every namespaced kind the operator manages (for watches and label-based garbage
/// collection).
///
/// Secrets and PersistentVolumeClaims are among them but hold the tenant's data: the passwords
/// the database was initialised with, the database itself (`data-postgres-0`) and the file
/// stores. A garbage collection must never delete the generated Secrets nor the database
/// volume, and a `Retain` deletion must release them (as the Namespace) from their owner.
pub fn managed_kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<ResourceQuota>(&()),
        ApiResource::erase::<LimitRange>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<PersistentVolumeClaim>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<Ingress>(&()),
    ]
}
