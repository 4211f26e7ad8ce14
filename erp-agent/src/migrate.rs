//! The runner of a major-version upgrade's stages on a real database: steps 3, 4 and 6 of the
//! seven (the pre-migration steps, the new series' update-all, the post-migration steps). What
//! to run comes from the [`catalogue`](crate::catalogue)'s [`Plan`]; the copies, the cut-over,
//! the rollback and the journal belong to the operation that calls this runner. The runner only
//! ever works on the database it is given, which must be a **work copy**: a failed stage leaves
//! that copy in an unknown state (Tryton commits module by module during an update-all).
//!
//! # What each stage does
//! - `sql` steps: the step's statements in **one transaction** on the database, through a fresh
//!   connection made from the caller's [`PgConnectOptions`] (no pool; the connection is closed
//!   after the step). Either every statement commits or none does. The statements must not
//!   contain transaction control (`BEGIN`/`COMMIT`): the runner owns the transaction.
//! - the update-all: [`ErpCommand::update`] with [`ModuleUpdate::All`], using the command of the
//!   hop's **target** series (`trytond-admin --all` of 7.2 for the hop 7.0 → 7.2).
//! - `admin` steps: [`ErpCommand::run`] of the target series with the step's arguments (the
//!   command adds its configuration and the database; credentials come through its environment).
//! - `script` steps: the step's Python run by the target series' console
//!   ([`ErpConsole`], `trytond-console -c CONF -d DB`, script on standard input) with `pool` and
//!   `transaction` in scope. The script commits its own work (`transaction.commit()`); the console
//!   rolls back the rest. `trytond-console` prints a script's exception and still exits 0, so the
//!   runner wraps the script: an exception (or `sys.exit`) inside it makes the console exit 1 after
//!   printing the traceback, and the run counts as successful only if the console exits 0 **and**
//!   printed the end marker the wrapper writes after the script's last line.
//!
//! Each stage yields a [`StepReport`] named by its stage key (`7.0-7.2/pre/<step id>`,
//! `7.0-7.2/update-all`, `7.0-7.2/post/<step id>`) with its duration, its outcome and a detail
//! (rows changed by SQL, a script's output; on failure the SQL error, or the ERP's log tail and the
//! module it was loading). The first failure stops the run with [`Error::MigrationStage`], naming
//! the stage key, the step id and why; no later stage runs.
//!
//! # The hop is the unit of resumption
//! A hop (one series to the next) is run whole by [`run_hop`] on a database holding the previous
//! series' data, or not at all. A hop interrupted or failed midway is never continued and never
//! rerun on the same database: steps with `repeatable = false` (renaming columns, inverting
//! signs) must not run twice, an update-all stopped midway leaves a half-migrated database, and
//! it is unknowable after a crash whether the stage in progress committed. So the operation
//! layer:
//! 1. keeps the hop's **input** (the original database for the first hop, the output of the
//!    previous finished hop afterwards) untouched;
//! 2. runs [`run_hop`] on a fresh copy of that input;
//! 3. records the finished hop in its journal (by [`hop_key`]) with the name of the copy that now
//!    holds the hop's output;
//! 4. after a crash or a failure, drops the hop's unfinished copy and starts that hop again from
//!    a new copy of its input.
//!
//! The runner itself therefore never consults a step's `repeatable` flag and keeps no
//! per-stage progress: within a hop every stage runs exactly once, in order, on a database no
//! earlier attempt touched. There is no time limit on a stage either (an update-all of a large
//! database takes long); the caller bounds the whole operation.
//!
//! [`run_plan`] runs every hop of a plan in order on one database: for a caller that restarts a
//! failed upgrade from its very beginning (a test, a rehearsal on a throw-away copy).
//!
//! # What it never does
//! It never copies, renames or drops a database, never touches the file store, never starts or
//! stops a server, and never puts a password on a command line or in a message: the SQL
//! connection's password stays in [`PgConnectOptions`], the ERP's credentials in the commands'
//! environments.

