//! The operations on one environment, each journaled ([`crate::journal`]) and never changing
//! anything in place ([`crate::cutover`]).

pub mod backup;
pub mod export;
pub mod restore;
pub mod test_copy;
pub mod update;
pub mod upgrade;
mod work_copy;

use std::future::Future;

use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cutover::Renaming;
use crate::database::{DatabaseName, DatabaseServer, ErpState};
use crate::error::{Error, Result};
use crate::filestore::FileStore;
use crate::journal::{Failure, Journal, JournalStore, Phase, StepRecord};
use crate::manifest::ErpInfo;
use crate::report::{Outcome, Report, StepOutcome, StepReport};

/// Where the backup an update or an upgrade takes before it changes anything goes, encrypted
/// to `recipient`.
pub struct BeforeOperationBackup<'a> {
    pub store: &'a crate::store::BackupStore,
    pub recipient: &'a crate::key::BackupRecipient,
}

/// One tenant environment: what the operations work on.
#[derive(Debug, Clone)]
pub struct Environment {
    pub tenant: String,
    /// `production` or `test`.
    pub name: String,
    /// The database the ERP serves.
    pub database: DatabaseName,
    /// The PostgreSQL server that holds it, and its client programs.
    pub server: DatabaseServer,
    /// The ERP's attachment store; the environment's files are in the folder named after its
    /// database.
    pub filestore: FileStore,
    /// The ERP serving it.
    pub erp: ErpInfo,
}

/// Stopping and starting the environment's ERP belongs to the caller (the operator scales its
/// Deployments, the single-server runtime stops processes). Both must be idempotent: a resumed
/// operation may ask again.
pub trait ErpControl: Sync {
    /// Returns once nothing of the ERP (server, cron, workers) is connected to the database.
    fn stop(&self) -> impl Future<Output = Result<()>> + Send;
    /// Returns once the ERP serves again.
    fn start(&self) -> impl Future<Output = Result<()>> + Send;
}

/// The PostgreSQL server's databases, renamed for a cut-over while the ERP is stopped.
pub(crate) struct Databases<'a>(pub &'a DatabaseServer);

impl Renaming for Databases<'_> {
    fn what(&self) -> &'static str {
        "database"
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        self.0.exists(&DatabaseName::new(name)?).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.0.rename(&DatabaseName::new(from)?, &DatabaseName::new(to)?, ErpState::Stopped).await
    }
}

/// The file store's folders, renamed with their databases.
pub(crate) struct Folders<'a>(pub &'a FileStore);

impl Renaming for Folders<'_> {
    fn what(&self) -> &'static str {
        "file store folder"
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        self.0.exists(name)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.0.rename(from, to).await
    }
}

