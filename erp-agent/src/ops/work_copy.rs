//! The pieces every operation that builds a **work copy** shares (a restore, a test copy): a
//! backup loaded into a new database and file-store folder, and the check that the copy holds
//! what it was made from before anything is cut over to it.
//!
//! A work copy is only ever made from scratch: [`start_over`] drops whatever an interrupted
//! attempt left under the work name, so a rerun never finishes a half-made copy.
//!
//! The cut-over ([`swap_in`], undone by [`swap_out`]) copes with an environment that has no
//! file-store folder (a database without attachments has none): the `stop` step
//! ([`stop_erp`]) records whether it has one, once the ERP is stopped and nothing can make one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::io::SyncIoBridge;

use super::{Databases, Environment, ErpControl, Folders};
use crate::archive::Sink;
use crate::cutover::{Swap, cut_back, cut_over, put_in_place, take_out};
use crate::database::{DatabaseName, ErpState};
use crate::error::{Error, Result};
use crate::journal::Journal;
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
    // A backup without attachments has no folder to extract: the work copy gets an empty one
    // all the same, so whatever is cut over later is always the copy's own.
    let folder = target.filestore.folder(work)?;
    fs::create_dir_all(&folder).map_err(Error::io("creating a file-store folder", folder))?;
    Ok(ManifestFacts::from(&manifest))
}

/// The `stop` step of an operation that cuts a work copy over: the ERP stopped, then whether
/// the environment has a file-store folder, recorded now that nothing can make one before the
/// cut-over (the ERP makes it with the first attachment). Run again, it finds the same.
pub(crate) async fn stop_erp(environment: &Environment, erp: &impl ErpControl) -> Result<serde_json::Value> {
    erp.stop().await?;
    let had_folder = environment.filestore.exists(environment.database.as_str())?;
    Ok(serde_json::json!({ "had_folder": had_folder }))
}

/// Whether the environment had a file-store folder when its ERP stopped; `None` if the `stop`
/// step is not recorded (then nothing was cut over). A journal written before the record
/// existed means it had one (the only case those versions handled).
fn had_folder(journal: &Journal) -> Option<bool> {
    journal.output("stop").map(|output| output.get("had_folder").and_then(serde_json::Value::as_bool).unwrap_or(true))
}

/// The cut-over: the work copy `work` (database and folder) in place of `environment`'s, the
/// originals kept under `kept` (a folder only if there was one). What the step records.
pub(crate) async fn swap_in(
    environment: &Environment,
    journal: &Journal,
    work: &str,
    kept: &str,
) -> Result<serde_json::Value> {
    let had_folder = had_folder(journal)
        .ok_or_else(|| Error::Journal("the journal has no record of the ERP's stop before the cut-over".into()))?;
    let swap = Swap { live: environment.database.as_str(), replacement: work, kept };
    cut_over(&Databases(&environment.server), swap).await?;
    put_in_place(&Folders(&environment.filestore), swap, had_folder).await?;
    Ok(serde_json::json!({ "kept": kept }))
}

/// Undoes [`swap_in`], wherever it stopped: the originals live again, the work copy back under
/// `work` (for the caller to drop). Run with the ERP stopped.
pub(crate) async fn swap_out(environment: &Environment, journal: &Journal, work: &str, kept: &str) -> Result<()> {
    let swap = Swap { live: environment.database.as_str(), replacement: work, kept };
    // Without the stop's record nothing was cut over, and the folder's state says nothing.
    if let Some(had_folder) = had_folder(journal) {
        take_out(&Folders(&environment.filestore), swap, had_folder).await?;
    }
    cut_back(&Databases(&environment.server), swap).await
}

/// Connections counting a work copy's rows at once: the largest table's count already uses
/// PostgreSQL's parallel workers, the others (hundreds of small tables) mostly wait on round
/// trips, which a few connections overlap.
const COUNTING_CONNECTIONS: usize = 4;

/// The work copy holds what it was made from: the same rows in every table (`rows`), the
/// same number and size of files when known (`files`: count and bytes), and every attachment
/// row's file. Returns the copy's rows per table.
pub(crate) async fn check_copy(
    target: &Environment,
    work: &str,
    rows: &BTreeMap<String, u64>,
    files: Option<(u64, u64)>,
) -> Result<BTreeMap<String, u64>> {
    // The rows are PostgreSQL's work, the files the agent's: both at once.
    let counting = async {
        let connections =
            futures::future::try_join_all((0..COUNTING_CONNECTIONS).map(|_| target.server.connect(work))).await?;
        crate::fingerprint::count_rows_of_quiet_database(connections).await
    };
    let (copied, files_checked) = tokio::join!(counting, check_files(target, work, files));
    let copied = copied?;
    let differing: Vec<String> = rows
        .keys()
        .chain(copied.keys())
        .filter(|table| rows.get(*table) != copied.get(*table))
        .map(|table| {
            let count = |n: Option<&u64>| n.map_or("no table".to_string(), |n| format!("{n} rows"));
            format!("{table}: {} in the source, {} in the copy", count(rows.get(table)), count(copied.get(table)))
        })
        .collect();
    if !differing.is_empty() {
        return Err(Error::Corrupt { part: DATABASE_PART.into(), detail: differing.join("; ") });
    }
    files_checked?;
    Ok(copied)
}

/// The copy's file store: the number and size of its files when known (`expected`), and every
/// attachment row's file with the content its id names.
async fn check_files(target: &Environment, work: &str, expected: Option<(u64, u64)>) -> Result<()> {
    if let Some((expected_files, expected_bytes)) = expected {
        let (files, bytes) = target.filestore.tally(work).await?;
        if (files, bytes) != (expected_files, expected_bytes) {
            return Err(Error::Corrupt {
                part: FILESTORE_PART.into(),
                detail: format!(
                    "{files} files of {bytes} bytes in the copy, the source has {expected_files} files of {expected_bytes} bytes"
                ),
            });
        }
    }
    let mut connection = target.server.connect(work).await?;
    let bad = target.filestore.check_attachments(&mut connection, work).await?;
    if !bad.is_empty() {
        return Err(Error::Corrupt {
            part: FILESTORE_PART.into(),
            detail: format!("{} attachments have no file or the wrong content in the copy", bad.len()),
        });
    }
    Ok(())
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
