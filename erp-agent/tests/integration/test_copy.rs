//! Neutralized test copies of a real Tryton production (real data, real attachments, Tryton's
//! own scheduled actions), read live and from a backup, on a real PostgreSQL, with a real
//! `trytond` as the test environment's ERP; and a copy whose neutralization leaves a cron
//! active, rolled back.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use erp_agent::Error;
use erp_agent::database::{DatabaseName, derived_prefix};
use erp_agent::fingerprint::{self, Fingerprint};
use erp_agent::journal::{FileJournal, Journal, JournalStore};
use erp_agent::key::BackupKey;
use erp_agent::neutralize::{self, MARKER_TABLE};
use erp_agent::ops::test_copy::{CopySource, test_copy};
use erp_agent::ops::{self, ErpControl};
use erp_agent::report::{Outcome, Report};
use sqlx::PgConnection;

use common::{Erp, Tryton, environment, environment_named, read_back, stores, take_backup, tryton, unique_name};

const SERIES: &str = "7.0";
const STEPS: [&str; 6] = ["copy", "neutralize", "verify", "stop", "cut-over", "start"];

/// What must not change in production, and what the copy must carry.
#[derive(Debug, PartialEq)]
struct State {
    fingerprint: Fingerprint,
    active_crons: Vec<i64>,
    stripe_secret: String,
}

async fn state(tryton: &Tryton, database: &DatabaseName) -> State {
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    State {
        fingerprint: fingerprint::read(&mut connection).await.unwrap(),
        active_crons: sqlx::query_scalar("SELECT id::bigint FROM ir_cron WHERE active ORDER BY id")
            .fetch_all(&mut connection)
            .await
            .unwrap(),
        stripe_secret: sqlx::query_scalar("SELECT secret_key FROM account_payment_stripe_account")
            .fetch_one(&mut connection)
            .await
            .unwrap(),
    }
}

