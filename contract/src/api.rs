//! The `Tenant` custom resource (`tenantry.dev/v1alpha1`): the contract between the control
//! plane, which writes the spec, and the operator, which writes the status. Both crates use these
//! types; the CRD YAML in `charts/` is generated from them.
//!
//! The schema is deliberately lenient where the operator's validation is precise: versions,
//! profiles, hosts and sizes are plain strings and integers here, so that any object the
//! apiserver accepts can be read, and a wrong value becomes `phase: Invalid` with a message on
//! that one Tenant instead of an object no client can decode.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer company: one ERP (server, web client, PostgreSQL) in the namespace `tenant-<name>`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tenantry.dev",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    shortname = "tn",
    category = "tenantry",
    status = "TenantStatus",
    derive = "PartialEq",
    doc = "A customer company: one ERP application server, web client and PostgreSQL database per environment, in the namespace tenant-<name>.",
    printcolumn = r#"{"name": "Plan", "type": "string", "jsonPath": ".spec.plan"}"#,
    printcolumn = r#"{"name": "Version", "type": "string", "jsonPath": ".spec.erp.version"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "URL", "type": "string", "jsonPath": ".status.url"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// The company's name as people read it.
    pub display_name: String,
    /// The subscription plan's name (the control plane fills `resources` from it).
    pub plan: String,
    /// Licensed seats, passed to the ERP as configuration.
    #[serde(default)]
    pub seats: i64,
    pub erp: ErpSpec,
    #[serde(default)]
    pub resources: ResourcesSpec,
    #[serde(default)]
    pub environments: EnvironmentsSpec,
    /// Scale every workload to zero and keep all data.
    #[serde(default)]
    pub suspended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// What deleting the Tenant does to its data.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Scheduled backups of production, their retention and their store; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupsSpec {
    /// When scheduled backups are taken: five cron fields in UTC (`30 2 * * *`), slots at least
    /// 15 minutes apart.
    pub schedule: String,
    #[serde(default)]
    pub retention: RetentionSpec,
    pub storage: BackupStorageSpec,
}

/// Which backups are kept; a backup is deleted when no rule keeps it. Held backups and the
/// newest one are always kept. (Signed, as Kubernetes' integers are: the operator refuses a
/// negative one.)
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Every backup younger than this many days (the plan's "backups kept N days").
    #[serde(default)]
    pub keep_all_days: i64,
    /// The newest backup of each of the last N calendar days (UTC) that have one.
    #[serde(default)]
    pub daily: i64,
    #[serde(default)]
    pub weekly: i64,
    #[serde(default)]
    pub monthly: i64,
    /// Backups taken before an operation, younger than this many days.
    #[serde(default)]
    pub before_operation_days: i64,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageSpec {
    /// The store: `s3://bucket/prefix` (any S3-compatible service), `gs://…` or `az://…`.
    pub url: String,
    /// A Secret in the operator's namespace holding the store's credentials as environment
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`, …); one the
    /// chart lets the operator read (`operator.backups.credentialsSecrets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErpSpec {
    /// `tryton` (default), `odoo`, or `custom` (every role field set by hand in `custom`).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Overrides the profile's server image repository (the tag is always the version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `A.B.C`; an odd B is a development release, refused in production.
    pub version: String,
    /// Modules to install (activate) on top of the profile's base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// Extra server configuration options, `section.option: value` (`web.cache_timeout: 300`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The roles of the `custom` profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomProfile>,
}

pub fn default_profile() -> String {
    "tryton".to_string()
}

/// Everything a built-in profile defines, set by hand.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomProfile {
    pub server: RoleSpec,
    pub web: RoleSpec,
    /// Command that initialises or updates every module of a database; `{database}` and
    /// `{config}` are replaced.
    pub update_all_command: Vec<String>,
}

/// How one role (server or web client) runs.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    /// Image repository; the tag is the ERP version.
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    pub port: i32,
    /// HTTP path answering 200 when the role is ready.
    pub readiness_path: String,
    /// HTTP path answering 200 while the role is alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_path: Option<String>,
}

