//! A neutralized test copy: the test environment becomes a copy of production — read live, or
//! from one of production's backups — then neutralized ([`crate::neutralize`]: crons off, task
//! queue emptied, integration credentials blanked, the copy marked) and verified. Anything still
//! live fails the operation, which is then rolled back: the test environment keeps what it had.
//!
//! **Journal.** `prepare` (names fixed: the work copy `<test db>__work_<operation>`, the name
//! the test environment's current database will be kept under, and whether the test
//! environment has a database and a file-store folder at all) → `copy` (the work copy made and
//! checked against its source: the same rows in every table, every attachment's file) →
//! `neutralize` → `verify` → `stop` (the test ERP) → `cut-over` → `start`. Killed before
//! `cut-over`, a rerun makes the work copy again from scratch; killed during it, the rerun
//! finishes the renames. A failing step undoes everything: the work copy is dropped, a cut-over
//! is cut back, and the test ERP is started again on what it served before.
//!
//! **Live source.** One read-only `REPEATABLE READ` transaction on production exports a
//! snapshot and counts its rows; `pg_dump --snapshot` streams exactly that into `pg_restore`
//! on the test environment's server, while production keeps serving. Production's attachment
//! folder is copied after the dump (Tryton writes a file before the row naming it, so every
//! copied row finds its file): hard links when both environments share one attachment store,
//! bytes otherwise.
//!
//! **What it never does.** It never stops production and never writes to it (a dump, a
//! snapshot transaction that is read-only, files read or linked); it never copies a database
//! with `CREATE DATABASE … TEMPLATE`, which would need production's ERP stopped. It never
//! changes the test environment in place: its current database and folder are renamed aside to
//! `<test db>__replaced_<UTC time>` and kept until [`super::release`]d. A first test copy (the
//! test environment has no database yet) has nothing to keep. Outgoing mail is not in the
//! database: every process serving the copy must run with `[email] uri` set to a sink
//! ([`crate::neutralize::MAIL_SINK_URI`]); the report says so.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::Connection;

use super::work_copy::{check_copy, load_backup, start_over};
use super::{Databases, Environment, ErpControl, Folders, run_steps};
use crate::cutover::{Swap, put_in_place, take_out};
use crate::database::{DatabaseName, replaced_name, work_copy_name};
use crate::error::{Error, Result};
use crate::fingerprint::{self, Fingerprint};
use crate::journal::{Journal, JournalStore};
use crate::key::BackupKey;
use crate::manifest::{BackupId, Summary};
use crate::neutralize::{self, MAIL_SINK_URI, Neutralized};
use crate::report::Report;
use crate::store::BackupStore;
use tenantry_contract::version::ErpVersion;

/// What the test environment is copied from.
pub enum CopySource<'a> {
    /// Production as it is now, read while it runs (pg_dump's consistent snapshot streamed into
    /// pg_restore; never CREATE DATABASE TEMPLATE, which would need production stopped).
    Live,
    /// One of production's backups (e.g. the one just taken).
    Backup { store: &'a BackupStore, key: &'a BackupKey, backup_id: &'a BackupId },
}

/// The names a test copy works with, fixed once and journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub work: String,
    pub kept: String,
    /// Whether the test environment had a database when the operation began: if not (a first
    /// test copy), there is nothing to keep and the cut-over is a single rename.
    pub had_database: bool,
    /// Likewise for its file-store folder (a database without attachments has none).
    pub had_folder: bool,
}

