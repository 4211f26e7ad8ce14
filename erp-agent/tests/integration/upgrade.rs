//! Major-version upgrades of a real Tryton environment (real data, real attachments) on a real
//! PostgreSQL: the old series' `trytond` stopped, every hop's stages run by the new series'
//! programs from PyPI, the new series' `trytond` started and logged in to through its own
//! JSON-RPC; and failures rolled back to the old version serving the old data.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use e2e::process::{Spec, Supervised, WorkDir};
use e2e::tryton::{ADMIN_LOGIN, TrytonConfig, TrytonInstall, fixture};
use erp_agent::catalogue::{Catalogue, plan};
use erp_agent::database::{DatabaseName, derived_prefix};
use erp_agent::erp::{ErpCommand, Profile};
use erp_agent::fingerprint::{self, Fingerprint, VOLATILE_TABLES};
use erp_agent::journal::{FileJournal, JournalStore};
use erp_agent::key::BackupKey;
use erp_agent::manifest::BackupKind;
use erp_agent::migrate::{ErpConsole, SeriesErp, hop_key, hop_stages};
use erp_agent::ops::ErpControl;
use erp_agent::ops::upgrade::{BeforeOperationBackup, ServingCheck, Target, restore_older, upgrade};
use erp_agent::report::{Outcome, Report, StepOutcome};
use erp_agent::{Error, Result};
use serde_json::json;
use tenantry_contract::version::{ErpSeries, ErpVersion};
use tokio::sync::Mutex;

use common::{Erp, Tryton, environment, read_back, stores, tryton};

const OLD: &str = "7.0";

/// The new series' `trytond` over the environment's database (named at its start: from 7.8 a
/// server serves only those), stopped and started as the operator would.
struct NewServer {
    install: TrytonInstall,
    config: TrytonConfig,
    workdir: Arc<WorkDir>,
    database: String,
    running: Mutex<Option<Supervised>>,
    starts: AtomicU32,
}

impl NewServer {
    fn new(tryton: &Tryton, install: TrytonInstall, label: &str, database: &DatabaseName) -> Self {
        let dir = tryton.workdir.join(format!("new-{label}"));
        let config = TrytonConfig::write_with_data(&dir, tryton.postgres.port(), tryton.store.root()).unwrap();
        Self {
            install,
            config,
            workdir: tryton.workdir.clone(),
            database: database.to_string(),
            running: Mutex::new(None),
            starts: AtomicU32::new(0),
        }
    }

    /// The programs of `series` for the upgrade's hops, aimed at this server's configuration
    /// (same PostgreSQL, same file store), with the administrator's password of the template.
    fn programs(&self, install: &TrytonInstall, tryton: &Tryton) -> SeriesErp {
        let admin = install.bin("trytond-admin");
        let passfile = tryton.config.admin_password_file().display().to_string();
        SeriesErp {
            admin: ErpCommand::new(Profile::Tryton, &admin, self.config.path()).env("TRYTONPASSFILE", &passfile),
            console: ErpConsole::beside_admin(&admin, self.config.path()),
        }
    }

    fn serving(&self, tryton: &Tryton) -> ServingCheck {
        ServingCheck {
            url: self.config.url(),
            login: ADMIN_LOGIN.to_string(),
            password_file: tryton.config.admin_password_file().to_path_buf(),
        }
    }
}

impl ErpControl for NewServer {
    async fn stop(&self) -> Result<()> {
        if let Some(server) = self.running.lock().await.take() {
            server.stop(Duration::from_secs(10));
        }
        Ok(())
    }

