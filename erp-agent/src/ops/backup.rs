//! Backup of an environment: its database and its file store as they were at one moment, in one
//! encrypted archive streamed to the backup store, then read back and checked.
//!
//! **One moment.** The fingerprint (rows per table) and the dump come from the same snapshot:
//! a read-only `REPEATABLE READ` transaction exports it, counts the rows in it, and `pg_dump
//! --snapshot` dumps exactly that, while the ERP keeps serving. The file store is read after:
//! Tryton writes an attachment's file before the row that names it, so every row in the dump
//! finds its file (files added meanwhile are extra, harmless).
//!
//! **Journal.** Two steps: `prepare` fixes the backup's id and time; `store` writes it (the
//! store's summary, written last, is the commit marker). Killed during `store`, a rerun writes
//! the archive again under the same id; killed after, the rerun finds it complete and only
//! verifies it.
//!
//! **The caller's id.** A caller may choose the id ([`backup_with_id`]), e.g. a Kubernetes Job
//! whose pod, and the journal in it, can be lost: a rerun with a fresh journal and the same id
//! finds the backup complete in the store and returns it, or writes it again under that id.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use tokio_util::io::SyncIoBridge;

use super::Environment;
use crate::error::{Error, Result};
use crate::journal::{Journal, JournalStore, Phase, StepRecord};
use crate::key::{BackupKey, BackupRecipient};
use crate::manifest::{BackupId, BackupKind, Manifest, Summary};
use crate::store::BackupStore;

/// The archive's part holding the database dump (`pg_dump --format=custom`).
pub const DATABASE_PART: &str = "database";
/// The archive's part holding the file store.
pub const FILESTORE_PART: &str = "filestore";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Prepared {
    backup_id: BackupId,
    created_at: DateTime<Utc>,
}

/// Backs `environment` up into `store`, encrypted to `recipient`. When `key` is given the backup
/// is read back in full and checked (the caller that has only the public recipient — a
/// scheduled backup — verifies with the size and SHA-256 the store computed on the way).
pub async fn backup(
    environment: &Environment,
    store: &BackupStore,
    recipient: &BackupRecipient,
    key: Option<&BackupKey>,
    kind: BackupKind,
    journal: &dyn JournalStore,
) -> Result<Summary> {
    backup_with_id(environment, store, recipient, key, kind, None, journal).await
}

/// [`backup`], under the caller's `id` when one is given (otherwise one is made from the time).
/// The id is taken only by a fresh journal; a journal that holds a backup under another id is
/// refused. A backup already stored complete under the id is returned as it is.
pub async fn backup_with_id(
    environment: &Environment,
    store: &BackupStore,
    recipient: &BackupRecipient,
    key: Option<&BackupKey>,
    kind: BackupKind,
    id: Option<&BackupId>,
    journal: &dyn JournalStore,
) -> Result<Summary> {
    let parameters = serde_json::json!({
        "tenant": environment.tenant,
        "environment": environment.name,
        "database": environment.database.as_str(),
        "kind": kind,
    });
    let mut record = match journal.load()? {
        Some(record)
            if record.kind == "backup"
                && record.parameters == parameters
                && id.is_none_or(|id| id.as_str() == record.operation) =>
        {
            record
        }
        Some(other) => {
            return Err(Error::Journal(format!(
                "the journal holds operation {} ({}), not this backup",
                other.operation, other.kind
            )));
        }
        None => {
            let id = id.cloned().unwrap_or_else(|| BackupId::generate(Utc::now()));
            Journal::new(id.as_str(), "backup", parameters)
        }
    };

    let prepared: Prepared = match record.output("prepare") {
        Some(output) => serde_json::from_value(output.clone()).map_err(|e| Error::Journal(e.to_string()))?,
        None => {
            let started = Utc::now();
            let prepared = Prepared { backup_id: BackupId::parse(&record.operation)?, created_at: record.started_at };
            record.done.push(StepRecord {
                step: "prepare".into(),
                started_at: started,
                finished_at: Utc::now(),
                output: serde_json::to_value(&prepared).expect("serializable"),
            });
            journal.save(&record)?;
            prepared
        }
    };

    let summary = match store.summary(&environment.tenant, &environment.name, &prepared.backup_id).await? {
        Some(summary) => summary,
        None => write(environment, store, recipient, kind, &prepared).await?,
    };
    if let Some(key) = key {
        store.verify(&summary, key).await?;
    }
    if !record.is_done("store") {
        let now = Utc::now();
        record.done.push(StepRecord {
            step: "store".into(),
            started_at: prepared.created_at,
            finished_at: now,
            output: serde_json::json!({"backup_id": summary.backup_id, "archive_bytes": summary.archive.bytes}),
        });
    }
    record.phase = Phase::Succeeded;
    journal.save(&record)?;
    Ok(summary)
}

async fn write(
    environment: &Environment,
    store: &BackupStore,
    recipient: &BackupRecipient,
    kind: BackupKind,
    prepared: &Prepared,
) -> Result<Summary> {
    let server = &environment.server;
    // The snapshot: held open (this connection, this transaction) until the dump has read it.
    let mut connection = server.connect(environment.database.as_str()).await?;
    let mut snapshot = connection.begin().await.map_err(Error::database("starting the backup's snapshot"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *snapshot)
        .await
        .map_err(Error::database("making the backup's transaction a snapshot"))?;
    let snapshot_id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *snapshot)
        .await
        .map_err(Error::database("exporting the backup's snapshot"))?;
    let fingerprint = crate::fingerprint::read_in(&mut snapshot).await?;

    let mut manifest = Manifest::new(
        prepared.backup_id.clone(),
        &environment.tenant,
        &environment.name,
        kind,
        prepared.created_at,
        environment.erp.clone(),
    )?;
    manifest.fingerprint = fingerprint.tables.clone();
    manifest.modules = fingerprint.modules.iter().map(|m| (m.clone(), environment.erp.version.clone())).collect();
    manifest.tools = tool_versions(environment).await?;

    let snapshot_arg = format!("--snapshot={snapshot_id}");
    let mut dump = server.tools().pg_dump(
        server.address(),
        &environment.database,
        // Uncompressed: the archive compresses everything once, with zstd.
        &["--format=custom", "--compress=0", &snapshot_arg],
    )?;
    let output = dump.take_stdout().expect("pg_dump's output is piped");
    let folder = environment.filestore.folder(environment.database.as_str())?;
    let empty = tempfile::tempdir().map_err(Error::io("making an empty file store", std::env::temp_dir()))?;
    let files = if folder.is_dir() { folder } else { empty.path().to_path_buf() };

    let stored = store
        .put(manifest, recipient, move |writer| {
            writer.append_stream(DATABASE_PART, SyncIoBridge::new(output))?;
            // The dump's exit status is known only now: a failed dump fails the backup before
            // its summary (the commit marker) is written.
            tokio::runtime::Handle::current().block_on(dump.finish())?;
            writer.append_dir(FILESTORE_PART, &files)?;
            Ok(())
        })
        .await;
    snapshot.rollback().await.map_err(Error::database("ending the backup's snapshot"))?;
    stored
}

async fn tool_versions(environment: &Environment) -> Result<BTreeMap<String, String>> {
    let tools = environment.server.tools();
    Ok(BTreeMap::from([
        ("pg_dump".to_string(), tools.version("pg_dump").await?),
        ("postgresql".to_string(), environment.server.server_version().await?),
        ("tenantry-agent".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ]))
}
