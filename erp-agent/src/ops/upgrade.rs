//! Major-version upgrade of an environment: the seven steps of the documents — back up, stop
//! the old server, run the pre-migration steps, run the new series' update-all, stop it, run the
//! post-migration steps, start the new version and test it — run on copies, never in place.
//! Skipping series chains every intermediate series: each hop (one series to the next, from the
//! [`catalogue`](crate::catalogue)'s [`Plan`]) runs its pre steps, its update-all and its post
//! steps ([`migrate::run_hop`]) before the next hop starts. (Steps 4 and 5, "run the new version
//! with update-all, stop it", are one `trytond-admin --all` run, which stops by itself.)
//!
//! **Journal.** `prepare` (names, the activated modules and thus the plan fixed) → `backup` (a
//! before-operation backup while the old ERP still serves) → `stop` (the old ERP) → `copy` (the
//! original's fingerprint; its file-store folder copied for the upgraded database) → one step per
//! hop, `hop 7.0-7.2` … → `check` (no data lost: fingerprints compared; the ERP's own record
//! validation if asked) → `cut-over` → `start` (the **new** version) → `test` (the new server's
//! own JSON-RPC: its version, an administrator's login, a read).
//!
//! **The hop is the unit of resumption** (see [`crate::migrate`]): a hop's input — the original
//! database for the first hop, the previous hop's output after — is never written to; the hop
//! runs on a fresh copy of it (`CREATE DATABASE … TEMPLATE`), and its journal record names the
//! copy now holding its output. Killed or failed midway, the hop's copy is dropped and the hop
//! runs again from its input. Two work names alternate between the hops (a hop's output is the
//! next hop's input, the copy before it is no longer needed), the last hop writing the one the
//! cut-over swaps in.
//!
//! **Rollback.** Any failure, at any step, brings the environment back automatically to the
//! state before the upgrade on the old version: the new server stopped if it was started, the
//! cut-over cut back, every work copy dropped, the old ERP started on the original database,
//! which no step ever wrote to. The report names the failed step and why (for a hop, the stage
//! `7.0-7.2/post/<step id>` and its error), with the stages that ran.
//!
//! **What it never does.** It never changes the original database or folder (they are kept
//! under [`replaced_name`] after the cut-over, until [`super::release`]); never runs a hop twice
//! on the same database; never puts the administrator's password in an argument, a log or a
//! report (the admin commands get it through their environment, the test reads it from a file).

//! **A backup of an older series** ([`restore_older`], operation 3 of the agent: a restore
//! whose backup predates the environment's series) takes the same steps with the backup as the
//! first hop's input: `copy` loads it into a work copy of its own (checked against its manifest:
//! rows per table, every file) instead of reading the live database, the hops upgrade it to the
//! environment's version, and the cut-over puts it in place of the live database, which is kept
//! until released. The environment's own ERP is stopped at `stop` and started at `start` (it
//! runs the environment's version throughout), and a failure leaves the live database as it
//! was.

mod serving;

use std::collections::BTreeSet;
use std::sync::Mutex;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenantry_contract::version::{ErpSeries, ErpVersion};

pub use serving::{Served, ServingCheck};

use super::{Environment, ErpControl, run_steps};
use crate::catalogue::{Catalogue, Hop, Plan, plan};
use crate::database::{DatabaseName, ErpState, replaced_name, work_copy_name};
use crate::error::{Error, Result};
use crate::fingerprint::{self, Fingerprint, VOLATILE_TABLES};
use crate::journal::{Journal, JournalStore, Phase};
use crate::key::BackupKey;
use crate::manifest::{BackupId, BackupKind, Summary};
use crate::migrate::{SeriesErp, WorkDatabase, hop_key, run_hop};
use crate::report::{Outcome, Report, StepOutcome, StepReport, Validation};
use crate::store::BackupStore;

pub use super::BeforeOperationBackup;