    async fn start(&self) -> Result<()> {
        let mut running = self.running.lock().await;
        if running.is_none() {
            let name = format!("trytond-{}-{}", self.install.series(), self.config.port());
            let spec = Spec::new(name, self.install.bin("trytond"))
                .args(["-c", &self.config.path().display().to_string(), "-d", &self.database])
                .env("PYTHONUNBUFFERED", "1")
                .current_dir(self.config.dir());
            let failed = |e: e2e::Error| Error::Invalid(format!("starting trytond {}: {e}", self.install.series()));
            let server = Supervised::spawn(&self.workdir, spec).map_err(failed)?;
            let address = format!("127.0.0.1:{}", self.config.port());
            server
                .wait_ready("trytond listening", Duration::from_secs(60), || {
                    let address = address.clone();
                    async move { tokio::net::TcpStream::connect(address).await.map(drop).map_err(|e| e.to_string()) }
                })
                .await
                .map_err(failed)?;
            self.starts.fetch_add(1, Ordering::Relaxed);
            *running = Some(server);
        }
        Ok(())
    }
}

/// Every series from `from` to `to` the tests may need, installed.
async fn installs(series: &[&str]) -> HashMap<ErpSeries, TrytonInstall> {
    let mut installs = HashMap::new();
    for s in series {
        let install = TrytonInstall::ensure_async(s).await.expect("Tryton install");
        installs.insert(s.parse().unwrap(), install);
    }
    installs
}

fn version(install: &TrytonInstall) -> ErpVersion {
    install.version().unwrap().parse().unwrap()
}

/// The steps of an upgrade from 7.0 to 7.2, in order: the seven steps of the procedure with the
/// agent's own (the work copy, its check, the cut-over).
const ONE_HOP_STEPS: [&str; 10] = [
    "backup",
    "stop",
    "copy",
    "hop 7.0-7.2",
    "7.0-7.2/pre/tryton-7.2-empty-foreign-keys-to-null",
    "7.0-7.2/update-all",
    "check",
    "cut-over",
    "start",
    "test",
];

fn step_names(report: &Report) -> Vec<&str> {
    report.steps.iter().map(|s| s.step.as_str()).collect()
}

async fn fingerprint_of(tryton: &Tryton, database: &DatabaseName) -> Fingerprint {
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    fingerprint::read(&mut connection).await.unwrap()
}

/// No table of the customer's data has fewer rows after the upgrade; one that is gone is one the
/// report says was renamed, with its rows.
fn assert_no_rows_lost(before: &Fingerprint, after: &Fingerprint, report: &Report) {
    let ours = |table: &str| {
        ["party_", "company_", "product_", "sale_", "currency_", "country_"].iter().any(|p| table.starts_with(p))
            || table == "ir_attachment"
    };
    for (table, rows) in before.tables.iter().filter(|(t, _)| ours(t)) {
        match after.tables.get(table) {
            Some(after) => assert!(after >= rows, "{table}: {rows} rows before, {after} after"),
            None => assert!(
                report.warnings.iter().any(|w| {
                    w.contains(&format!("table {table} is gone and "))
                        || (*rows == 0 && w.contains(&format!("table {table}, empty, is gone")))
                }),
                "{table} ({rows} rows) is gone: {:?}",
                report.warnings
            ),
        }
    }
}

/// A 7.0 environment on a copy of the template, its admin with the template configuration's
/// password, and its old server running.
async fn old_environment(label: &str) -> (&'static Tryton, DatabaseName, erp_agent::ops::Environment, Erp) {
    let tryton = tryton(OLD).await;
    let database = tryton.copy_of_template(label).await;
    tryton.set_admin_password(&database).await;
    let env = environment(tryton, &format!("acme-{label}"), &database, &tryton.install.version().unwrap());
    let old = Erp::new(tryton, label).await;
    (tryton, database, env, old)
}

/// Categories given to some parties through the old server: rows of a many-to-many table,
/// which 7.2 renames (`party_category_rel` to `party_party-party_category`). Returns the
/// category and how many parties have it.
async fn categorise_parties(tryton: &Tryton, old: &Erp, database: &DatabaseName) -> (i64, i64) {
    let running = old.running.lock().await;
    let server = running.as_ref().expect("the old ERP runs");
    let session = server.login(database.as_str(), ADMIN_LOGIN, tryton.config.admin_password()).await.unwrap();
    let category = session.create("party.category", vec![json!({"name": "Upgraded customers"})]).await.unwrap()[0];
    let parties = session.search_read("party.party", json!([]), &["name"]).await.unwrap();
    let ids: Vec<i64> = parties.iter().take(3).filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), 3);
    session
        .model("party.party", "write", vec![json!(ids), json!({"categories": [["add", [category]]]})])
        .await
        .unwrap();
    (category, ids.len() as i64)
}

