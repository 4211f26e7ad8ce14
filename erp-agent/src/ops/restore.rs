//! Restore of a backup into an environment, never in place: the backup is loaded into a new
//! database and file-store folder (the work copy), checked against its manifest (rows per
//! table, every attachment's file), and only then put in place of the environment's own by
//! renames ([`crate::cutover`]); the replaced database and folder are kept under a dated name
//! until released.
//!
//! **Journal.** `prepare` (names fixed, versions checked) → `load` (the work copy filled from
//! the archive) → `check` → `stop` (the caller stops the ERP; whether the environment has a
//! file-store folder is recorded: a database without attachments has none, and then there is
//! no folder to keep) → `cut-over` → `start`. Killed
//! before `cut-over`, a rerun loads the work copy again from scratch; killed during it, the
//! rerun finishes the renames. If a step fails, everything is undone: the work copy is dropped,
//! a cut-over is cut back, and the ERP is started on the original.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::work_copy::{self, ManifestFacts};
use super::{Environment, ErpControl, run_steps};
use crate::database::{DatabaseName, ErpState, replaced_name, work_copy_name};
use crate::error::{Error, Result};
use crate::journal::{Journal, JournalStore};
use crate::key::BackupKey;
use crate::manifest::BackupId;
use crate::report::Report;
use crate::store::BackupStore;
use tenantry_contract::version::ErpVersion;

/// The names a restore works with, fixed once and journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub work: String,
    pub kept: String,
}

/// Restores backup `backup_id` of `from_environment` (the environment's own, or production's
/// for a copy) into `environment`, as operation `operation` (the caller's id for it: names its
/// work copy, 1 to 32 letters, digits or `-`).
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    environment: &Environment,
    store: &BackupStore,
    key: &BackupKey,
    from_environment: &str,
    backup_id: &BackupId,
    operation: &str,
    erp: &impl ErpControl,
    journal: &dyn JournalStore,
) -> Result<Report> {
    let summary = store.existing(&environment.tenant, from_environment, backup_id).await?;
    check_versions(&summary.erp.version, &environment.erp.version)?;
    let parameters = serde_json::json!({
        "tenant": environment.tenant,
        "environment": environment.name,
        "database": environment.database.as_str(),
        "backup": backup_id,
        "from_environment": from_environment,
    });
    let names = Names {
        work: work_copy_name(&environment.database, operation)?.to_string(),
        kept: replaced_name(&environment.database, Utc::now())?.to_string(),
    };
    let summary = &summary;
    run_steps(
        environment,
        journal,
        operation,
        "restore",
        parameters,
        names,
        &["load", "check", "stop", "cut-over", "start"],
        |step, journal, names| async move {
            match step {
                "load" => load(environment, store, key, summary, &names).await,
                "check" => check(environment, &journal, &names).await,
                "stop" => work_copy::stop_erp(environment, erp).await,
                "cut-over" => work_copy::swap_in(environment, &journal, &names.work, &names.kept).await,
                "start" => erp.start().await.map(|()| serde_json::Value::Null),
                other => unreachable!("a restore has no step {other}"),
            }
        },
        |journal, names| async move { undo(environment, erp, &journal, &names).await },
    )
    .await
}

/// A backup from a newer ERP than the environment's is refused (an older ERP cannot read a
/// database a newer one migrated); one from an older series is restored by
/// [`super::upgrade::restore_older`], which upgrades it on the way.
pub fn check_versions(backup: &str, environment: &str) -> Result<()> {
    let parse = |text: &str| text.parse::<ErpVersion>().map_err(|e| Error::Invalid(e.to_string()));
    let (backup, environment) = (parse(backup)?, parse(environment)?);
    if backup.erp_series() > environment.erp_series() {
        return Err(Error::Invalid(format!(
            "the backup was taken on {backup}, newer than the {environment} this environment runs: an older ERP cannot read a database a newer one has migrated; upgrade the environment first"
        )));
    }
    if backup.erp_series() < environment.erp_series() {
        return Err(Error::Invalid(format!(
            "the backup was taken on {backup}, an older series than the {environment} this environment runs: restore it with the upgrade to {} on the way (`tenantry-agent upgrade --from-backup`)",
            environment.erp_series()
        )));
    }
    Ok(())
}

/// Fills the work copy from the archive ([`work_copy::load_backup`]); records what the check
/// compares against.
async fn load(
    environment: &Environment,
    store: &BackupStore,
    key: &BackupKey,
    summary: &crate::manifest::Summary,
    names: &Names,
) -> Result<serde_json::Value> {
    let facts = work_copy::load_backup(environment, store, key, summary, &names.work).await?;
    Ok(serde_json::to_value(facts).expect("serializable"))
}

/// The work copy holds what the backup says: the same rows in every table, every file, and
/// every attachment row's file.
async fn check(environment: &Environment, journal: &Journal, names: &Names) -> Result<serde_json::Value> {
    let facts: ManifestFacts = journal
        .output("load")
        .and_then(|output| serde_json::from_value(output.clone()).ok())
        .ok_or_else(|| Error::Journal("the journal has no record of the load".into()))?;
    let files = Some((facts.files, facts.file_bytes));
    let restored = work_copy::check_copy(environment, &names.work, &facts.fingerprint, files).await?;
    Ok(serde_json::to_value(&restored).expect("serializable"))
}

/// Back to the state before the restore: the original in place (cut back if it was swapped out,
/// with the ERP stopped meanwhile), the work copy dropped.
async fn undo(environment: &Environment, erp: &impl ErpControl, journal: &Journal, names: &Names) -> Result<()> {
    let stopped = journal.is_done("stop") || journal.failure.as_ref().is_some_and(|f| f.step == "stop");
    if stopped {
        erp.stop().await?;
        work_copy::swap_out(environment, journal, &names.work, &names.kept).await?;
    }
    environment.server.drop_database(&DatabaseName::new(&names.work)?, ErpState::Stopped).await?;
    environment.filestore.delete(&names.work).await?;
    if stopped { erp.start().await } else { Ok(()) }
}