/// Makes `test` a neutralized copy of `production` as operation `operation` (the caller's id
/// for it: names the work copy, 1 to 32 letters, digits or `-`). `test_erp` stops and starts
/// the test environment's ERP; production's is never touched.
pub async fn test_copy(
    production: &Environment,
    test: &Environment,
    source: CopySource<'_>,
    operation: &str,
    test_erp: &impl ErpControl,
    journal: &dyn JournalStore,
) -> Result<Report> {
    check_environments(production, test)?;
    let summary = match &source {
        CopySource::Live => None,
        CopySource::Backup { store, backup_id, .. } => {
            let summary = store.summary(&production.tenant, &production.name, backup_id).await?.ok_or_else(|| {
                Error::Missing {
                    what: "backup",
                    name: format!("{}/{}/{backup_id}", production.tenant, production.name),
                }
            })?;
            super::restore::check_versions(&summary.erp.version, &test.erp.version)?;
            Some(summary)
        }
    };
    let parameters = serde_json::json!({
        "tenant": test.tenant,
        "production": production.database.as_str(),
        "test": test.database.as_str(),
        "source": summary.as_ref().map_or(serde_json::json!("live"), |s| serde_json::json!({"backup": s.backup_id})),
    });
    let names = Names {
        work: work_copy_name(&test.database, operation)?.to_string(),
        kept: replaced_name(&test.database, Utc::now())?.to_string(),
        had_database: test.server.exists(&test.database).await?,
        had_folder: test.filestore.exists(test.database.as_str())?,
    };
    let (source, summary) = (&source, &summary);
    let mut report = run_steps(
        test,
        journal,
        operation,
        "test-copy",
        parameters,
        names,
        &["copy", "neutralize", "verify", "stop", "cut-over", "start"],
        |step, _journal, names| async move {
            match step {
                "copy" => match (source, summary) {
                    (CopySource::Backup { store, key, .. }, Some(summary)) => {
                        copy_backup(test, store, key, summary, &names.work).await
                    }
                    _ => copy_live(production, test, &names.work).await,
                },
                "neutralize" => {
                    let mut connection = test.server.connect(&names.work).await?;
                    let done =
                        neutralize::neutralize(&mut connection, &names.work, production.database.as_str()).await?;
                    Ok(serde_json::to_value(done).expect("serializable"))
                }
                "verify" => verify(test, &names.work).await,
                "stop" => test_erp.stop().await.map(|()| serde_json::Value::Null),
                "cut-over" => swap_in(test, &names).await,
                "start" => test_erp.start().await.map(|()| serde_json::Value::Null),
                other => unreachable!("a test copy has no step {other}"),
            }
        },
        |journal, names| async move { undo(test, test_erp, &journal, &names).await },
    )
    .await?;
    if let Some(journal) = journal.load()? {
        describe(&mut report, production, &journal);
    }
    Ok(report)
}

/// Production and test must be two environments of one tenant, running the same ERP series
/// (a copy from another series would need an upgrade: that is a rehearsal, not a test copy).
fn check_environments(production: &Environment, test: &Environment) -> Result<()> {
    if production.tenant != test.tenant {
        return Err(Error::Invalid(format!(
            "a test copy stays within one tenant: production is {}'s, the test environment {}'s",
            production.tenant, test.tenant
        )));
    }
    let address = |e: &Environment| (e.server.address().host().to_string(), e.server.address().port());
    if production.name == test.name || (address(production) == address(test) && production.database == test.database) {
        return Err(Error::Invalid(format!(
            "refusing a test copy onto production itself ({}/{}, database `{}`)",
            test.tenant, test.name, test.database
        )));
    }
    let parse = |text: &str| text.parse::<ErpVersion>().map_err(|e| Error::Invalid(e.to_string()));
    let (from, to) = (parse(&production.erp.version)?, parse(&test.erp.version)?);
    if from.erp_series() != to.erp_series() {
        return Err(Error::Invalid(format!(
            "production runs {from} and the test environment {to}: a test copy needs the same ERP series on both \
             (give the test environment production's series first, or rehearse the upgrade instead)"
        )));
    }
    Ok(())
}

/// What the `copy` step records: production's rows per table as copied, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Copied {
    source_rows: BTreeMap<String, u64>,
}

/// Loads the backup into the work copy and checks it against the backup's manifest.
async fn copy_backup(
    test: &Environment,
    store: &BackupStore,
    key: &BackupKey,
    summary: &Summary,
    work: &str,
) -> Result<serde_json::Value> {
    let facts = load_backup(test, store, key, summary, work).await?;
    check_copy(test, work, &facts.fingerprint, Some((facts.files, facts.file_bytes))).await?;
    Ok(serde_json::to_value(Copied { source_rows: facts.fingerprint }).expect("serializable"))
}