#[tokio::test]
async fn test_copy_is_neutralized_and_verified() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let production_db = tryton.copy_of_template("tc_production").await;
    with_stripe_account(&mut tryton.server.connect(production_db.as_str()).await.unwrap()).await;
    let production = environment(tryton, "acme-tc", &production_db, &version);
    // No database yet: the first test copy has nothing to keep.
    let test_db = unique_name("tc_test");
    let test = environment_named(tryton, "acme-tc", "test", &test_db, &version);
    let erp = Erp::new(tryton, "tc-test").await;
    let (_, store, scratch) = stores("test-copy").await.swap_remove(0);
    let key = BackupKey::generate();

    let before = state(tryton, &production_db).await;
    assert!(before.active_crons.len() >= 5, "production runs Tryton's scheduled actions: {before:?}");
    let production_data = read_back(tryton, &production_db).await;
    assert!(production_data.attachments > 0 && production_data.attachment_bytes > 0, "{production_data:?}");

    // Live, into a test environment that has no database yet; then from a backup, over it.
    let summary = take_backup(&production, &store, &key, scratch.path()).await;
    let sources = [
        ("live", CopySource::Live),
        ("backup", CopySource::Backup { store: &store, key: &key, backup_id: &summary.backup_id }),
    ];
    for (label, source) in sources {
        let starts = erp.starts.load(Ordering::Relaxed);
        let previous = tryton.server.exists(&test_db).await.unwrap().then_some(());
        let journal = FileJournal::new(scratch.path().join(format!("{label}.json")));
        let operation = format!("tc-{label}");
        let report = test_copy(&production, &test, source, &operation, &erp, &journal).await.unwrap();
        assert_eq!(report.outcome, Outcome::Succeeded, "{label}: {report}");
        let steps: Vec<&str> = report.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(steps, STEPS, "{label}");
        assert_eq!((report.kind.as_str(), report.rehearsal), ("test-copy", false), "{label}");
        assert!(report.warnings.iter().any(|w| w.contains("scheduled actions switched off")), "{label}: {report}");
        assert!(report.warnings.iter().any(|w| w.contains("account_payment_stripe_account.secret_key")), "{report}");
        assert!(report.fingerprint.contains_key(MARKER_TABLE), "{label}: {:?}", report.fingerprint);

        check_neutralized_copy(tryton, &production_db, &test_db, &before).await;
        assert_eq!(read_back(tryton, &test_db).await, production_data, "{label}: every record and attachment byte");
        assert_eq!(state(tryton, &production_db).await, before, "{label}: production untouched");
        assert!(erp.running.lock().await.is_some(), "{label}: the test ERP serves again");
        assert_eq!(erp.starts.load(Ordering::Relaxed), starts + 1, "{label}");

        // Run again with the same journal: finished, nothing done twice.
        let source = match label {
            "live" => CopySource::Live,
            _ => CopySource::Backup { store: &store, key: &key, backup_id: &summary.backup_id },
        };
        let again = test_copy(&production, &test, source, &operation, &erp, &journal).await.unwrap();
        assert_eq!(again.outcome, Outcome::Succeeded, "{label}");
        assert_eq!(erp.starts.load(Ordering::Relaxed), starts + 1, "{label}: started once");

        // The previous test database was kept (none on the first copy); released, it is gone.
        let left = tryton.server.list(&derived_prefix(&test_db)).await.unwrap();
        assert_eq!(left.len(), previous.map_or(0, |()| 1), "{label}: {left:?}");
        for kept in left {
            assert!(kept_warning(&report).contains(&kept), "{label}: {report}");
            ops::release(&test, &kept).await.unwrap();
        }
    }

    // A rogue module: whenever the first scheduled action is switched off, it switches it back
    // on. The copy carries the trigger, the neutralization's UPDATE fires it, and the check
    // finds the cron still active.
    let rogue: (i64, String) = sqlx::query_as("SELECT id::bigint, method::text FROM ir_cron ORDER BY id LIMIT 1")
        .fetch_one(&mut tryton.server.connect(production_db.as_str()).await.unwrap())
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION rogue_cron() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.id = (SELECT min(id) FROM ir_cron) THEN NEW.active := true; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER rogue_cron BEFORE UPDATE ON ir_cron FOR EACH ROW EXECUTE FUNCTION rogue_cron();",
    )
    .execute(&mut tryton.server.connect(production_db.as_str()).await.unwrap())
    .await
    .unwrap();
    let production_before = state(tryton, &production_db).await;
    let test_before = state(tryton, &test_db).await;
    let test_data = read_back(tryton, &test_db).await;
    let starts = erp.starts.load(Ordering::Relaxed);
    let journal = FileJournal::new(scratch.path().join("rogue.json"));
    let report = test_copy(&production, &test, CopySource::Live, "tc-rogue", &erp, &journal).await.unwrap();
    match &report.outcome {
        Outcome::RolledBack { step, reason } => {
            assert_eq!(step, "verify", "{report}");
            let named = format!("scheduled action {} ({}) is active", rogue.0, rogue.1);
            assert!(reason.contains(&named), "{reason}");
        }
        other => panic!("a copy with an active cron was put in place: {other:?}"),
    }
    assert_eq!(state(tryton, &test_db).await, test_before, "the test environment's database is as it was");
    assert_eq!(read_back(tryton, &test_db).await, test_data);
    assert!(tryton.server.list(&derived_prefix(&test_db)).await.unwrap().is_empty(), "no work copy left");
    assert!(!tryton.store.exists(&format!("{test_db}__work_tc-rogue")).unwrap(), "no work folder left");
    assert_eq!(state(tryton, &production_db).await, production_before, "production untouched");
    assert!(erp.running.lock().await.is_some(), "the test ERP was never stopped");
    assert_eq!(erp.starts.load(Ordering::Relaxed), starts);
    // Rolled back is final: the same journal does nothing more.
    let again = test_copy(&production, &test, CopySource::Live, "tc-rogue", &erp, &journal).await.unwrap();
    assert_eq!(again.outcome, report.outcome);
    erp.stop().await.unwrap();
}

/// The test database holds every production row (the marker added, the queue emptied, the
/// crons off), nothing live, and the Stripe secret blanked.
async fn check_neutralized_copy(tryton: &Tryton, production_db: &DatabaseName, test_db: &DatabaseName, before: &State) {
    let mut connection = tryton.server.connect(test_db.as_str()).await.unwrap();
    neutralize::verify(&mut connection).await.expect("the copy passes the neutralization check");
    let copied = state(tryton, test_db).await;
    assert_eq!(copied.active_crons, Vec::<i64>::new());
    assert_eq!(copied.stripe_secret, "");
    let ignored: BTreeSet<&str> = [MARKER_TABLE, "ir_queue"].into();
    let without = |fingerprint: &Fingerprint| {
        let mut fingerprint = fingerprint.clone();
        fingerprint.tables.retain(|table, _| !ignored.contains(table.as_str()));
        fingerprint
    };
    assert_eq!(without(&copied.fingerprint), without(&before.fingerprint), "every production row copied");
    let (source, at): (String, String) =
        sqlx::query_as("SELECT source_database, neutralized_as FROM tenantry_neutralization")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(source, production_db.as_str());
    assert!(at.starts_with(&format!("{test_db}__work_")), "{at}");
}

