//! Module updates and activations of a real Tryton environment (real data, real attachments)
//! on a real PostgreSQL, with a real `trytond` stopped and started around the cut-over and the
//! real `trytond-admin` doing the update on the work copy.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Instant;

use erp_agent::database::{DatabaseName, derived_prefix};
use erp_agent::erp::{ErpCommand, ModuleUpdate, Profile};
use erp_agent::fingerprint::{self, Fingerprint, VOLATILE_TABLES};
use erp_agent::journal::FileJournal;
use erp_agent::key::BackupKey;
use erp_agent::manifest::BackupKind;
use erp_agent::ops::update::{BeforeOperationBackup, update};
use erp_agent::ops::{ErpControl, release};
use erp_agent::report::{Outcome, Report, StepOutcome};

use common::{Erp, Tryton, environment, read_back, stores, tryton};

const SERIES: &str = "7.0";
/// Installed in the test's Tryton, not activated in its template.
const NEW_MODULE: &str = "party_relationship";

/// The real `trytond-admin` of the test's Tryton; its admin password through its environment.
fn admin_command(tryton: &Tryton) -> ErpCommand {
    ErpCommand::new(Profile::Tryton, tryton.install.bin("trytond-admin"), tryton.config.path())
        .env("TRYTONPASSFILE", tryton.config.admin_password_file().display().to_string())
}

async fn module_state(tryton: &Tryton, database: &DatabaseName, module: &str) -> String {
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    sqlx::query_scalar("SELECT state::text FROM ir_module WHERE name = $1")
        .bind(module)
        .fetch_optional(&mut connection)
        .await
        .unwrap()
        .unwrap_or_else(|| "unknown".into())
}

async fn fingerprint_of(tryton: &Tryton, database: &DatabaseName) -> Fingerprint {
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    fingerprint::read(&mut connection).await.unwrap()
}

/// Logs in to `database` through the running ERP and counts the records of `model`: the ERP
/// serves, and serves that model.
async fn served_count(erp: &Erp, database: &DatabaseName, model: &str) -> i64 {
    let running = erp.running.lock().await;
    let server = running.as_ref().expect("the ERP is running");
    let session =
        server.client().login(database.as_str(), "admin", erp.tryton.config.admin_password()).await.expect("login");
    let count = session.search_count(model, serde_json::json!([])).await.expect("search_count");
    session.logout().await.ok();
    count
}

fn step_names(report: &Report) -> Vec<&str> {
    report.steps.iter().map(|s| s.step.as_str()).collect()
}

/// From the ERP's stop to its start again, against the ERP's own update run.
fn downtime(report: &Report) -> (f64, f64) {
    let step = |name: &str| report.steps.iter().find(|s| s.step == name).unwrap();
    let (stop, start) = (step("stop"), step("start"));
    let window =
        (start.started_at - stop.started_at).num_milliseconds() as f64 / 1000.0 + start.duration_ms as f64 / 1000.0;
    (window, step("update").duration_ms as f64 / 1000.0)
}

/// No table of `before` has fewer rows in `after` (sessions and caches aside).
fn keeps_every_row(before: &Fingerprint, after: &Fingerprint) {
    let diff = fingerprint::compare(before, after).without(VOLATILE_TABLES);
    assert!(diff.loses_nothing(), "{diff:?}");
}

