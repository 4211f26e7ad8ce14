//! The pieces every operation that builds a **work copy** shares (a restore, a test copy): a
//! backup loaded into a new database and file-store folder, and the check that the copy holds
//! what it was made from before anything is cut over to it.
//!
//! A work copy is only ever made from scratch: [`start_over`] drops whatever an interrupted
//! attempt left under the work name, so a rerun never finishes a half-made copy.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::io::SyncIoBridge;

use super::Environment;
use crate::archive::Sink;
use crate::database::{DatabaseName, ErpState};
use crate::error::{Error, Result};
use crate::key::BackupKey;
use crate::manifest::{Manifest, Summary};
use crate::ops::backup::{DATABASE_PART, FILESTORE_PART};
use crate::store::BackupStore;

/// What a loaded backup is checked against, from the manifest the load verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManifestFacts {
    pub fingerprint: BTreeMap<String, u64>,
    pub files: u64,
    pub file_bytes: u64,
}

impl From<&Manifest> for ManifestFacts {
    fn from(manifest: &Manifest) -> Self {
        let files = manifest.part(FILESTORE_PART);
        Self {
            fingerprint: manifest.fingerprint.clone(),
            files: files.map_or(0, |p| p.files),
            file_bytes: files.map_or(0, |p| p.bytes),
        }
    }
}

/// Drops the database and the file-store folder named `work` in `target`, if they exist.
pub(crate) async fn start_over(target: &Environment, work: &str) -> Result<()> {
    target.server.drop_database(&DatabaseName::new(work)?, ErpState::Stopped).await?;
    target.filestore.delete(work).await
}

/// Fills the new work copy `work` of `target` from a backup: the dump into a new database
/// through `pg_restore`, the files into the work folder. Whatever an earlier attempt left is
/// dropped first.
pub(crate) async fn load_backup(
    target: &Environment,
    store: &BackupStore,
    key: &BackupKey,
    summary: &Summary,
    work: &str,
) -> Result<ManifestFacts> {
    start_over(target, work).await?;
    let database = DatabaseName::new(work)?;
    target.server.create_empty(&database, Some(target.server.address().user())).await?;
    let mut restore = target.server.tools().pg_restore(
        target.server.address(),
        &database,
        &["--no-owner", "--role", target.server.address().user()],
    )?;
    let input = restore.take_stdin().expect("pg_restore's input is piped");
    let folder = target.filestore.folder(work)?;
    let sink = WorkCopySink { database: Some(SyncIoBridge::new(input)), folder };
    let (manifest, sink) = store.extract(summary, key, sink).await?;
    drop(sink);
    restore.finish().await?;
    Ok(ManifestFacts::from(&manifest))
}

/// The work copy holds what it was made from: the same rows in every table (`rows`), the
/// same number and size of files when known (`files`: count and bytes), and every attachment
/// row's file. Returns the copy's rows per table.
pub(crate) async fn check_copy(
    target: &Environment,
    work: &str,
    rows: &BTreeMap<String, u64>,
    files: Option<(u64, u64)>,
) -> Result<BTreeMap<String, u64>> {
    let mut connection = target.server.connect(work).await?;
    let copied = crate::fingerprint::read(&mut connection).await?;
    let differing: Vec<String> = rows
        .keys()
        .chain(copied.tables.keys())
        .filter(|table| rows.get(*table) != copied.tables.get(*table))
        .map(|table| {
            let count = |n: Option<&u64>| n.map_or("no table".to_string(), |n| format!("{n} rows"));
            format!(
                "{table}: {} in the source, {} in the copy",
                count(rows.get(table)),
                count(copied.tables.get(table))
            )
        })
        .collect();
    if !differing.is_empty() {
        return Err(Error::Corrupt { part: DATABASE_PART.into(), detail: differing.join("; ") });
    }
    if let Some((expected_files, expected_bytes)) = files {
        let inventory = target.filestore.inventory(work).await?;
        if (inventory.files, inventory.bytes) != (expected_files, expected_bytes) {
            return Err(Error::Corrupt {
                part: FILESTORE_PART.into(),
                detail: format!(
                    "{} files of {} bytes in the copy, the source has {expected_files} files of {expected_bytes} bytes",
                    inventory.files, inventory.bytes
                ),
            });
        }
    }
    let bad = target.filestore.check_attachments(&mut connection, work).await?;
    if !bad.is_empty() {
        return Err(Error::Corrupt {
            part: FILESTORE_PART.into(),
            detail: format!("{} attachments have no file or the wrong content in the copy", bad.len()),
        });
    }
    Ok(copied.tables)
}

/// Where a backup loaded into a work copy goes: the dump into `pg_restore`, the files into the
/// work folder.
struct WorkCopySink {
    database: Option<SyncIoBridge<tokio::process::ChildStdin>>,
    folder: PathBuf,
}

impl Sink for WorkCopySink {
    fn stream(&mut self, part: &str) -> io::Result<&mut dyn Write> {
        match (part, self.database.as_mut()) {
            (DATABASE_PART, Some(input)) => Ok(input),
            _ => Err(io::Error::other(format!("unexpected stream part `{part}` in a backup"))),
        }
    }

    fn directory(&mut self, part: &str, path: &Path) -> io::Result<()> {
        expect_filestore(part)?;
        fs::create_dir_all(self.folder.join(path))
    }

    fn file(&mut self, part: &str, path: &Path, _size: u64, content: &mut dyn Read) -> io::Result<()> {
        expect_filestore(part)?;
        let mut file = fs::File::create_new(self.folder.join(path))?;
        io::copy(content, &mut file).map(drop)
    }
}

fn expect_filestore(part: &str) -> io::Result<()> {
    if part == FILESTORE_PART { Ok(()) } else { Err(io::Error::other(format!("unexpected part `{part}` in a backup"))) }
}