mod console;
mod sql;

use std::fmt;
use std::time::Instant;

use chrono::Utc;
use sqlx::postgres::PgConnectOptions;
use tenantry_contract::version::ErpSeries;

pub use console::ErpConsole;

use crate::catalogue::{Hop, MigrationStep, Plan, Stage, StepAction};
use crate::erp::{ErpCommand, ModuleUpdate};
use crate::error::{Error, Result};
use crate::report::{StepOutcome, StepReport};

/// The step id given to the update-all stage in errors (it has no catalogue entry).
pub const UPDATE_ALL: &str = "update-all";

/// The ERP programs of one series: its admin command (update-all, admin steps) and its console
/// (script steps). A hop uses those of its target series.
#[derive(Clone)]
pub struct SeriesErp {
    pub admin: ErpCommand,
    pub console: ErpConsole,
}

/// The database the stages run on (a work copy): its name, for the ERP's programs, and how to
/// connect to it, for SQL steps.
#[derive(Clone)]
pub struct WorkDatabase {
    pub name: String,
    /// Connection options aimed at this database (their `database` is set to `name`).
    pub connect: PgConnectOptions,
}

impl WorkDatabase {
    /// `name` on the server `server` points at (whatever database `server` names is replaced).
    pub fn on_server(server: &PgConnectOptions, name: impl Into<String>) -> Self {
        let name = name.into();
        let connect = server.clone().database(&name);
        Self { name, connect }
    }
}

impl fmt::Debug for WorkDatabase {
    // By hand: the connection options hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkDatabase").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The journal name of a hop: `7.0-7.2`, the prefix of its stages' keys.
pub fn hop_key(hop: &Hop) -> String {
    format!("{}-{}", hop.from, hop.to)
}

/// The stages of one hop, in the order they run (as [`Plan::stages`] gives them for the hop).
pub fn hop_stages(hop: &Hop) -> Vec<Stage<'_>> {
    let mut stages: Vec<Stage<'_>> = hop.pre.iter().map(|step| Stage::Pre(hop, step)).collect();
    stages.push(Stage::UpdateAll(hop));
    stages.extend(hop.post.iter().map(|step| Stage::Post(hop, step)));
    stages
}

/// Runs one hop's stages in order on `database` with `erp`, the programs of `hop.to`, appending
/// one report per stage run to `reports` (the failed one included). Stops at the first failure.
/// The database must hold the hop's input and nothing of a previous attempt at this hop (see the
/// module documentation).
pub async fn run_hop(hop: &Hop, erp: &SeriesErp, database: &WorkDatabase, reports: &mut Vec<StepReport>) -> Result<()> {
    let started = Instant::now();
    tracing::info!(hop = %hop_key(hop), database = %database.name, "upgrade hop starting");
    for stage in hop_stages(hop) {
        run_stage(stage, erp, database, reports).await?;
    }
    tracing::info!(hop = %hop_key(hop), elapsed = ?started.elapsed(), "upgrade hop done");
    Ok(())
}

/// Runs every hop of `plan` in order on one database, taking each hop's programs from
/// `erp_for(hop.to)`. For callers that restart a failed upgrade from its beginning; an operation
/// that resumes hop by hop calls [`run_hop`] on a copy per hop instead.
pub async fn run_plan(
    plan: &Plan,
    mut erp_for: impl FnMut(ErpSeries) -> Result<SeriesErp>,
    database: &WorkDatabase,
    reports: &mut Vec<StepReport>,
) -> Result<()> {
    for hop in &plan.hops {
        let erp = erp_for(hop.to)?;
        run_hop(hop, &erp, database, reports).await?;
    }
    Ok(())
}

