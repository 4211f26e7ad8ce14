//! What a backup says about itself.
//!
//! - The [`Manifest`] (JSON, the last entry of the archive, and a copy beside it, both
//!   encrypted): who and what was backed up, the ERP and its modules, a fingerprint of the
//!   database (rows per table), and the size and SHA-256 of every part. A restore is accepted
//!   only when every part matches it.
//! - The [`Summary`] (JSON, plaintext, written last into the store as the backup's commit
//!   marker): what listing and retention need without the key. It holds no customer data:
//!   identifiers, dates, the ERP version, the archive's size and SHA-256, a fingerprint of the
//!   key it was encrypted to, the database fingerprint's totals (tables, rows) and the hold flag.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version of the archive layout and manifest; a reader refuses a newer one.
pub const FORMAT_VERSION: u32 = 1;

/// A backup's identifier: `YYYYMMDDTHHMMSSZ-<8 hex>`, so that sorting by name sorts by time,
/// and two backups started in the same second still differ.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

impl BackupId {
    pub fn generate(at: DateTime<Utc>) -> Self {
        Self(tenantry_contract::names::backup_id(at, rand::random()))
    }

    /// Accepts any name that is safe as one path segment of an object store
    /// (`[A-Za-z0-9._-]`, not starting with a dot), so a caller may also bring its own.
    pub fn parse(text: &str) -> Result<Self> {
        check_segment("backup id", text)?;
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BackupId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> Self {
        id.0
    }
}

/// Tenant, environment and backup names become object store path segments: nothing that could
/// climb out of the prefix or be read two ways.
pub(crate) fn check_segment(what: &str, text: &str) -> Result<()> {
    let valid = !text.is_empty()
        && text.len() <= 128
        && !text.starts_with('.')
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid { Ok(()) } else { Err(Error::Invalid(format!("{what} {text:?} is not a name of [A-Za-z0-9._-]"))) }
}

/// Why a backup was taken; retention treats them differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum BackupKind {
    Scheduled,
    Manual,
    /// Taken automatically before a risky operation (an update, an upgrade, a restore).
    BeforeOperation {
        operation: String,
    },
}

/// The ERP that wrote the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpInfo {
    /// The ERP profile (`tryton`, `odoo`, `custom`).
    pub profile: String,
    /// Its version, `A.B.C`.
    pub version: String,
}

/// What kind of data a part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    /// A byte stream of unknown length (a database dump), stored as `NAME/part-000000`, … .
    Stream,
    /// A directory tree (the file store), stored as `NAME/…` one entry per file and directory.
    Directory,
}

/// Size and SHA-256 of one part, computed while it was written and checked while it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDigest {
    pub name: String,
    pub kind: PartKind,
    /// Bytes of data (a directory: of all its files).
    pub bytes: u64,
    /// Files in a directory part (0 for a stream).
    pub files: u64,
    /// Hex SHA-256: of the stream; of a directory, over its entries in the archive's order (see
    /// [`crate::archive`]).
    pub sha256: String,
}

/// Everything a backup says about itself; the archive's last entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: BackupId,
    pub tenant: String,
    pub environment: String,
    pub kind: BackupKind,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    pub erp: ErpInfo,
    /// Activated modules and their versions.
    pub modules: BTreeMap<String, String>,
    /// Rows per table when the dump was taken: a restored database must show the same.
    pub fingerprint: BTreeMap<String, u64>,
    /// Versions of the tools that made the parts (`pg_dump`, the agent…), as the caller gives them.
    pub tools: BTreeMap<String, String>,
    /// Filled by [`crate::archive::ArchiveWriter::finish`] from what it wrote.
    pub parts: Vec<PartDigest>,
}

impl Manifest {
    /// A manifest without parts, for [`crate::archive::ArchiveWriter::finish`] to complete.
    pub fn new(
        backup_id: BackupId,
        tenant: &str,
        environment: &str,
        kind: BackupKind,
        created_at: DateTime<Utc>,
        erp: ErpInfo,
    ) -> Result<Self> {
        check_segment("tenant", tenant)?;
        check_segment("environment", environment)?;
        Ok(Self {
            format: FORMAT_VERSION,
            backup_id,
            tenant: tenant.to_string(),
            environment: environment.to_string(),
            kind,
            created_at,
            erp,
            modules: BTreeMap::new(),
            fingerprint: BTreeMap::new(),
            tools: BTreeMap::new(),
            parts: Vec::new(),
        })
    }

    pub fn part(&self, name: &str) -> Option<&PartDigest> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// Bytes of data in all parts (before compression).
    pub fn data_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let manifest: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::Corrupt { part: "manifest".into(), detail: e.to_string() })?;
        if manifest.format > FORMAT_VERSION {
            return Err(Error::Invalid(format!(
                "backup format {} is newer than this agent's ({FORMAT_VERSION}); use a newer agent",
                manifest.format
            )));
        }
        Ok(manifest)
    }
}

/// Size and SHA-256 of the stored (encrypted) archive object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// The plaintext description of a stored backup, for listing and retention without the key.
/// Nothing in it is customer data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub format: u32,
    pub backup_id: BackupId,
    pub tenant: String,
    pub environment: String,
    pub kind: BackupKind,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    pub erp: ErpInfo,
    /// Bytes of data before compression and encryption.
    pub data_bytes: u64,
    /// The stored archive object.
    pub archive: ObjectDigest,
    /// [`crate::key::BackupRecipient::fingerprint`] of the key the backup was encrypted to.
    pub key_fingerprint: String,
    /// The totals of the manifest's fingerprint (zero in summaries written before they were
    /// recorded).
    #[serde(default)]
    pub fingerprint: FingerprintTotals,
    /// A held backup is never deleted (by retention or by hand) until released.
    pub held: bool,
}

