//! Module update and activation (`--update=MODULE…`, `--update=all`, new modules with their
//! dependencies), never in place: the ERP's own update runs on a copy of the environment's
//! database and file store, which replaces the original only once the update succeeded and
//! the copy lost no table.
//!
//! **Journal.** `prepare` (names fixed) → `backup` (a before-operation backup, while the ERP
//! still serves; skipped when the caller gives no store) → `stop` (from here until the cut-over
//! nothing may write production: those writes would be lost with the replaced original; it
//! records whether the environment has a file-store folder, which a database without
//! attachments lacks) →
//! `copy` (`CREATE DATABASE … TEMPLATE`, the file store hard-linked) → `update` (the ERP's admin
//! command on the copy; meanwhile the stopped original's fingerprint is read) → `check` (the
//! copy's fingerprint against the original's) → `cut-over` → `start`.
//!
//! **Guarantees.** Killed anywhere, a rerun with the same journal finishes or rolls back: the
//! backup resumes under the same id (its own journal is kept inside this one); an update killed
//! half-way is never resumed on its half-updated copy, the copy is made again from the original
//! first. A failing step rolls everything back: the work copy and its folder are dropped, a
//! cut-over is cut back, the ERP is started on the original, and the report names the step,
//! the module the ERP was loading and its log's last lines.
//!
//! **What it never does.** It never runs the ERP's update on the live database, never drops
//! the original (it is kept under [`crate::database::replaced_name`] until
//! [`super::release`]), and never takes a backup or runs the ERP's record validation
//! (`trytond-admin --validate`, which reads every record) while the ERP is stopped: the
//! downtime is the copy, the ERP's own update run, two fingerprints and the renames.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{Environment, ErpControl, run_steps, work_copy};
use crate::database::{DatabaseName, ErpState, replaced_name, work_copy_name};
use crate::erp::{ErpCommand, ModuleUpdate};
use crate::error::{Error, Result};
use crate::fingerprint::{self, Fingerprint, FingerprintDiff, VOLATILE_TABLES};
use crate::journal::{Journal, JournalStore, StepRecord};
use crate::manifest::BackupKind;
use crate::report::Report;

pub use super::BeforeOperationBackup;

/// The names an update works with, fixed once and journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub work: String,
    pub kept: String,
}

/// Records an interrupted step leaves in the journal: the before-operation backup's own journal,
/// and the mark of an update run started on the work copy. They are not steps of the report.
const BACKUP_JOURNAL: &str = "backup (its journal)";
const UPDATE_STARTED: &str = "update (started)";