async fn run_stage(
    stage: Stage<'_>,
    erp: &SeriesErp,
    database: &WorkDatabase,
    reports: &mut Vec<StepReport>,
) -> Result<()> {
    let key = stage.key();
    let step_id = match stage {
        Stage::Pre(_, step) | Stage::Post(_, step) => step.id.as_str(),
        Stage::UpdateAll(_) => UPDATE_ALL,
    };
    let started_at = Utc::now();
    let clock = Instant::now();
    tracing::info!(stage = %key, "upgrade stage starting");
    let result = match stage {
        Stage::Pre(_, step) | Stage::Post(_, step) => run_step(step, erp, database).await,
        Stage::UpdateAll(_) => {
            erp.admin.update(&database.name, &ModuleUpdate::All).await.map(|_| None).map_err(|error| error.to_string())
        }
    };
    let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(detail) => {
            tracing::info!(stage = %key, duration_ms, "upgrade stage done");
            reports.push(StepReport { step: key, started_at, duration_ms, outcome: StepOutcome::Done, detail });
            Ok(())
        }
        Err(reason) => {
            tracing::warn!(stage = %key, duration_ms, "upgrade stage failed");
            reports.push(StepReport {
                step: key.clone(),
                started_at,
                duration_ms,
                outcome: StepOutcome::Failed,
                detail: Some(reason.clone()),
            });
            Err(Error::MigrationStage { stage: key, step: step_id.to_string(), reason })
        }
    }
}

/// Runs one catalogue step; `Ok` holds the report's detail, `Err` why it failed.
async fn run_step(
    step: &MigrationStep,
    erp: &SeriesErp,
    database: &WorkDatabase,
) -> std::result::Result<Option<String>, String> {
    match &step.action {
        StepAction::Sql { sql } => {
            sql::run_in_one_transaction(&database.connect, sql).await.map(|rows| Some(format!("rows changed: {rows}")))
        }
        StepAction::Admin { args } => {
            erp.admin.run(&database.name, args).await.map(|_| None).map_err(|error| error.to_string())
        }
        StepAction::Script { script } => erp.console.run_script(&database.name, &step.id, script).await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::catalogue::{Catalogue, plan};

    #[test]
    fn the_hops_stages_in_turn_are_the_plans_stages() {
        let activated: BTreeSet<String> = ["ir", "res", "party", "stock", "account"].map(String::from).into();
        let plan = plan(
            "tryton",
            "7.0.59".parse().unwrap(),
            "8.2.1".parse().unwrap(),
            &activated,
            &Catalogue::shipped().unwrap(),
        )
        .unwrap();
        let by_hop: Vec<String> = plan.hops.iter().flat_map(hop_stages).map(|s| s.key()).collect();
        let whole: Vec<String> = plan.stages().iter().map(|s| s.key()).collect();
        assert_eq!(by_hop, whole);
        for hop in &plan.hops {
            let keys: Vec<String> = hop_stages(hop).iter().map(|s| s.key()).collect();
            assert!(keys.iter().all(|k| k.starts_with(&format!("{}/", hop_key(hop)))), "{keys:?}");
            assert_eq!(keys.iter().filter(|k| k.ends_with("/update-all")).count(), 1, "{keys:?}");
        }
    }

    #[test]
    fn a_work_database_shows_no_password() {
        let server = PgConnectOptions::new_without_pgpass().host("db").username("agent").password("s3cret-pw");
        let database = WorkDatabase::on_server(&server, "tenant_acme_upgrade");
        assert_eq!(database.connect.get_database(), Some("tenant_acme_upgrade"));
        let shown = format!("{database:?}");
        assert!(shown.contains("tenant_acme_upgrade") && !shown.contains("s3cret-pw"), "{shown}");
    }

    #[test]
    fn a_failed_stage_names_its_key_and_step() {
        let error = Error::MigrationStage {
            stage: "7.0-7.2/update-all".into(),
            step: UPDATE_ALL.into(),
            reason: "boom".into(),
        };
        assert_eq!(error.to_string(), "upgrade stage 7.0-7.2/update-all (step `update-all`) failed: boom");
        assert_eq!(error.kind(), "migration-stage");
    }
}