#[tokio::test]
async fn major_upgrade_follows_the_seven_steps_and_its_backup_restores_into_the_new_version() {
    let (tryton, database, env, old) = old_environment("seven").await;
    let installs = installs(&["7.2"]).await;
    let new_install = installs[&"7.2".parse().unwrap()].clone();
    let new = NewServer::new(tryton, new_install.clone(), "seven", &database);
    let (category, categorised) = categorise_parties(tryton, &old, &database).await;
    let before = read_back(tryton, &database).await;
    assert!(before.parties > 0 && before.sales > 0 && before.attachments > 0, "{before:?}");
    let fingerprint_before = fingerprint_of(tryton, &database).await;
    let (_, store, scratch) = stores("upgrade-seven").await.swap_remove(0);
    let key = BackupKey::generate();
    let recipient = key.recipient();
    let catalogue = Catalogue::shipped().unwrap();
    let erp_for = |series: ErpSeries| Ok(new.programs(&installs[&series], tryton));
    let target =
        || Target { version: version(&new_install), erp_for: &erp_for, serving: new.serving(tryton), validate: true };
    let journal = FileJournal::new(scratch.path().join("upgrade.json"));

    let started = Instant::now();
    let report = upgrade(
        &env,
        &catalogue,
        target(),
        BeforeOperationBackup { store: &store, recipient: &recipient },
        "up-seven",
        &old,
        &new,
        &journal,
    )
    .await
    .expect("upgrade");
    eprintln!("upgrade 7.0 → 7.2 in {:.1?}:\n{report}", started.elapsed());
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
    // The seven steps, in order: 1 backup, 2 stop, 3 pre steps, 4–5 update-all (it stops by
    // itself), 6 post steps (none shipped for 7.2), 7 start and test.
    assert_eq!(step_names(&report), ONE_HOP_STEPS);
    assert!(report.steps.iter().all(|s| s.outcome == StepOutcome::Done), "{report}");
    assert_eq!(report.from_version.as_deref(), Some(tryton.install.version().unwrap().as_str()));
    assert_eq!(report.to_version, Some(new_install.version().unwrap()));
    assert!(!report.rehearsal, "production is no rehearsal");
    let validation = report.validation.as_ref().expect("the ERP's own validation ran");
    assert!(validation.passed, "{validation:?}");
    assert!(report.warnings.iter().any(|w| w.contains("python-sql")), "the plan's note: {:?}", report.warnings);

    // Data intact: no table of the customer's data lost a row; the fixture's figures, read with
    // 7.2 from the upgraded database, are the ones 7.0 read before.
    let fingerprint_after = fingerprint_of(tryton, &database).await;
    assert_no_rows_lost(&fingerprint_before, &fingerprint_after, &report);
    let rows = |table: &str| report.fingerprint.get(table).map(|rows| (rows.before, rows.after));
    let categorised_rows = Some(categorised as u64);
    assert_eq!(rows("party_category_rel"), Some((categorised_rows, None)), "the report's fingerprint");
    assert_eq!(rows("party_party-party_category"), Some((None, categorised_rows)));
    let after = fixture::read_back(&new_install, &new.config, database.as_str()).await.unwrap();
    assert_eq!(after, before, "every record and attachment byte, read by 7.2");

    // The new version serves: a login through its RPC, and the data through it.
    assert_eq!(new.starts.load(Ordering::Relaxed), 1);
    let client = e2e::tryton::TrytonClient::new(new.config.url()).unwrap();
    assert!(client.server_version().await.unwrap().starts_with("7.2."));
    let session = client.login(database.as_str(), ADMIN_LOGIN, tryton.config.admin_password()).await.unwrap();
    assert_eq!(session.search_count("party.party", json!([])).await.unwrap() as u64, before.parties);
    // The renamed many-to-many table was recognised by its rows, and its rows serve.
    let renamed =
        format!("table party_category_rel is gone and party_party-party_category appeared with its {categorised} rows");
    assert!(report.warnings.iter().any(|w| w.starts_with(&renamed)), "{:?}", report.warnings);
    assert_eq!(session.search_count("party.party", json!([["categories", "=", category]])).await.unwrap(), categorised);
    assert!(old.running.lock().await.is_none(), "the old server stays stopped");

    // The backup before the operation is in the store; the old database kept, as it was.
    let backups = store.list(&env.tenant, "production").await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].kind, BackupKind::BeforeOperation { operation: "up-seven".into() });
    let derived = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert_eq!(derived.len(), 1, "only the replaced original is left: {derived:?}");
    assert!(derived[0].contains("__replaced_"), "{derived:?}");
    let kept = DatabaseName::new(&derived[0]).unwrap();
    assert!(tryton.store.exists(kept.as_str()).unwrap(), "its file store folder is kept with it");
    assert_eq!(read_back(tryton, &kept).await, before, "the kept original is the 7.0 data");

    // Run again with the same journal: finished, nothing done twice.
    let again = upgrade(
        &env,
        &catalogue,
        target(),
        BeforeOperationBackup { store: &store, recipient: &recipient },
        "up-seven",
        &old,
        &new,
        &journal,
    )
    .await
    .unwrap();
    assert_eq!(again.outcome, Outcome::Succeeded);
    assert_eq!(new.starts.load(Ordering::Relaxed), 1, "started once");
    assert_eq!(store.list(&env.tenant, "production").await.unwrap().len(), 1, "backed up once");
    erp_agent::ops::release(&env, kept.as_str()).await.unwrap();

    // The backup taken on 7.0 before the upgrade, restored into the environment now on 7.2
    // after its data changed: loaded, upgraded on the way, cut over. (Part of this test so
    // that the 7.2 environment is the one the upgrade made, not a second upgrade's.)
    let env72 = environment(tryton, &env.tenant, &database, &new_install.version().unwrap());
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    sqlx::query("DELETE FROM party_address WHERE id IN (SELECT id FROM party_address ORDER BY id DESC LIMIT 2)")
        .execute(&mut connection)
        .await
        .unwrap();
    drop(connection);
    let changed = fingerprint_of(tryton, &database).await;
    let restore_journal = FileJournal::new(scratch.path().join("restore.json"));
    let restore_older_backup = |backup_id, operation, journal| {
        restore_older(
            &env72,
            &catalogue,
            target(),
            BeforeOperationBackup { store: &store, recipient: &recipient },
            &store,
            &key,
            "production",
            backup_id,
            operation,
            &new,
            journal,
        )
    };
    let report = restore_older_backup(&backups[0].backup_id, "restore-older", &restore_journal)
        .await
        .expect("restore of the older backup");
    eprintln!("{report}");
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
    assert_eq!(step_names(&report), ONE_HOP_STEPS);
    assert_eq!(report.from_version.as_deref(), Some(tryton.install.version().unwrap().as_str()));
    let restored = fixture::read_back(&new_install, &new.config, database.as_str()).await.unwrap();
    assert_eq!(restored, before, "the backup's records and attachments, read by 7.2");
    // The replaced 7.2 database is kept as it was, and nothing else is left (no loaded backup,
    // no work copy).
    let derived = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert_eq!(derived, vec![report.kept.clone().unwrap()], "{derived:?}");
    let kept = DatabaseName::new(&derived[0]).unwrap();
    assert_eq!(fingerprint_of(tryton, &kept).await.tables, changed.tables);

    // A backup of the environment's own series is a plain restore, not this.
    let same_series = common::take_backup(&env72, &store, &key, scratch.path()).await;
    let refused_journal = FileJournal::new(scratch.path().join("refused.json"));
    let error = restore_older_backup(&same_series.backup_id, "restore-same", &refused_journal).await.unwrap_err();
    assert!(error.to_string().contains("restore it as it is"), "{error}");
    assert!(refused_journal.load().unwrap().is_none(), "nothing was started");

    new.stop().await.unwrap();
    erp_agent::ops::release(&env72, kept.as_str()).await.unwrap();
}