/// Streams production's database, as of one snapshot, into the work copy, then its files; checks
/// the copy has the snapshot's rows and every attachment's file.
async fn copy_live(production: &Environment, test: &Environment, work: &str) -> Result<serde_json::Value> {
    start_over(test, work).await?;
    let work_database = DatabaseName::new(work)?;
    test.server.create_empty(&work_database, Some(test.server.address().user())).await?;

    // The snapshot, held open (this connection, this read-only transaction) until the dump is
    // done; production's ERP keeps writing meanwhile, unseen by both.
    let mut connection = production.server.connect(production.database.as_str()).await?;
    let mut snapshot = connection.begin().await.map_err(Error::database("starting the copy's snapshot"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *snapshot)
        .await
        .map_err(Error::database("making the copy's transaction a snapshot"))?;
    let snapshot_id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *snapshot)
        .await
        .map_err(Error::database("exporting the copy's snapshot"))?;
    let fingerprint = crate::fingerprint::read_in(&mut snapshot).await?;

    let snapshot_arg = format!("--snapshot={snapshot_id}");
    let mut dump = production.server.tools().pg_dump(
        production.server.address(),
        &production.database,
        &["--format=custom", "--compress=0", &snapshot_arg],
    )?;
    let mut restore = test.server.tools().pg_restore(
        test.server.address(),
        &work_database,
        &["--no-owner", "--role", test.server.address().user()],
    )?;
    let mut output = dump.take_stdout().expect("pg_dump's output is piped");
    let mut input = restore.take_stdin().expect("pg_restore's input is piped");
    let piped = tokio::io::copy(&mut output, &mut input).await;
    // Both ends closed before waiting, so neither program waits on the other.
    drop((output, input));
    let (dumped, restored) = (dump.finish().await, restore.finish().await);
    snapshot.rollback().await.map_err(Error::database("ending the copy's snapshot"))?;
    // The program that failed first says more than the one whose pipe it broke: a broken
    // pipe into pg_restore means pg_restore failed; a clean end of the dump, pg_dump's own.
    let piped = piped.map_err(|source| Error::Stream { what: "streaming pg_dump into pg_restore".into(), source });
    if piped.is_err() {
        restored?;
        dumped?;
    } else {
        dumped?;
        restored?;
    }
    piped?;

    copy_files(production, test, work).await?;
    check_copy(test, work, &fingerprint.tables, None).await?;
    Ok(serde_json::to_value(Copied { source_rows: fingerprint.tables }).expect("serializable"))
}

/// Production's attachment folder into the work folder: hard links within one attachment store,
/// bytes from another. A production without attachments gives an empty folder.
async fn copy_files(production: &Environment, test: &Environment, work: &str) -> Result<()> {
    if production.filestore.root() == test.filestore.root() {
        test.filestore.copy(production.database.as_str(), work).await.map(drop)
    } else {
        let source = production.filestore.folder(production.database.as_str())?;
        let target = test.filestore.folder(work)?;
        tokio::task::spawn_blocking(move || copy_tree(&source, &target))
            .await
            .map_err(|e| Error::Invalid(format!("copying the attachments panicked: {e}")))?
    }
}

fn copy_tree(source: &Path, target: &Path) -> Result<()> {
    fs::create_dir_all(target).map_err(Error::io("creating a file-store folder", target))?;
    if !source.is_dir() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(source).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(source).to_path_buf();
            Error::io("walking a file-store folder", path)(e.into())
        })?;
        let destination = target.join(entry.path().strip_prefix(source).expect("walkdir stays under its root"));
        if entry.file_type().is_dir() {
            fs::create_dir_all(&destination).map_err(Error::io("creating a file-store folder", &destination))?;
        } else if entry.file_type().is_file() {
            fs::copy(entry.path(), &destination).map_err(Error::io("copying an attachment", &destination))?;
        }
    }
    Ok(())
}