/// Runs an operation's steps under its journal: each step's output is recorded once it is done,
/// so a rerun skips it; a failing step makes the journal roll back (recorded first, so a rerun
/// killed while rolling back rolls back again), then `undo` runs. `undo` must be idempotent.
/// A rolled-back operation is an outcome, not an error: the report says which step failed and
/// why. An error is returned only when the operation could neither finish nor roll back; the
/// journal then says where it stands, and a rerun continues from there.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_steps<N, Run, RunFut, Undo, UndoFut>(
    environment: &Environment,
    store: &dyn JournalStore,
    operation: &str,
    kind: &str,
    parameters: serde_json::Value,
    names: N,
    steps: &[&'static str],
    run: Run,
    undo: Undo,
) -> Result<Report>
where
    N: Serialize + DeserializeOwned,
    Run: Fn(&'static str, Journal, N) -> RunFut,
    RunFut: Future<Output = Result<serde_json::Value>>,
    Undo: FnOnce(Journal, N) -> UndoFut,
    UndoFut: Future<Output = Result<()>>,
    N: Clone,
{
    let mut journal = match store.load()? {
        Some(journal) if journal.operation == operation && journal.kind == kind && journal.parameters == parameters => {
            journal
        }
        Some(other) => {
            return Err(Error::Journal(format!(
                "the journal holds operation {} ({}) with other parameters; use a new journal for a new operation",
                other.operation, other.kind
            )));
        }
        None => Journal::new(operation, kind, parameters),
    };
    let names: N = match journal.output(PREPARE) {
        Some(recorded) => serde_json::from_value(recorded.clone()).map_err(|e| Error::Journal(e.to_string()))?,
        None => {
            let now = Utc::now();
            journal.done.push(StepRecord {
                step: PREPARE.into(),
                started_at: now,
                finished_at: now,
                output: serde_json::to_value(&names).expect("names serialize"),
            });
            store.save(&journal)?;
            names
        }
    };
    if journal.phase == Phase::Running {
        for step in steps {
            if journal.is_done(step) {
                continue;
            }
            let started_at = Utc::now();
            match run(step, journal.clone(), names.clone()).await {
                Ok(output) => {
                    journal.done.push(StepRecord {
                        step: step.to_string(),
                        started_at,
                        finished_at: Utc::now(),
                        output,
                    });
                    store.save(&journal)?;
                }
                Err(error) => {
                    tracing::warn!(operation, step, error = %error, "step failed; rolling back");
                    journal.failure = Some(Failure {
                        step: step.to_string(),
                        message: error.to_string(),
                        started_at: Some(started_at),
                        finished_at: Some(Utc::now()),
                    });
                    journal.phase = Phase::RollingBack;
                    store.save(&journal)?;
                    break;
                }
            }
        }
        if journal.phase == Phase::Running {
            journal.phase = Phase::Succeeded;
            store.save(&journal)?;
        }
    }
    if journal.phase == Phase::RollingBack {
        undo(journal.clone(), names).await?;
        journal.phase = Phase::RolledBack;
        store.save(&journal)?;
    }
    Ok(report(environment, &journal))
}

/// The journal's first record: the names the operation works with, fixed before anything is
/// made, so a rerun finds what an interrupted run made.
const PREPARE: &str = "prepare";

/// The report of a finished journal.
pub(crate) fn report(environment: &Environment, journal: &Journal) -> Report {
    let mut steps: Vec<StepReport> = journal
        .done
        .iter()
        .filter(|record| record.step != PREPARE)
        .map(|record| StepReport {
            step: record.step.clone(),
            started_at: record.started_at,
            duration_ms: (record.finished_at - record.started_at).num_milliseconds().max(0) as u64,
            outcome: if journal.phase == Phase::RolledBack { StepOutcome::Undone } else { StepOutcome::Done },
            detail: None,
        })
        .collect();
    let outcome = match &journal.failure {
        Some(failure) if journal.phase == Phase::RolledBack => {
            // A journal from before failures had times: from the last step's end, duration unknown.
            let started_at =
                failure.started_at.unwrap_or_else(|| journal.done.last().map_or(journal.started_at, |r| r.finished_at));
            let finished_at = failure.finished_at.unwrap_or(started_at);
            steps.push(StepReport {
                step: failure.step.clone(),
                started_at,
                duration_ms: (finished_at - started_at).num_milliseconds().max(0) as u64,
                outcome: StepOutcome::Failed,
                detail: Some(failure.message.clone()),
            });
            Outcome::RolledBack { step: failure.step.clone(), reason: failure.message.clone() }
        }
        _ => Outcome::Succeeded,
    };
    Report {
        operation: journal.operation.clone(),
        kind: journal.kind.clone(),
        tenant: environment.tenant.clone(),
        environment: environment.name.clone(),
        rehearsal: environment.name == "test",
        from_version: None,
        to_version: Some(environment.erp.version.clone()),
        started_at: journal.started_at,
        finished_at: journal.done.last().map_or(journal.started_at, |r| r.finished_at),
        outcome,
        steps,
        fingerprint: Default::default(),
        warnings: Vec::new(),
        validation: None,
        kept: set_aside(journal),
    }
}

/// The name a cut-over step recorded (`{"kept": …}`) of the original it set aside, unless the
/// operation rolled back (then the original is live again).
fn set_aside(journal: &Journal) -> Option<String> {
    if journal.phase == Phase::RolledBack {
        return None;
    }
    journal.done.iter().find_map(|record| record.output.get("kept")?.as_str().map(str::to_string))
}

/// Releases what an operation set aside (a replaced database and its file-store folder, named
/// by [`crate::database::replaced_name`]): dropped for good. Anything else, and above all the
/// live database, is refused.
pub async fn release(environment: &Environment, kept: &str) -> Result<()> {
    let set_aside = matches!(
        crate::database::parse_derived(kept),
        Some(crate::database::Derived::Replaced { tenant_database, .. }) if tenant_database == environment.database.as_str()
    );
    if !set_aside {
        return Err(Error::Invalid(format!(
            "`{kept}` is not a database an operation set aside for {}",
            environment.database
        )));
    }
    environment.server.drop_database(&DatabaseName::new(kept)?, ErpState::Stopped).await?;
    environment.filestore.delete(kept).await
}