#[tokio::test]
async fn upgrade_across_series_chains_every_step() {
    let (tryton, database, env, old) = old_environment("chain").await;
    let catalogue = Catalogue::shipped().unwrap();
    let newest = *catalogue.series("tryton").last().unwrap();
    assert_eq!(newest.to_string(), "8.2");
    let all: Vec<String> = catalogue.series("tryton").iter().map(|s| s.to_string()).collect();
    let installs = installs(&all.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let new_install = installs[&newest].clone();
    let new = NewServer::new(tryton, new_install.clone(), "chain", &database);
    let before = read_back(tryton, &database).await;
    let fingerprint_before = fingerprint_of(tryton, &database).await;
    let (_, store, scratch) = stores("upgrade-chain").await.swap_remove(0);
    let key = BackupKey::generate();
    let erp_for = |series: ErpSeries| Ok(new.programs(&installs[&series], tryton));
    let journal = FileJournal::new(scratch.path().join("upgrade.json"));

    let started = Instant::now();
    let report = upgrade(
        &env,
        &catalogue,
        Target { version: version(&new_install), erp_for: &erp_for, serving: new.serving(tryton), validate: false },
        BeforeOperationBackup { store: &store, recipient: &key.recipient() },
        "up-chain",
        &old,
        &new,
        &journal,
    )
    .await
    .expect("upgrade");
    eprintln!("upgrade 7.0 → 8.2 in {:.1?}:\n{report}", started.elapsed());
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");

    // Every hop: its journal step, then its pre steps, update-all and post steps, in order.
    let plan = plan("tryton", version(&tryton.install), version(&new_install), &fingerprint_before.modules, &catalogue)
        .unwrap();
    assert_eq!(plan.hops.len(), 6, "7.0 → 7.2 → 7.4 → 7.6 → 7.8 → 8.0 → 8.2");
    let mut expected = vec!["backup".to_string(), "stop".into(), "copy".into()];
    for hop in &plan.hops {
        expected.push(format!("hop {}", hop_key(hop)));
        expected.extend(hop_stages(hop).iter().map(|stage| stage.key()));
    }
    expected.extend(["check", "cut-over", "start", "test"].map(String::from));
    assert_eq!(step_names(&report), expected);
    for key in ["7.4-7.6/post/tryton-7.6-set-admin-password", "8.0-8.2/post/tryton-8.2-restore-administrator"] {
        assert!(expected.contains(&key.to_string()), "{key} ran");
    }

    // Data intact, read by 8.2; the administrator logs in through 8.2's RPC (the test step did,
    // on its `/<db>/rpc/` path).
    let fingerprint_after = fingerprint_of(tryton, &database).await;
    assert_no_rows_lost(&fingerprint_before, &fingerprint_after, &report);
    let after = fixture::read_back(&new_install, &new.config, database.as_str()).await.unwrap();
    assert_eq!(fixture::counts(&after), fixture::counts(&before), "the fixture's figures, read by 8.2");
    assert_eq!(after.attachments_sha256, before.attachments_sha256);
    let test = journal.load().unwrap().unwrap().output("test").cloned().unwrap();
    assert!(test["server_version"].as_str().unwrap().starts_with("8.2"), "{test}");
    // What 8.2 drops is said, not hidden.
    assert!(
        report.warnings.iter().any(|w| w.starts_with("table res_user-res_group: ") && w.contains("group memberships")),
        "{:?}",
        report.warnings
    );
    assert!(test["users"].as_u64().unwrap() >= 1, "{test}");

    new.stop().await.unwrap();
    let kept = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    erp_agent::ops::release(&env, &kept[0]).await.unwrap();
}

fn write_failing_post_step(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let text = r#"
profile = "tryton"
from = "7.0"
to = "7.2"
steps = [
  { id = "provider-mark-upgraded", phase = "post", kind = "sql", repeatable = false, description = "marks the database", source = "test", sql = "CREATE TABLE tenantry_upgrade_mark (at timestamp); INSERT INTO tenantry_upgrade_mark VALUES (now());" },
  { id = "provider-broken-statement", phase = "post", kind = "sql", repeatable = true, description = "fails", source = "test", sql = "SELEC 1;" },
]
"#;
    std::fs::write(dir.join("7.0-7.2.toml"), text).unwrap();
}

/// The environment is back as before, on the old version: same rows (sessions aside), the old
/// server serving them to a login, no work copy and nothing set aside.
async fn assert_back_on_the_old_version(
    tryton: &Tryton,
    database: &DatabaseName,
    old: &Erp,
    before: &Fingerprint,
    work: &str,
) {
    let now = fingerprint_of(tryton, database).await;
    let without = |f: &Fingerprint| -> BTreeMap<String, u64> {
        f.tables.iter().filter(|(t, _)| !VOLATILE_TABLES.contains(&t.as_str())).map(|(t, n)| (t.clone(), *n)).collect()
    };
    assert_eq!(without(&now), without(before), "the old data, row for row");
    assert_eq!(now.modules, before.modules);
    let running = old.running.lock().await;
    let server = running.as_ref().expect("the old ERP was started again");
    assert!(server.version().starts_with("7.0."));
    let session =
        server.login(database.as_str(), ADMIN_LOGIN, tryton.config.admin_password()).await.expect("login on 7.0");
    assert!(session.search_count("party.party", json!([])).await.unwrap() > 0);
    let derived = tryton.server.list(&derived_prefix(database)).await.unwrap();
    assert!(derived.is_empty(), "no work copy and nothing set aside: {derived:?}");
    assert!(!tryton.store.exists(work).unwrap(), "no work folder");
}

#[tokio::test]
async fn failed_upgrade_returns_to_the_backup() {
    let (tryton, database, env, old) = old_environment("fails").await;
    let installs = installs(&["7.2"]).await;
    let new_install = installs[&"7.2".parse().unwrap()].clone();
    let new = NewServer::new(tryton, new_install.clone(), "fails", &database);
    let provider = tryton.workdir.join("provider-steps-fails");
    write_failing_post_step(&provider);
    let catalogue = Catalogue::shipped_with_provider_dir(&provider).unwrap();
    let before = fingerprint_of(tryton, &database).await;
    let (_, store, scratch) = stores("upgrade-fails").await.swap_remove(0);
    let key = BackupKey::generate();
    let erp_for = |series: ErpSeries| Ok(new.programs(&installs[&series], tryton));
    let journal = FileJournal::new(scratch.path().join("upgrade.json"));

    let report = upgrade(
        &env,
        &catalogue,
        Target { version: version(&new_install), erp_for: &erp_for, serving: new.serving(tryton), validate: false },
        BeforeOperationBackup { store: &store, recipient: &key.recipient() },
        "up-fails",
        &old,
        &new,
        &journal,
    )
    .await
    .expect("a failed upgrade is rolled back, not an error");
    eprintln!("{report}");
    let broken = "7.0-7.2/post/provider-broken-statement";
    match &report.outcome {
        Outcome::RolledBack { step, reason } => {
            assert_eq!(step, "hop 7.0-7.2");
            assert!(reason.contains(broken) && reason.contains("syntax error"), "{reason}");
        }
        other => panic!("the upgrade did not roll back: {other:?}"),
    }
    assert_eq!(step_names(&report), [&ONE_HOP_STEPS[..6], &["7.0-7.2/post/provider-mark-upgraded", broken]].concat());
    let failed: Vec<&str> =
        report.steps.iter().filter(|s| s.outcome == StepOutcome::Failed).map(|s| s.step.as_str()).collect();
    assert_eq!(failed, ["hop 7.0-7.2", broken], "{report}");
    assert_eq!(new.starts.load(Ordering::Relaxed), 0, "the new version never started");
    assert_eq!(old.starts.load(Ordering::Relaxed), 2, "the old ERP started again");
    assert_back_on_the_old_version(tryton, &database, &old, &before, &format!("{database}__work_up-fails")).await;

    // Run again with the same journal: rolled back already, nothing more happens.
    let again = upgrade(
        &env,
        &catalogue,
        Target { version: version(&new_install), erp_for: &erp_for, serving: new.serving(tryton), validate: false },
        BeforeOperationBackup { store: &store, recipient: &key.recipient() },
        "up-fails",
        &old,
        &new,
        &journal,
    )
    .await
    .unwrap();
    assert!(matches!(again.outcome, Outcome::RolledBack { .. }));
    assert_eq!(old.starts.load(Ordering::Relaxed), 2);
    old.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_login_on_the_new_version_cuts_back() {
    let (tryton, database, env, old) = old_environment("login").await;
    let installs = installs(&["7.2"]).await;
    let new_install = installs[&"7.2".parse().unwrap()].clone();
    let new = NewServer::new(tryton, new_install.clone(), "login", &database);
    let before = fingerprint_of(tryton, &database).await;
    let (_, store, scratch) = stores("upgrade-login").await.swap_remove(0);
    let key = BackupKey::generate();
    let erp_for = |series: ErpSeries| Ok(new.programs(&installs[&series], tryton));
    let wrong = scratch.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let serving = ServingCheck { password_file: wrong, ..new.serving(tryton) };
    let journal = FileJournal::new(scratch.path().join("upgrade.json"));

    let report = upgrade(
        &env,
        &Catalogue::shipped().unwrap(),
        Target { version: version(&new_install), erp_for: &erp_for, serving, validate: false },
        BeforeOperationBackup { store: &store, recipient: &key.recipient() },
        "up-login",
        &old,
        &new,
        &journal,
    )
    .await
    .expect("a failed upgrade is rolled back, not an error");
    eprintln!("{report}");
    match &report.outcome {
        Outcome::RolledBack { step, reason } => {
            assert_eq!(step, "test");
            assert!(reason.contains("login refused"), "{reason}");
            assert!(!reason.contains("not-the-password"), "no password in a report: {reason}");
        }
        other => panic!("the upgrade did not roll back: {other:?}"),
    }
    let undone: Vec<&str> =
        report.steps.iter().filter(|s| s.outcome == StepOutcome::Undone).map(|s| s.step.as_str()).collect();
    assert!(undone.contains(&"cut-over") && undone.contains(&"start"), "{report}");
    assert_eq!(new.starts.load(Ordering::Relaxed), 1);
    assert!(new.running.lock().await.is_none(), "the new version was stopped");
    assert_back_on_the_old_version(tryton, &database, &old, &before, &format!("{database}__work_up-login")).await;
    old.stop().await.unwrap();
}

#[tokio::test]
async fn an_upgrade_killed_during_a_hop_finishes_when_run_again() {
    let (tryton, database, env, old) = old_environment("killed").await;
    let installs = installs(&["7.2"]).await;
    let new_install = installs[&"7.2".parse().unwrap()].clone();
    let new = NewServer::new(tryton, new_install.clone(), "killed", &database);
    let before = read_back(tryton, &database).await;
    let (_, store, scratch) = stores("upgrade-killed").await.swap_remove(0);
    let key = BackupKey::generate();
    let recipient = key.recipient();
    let catalogue = Catalogue::shipped().unwrap();
    let erp_for = |series: ErpSeries| Ok(new.programs(&installs[&series], tryton));
    let target =
        || Target { version: version(&new_install), erp_for: &erp_for, serving: new.serving(tryton), validate: false };
    let journal = FileJournal::new(scratch.path().join("upgrade.json"));
    let work = DatabaseName::new(format!("{database}__work_up-killed")).unwrap();

    // Killed while the hop's update-all runs: the work copy exists, the hop is not recorded.
    let run = upgrade(
        &env,
        &catalogue,
        target(),
        BeforeOperationBackup { store: &store, recipient: &recipient },
        "up-killed",
        &old,
        &new,
        &journal,
    );
    let kill = async {
        loop {
            let copied = journal.load().unwrap().is_some_and(|j| j.is_done("copy"));
            if copied && tryton.server.exists(&work).await.unwrap() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Well inside the update-all (more than ten seconds on this fixture).
        tokio::time::sleep(Duration::from_secs(4)).await;
    };
    tokio::select! {
        report = run => panic!("the upgrade finished before it was killed: {report:?}"),
        () = kill => {}
    }
    let interrupted = journal.load().unwrap().unwrap();
    assert!(interrupted.is_done("copy") && !interrupted.is_done("hop 7.0-7.2"), "{:?}", interrupted.done);
    assert!(tryton.server.exists(&work).await.unwrap(), "the killed hop's copy is left");

    // Run again: the hop starts over on a new copy of its input, and the upgrade finishes.
    let report = upgrade(
        &env,
        &catalogue,
        target(),
        BeforeOperationBackup { store: &store, recipient: &recipient },
        "up-killed",
        &old,
        &new,
        &journal,
    )
    .await
    .expect("upgrade, resumed");
    eprintln!("{report}");
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
    assert_eq!(step_names(&report), ONE_HOP_STEPS, "each step recorded once");
    let after = fixture::read_back(&new_install, &new.config, database.as_str()).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(store.list(&env.tenant, "production").await.unwrap().len(), 1, "backed up once");
    new.stop().await.unwrap();
    let kept = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert_eq!(kept.len(), 1, "only the replaced original: {kept:?}");
    erp_agent::ops::release(&env, &kept[0]).await.unwrap();
}

#[tokio::test]
async fn a_record_the_erp_refuses_rolls_the_upgrade_back() {
    let (tryton, database, env, old) = old_environment("invalid").await;
    // A product whose type is none of the allowed values: the ERP's validation refuses it.
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    sqlx::query("UPDATE product_template SET type = 'bogus' WHERE id = (SELECT min(id) FROM product_template)")
        .execute(&mut connection)
        .await
        .unwrap();
    drop(connection);
    let installs = installs(&["7.2"]).await;
    let new_install = installs[&"7.2".parse().unwrap()].clone();
    let new = NewServer::new(tryton, new_install.clone(), "invalid", &database);
    let before = fingerprint_of(tryton, &database).await;
    let (_, store, scratch) = stores("upgrade-invalid").await.swap_remove(0);
    let key = BackupKey::generate();
    let erp_for = |series: ErpSeries| Ok(new.programs(&installs[&series], tryton));
    let journal = FileJournal::new(scratch.path().join("upgrade.json"));

    let report = upgrade(
        &env,
        &Catalogue::shipped().unwrap(),
        Target { version: version(&new_install), erp_for: &erp_for, serving: new.serving(tryton), validate: true },
        BeforeOperationBackup { store: &store, recipient: &key.recipient() },
        "up-invalid",
        &old,
        &new,
        &journal,
    )
    .await
    .expect("a failed upgrade is rolled back, not an error");
    eprintln!("{report}");
    match &report.outcome {
        Outcome::RolledBack { step, reason } => {
            assert_eq!(step, "check");
            assert!(reason.contains("validation refuses") && reason.contains("product.template"), "{reason}");
        }
        other => panic!("the upgrade did not roll back: {other:?}"),
    }
    assert_eq!(new.starts.load(Ordering::Relaxed), 0, "the new version never started");
    assert_back_on_the_old_version(tryton, &database, &old, &before, &format!("{database}__work_up-invalid")).await;
    old.stop().await.unwrap();
}