/// The version to upgrade to, and how to reach it.
pub struct Target<'a> {
    /// A stable release of a newer series than the environment's.
    pub version: ErpVersion,
    /// The programs (admin command, console) of a series: each hop runs those of its target
    /// series, configured for the environment's database server and file store, with the
    /// administrator's password in their environment (`TRYTONPASSFILE`).
    pub erp_for: &'a dyn Fn(ErpSeries) -> Result<SeriesErp>,
    /// Where the new server answers once started, and who logs in to test it.
    pub serving: ServingCheck,
    /// Also run the ERP's own validation of every record on the upgraded copy before the
    /// cut-over (Tryton: `trytond-admin --validate`); a record it refuses fails the upgrade.
    pub validate: bool,
}

/// What an upgrade works with, fixed once and journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Names {
    pub backup_id: BackupId,
    /// The upgraded copy the cut-over swaps in (the last hop's output) and its file-store folder.
    pub work: String,
    /// The other work name hops alternate with.
    pub other_work: String,
    pub kept: String,
    pub from_version: String,
    /// The modules activated before the upgrade: what the plan was made for.
    pub modules: BTreeSet<String>,
    /// Upgrading a backup: the work copy it is loaded into (the first hop's input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What is upgraded.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The environment's own database, at the version it runs.
    Live,
    /// A backup of an older series, restored into the environment on the way.
    Backup { store: &'a BackupStore, key: &'a BackupKey, summary: &'a Summary },
}

/// Upgrades `environment` (stopped and started through `old`, serving its current version) to
/// `target.version` (served through `new` once cut over), as operation `operation` (1 to 30
/// letters, digits or `-`: names its work copies). A failure at any step is rolled back to the
/// environment as it was, on the old version: an outcome in the report, not an error. An error
/// means the upgrade could neither finish nor roll back; the journal says where it stands and a
/// rerun with it continues.
#[allow(clippy::too_many_arguments)]
pub async fn upgrade(
    environment: &Environment,
    catalogue: &Catalogue,
    target: Target<'_>,
    backup: BeforeOperationBackup<'_>,
    operation: &str,
    old: &impl ErpControl,
    new: &impl ErpControl,
    journal: &dyn JournalStore,
) -> Result<Report> {
    let parameters = parameters(environment, &environment.erp.version, &target.version);
    run(environment, catalogue, target, backup, Source::Live, parameters, operation, old, new, journal).await
}

/// Restores backup `backup_id` of `from_environment`, taken on an older series than the
/// `environment` runs, and upgrades it to the environment's version on the way (see the module
/// documentation); `target.version` must be the environment's. `backup` takes a backup of the
/// live database first, as before any operation that replaces it. `erp` stops and starts the
/// environment's ERP. A backup of the environment's own series is a plain
/// [`super::restore::restore`]; one of a newer series is refused.
#[allow(clippy::too_many_arguments)]
pub async fn restore_older(
    environment: &Environment,
    catalogue: &Catalogue,
    target: Target<'_>,
    backup: BeforeOperationBackup<'_>,
    store: &BackupStore,
    key: &BackupKey,
    from_environment: &str,
    backup_id: &BackupId,
    operation: &str,
    erp: &impl ErpControl,
    journal: &dyn JournalStore,
) -> Result<Report> {
    let summary = store.existing(&environment.tenant, from_environment, backup_id).await?;
    let parse = |text: &str| text.parse::<ErpVersion>().map_err(|e| Error::Invalid(e.to_string()));
    let (backed_up, running) = (parse(&summary.erp.version)?, parse(&environment.erp.version)?);
    if target.version != running {
        return Err(Error::Invalid(format!(
            "a backup is restored at the version the environment runs ({running}), not {}",
            target.version
        )));
    }
    if backed_up.erp_series() >= running.erp_series() {
        return Err(Error::Invalid(format!(
            "the backup was taken on {backed_up}, not an older series than the {running} this environment runs: {}",
            if backed_up.erp_series() == running.erp_series() {
                "restore it as it is"
            } else {
                "an older ERP cannot read a database a newer one has migrated"
            }
        )));
    }
    let mut parameters = parameters(environment, &summary.erp.version, &target.version);
    parameters["backup"] = json!(backup_id);
    parameters["from_environment"] = json!(from_environment);
    let source = Source::Backup { store, key, summary: &summary };
    run(environment, catalogue, target, backup, source, parameters, operation, erp, erp, journal).await
}

