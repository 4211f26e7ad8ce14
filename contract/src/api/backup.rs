//! The `TenantBackup` custom resource: one backup of one environment of a tenant, made by the
//! ERP agent in a Job beside the tenant's database and stored, encrypted to the tenant's key, in
//! the tenant's backup store. The object is the backup's record in the cluster: deleting it
//! deletes the stored archive (unless the backup is held); retention deletes objects, never
//! archives behind their back.
//!
//! Cluster-scoped like the `Tenant`, named `<tenant>-<backup id in lower case>`, labelled with
//! the tenant's name ([`super::labels::TENANT`]) so one tenant's backups are one label selector.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tenantry.dev",
    version = "v1alpha1",
    kind = "TenantBackup",
    plural = "tenantbackups",
    shortname = "tbk",
    category = "tenantry",
    status = "TenantBackupStatus",
    derive = "PartialEq",
    doc = "One backup of one environment of a tenant, stored encrypted in the tenant's backup store; deleting it deletes the archive unless held.",
    printcolumn = r#"{"name": "Tenant", "type": "string", "jsonPath": ".spec.tenant"}"#,
    printcolumn = r#"{"name": "Environment", "type": "string", "jsonPath": ".spec.environment"}"#,
    printcolumn = r#"{"name": "Kind", "type": "string", "jsonPath": ".spec.kind"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Bytes", "type": "integer", "jsonPath": ".status.archiveBytes"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantBackupSpec {
    /// The Tenant's name.
    pub tenant: String,
    /// `production` (default) or `test`.
    #[serde(default = "production")]
    pub environment: String,
    #[serde(default)]
    pub kind: BackupKind,
    /// For `BeforeOperation`: the operation it was taken for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// For `Scheduled`: the schedule's slot it was taken for (RFC 3339), by which missed slots
    /// are caught up once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// A held backup is deleted neither by retention nor with its object: deleting the object
    /// waits until the hold is released.
    #[serde(default)]
    pub hold: bool,
}

fn production() -> String {
    "production".into()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackupKind {
    Scheduled,
    #[default]
    Manual,
    BeforeOperation,
}

impl BackupKind {
    /// The agent's `--kind` value.
    pub fn agent_flag(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
            Self::BeforeOperation => "before-operation",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantBackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "phase_schema")]
    pub phase: Option<BackupPhase>,
    /// The id in the store, chosen before the Job starts so a Job's retry continues the same
    /// backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The store's URL of the backup's folder (no credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Bytes of the stored archive (compressed, encrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_bytes: Option<i64>,
    /// Bytes of data before compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bytes: Option<i64>,
    /// SHA-256 of the stored archive, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The ERP version the backup was taken of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erp_version: Option<String>,
    /// The fingerprint's summary: tables and rows counted in the backup's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// Fingerprint of the key the archive is encrypted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Why it failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupPhase {
    /// Accepted, waiting for its turn (the tenant's key, a free slot on the node).
    Pending,
    /// Its Job runs.
    Running,
    /// Stored and read back.
    Completed,
    /// Not stored; the message says why. A failed backup holds no archive.
    Failed,
}

/// See the Tenant's `phase_schema`: an enum without a `null` member.
fn phase_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Pending", "Running", "Completed", "Failed"],
    })
}