/// Runs `update` on `environment` with the ERP's admin `command`, as operation `operation` (the
/// caller's id for it: names its work copy, 1 to 32 letters, digits or `-`). With `backup`, a
/// before-operation backup is taken first, while the ERP still serves.
pub async fn update(
    environment: &Environment,
    update: &ModuleUpdate,
    command: &ErpCommand,
    backup: Option<BeforeOperationBackup<'_>>,
    operation: &str,
    erp: &impl ErpControl,
    journal: &dyn JournalStore,
) -> Result<Report> {
    // Bad input (no module, a name that is no module's) is refused before anything starts.
    command.update_args(update)?;
    let parameters = serde_json::json!({
        "tenant": environment.tenant,
        "environment": environment.name,
        "database": environment.database.as_str(),
        "update": describe(update),
        "backup": backup.is_some(),
    });
    let names = Names {
        work: work_copy_name(&environment.database, operation)?.to_string(),
        kept: replaced_name(&environment.database, Utc::now())?.to_string(),
    };
    let all_steps: &[&'static str] = &["backup", "stop", "copy", "update", "check", "cut-over", "start"];
    let steps = if backup.is_some() { all_steps } else { &all_steps[1..] };
    let backup = &backup;
    let mut report = run_steps(
        environment,
        journal,
        operation,
        "update",
        parameters,
        names,
        steps,
        |step, record, names| async move {
            match step {
                "backup" => {
                    let backup = backup.as_ref().expect("the backup step runs only with a backup store");
                    take_backup(environment, backup, operation, journal).await
                }
                "stop" => work_copy::stop_erp(environment, erp).await,
                "copy" => copy(environment, &names).await,
                "update" => run_update(environment, update, command, journal, &record, &names).await,
                "check" => check(environment, update, &record, &names).await,
                "cut-over" => work_copy::swap_in(environment, &record, &names.work, &names.kept).await,
                "start" => erp.start().await.map(|()| serde_json::Value::Null),
                other => unreachable!("an update has no step {other}"),
            }
        },
        |record, names| async move { undo(environment, erp, &record, &names).await },
    )
    .await?;
    if let Some(record) = journal.load()? {
        complete_report(&mut report, &record);
    }
    Ok(report)
}

/// The update as the journal's parameters say it: a rerun asking for another update is refused.
fn describe(update: &ModuleUpdate) -> serde_json::Value {
    match update {
        ModuleUpdate::All => serde_json::json!({"all": true}),
        ModuleUpdate::Update(modules) => serde_json::json!({"update": modules}),
        ModuleUpdate::Activate(modules) => serde_json::json!({"activate": modules}),
    }
}

/// The before-operation backup, through [`super::backup`] with its own journal kept inside this
/// one: killed half-way, the rerun writes it again under the same id, or finds it complete.
async fn take_backup(
    environment: &Environment,
    backup: &BeforeOperationBackup<'_>,
    operation: &str,
    journal: &dyn JournalStore,
) -> Result<serde_json::Value> {
    let kind = BackupKind::BeforeOperation { operation: operation.to_string() };
    let inner = InnerJournal { parent: journal, record: BACKUP_JOURNAL };
    let summary = super::backup::backup(environment, backup.store, backup.recipient, None, kind, &inner).await?;
    Ok(serde_json::json!({"backup_id": summary.backup_id}))
}

/// A step's own progress, kept as a record of the operation's journal until the step is done
/// (then the step's record replaces it: `run_steps` saves its own copy of the journal).
struct InnerJournal<'a> {
    parent: &'a dyn JournalStore,
    record: &'static str,
}

impl InnerJournal<'_> {
    fn output(&self) -> Result<Option<serde_json::Value>> {
        Ok(self.parent.load()?.and_then(|journal| journal.output(self.record).cloned()))
    }

    fn set_output(&self, output: serde_json::Value) -> Result<()> {
        let mut journal =
            self.parent.load()?.ok_or_else(|| Error::Journal("the operation's journal is gone".into()))?;
        journal.done.retain(|record| record.step != self.record);
        let now = Utc::now();
        journal.done.push(StepRecord { step: self.record.to_string(), started_at: now, finished_at: now, output });
        self.parent.save(&journal)
    }
}

impl JournalStore for InnerJournal<'_> {
    fn load(&self) -> Result<Option<Journal>> {
        self.output()?
            .map(|output| serde_json::from_value(output).map_err(|e| Error::Journal(format!("{}: {e}", self.record))))
            .transpose()
    }

    fn save(&self, journal: &Journal) -> Result<()> {
        self.set_output(serde_json::to_value(journal).expect("a journal always serializes"))
    }
}

/// The work copy: the database by `CREATE DATABASE … TEMPLATE` (seconds), the file store folder
/// hard-linked (the ERP never changes a stored file in place). A rerun starts it over.
async fn copy(environment: &Environment, names: &Names) -> Result<serde_json::Value> {
    let work = DatabaseName::new(&names.work)?;
    environment.server.drop_database(&work, ErpState::Stopped).await?;
    environment.filestore.delete(&names.work).await?;
    environment.server.copy(&environment.database, &work, ErpState::Stopped).await?;
    environment.filestore.copy(environment.database.as_str(), &names.work).await?;
    Ok(serde_json::Value::Null)
}

/// What the update step records: the original's fingerprint (read while the ERP's command ran
/// on the copy; the ERP is stopped, so nothing changes it) and the ERP's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Updated {
    before: Fingerprint,
    erp_run_ms: u64,
    log_tail: String,
}