/// What a journal of an upgrade of `environment` from `from` to `to` is recorded with (a rerun
/// with other parameters is refused).
fn parameters(environment: &Environment, from: &str, to: &ErpVersion) -> Value {
    json!({
        "tenant": environment.tenant,
        "environment": environment.name,
        "database": environment.database.as_str(),
        "from": from,
        "to": to.to_string(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn run(
    environment: &Environment,
    catalogue: &Catalogue,
    target: Target<'_>,
    backup: BeforeOperationBackup<'_>,
    source: Source<'_>,
    parameters: Value,
    operation: &str,
    old: &impl ErpControl,
    new: &impl ErpControl,
    journal: &dyn JournalStore,
) -> Result<Report> {
    let names = match recorded_names(journal, operation, &parameters)? {
        Some(names) => names,
        None => new_names(environment, operation, source).await?,
    };
    let from: ErpVersion = names.from_version.parse().map_err(|e| Error::Invalid(format!("{e}")))?;
    let plan = plan(&environment.erp.profile, from, target.version, &names.modules, catalogue)?;
    let hop_steps: Vec<&'static str> = plan.hops.iter().map(|hop| step_name(format!("hop {}", hop_key(hop)))).collect();
    let mut steps = vec!["backup", "stop", "copy"];
    steps.extend(&hop_steps);
    steps.extend(["check", "cut-over", "start", "test"]);

    let failed_stages = Mutex::new(Vec::new());
    let (target, backup, plan, hop_steps, failed_stages) = (&target, &backup, &plan, &hop_steps, &failed_stages);
    let report = run_steps(
        environment,
        journal,
        operation,
        "upgrade",
        parameters,
        names.clone(),
        &steps,
        |step, journal, names| async move {
            match step {
                "backup" => back_up(environment, backup, operation, &names).await,
                "stop" => super::work_copy::stop_erp(environment, old).await,
                "copy" => copy(environment, source, &names).await,
                "check" => check(environment, target, plan, &journal, &names).await,
                "cut-over" => super::work_copy::swap_in(environment, &journal, &names.work, &names.kept).await,
                "start" => new.start().await.map(|()| Value::Null),
                "test" => {
                    let series = target.version.erp_series();
                    let served = serving::check(&target.serving, series, environment.database.as_str()).await?;
                    Ok(serde_json::to_value(served).expect("serializable"))
                }
                hop => {
                    let index = hop_steps.iter().position(|s| *s == hop).expect("a step of this upgrade");
                    run_hop_on_copy(environment, target, plan, index, &journal, &names, failed_stages).await
                }
            }
        },
        |journal, names| async move { undo(environment, old, new, &journal, &names).await },
    )
    .await?;
    let recorded = journal.load()?.ok_or_else(|| Error::Journal("the upgrade's journal vanished".into()))?;
    let failed_stages = std::mem::take(&mut *failed_stages.lock().expect("stage reports"));
    Ok(complete_report(report, &recorded, plan, &names, target, failed_stages))
}

/// The names of a journal this upgrade already started, if any (a journal of another operation
/// is refused by [`run_steps`]).
fn recorded_names(journal: &dyn JournalStore, operation: &str, parameters: &Value) -> Result<Option<Names>> {
    Ok(journal
        .load()?
        .filter(|j| j.operation == operation && j.kind == "upgrade" && &j.parameters == parameters)
        .and_then(|j| j.output("prepare").cloned())
        .and_then(|names| serde_json::from_value(names).ok()))
}

async fn new_names(environment: &Environment, operation: &str, source: Source<'_>) -> Result<Names> {
    // Each hop writes a copy; two names alternate, the second one a suffix longer (as is the
    // loaded backup's).
    if operation.len() > 30 {
        return Err(Error::Invalid(format!("upgrade operation id `{operation}` is longer than 30 characters")));
    }
    let (from_version, modules, source) = match source {
        Source::Live => {
            let mut connection = environment.server.connect(environment.database.as_str()).await?;
            (environment.erp.version.clone(), fingerprint::read(&mut connection).await?.modules, None)
        }
        Source::Backup { store, key, summary } => {
            let manifest = store.manifest(summary, key).await?;
            let loaded = work_copy_name(&environment.database, &format!("{operation}-s"))?.to_string();
            (summary.erp.version.clone(), manifest.modules.keys().cloned().collect(), Some(loaded))
        }
    };
    let now = Utc::now();
    Ok(Names {
        backup_id: BackupId::generate(now),
        work: work_copy_name(&environment.database, operation)?.to_string(),
        other_work: work_copy_name(&environment.database, &format!("{operation}-b"))?.to_string(),
        kept: replaced_name(&environment.database, now)?.to_string(),
        from_version,
        modules,
        source,
    })
}

/// `run_steps` names steps with `&'static str`; a hop's step name is made at run time. Each
/// distinct name is leaked once (the catalogue bounds how many there are).
fn step_name(name: String) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().expect("step names");
    if let Some(known) = names.get(name.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Step 1: a backup of the environment as it is, while the old ERP still serves (the backup
/// is snapshot-consistent). Its id is fixed in `prepare`, so a rerun finishes the same backup.
async fn back_up(
    environment: &Environment,
    backup: &BeforeOperationBackup<'_>,
    operation: &str,
    names: &Names,
) -> Result<Value> {
    let kind = BackupKind::BeforeOperation { operation: operation.to_string() };
    // The backup's own journal, as `backup::backup` starts it, with the id fixed here.
    let parameters = json!({
        "tenant": environment.tenant,
        "environment": environment.name,
        "database": environment.database.as_str(),
        "kind": kind,
    });
    let journal = MemoryJournal(Mutex::new(Some(Journal::new(names.backup_id.as_str(), "backup", parameters))));
    let summary = super::backup::backup(environment, backup.store, backup.recipient, None, kind, &journal).await?;
    Ok(json!({"backup_id": summary.backup_id}))
}

/// A journal held in memory: the backup's, inside the upgrade's step.
struct MemoryJournal(Mutex<Option<Journal>>);

impl JournalStore for MemoryJournal {
    fn load(&self) -> Result<Option<Journal>> {
        Ok(self.0.lock().expect("journal").clone())
    }

    fn save(&self, journal: &Journal) -> Result<()> {
        *self.0.lock().expect("journal") = Some(journal.clone());
        Ok(())
    }
}

/// The original's fingerprint, read once the old ERP is stopped (nothing writes to it any
/// more), and its file-store folder copied for the upgraded database (an upgrade changes rows,
/// not files).
async fn copy(environment: &Environment, source: Source<'_>, names: &Names) -> Result<Value> {
    let (before, files_of) = match (source, &names.source) {
        (Source::Live, _) => {
            let mut connection = environment.server.connect(environment.database.as_str()).await?;
            (fingerprint::read(&mut connection).await?, environment.database.as_str())
        }
        (Source::Backup { store, key, summary }, Some(loaded)) => {
            // Loaded from scratch on every attempt, and checked against the manifest before any
            // hop reads it.
            let facts = super::work_copy::load_backup(environment, store, key, summary, loaded).await?;
            let files = Some((facts.files, facts.file_bytes));
            let tables = super::work_copy::check_copy(environment, loaded, &facts.fingerprint, files).await?;
            (Fingerprint { tables, modules: names.modules.clone() }, loaded.as_str())
        }
        (Source::Backup { .. }, None) => {
            return Err(Error::Journal("the journal names no work copy for the backup".into()));
        }
    };
    environment.filestore.delete(&names.work).await?;
    environment.filestore.copy(files_of, &names.work).await?;
    Ok(json!({"before": before}))
}

/// One hop on a fresh copy of its input (see the module documentation).
async fn run_hop_on_copy(
    environment: &Environment,
    target: &Target<'_>,
    plan: &Plan,
    index: usize,
    journal: &Journal,
    names: &Names,
    failed_stages: &Mutex<Vec<StepReport>>,
) -> Result<Value> {
    let hop = &plan.hops[index];
    let input = match index {
        0 => names.source.clone().unwrap_or_else(|| environment.database.to_string()),
        _ => hop_output(journal, &plan.hops[index - 1])?,
    };
    // The last hop writes `work`; the ones before alternate, so no hop overwrites its input.
    let output = if (plan.hops.len() - 1 - index).is_multiple_of(2) { &names.work } else { &names.other_work };
    let (input, output_name) = (DatabaseName::new(input)?, DatabaseName::new(output.clone())?);
    // An earlier attempt's copy may be half-migrated: start over from the untouched input.
    environment.server.drop_database(&output_name, ErpState::Stopped).await?;
    environment.server.copy(&input, &output_name, ErpState::Stopped).await?;
    let erp = (target.erp_for)(hop.to)?;
    let database = WorkDatabase::on_server(&environment.server.address().connect_options(output), output.clone());
    let mut stages = Vec::new();
    match run_hop(hop, &erp, &database, &mut stages).await {
        Ok(()) => Ok(json!({"database": output, "stages": stages})),
        Err(error) => {
            *failed_stages.lock().expect("stage reports") = stages;
            Err(error)
        }
    }
}

fn hop_output(journal: &Journal, hop: &Hop) -> Result<String> {
    journal
        .output(&format!("hop {}", hop_key(hop)))
        .and_then(|output| output["database"].as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Journal(format!("the journal has no output of hop {}", hop_key(hop))))
}

/// Rows a hop is known to remove from a table of customer data, by (profile, hop's target
/// series, table): reported as a warning with the reason instead of failing the check. This
/// belongs in the catalogue's files (a `drops` key per pair) once its format has one.
const KNOWN_DROPS: &[(&str, &str, &str, &str)] = &[(
    "tryton",
    "8.2",
    "res_user-res_group",
    "8.2 replaces the groups of users by a per-user administrator flag and drops every user's group memberships (measured: all 15 of the fixture gone; the administrator is restored by a post step, other users must be given their groups again)",
)];

/// Tables holding the ERP's own definitions, which every update rewrites from the modules'
/// files (models, fields, views, menus, actions, translations, messages, access rules and the
/// groups they are given to): fewer rows there after an upgrade are definitions the new series
/// dropped, not customer data, and are reported as warnings. Measured on Tryton 7.0 → 8.2 with
/// party, company, product and sale: `ir_model_access`, `ir_model_button` shrink at 7.2, the
/// `*-res_group` tables at 8.2 (which replaces the Administration group), and `ir_sequence` by
/// one sequence a module stopped defining (`account.sequence_account_journal`, gone in 8.x).
const DEFINITION_TABLES: &[&str] = &[
    "ir_action",
    "ir_action-res_group",
    "ir_action_act_window",
    "ir_action_act_window_domain",
    "ir_action_act_window_view",
    "ir_action_keyword",
    "ir_action_report",
    "ir_action_url",
    "ir_action_wizard",
    "ir_message",
    "ir_model",
    "ir_model_access",
    "ir_model_button",
    "ir_model_button-res_group",
    "ir_model_button_rule",
    "ir_model_data",
    "ir_model_field",
    "ir_model_field_access",
    "ir_module_dependency",
    "ir_rule",
    "ir_rule_group",
    "ir_rule_group-res_group",
    "ir_sequence",
    "ir_sequence_type-res_group",
    "ir_translation",
    "ir_ui_menu",
    "ir_ui_menu-res_group",
    "ir_ui_menu_favorite",
    "ir_ui_view",
    "ir_ui_view_search",
    "ir_ui_view_tree_optional",
    "ir_ui_view_tree_state",
    "ir_ui_view_tree_width",
    "res_group",
];

/// Nothing of the customer's data lost: every table of the original still there with at least
/// its rows (sessions and caches aside; definitions the ERP rewrites only warn), every module
/// still activated; then the ERP's own validation, if asked.
async fn check(
    environment: &Environment,
    target: &Target<'_>,
    plan: &Plan,
    journal: &Journal,
    names: &Names,
) -> Result<Value> {
    // The copy before the last hop's output is no longer needed, nor a loaded backup.
    environment.server.drop_database(&DatabaseName::new(names.other_work.clone())?, ErpState::Stopped).await?;
    if let Some(loaded) = &names.source {
        super::work_copy::start_over(environment, loaded).await?;
    }
    let before: Fingerprint = journal
        .output("copy")
        .and_then(|output| serde_json::from_value(output["before"].clone()).ok())
        .ok_or_else(|| Error::Journal("the journal has no fingerprint of the original".into()))?;
    let mut connection = environment.server.connect(&names.work).await?;
    let after = fingerprint::read(&mut connection).await?;
    let diff = fingerprint::compare(&before, &after).without(VOLATILE_TABLES);
    let definitions = |table: &str| DEFINITION_TABLES.contains(&table);
    let mut lost: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let (renamed, gone) = probable_renames(&diff.tables_lost, &diff.tables_added, &before, &after);
    warnings.extend(renamed.iter().map(|(from, to)| {
        format!("table {from} is gone and {to} appeared with its {} rows: taken as renamed", before.tables[from])
    }));
    for table in gone {
        let rows = before.tables[&table];
        if rows == 0 {
            warnings.push(format!("table {table}, empty, is gone"));
        } else if definitions(&table) {
            warnings.push(format!("table {table} ({rows} rows, the ERP's own definitions) is gone"));
        } else {
            lost.push(format!("table {table} ({rows} rows) is gone"));
        }
    }
    let known_drop = |table: &str| {
        KNOWN_DROPS.iter().find(|(profile, series, dropped, _)| {
            *profile == plan.profile && *dropped == table && plan.hops.iter().any(|hop| hop.to.to_string() == *series)
        })
    };
    for shrunk in &diff.tables_shrunk {
        let line = format!("table {}: {} rows before, {} after", shrunk.table, shrunk.before, shrunk.after);
        if let Some((_, series, _, why)) = known_drop(&shrunk.table) {
            warnings.push(format!("{line}: {series}: {why}"));
        } else if definitions(&shrunk.table) {
            warnings.push(format!("{line} (the ERP's own definitions, rewritten by the update)"));
        } else {
            lost.push(line);
        }
    }
    lost.extend(diff.modules_lost.iter().map(|module| format!("module {module} is no longer activated")));
    if !lost.is_empty() {
        return Err(Error::Conflict(format!("the upgraded copy lost data: {}", lost.join("; "))));
    }
    let validation = if target.validate {
        let erp = (target.erp_for)(plan.to.erp_series())?;
        let validation = validate(&erp, &names.work).await?;
        if let Some(Validation { passed: false, detail }) = &validation {
            return Err(Error::Conflict(format!(
                "the ERP's validation refuses records of the upgraded copy: {detail}"
            )));
        }
        validation
    } else {
        None
    };
    Ok(json!({"after": after, "warnings": warnings, "validation": validation}))
}

/// Tables an update renamed: a table gone, matched to a new table holding exactly its rows and
/// sharing a word of its name (Tryton 7.2 renames many-to-many tables, e.g. `party_category_rel`
/// to `party_party-party_category`, and moves their rows). Returns the pairs and the tables
/// left unmatched. An empty table is never matched (any new empty table would do).
fn probable_renames(
    lost: &[String],
    added: &[String],
    before: &Fingerprint,
    after: &Fingerprint,
) -> (Vec<(String, String)>, Vec<String>) {
    let words = |table: &str| -> BTreeSet<String> {
        table.split(['_', '-']).filter(|w| w.len() >= 3 && *w != "rel").map(str::to_string).collect()
    };
    let mut taken = BTreeSet::new();
    let (mut renamed, mut gone) = (Vec::new(), Vec::new());
    for table in lost {
        let rows = before.tables[table];
        let own = words(table);
        let best = added
            .iter()
            .filter(|candidate| rows > 0 && !taken.contains(*candidate) && after.tables.get(*candidate) == Some(&rows))
            .map(|candidate| (own.intersection(&words(candidate)).count(), candidate))
            .filter(|(shared, _)| *shared > 0)
            .max_by_key(|(shared, _)| *shared);
        match best {
            Some((_, candidate)) => {
                taken.insert(candidate.clone());
                renamed.push((table.clone(), candidate.clone()));
            }
            None => gone.push(table.clone()),
        }
    }
    (renamed, gone)
}

/// The ERP's own validation of every record of `database` (Tryton: `trytond-admin
/// --validate`), with a logging configuration that keeps only warnings and errors: Tryton logs
/// every valid record at INFO and each refused one at ERROR ("<record>: KO '<why>'"), and only
/// the last lines of the command's log are kept.
async fn validate(erp: &SeriesErp, database: &str) -> Result<Option<Validation>> {
    let mut logconf = tempfile::Builder::new()
        .prefix("tenantry-validate-")
        .suffix(".conf")
        .tempfile()
        .map_err(Error::io("writing the validation's logging configuration", std::env::temp_dir()))?;
    std::io::Write::write_all(&mut logconf, VALIDATION_LOGGING.as_bytes())
        .map_err(Error::io("writing the validation's logging configuration", logconf.path()))?;
    let args = ["--validate".to_string(), "--logconf".to_string(), logconf.path().display().to_string()];
    match erp.admin.profile() {
        crate::erp::Profile::Tryton => {}
        crate::erp::Profile::Odoo => return Ok(None),
    }
    Ok(Some(match erp.admin.run(database, &args).await {
        Ok(run) => {
            let refused: Vec<&str> = run.log_tail.lines().filter(|line| line.starts_with("ERROR")).collect();
            if refused.is_empty() {
                Validation { passed: true, detail: format!("every record valid ({:.1} s)", run.duration.as_secs_f64()) }
            } else {
                Validation { passed: false, detail: refused.join("\n") }
            }
        }
        Err(error) => Validation { passed: false, detail: error.to_string() },
    }))
}

/// Python's `logging.config.fileConfig` format: warnings and errors only, one plain line each.
const VALIDATION_LOGGING: &str = "[loggers]\nkeys=root\n\n[handlers]\nkeys=stderr\n\n[formatters]\nkeys=plain\n\n\
[logger_root]\nlevel=WARNING\nhandlers=stderr\n\n\
[handler_stderr]\nclass=StreamHandler\nargs=(sys.stderr,)\nformatter=plain\n\n\
[formatter_plain]\nformat=%(levelname)s %(name)s %(message)s\n";

/// Back to the environment before the upgrade, on the old version: the new server stopped if
/// it was started, the original cut back in, every work copy dropped, the old ERP started.
async fn undo(
    environment: &Environment,
    old: &impl ErpControl,
    new: &impl ErpControl,
    journal: &Journal,
    names: &Names,
) -> Result<()> {
    let reached = |step: &str| journal.is_done(step) || journal.failure.as_ref().is_some_and(|f| f.step == step);
    if reached("start") {
        new.stop().await?;
    }
    let stopped = reached("stop");
    if stopped {
        old.stop().await?;
        super::work_copy::swap_out(environment, journal, &names.work, &names.kept).await?;
    }
    for work in [&names.work, &names.other_work] {
        environment.server.drop_database(&DatabaseName::new(work.clone())?, ErpState::Stopped).await?;
    }
    environment.filestore.delete(&names.work).await?;
    if let Some(loaded) = &names.source {
        super::work_copy::start_over(environment, loaded).await?;
    }
    if stopped { old.start().await } else { Ok(()) }
}

/// The journal's report with what an upgrade adds: the versions, each hop's stages after the
/// hop (those of a failed hop included), the fingerprints before and after, the plan's warnings
/// and skipped steps, and the validation.
fn complete_report(
    mut report: Report,
    journal: &Journal,
    plan: &Plan,
    names: &Names,
    target: &Target<'_>,
    failed_stages: Vec<StepReport>,
) -> Report {
    report.from_version = Some(names.from_version.clone());
    report.to_version = Some(target.version.to_string());
    let rolled_back = journal.phase == Phase::RolledBack;
    let mut steps = Vec::with_capacity(report.steps.len());
    for mut step in std::mem::take(&mut report.steps) {
        let stages: Vec<StepReport> = match (&step.outcome, journal.output(&step.step)) {
            (StepOutcome::Failed, _) if step.step.starts_with("hop ") => {
                // The journal knows no duration of a failed step; its stages do.
                step.duration_ms = failed_stages.iter().map(|s| s.duration_ms).sum();
                failed_stages.clone()
            }
            (_, Some(output)) if step.step.starts_with("hop ") => {
                serde_json::from_value(output["stages"].clone()).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        steps.push(step);
        steps.extend(stages.into_iter().map(|mut stage| {
            if rolled_back && stage.outcome == StepOutcome::Done {
                stage.outcome = StepOutcome::Undone;
            }
            stage
        }));
    }
    report.steps = steps;

    let recorded = |step: &str, key: &str| -> Option<Fingerprint> {
        serde_json::from_value::<Fingerprint>(journal.output(step)?[key].clone()).ok()
    };
    if let (Some(before), Some(after)) = (recorded("copy", "before"), recorded("check", "after")) {
        report.fingerprint = crate::fingerprint::compare(&before, &after).rows;
    }
    for hop in &plan.hops {
        let key = hop_key(hop);
        report.warnings.extend(hop.warnings.iter().map(|w| format!("{key}: {w}")));
        report.warnings.extend(hop.notes.iter().map(|n| format!("{key}: note: {n}")));
        report.warnings.extend(
            hop.skipped.iter().map(|s| {
                format!("{key}: step {} skipped: modules {} not activated", s.id, s.missing_modules.join(", "))
            }),
        );
    }
    if let Some(check) = journal.output("check") {
        report.warnings.extend(serde_json::from_value::<Vec<String>>(check["warnings"].clone()).unwrap_or_default());
        report.validation = serde_json::from_value(check["validation"].clone()).ok().flatten();
    }
    if let Outcome::RolledBack { .. } = report.outcome {
        report.warnings.push("rolled back: the environment is as before the upgrade, on the old version".into());
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_table_is_matched_by_its_rows_and_name() {
        let fingerprint = |tables: &[(&str, u64)]| Fingerprint {
            tables: tables.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            modules: BTreeSet::new(),
        };
        let before =
            fingerprint(&[("party_category_rel", 7), ("sale_line_account_tax", 3), ("empty_rel", 0), ("lost", 2)]);
        let after = fingerprint(&[
            ("party_party-party_category", 7),
            ("sale_line-account_tax", 3),
            ("unrelated", 2),
            ("other_empty", 0),
        ]);
        let lost = ["empty_rel", "lost", "party_category_rel", "sale_line_account_tax"].map(String::from);
        let added =
            ["other_empty", "party_party-party_category", "sale_line-account_tax", "unrelated"].map(String::from);
        let (renamed, gone) = probable_renames(&lost, &added, &before, &after);
        assert_eq!(
            renamed,
            [
                ("party_category_rel".to_string(), "party_party-party_category".to_string()),
                ("sale_line_account_tax".to_string(), "sale_line-account_tax".to_string())
            ]
        );
        assert_eq!(gone, ["empty_rel", "lost"], "no shared word, or no rows to recognise");
    }

    #[test]
    fn a_hop_step_name_is_made_once() {
        let first = step_name("hop 7.0-7.2".to_string());
        let again = step_name(String::from("hop 7.0-7.2"));
        assert!(std::ptr::eq(first, again));
        assert_eq!(first, "hop 7.0-7.2");
    }
}