/// CPU and memory of one role, as Kubernetes quantities (`500m`, `1Gi`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesSpec {
    #[serde(default)]
    pub server: ComputeResources,
    #[serde(default)]
    pub web: ComputeResources,
    #[serde(default)]
    pub database: ComputeResources,
    /// Size of the PostgreSQL volume (default `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_storage: Option<String>,
    /// Size of the ERP's file store volume, per environment (default `5Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filestore_storage: Option<String>,
    #[serde(default)]
    pub quota: QuotaSpec,
}

/// The namespace's ResourceQuota.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentsSpec {
    /// Always present; the defaults serve it.
    #[serde(default)]
    pub production: EnvironmentSpec,
    /// A place to try changes, patches and upgrades before production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<EnvironmentSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// This environment's ERP version, if not `erp.version` (the test environment may run
    /// another one, development versions included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// ERP server replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_replicas: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// The production host. The test environment's host is this one with `test` inserted as its
    /// second label (`acme.erp.example.com` → `acme.test.erp.example.com`, see [`test_host`]).
    /// No two Tenants may use the same host in any environment: the one that serves a host first
    /// keeps it.
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// cert-manager ClusterIssuer that issues the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_issuer: Option<String>,
    /// An existing TLS Secret to use instead of cert-manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Serve the ingress controller's default certificate: one wildcard certificate for the
    /// provider's domain (`*.<domain>` and `*.test.<domain>`) instead of one per tenant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_default_certificate: bool,
}

/// The test environment's host for a production host: `test` becomes its second label, so that
/// it can never equal any tenant's production host `<slug>.<domain>` (a slug is one label, and
/// `test` is not a slug), and one wildcard certificate for `*.test.<domain>` covers every test
/// environment.
pub fn test_host(production_host: &str) -> String {
    match production_host.split_once('.') {
        Some((first, rest)) => format!("{first}.test.{rest}"),
        None => format!("{production_host}.test"),
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the database volume and the secrets (in the retained namespace) so the tenant can be
    /// restored.
    #[default]
    Retain,
    /// Remove the namespace with everything in it.
    Delete,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Provisioning,
    Ready,
    Degraded,
    Suspended,
    Invalid,
    Deleting,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "phase_schema")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The production URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<EnvironmentStatus>,
}

/// `phase` is optional, but a `null` member in its enum (what an `Option` of an enum derives)
/// makes a v1.20 apiserver misread the whole CRD; absent is how it is left unset.
fn phase_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Pending", "Provisioning", "Ready", "Degraded", "Suspended", "Invalid", "Deleting"],
    })
}

/// A condition in the Kubernetes convention: `lastTransitionTime` changes only when `status` does.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// `production` or `test`.
    pub name: String,
    pub version: String,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupsStatus {
    /// The newest completed backup of production: its `TenantBackup`'s name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful: Option<String>,
    /// When it completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_at: Option<String>,
    /// The schedule's next slot (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled_at: Option<String>,
}

/// Condition types.
pub mod condition {
    /// False when a scheduled slot passed more than the grace period ago without a completed
    /// backup after it.
    pub const BACKUPS_CURRENT: &str = "BackupsCurrent";
    pub const READY: &str = "Ready";
    pub const VALID: &str = "Valid";
    pub const DATABASE_READY: &str = "DatabaseReady";
    pub const SERVER_READY: &str = "ServerReady";
    pub const WEB_READY: &str = "WebReady";
    /// True once an environment's public host changed from what the status last announced
    /// (as when test hosts moved from `test-<host>` to the
    /// scheme of [`super::test_host`]): the message names both hosts.
    pub const HOST_CHANGED: &str = "HostChanged";
    /// Whether the tenant's whole stack fits its own quota. False only for a tenant that was
    /// running before its quota was found too small (a new one is Invalid instead).
    pub const QUOTA_FITS: &str = "QuotaFits";
}

pub mod backup;

/// Labels and names every party relies on: the contract's.
pub use crate::names::{labels, namespace_of};