/// How much the database held when the backup was taken: the tables of the manifest's
/// fingerprint and the sum of their rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FingerprintTotals {
    pub tables: u64,
    pub rows: u64,
}

impl FingerprintTotals {
    pub fn of(fingerprint: &BTreeMap<String, u64>) -> Self {
        Self { tables: fingerprint.len() as u64, rows: fingerprint.values().sum() }
    }
}

impl Summary {
    pub fn new(manifest: &Manifest, archive: ObjectDigest, key_fingerprint: String) -> Self {
        Self {
            format: manifest.format,
            backup_id: manifest.backup_id.clone(),
            tenant: manifest.tenant.clone(),
            environment: manifest.environment.clone(),
            kind: manifest.kind.clone(),
            created_at: manifest.created_at,
            erp: manifest.erp.clone(),
            data_bytes: manifest.data_bytes(),
            archive,
            key_fingerprint,
            fingerprint: FingerprintTotals::of(&manifest.fingerprint),
            held: false,
        }
    }
}

impl Summary {
    /// What [`crate::retention`] needs to know of this backup.
    pub fn retention_entry(&self) -> crate::retention::BackupEntry {
        use crate::retention::BackupKind as Retention;
        crate::retention::BackupEntry {
            id: self.backup_id.to_string(),
            created_at: self.created_at,
            kind: match self.kind {
                BackupKind::Scheduled => Retention::Scheduled,
                BackupKind::Manual => Retention::Manual,
                BackupKind::BeforeOperation { .. } => Retention::BeforeOperation,
            },
            held: self.held,
        }
    }
}

/// Timestamps as RFC 3339 in UTC with a `Z`, whole seconds or finer as given.
mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let at = DateTime::parse_from_rfc3339("2026-12-06T18:00:00Z").unwrap().with_timezone(&Utc);
        let mut m = Manifest::new(
            BackupId::generate(at),
            "acme",
            "production",
            BackupKind::BeforeOperation { operation: "upgrade".into() },
            at,
            ErpInfo { profile: "tryton".into(), version: "7.0.59".into() },
        )
        .unwrap();
        m.fingerprint.insert("party_party".into(), 50);
        m
    }

    #[test]
    fn the_manifest_reads_back_as_written_in_its_documented_form() {
        let m = manifest();
        let json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(json["kind"], serde_json::json!({"type": "before-operation", "operation": "upgrade"}));
        assert_eq!(json["created_at"], "2026-12-06T18:00:00Z");
        assert_eq!(json["fingerprint"]["party_party"], 50);
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn retention_sees_the_summary_as_it_is() {
        let m = manifest();
        let digest = ObjectDigest { bytes: 10, sha256: "00".repeat(32) };
        let mut summary = Summary::new(&m, digest, "0123456789abcdef".into());
        summary.held = true;
        let entry = summary.retention_entry();
        assert_eq!(entry.id, m.backup_id.to_string());
        assert_eq!(entry.created_at, m.created_at);
        assert_eq!(entry.kind, crate::retention::BackupKind::BeforeOperation);
        assert!(entry.held);
    }

    #[test]
    fn the_summary_totals_the_fingerprint_and_reads_summaries_written_before() {
        let mut m = manifest();
        m.fingerprint.insert("ir_attachment".into(), 7);
        m.fingerprint.insert("res_user".into(), 0);
        let digest = ObjectDigest { bytes: 10, sha256: "00".repeat(32) };
        let summary = Summary::new(&m, digest, "0123456789abcdef".into());
        assert_eq!(summary.fingerprint, FingerprintTotals { tables: 3, rows: 57 });
        let mut json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["fingerprint"], serde_json::json!({"tables": 3, "rows": 57}));
        assert_eq!(serde_json::from_value::<Summary>(json.clone()).unwrap(), summary);

        // A summary.json written before the totals were recorded still reads, with zeros.
        json.as_object_mut().unwrap().remove("fingerprint");
        let old: Summary = serde_json::from_value(json).unwrap();
        assert_eq!(old.fingerprint, FingerprintTotals::default());
        assert_eq!(old.backup_id, summary.backup_id);
    }

    #[test]
    fn a_newer_format_is_refused() {
        let mut m = manifest();
        m.format = FORMAT_VERSION + 1;
        assert!(matches!(Manifest::from_json(&m.to_json()), Err(Error::Invalid(_))));
        assert!(matches!(Manifest::from_json(b"{"), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn ids_sort_by_time_and_names_cannot_climb_out() {
        let early = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        let late = DateTime::parse_from_rfc3339("2026-11-02T03:04:05Z").unwrap().with_timezone(&Utc);
        let (a, b) = (BackupId::generate(early), BackupId::generate(late));
        assert!(a.as_str().starts_with("20260102T030405Z-"), "{a}");
        assert!(a < b);
        assert_eq!(BackupId::parse(a.as_str()).unwrap(), a);
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "ä"] {
            assert!(BackupId::parse(bad).is_err(), "{bad:?} accepted");
        }
        let at = early;
        let erp = ErpInfo { profile: "tryton".into(), version: "7.0.0".into() };
        assert!(Manifest::new(a.clone(), "acme/../x", "production", BackupKind::Manual, at, erp.clone()).is_err());
        assert!(Manifest::new(a, "acme", "", BackupKind::Manual, at, erp).is_err());
    }
}