#[tokio::test]
async fn module_update_activates_and_updates() {
    let tryton = tryton(SERIES).await;
    let test_started = Instant::now();
    let version = tryton.install.version().unwrap();
    let (_, store, scratch) = stores("update").await.swap_remove(0);
    let database = tryton.copy_of_template("update").await;
    tryton.set_admin_password(&database).await;
    let env = environment(tryton, "acme-update", &database, &version);
    let erp = Erp::new(tryton, "update").await;
    let command = admin_command(tryton);
    let key = BackupKey::generate();
    let recipient = key.recipient();
    let data = read_back(tryton, &database).await;
    let before = fingerprint_of(tryton, &database).await;
    assert_eq!(module_state(tryton, &database, NEW_MODULE).await, "not activated");

    // Activation of a new module, with a backup before it.
    let activate = ModuleUpdate::Activate(vec![NEW_MODULE.into()]);
    let journal = FileJournal::new(scratch.path().join("activate.json"));
    let started = Instant::now();
    let backup = || Some(BeforeOperationBackup { store: &store, recipient: &recipient });
    let report = update(&env, &activate, &command, backup(), "op-activate", &erp, &journal).await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
    assert_eq!(step_names(&report), ["backup", "stop", "copy", "update", "check", "cut-over", "start"]);
    assert!(report.steps.iter().all(|s| s.outcome == StepOutcome::Done));
    let log = report.steps[3].detail.as_deref().unwrap_or_default();
    assert!(log.contains("all modules loaded"), "the ERP's log tail is in the report: {log}");
    let (window, erp_run) = downtime(&report);
    eprintln!("activation: {took:.1?} in all, ERP stopped {window:.1} s, its update {erp_run:.1} s\n{report}");

    assert_eq!(module_state(tryton, &database, NEW_MODULE).await, "activated");
    let after = fingerprint_of(tryton, &database).await;
    let new_tables: Vec<&String> = after.tables.keys().filter(|t| !before.tables.contains_key(*t)).collect();
    assert!(new_tables.iter().any(|t| t.starts_with("party_relation")), "its tables exist: {new_tables:?}");
    for table in &new_tables {
        assert_eq!(report.fingerprint[*table].before, None, "{table} is reported as new");
    }
    keeps_every_row(&before, &after);
    assert_eq!(read_back(tryton, &database).await, data, "every prior row and attachment kept");
    assert_eq!(served_count(&erp, &database, "party.relation.type").await, 0, "the ERP serves the new module");
    assert!(served_count(&erp, &database, "party.party").await > 0);

    let derived = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert_eq!(derived.len(), 1, "no work copy left, the original kept: {derived:?}");
    assert!(derived[0].contains("__replaced_"), "{derived:?}");
    let kept = DatabaseName::new(&derived[0]).unwrap();
    assert_eq!(fingerprint_of(tryton, &kept).await, before, "the kept original is the database from before");
    assert!(tryton.store.exists(kept.as_str()).unwrap(), "its file store folder is kept with it");
    let backups = store.list(&env.tenant, "production").await.unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0].kind, BackupKind::BeforeOperation { operation: "op-activate".into() });

    // Rerun with the same journal: finished, nothing done twice.
    let starts = erp.starts.load(Ordering::Relaxed);
    let again = update(&env, &activate, &command, backup(), "op-activate", &erp, &journal).await.unwrap();
    assert_eq!(again.outcome, Outcome::Succeeded);
    assert_eq!(erp.starts.load(Ordering::Relaxed), starts, "not started again");
    assert_eq!(store.list(&env.tenant, "production").await.unwrap().len(), 1, "no second backup");
    assert_eq!(tryton.server.list(&derived_prefix(&database)).await.unwrap(), derived, "no second cut-over");
    release(&env, kept.as_str()).await.unwrap();

    // An update of a named module, then of all of them: data intact each time.
    for (operation, what) in [("op-update", ModuleUpdate::Update(vec!["party".into()])), ("op-all", ModuleUpdate::All)]
    {
        let before = fingerprint_of(tryton, &database).await;
        let journal = FileJournal::new(scratch.path().join(format!("{operation}.json")));
        let started = Instant::now();
        let report = update(&env, &what, &command, None, operation, &erp, &journal).await.unwrap();
        assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
        assert_eq!(step_names(&report), ["stop", "copy", "update", "check", "cut-over", "start"]);
        let (window, erp_run) = downtime(&report);
        eprintln!("{what:?}: {:.1?} in all, ERP stopped {window:.1} s, its update {erp_run:.1} s", started.elapsed());
        keeps_every_row(&before, &fingerprint_of(tryton, &database).await);
        assert_eq!(read_back(tryton, &database).await, data, "{what:?}: data intact");
        assert_eq!(module_state(tryton, &database, NEW_MODULE).await, "activated");
        assert!(served_count(&erp, &database, "party.party").await > 0, "{what:?}: the ERP serves again");
    }
    erp.stop().await.unwrap();
    eprintln!("activation and updates: {:.1?} once Tryton was ready", test_started.elapsed());
}

#[tokio::test]
async fn failed_update_leaves_the_environment_untouched() {
    let tryton = tryton(SERIES).await;
    let test_started = Instant::now();
    let version = tryton.install.version().unwrap();
    let database = tryton.copy_of_template("update_fails").await;
    tryton.set_admin_password(&database).await;
    // A real failure inside the ERP's run: the database refuses the new module's models, as a
    // constraint a module's data breaks would.
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_party_relation() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'the test refuses model %', NEW.model; END $$; \
         CREATE TRIGGER refuse_party_relation BEFORE INSERT ON ir_model FOR EACH ROW \
         WHEN (NEW.model LIKE 'party.relation%') EXECUTE FUNCTION refuse_party_relation();",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    drop(connection);
    let env = environment(tryton, "acme-update-fails", &database, &version);
    let erp = Erp::new(tryton, "update-fails").await;
    let data = read_back(tryton, &database).await;
    let before = fingerprint_of(tryton, &database).await;
    let scratch = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(scratch.path().join("update.json"));

    let activate = ModuleUpdate::Activate(vec![NEW_MODULE.into()]);
    let report = update(&env, &activate, &admin_command(tryton), None, "op-fails", &erp, &journal).await.unwrap();
    eprintln!("{report}");
    match &report.outcome {
        Outcome::RolledBack { step, reason } => {
            assert_eq!(step, "update");
            assert!(reason.contains(&format!("in module {NEW_MODULE}")), "the module is named: {reason}");
            assert!(reason.contains("the test refuses model party.relation"), "the log tail is there: {reason}");
        }
        other => panic!("the failed update was not rolled back: {other:?}"),
    }
    let failed = report.steps.last().unwrap();
    assert_eq!((failed.step.as_str(), &failed.outcome), ("update", &StepOutcome::Failed));

    assert_eq!(fingerprint_of(tryton, &database).await, before, "every table as it was");
    assert_eq!(read_back(tryton, &database).await, data, "the data as it was");
    assert_eq!(module_state(tryton, &database, NEW_MODULE).await, "not activated");
    assert!(tryton.server.list(&derived_prefix(&database)).await.unwrap().is_empty(), "no work database left");
    assert!(!tryton.store.exists(&format!("{database}__work_op-fails")).unwrap(), "no work folder left");
    assert_eq!(erp.starts.load(Ordering::Relaxed), 2, "started again on the original");
    assert!(served_count(&erp, &database, "party.party").await > 0, "the ERP serves again");

    // Rerun with the same journal: rolled back already, nothing done again.
    let again = update(&env, &activate, &admin_command(tryton), None, "op-fails", &erp, &journal).await.unwrap();
    assert_eq!(again.outcome, report.outcome);
    assert_eq!(erp.starts.load(Ordering::Relaxed), 2);
    erp.stop().await.unwrap();
    eprintln!("failed update: {:.1?} once Tryton was ready", test_started.elapsed());
}