fn kept_warning(report: &Report) -> String {
    report.warnings.iter().filter(|w| w.contains("kept as")).cloned().collect()
}

/// A Stripe account with its secret key, as production has one; the module needs Stripe's SDK,
/// so its table is made here with the columns of `account_payment_stripe` (as the neutralize
/// tests do).
async fn with_stripe_account(connection: &mut PgConnection) {
    sqlx::raw_sql(
        "CREATE TABLE account_payment_stripe_account (id serial PRIMARY KEY, name varchar NOT NULL, \
           secret_key varchar NOT NULL, publishable_key varchar NOT NULL, webhook_identifier varchar, \
           webhook_signing_secret varchar); \
         INSERT INTO account_payment_stripe_account (name, secret_key, publishable_key) \
           VALUES ('Shop', 'sk_live_not_a_real_key', 'pk_live_not_a_real_key')",
    )
    .execute(connection)
    .await
    .unwrap();
}

/// A journal whose process is killed at its `crash_at`-th save: the step's effect happened,
/// its record did not.
struct KilledAtSave {
    inner: FileJournal,
    saves_left: std::sync::Mutex<u32>,
}

impl JournalStore for KilledAtSave {
    fn load(&self) -> erp_agent::Result<Option<Journal>> {
        self.inner.load()
    }

    fn save(&self, journal: &Journal) -> erp_agent::Result<()> {
        let mut left = self.saves_left.lock().unwrap();
        if *left == 0 {
            return Err(Error::Invalid("killed".into()));
        }
        *left -= 1;
        self.inner.save(journal)
    }
}

#[tokio::test]
async fn a_test_copy_killed_between_any_two_steps_finishes_when_run_again() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let production_db = tryton.copy_of_template("tc_killed").await;
    let production = environment(tryton, "acme-killed", &production_db, &version);
    let test_db = tryton.copy_of_template("tc_killed_test").await;
    let test = environment_named(tryton, "acme-killed", "test", &test_db, &version);
    let erp = Erp::new(tryton, "tc-killed").await;
    let scratch = tempfile::tempdir().unwrap();
    let production_before = state_without_stripe(tryton, &production_db).await;

    // The saves: `prepare`, one per step, then the end. Killed before each one, in turn.
    for saves in 0..=STEPS.len() as u32 + 1 {
        let path = scratch.path().join(format!("killed-{saves}.json"));
        let operation = format!("tc-killed-{saves}");
        let killed = KilledAtSave { inner: FileJournal::new(&path), saves_left: std::sync::Mutex::new(saves) };
        let error = test_copy(&production, &test, CopySource::Live, &operation, &erp, &killed).await.unwrap_err();
        assert!(error.to_string().contains("killed"), "{error}");

        let report =
            test_copy(&production, &test, CopySource::Live, &operation, &erp, &FileJournal::new(&path)).await.unwrap();
        assert_eq!(report.outcome, Outcome::Succeeded, "killed at save {saves}: {report}");
        let mut connection = tryton.server.connect(test_db.as_str()).await.unwrap();
        neutralize::verify(&mut connection).await.expect("the test database is a neutralized copy");
        drop(connection);
        assert!(erp.running.lock().await.is_some(), "killed at save {saves}: the test ERP serves");
        // The previous test database kept, and nothing else: no work copy left.
        let left = tryton.server.list(&derived_prefix(&test_db)).await.unwrap();
        assert_eq!(left.len(), 1, "killed at save {saves}: {left:?}");
        assert!(left[0].contains("__replaced_"), "{left:?}");
        ops::release(&test, &left[0]).await.unwrap();
        assert_eq!(state_without_stripe(tryton, &production_db).await, production_before, "production untouched");
    }
    erp.stop().await.unwrap();
}

async fn state_without_stripe(tryton: &Tryton, database: &DatabaseName) -> (Fingerprint, Vec<i64>) {
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    let active = sqlx::query_scalar("SELECT id::bigint FROM ir_cron WHERE active ORDER BY id")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    (fingerprint::read(&mut connection).await.unwrap(), active)
}