async fn run_update(
    environment: &Environment,
    update: &ModuleUpdate,
    command: &ErpCommand,
    journal: &dyn JournalStore,
    record: &Journal,
    names: &Names,
) -> Result<serde_json::Value> {
    // An update killed half-way may have left the copy half-updated: never go on from there.
    if record.is_done(UPDATE_STARTED) {
        copy(environment, names).await?;
    }
    InnerJournal { parent: journal, record: UPDATE_STARTED }.set_output(serde_json::Value::Null)?;
    let before = async {
        let mut connection = environment.server.connect(environment.database.as_str()).await?;
        fingerprint::read(&mut connection).await
    };
    let (run, before) = tokio::join!(command.update(&names.work, update), before);
    let run = run?;
    Ok(serde_json::to_value(Updated {
        before: before?,
        erp_run_ms: run.duration.as_millis() as u64,
        log_tail: run.log_tail,
    })
    .expect("serializable"))
}

/// What the check found: the difference, and what a person should look at.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checked {
    diff: FingerprintDiff,
    warnings: Vec<String>,
}

/// The copy after the update against the original: tables and rows may be added; a table or an
/// activated module gone fails the update; rows gone (outside sessions and caches) are warned
/// about, since a module's migration may drop them on purpose. The modules asked for must be
/// activated.
async fn check(
    environment: &Environment,
    update: &ModuleUpdate,
    record: &Journal,
    names: &Names,
) -> Result<serde_json::Value> {
    let updated: Updated = recorded(record, "update")?;
    let mut connection = environment.server.connect(&names.work).await?;
    let after = fingerprint::read(&mut connection).await?;
    drop(connection);
    let diff = fingerprint::compare(&updated.before, &after);
    let judged = diff.clone().without(VOLATILE_TABLES);
    let mut problems = Vec::new();
    if !judged.tables_lost.is_empty() {
        problems.push(format!("tables lost: {}", judged.tables_lost.join(", ")));
    }
    if !judged.modules_lost.is_empty() {
        problems.push(format!("modules no longer activated: {}", judged.modules_lost.join(", ")));
    }
    if let ModuleUpdate::Update(modules) | ModuleUpdate::Activate(modules) = update {
        let missing: Vec<&str> = modules.iter().filter(|m| !after.modules.contains(*m)).map(String::as_str).collect();
        if !missing.is_empty() {
            problems.push(format!("not activated after the update: {}", missing.join(", ")));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Conflict(format!("the updated copy fails its check: {}", problems.join("; "))));
    }
    let warnings = judged
        .tables_shrunk
        .iter()
        .map(|t| format!("table {} has {} rows after the update, {} before", t.table, t.after, t.before))
        .collect();
    Ok(serde_json::to_value(Checked { diff, warnings }).expect("serializable"))
}

fn recorded<T: serde::de::DeserializeOwned>(record: &Journal, step: &str) -> Result<T> {
    record
        .output(step)
        .and_then(|output| serde_json::from_value(output.clone()).ok())
        .ok_or_else(|| Error::Journal(format!("the journal has no record of the {step} step")))
}

/// Back to the state before the update: the original in place (cut back if it was swapped out,
/// with the ERP stopped meanwhile), the work copy dropped, the ERP serving the original.
async fn undo(environment: &Environment, erp: &impl ErpControl, record: &Journal, names: &Names) -> Result<()> {
    let stopped = record.is_done("stop") || record.failure.as_ref().is_some_and(|f| f.step == "stop");
    if stopped {
        erp.stop().await?;
        work_copy::swap_out(environment, record, &names.work, &names.kept).await?;
    }
    environment.server.drop_database(&DatabaseName::new(&names.work)?, ErpState::Stopped).await?;
    environment.filestore.delete(&names.work).await?;
    if stopped { erp.start().await } else { Ok(()) }
}

/// The report's update-specific parts: the ERP's log tail on the update step, the fingerprint
/// per table and the check's warnings; a step's interrupted progress is no step of its own.
fn complete_report(report: &mut Report, record: &Journal) {
    report.steps.retain(|step| step.step != BACKUP_JOURNAL && step.step != UPDATE_STARTED);
    if let Ok(updated) = recorded::<Updated>(record, "update")
        && let Some(step) = report.steps.iter_mut().find(|step| step.step == "update")
    {
        step.detail = Some(updated.log_tail);
    }
    if let Ok(checked) = recorded::<Checked>(record, "check") {
        report.fingerprint = checked.diff.rows;
        report.warnings = checked.warnings;
    }
}