/// The contract's check on the work copy: anything still live fails the step, named.
async fn verify(test: &Environment, work: &str) -> Result<serde_json::Value> {
    let mut connection = test.server.connect(work).await?;
    neutralize::verify(&mut connection).await?;
    let fingerprint = crate::fingerprint::read(&mut connection).await?;
    Ok(serde_json::json!({"rows": fingerprint.tables}))
}

fn swap<'a>(test: &'a Environment, names: &'a Names) -> Swap<'a> {
    Swap { live: test.database.as_str(), replacement: &names.work, kept: &names.kept }
}

async fn swap_in(test: &Environment, names: &Names) -> Result<serde_json::Value> {
    put_in_place(&Databases(&test.server), swap(test, names), names.had_database).await?;
    put_in_place(&Folders(&test.filestore), swap(test, names), names.had_folder).await?;
    let kept = names.had_database.then(|| names.kept.clone());
    Ok(serde_json::json!({ "kept": kept }))
}

/// Back to the state before the test copy: the test environment's own database and folder in
/// place (cut back if swapped out, with its ERP stopped meanwhile), the work copy dropped.
async fn undo(test: &Environment, erp: &impl ErpControl, journal: &Journal, names: &Names) -> Result<()> {
    let stopped = journal.is_done("stop") || journal.failure.as_ref().is_some_and(|f| f.step == "stop");
    if stopped {
        erp.stop().await?;
        take_out(&Folders(&test.filestore), swap(test, names), names.had_folder).await?;
        take_out(&Databases(&test.server), swap(test, names), names.had_database).await?;
    }
    start_over(test, &names.work).await?;
    if stopped { erp.start().await } else { Ok(()) }
}

/// The report of a test copy: not a rehearsal (nothing is being changed, only copied), the
/// copy's rows against production's, and what the neutralization switched off.
fn describe(report: &mut Report, production: &Environment, journal: &Journal) {
    report.rehearsal = false;
    report.from_version = Some(production.erp.version.clone());
    let copied: Option<Copied> = journal.output("copy").and_then(|o| serde_json::from_value(o.clone()).ok());
    let rows: Option<BTreeMap<String, u64>> =
        journal.output("verify").and_then(|o| serde_json::from_value(o["rows"].clone()).ok());
    if let (Some(copied), Some(rows)) = (&copied, &rows) {
        let tables = |rows: &BTreeMap<String, u64>| Fingerprint { tables: rows.clone(), ..Fingerprint::default() };
        report.fingerprint = fingerprint::compare(&tables(&copied.source_rows), &tables(rows)).rows;
    }
    let neutralized: Option<Neutralized> =
        journal.output("neutralize").and_then(|o| serde_json::from_value(o.clone()).ok());
    if let Some(done) = &neutralized {
        let mut lines = vec![
            format!("{} scheduled actions switched off", done.crons_disabled),
            format!("{} queued tasks removed", done.queued_tasks_removed),
        ];
        lines.extend(
            done.credentials_blanked
                .iter()
                .filter(|(_, rows)| *rows > 0)
                .map(|(column, rows)| format!("integration credential {column} blanked in {rows} row(s)")),
        );
        lines.push(format!("marked as neutralized from `{}` ({})", done.source_database, neutralize::MARKER_TABLE));
        if let Some(step) = report.steps.iter_mut().find(|s| s.step == "neutralize") {
            step.detail = Some(lines.join("\n"));
        }
        report.warnings.extend(lines.into_iter().map(|line| format!("neutralized: {line}")));
    }
    report.warnings.push(format!(
        "outgoing mail is not in the database: run every process serving the test copy with [email] uri = {MAIL_SINK_URI} (or a capture server)"
    ));
    let kept = journal.output("cut-over").and_then(|o| o["kept"].as_str().map(str::to_string));
    if let Some(kept) = kept.filter(|_| report.outcome == crate::report::Outcome::Succeeded) {
        report.warnings.push(format!("the test environment's previous database is kept as `{kept}` until released"));
    }
}