#[tokio::test]
async fn an_update_killed_during_the_erp_run_resumes_on_a_fresh_copy() {
    let tryton = tryton(SERIES).await;
    let test_started = Instant::now();
    let version = tryton.install.version().unwrap();
    let database = tryton.copy_of_template("update_killed").await;
    tryton.set_admin_password(&database).await;
    let env = environment(tryton, "acme-update-killed", &database, &version);
    let erp = Erp::new(tryton, "update-killed").await;
    let command = admin_command(tryton);
    let data = read_back(tryton, &database).await;
    let before = fingerprint_of(tryton, &database).await;
    let scratch = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(scratch.path().join("update.json"));
    let activate = ModuleUpdate::Activate(vec![NEW_MODULE.into()]);

    // Killed in the middle of the ERP's run: the operation's future is dropped (as when the
    // agent's process dies), which kills `trytond-admin` with it.
    // The operation records the mark `update (started)` just before it runs the ERP's command;
    // the command then takes seconds (Python starting, the modules loading), so a cut a few
    // hundred milliseconds after the mark lands inside it whatever the machine's load.
    let copied = async {
        use erp_agent::journal::JournalStore;
        let started = |j: &erp_agent::journal::Journal| j.done.iter().any(|r| r.step == "update (started)");
        while !journal.load().unwrap().is_some_and(|j| started(&j)) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    tokio::select! {
        result = update(&env, &activate, &command, None, "op-killed", &erp, &journal) => {
            panic!("the update finished before it could be interrupted: {result:?}")
        }
        () = copied => {}
    }
    assert!(erp.running.lock().await.is_none(), "interrupted with the ERP stopped");
    let left = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert!(left.iter().any(|name| name.contains("__work_op-killed")), "interrupted with its work copy: {left:?}");

    let report = update(&env, &activate, &command, None, "op-killed", &erp, &journal).await.unwrap();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
    assert_eq!(step_names(&report), ["stop", "copy", "update", "check", "cut-over", "start"], "{report}");
    assert_eq!(module_state(tryton, &database, NEW_MODULE).await, "activated");
    keeps_every_row(&before, &fingerprint_of(tryton, &database).await);
    assert_eq!(read_back(tryton, &database).await, data);
    let derived = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert_eq!(derived.len(), 1, "only the kept original: {derived:?}");
    assert_eq!(fingerprint_of(tryton, &DatabaseName::new(&derived[0]).unwrap()).await, before);
    assert_eq!(served_count(&erp, &database, "party.relation.type").await, 0, "the ERP serves the new module");
    erp.stop().await.unwrap();
    eprintln!("killed and resumed: {:.1?} once Tryton was ready", test_started.elapsed());
}

/// A database without attachments has no file-store folder: the update cuts over the copy's
/// (empty) folder with nothing to keep beside the replaced database.
#[tokio::test]
async fn update_of_an_environment_without_a_file_store_folder() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let database = tryton.copy_of_template("update_nofolder").await;
    tryton.set_admin_password(&database).await;
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    sqlx::query("DELETE FROM ir_attachment").execute(&mut connection).await.unwrap();
    drop(connection);
    tryton.store.delete(database.as_str()).await.unwrap();
    let env = environment(tryton, "acme-update-nofolder", &database, &version);
    let erp = Erp::new(tryton, "update-nofolder").await;
    let scratch = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(scratch.path().join("update.json"));
    let party = ModuleUpdate::Update(vec!["party".into()]);
    let report = update(&env, &party, &admin_command(tryton), None, "op-nofolder", &erp, &journal).await.unwrap();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
    let kept = report.kept.clone().expect("the replaced database is kept");
    assert!(!tryton.store.exists(&kept).unwrap(), "there was no folder to keep");
    assert!(served_count(&erp, &database, "party.party").await > 0, "the ERP serves the updated database");
    release(&env, &kept).await.unwrap();
    assert!(tryton.server.list(&derived_prefix(&database)).await.unwrap().is_empty());
    erp.stop().await.unwrap();
}
