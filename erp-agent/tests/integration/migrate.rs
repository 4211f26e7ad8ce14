//! The upgrade runner on real Tryton (from PyPI) and a real PostgreSQL: a 7.0 database with
//! parties goes to 7.2 through the shipped catalogue's stages; a failing step stops the run and
//! is named; a failing script is a failure even though `trytond-console` exits 0 after one.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use e2e::TestEnv;
use e2e::postgres::SUPERUSER;
use e2e::process::WorkDir;
use e2e::tryton::{ADMIN_LOGIN, TrytonConfig, TrytonInstall};
use erp_agent::Error;
use erp_agent::catalogue::{Catalogue, Hop, MigrationStep, Phase, StepAction, plan};
use erp_agent::erp::{ErpCommand, Profile};
use erp_agent::migrate::{ErpConsole, SeriesErp, WorkDatabase, hop_key, run_hop, run_plan};
use erp_agent::report::{StepOutcome, StepReport};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tenantry_contract::version::{ErpSeries, ErpVersion};

/// A Tryton configuration, the shared PostgreSQL server and a database of this test.
struct Fixture {
    workdir: Arc<WorkDir>,
    config: TrytonConfig,
    database: WorkDatabase,
}

impl Fixture {
    /// A new database initialised by `series` with `party` activated.
    async fn new(test: &str, series: &str) -> Self {
        let workdir = WorkDir::create(&format!("migrate-{test}")).expect("work directory");
        let postgres = TestEnv::shared().await.postgres().await;
        let config = TrytonConfig::write(&workdir.join("tryton"), postgres).unwrap();
        // Unique in the shared server, which other test processes use at the same time.
        let name = format!("migrate_{test}_{}", std::process::id());
        let install = TrytonInstall::ensure_async(series).await.expect("Tryton install");
        install.create_database(postgres, &config, &name).await.expect("trytond-admin --all on a new database");
        install.activate_modules(&config, &name, &["party"]).await.expect("activating party");
        let server = PgConnectOptions::new_without_pgpass().host("127.0.0.1").port(postgres.port()).username(SUPERUSER);
        Self { workdir, config, database: WorkDatabase::on_server(&server, name) }
    }

    /// The programs of `series` aimed at this fixture's configuration.
    async fn erp(&self, series: &str) -> SeriesErp {
        let install = TrytonInstall::ensure_async(series).await.expect("Tryton install");
        let admin_program = install.bin("trytond-admin");
        let passfile = self.config.admin_password_file().display().to_string();
        SeriesErp {
            admin: ErpCommand::new(Profile::Tryton, &admin_program, self.config.path())
                .env("TRYTONPASSFILE", &passfile),
            console: ErpConsole::beside_admin(&admin_program, self.config.path()),
        }
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&self.database.connect).await.expect("connecting to the test database")
    }

    async fn count(&self, sql: &str) -> i64 {
        let mut connection = self.connect().await;
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        connection.close().await.unwrap();
        count
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        let mut connection = self.connect().await;
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        connection.close().await.unwrap();
        rows
    }

    async fn activated_modules(&self) -> BTreeSet<String> {
        self.strings("SELECT name::text FROM ir_module WHERE state = 'activated'").await.into_iter().collect()
    }

    /// Drops the test's database (best effort: a failed test leaves it for a person to look at).
    async fn drop_database(self) {
        let maintenance = self.database.connect.clone().database("postgres");
        if let Ok(mut connection) = PgConnection::connect_with(&maintenance).await {
            let statement = format!("DROP DATABASE IF EXISTS \"{}\"", self.database.name);
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await;
            let _ = connection.close().await;
        }
    }
}

fn version(install: &TrytonInstall) -> ErpVersion {
    install.version().unwrap().parse().unwrap()
}

fn stage_keys(reports: &[StepReport]) -> Vec<&str> {
    reports.iter().map(|r| r.step.as_str()).collect()
}

/// Parties with addresses, created through the 7.0 server; returns the names.
async fn create_parties(fixture: &Fixture, install: &TrytonInstall) -> Vec<String> {
    let server = install.start_server(&fixture.workdir, &fixture.config).await.expect("trytond 7.0");
    let session = server
        .login(&fixture.database.name, ADMIN_LOGIN, fixture.config.admin_password())
        .await
        .expect("admin login on 7.0");
    let names: Vec<String> = (1..=5).map(|n| format!("Tenant party {n}")).collect();
    let records = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            json!({"name": name, "addresses": [["create", [
                {"street": format!("{n} Main Street"), "city": "Springfield"},
                {"street": format!("{n} Harbour Road"), "city": "Shelbyville"},
            ]]]})
        })
        .collect();
    session.create("party.party", records).await.expect("creating parties with addresses");
    session
        .create("ir.action.act_window", vec![json!({"name": "Tenant shortcut", "res_model": ""})])
        .await
        .expect("creating a window action without a model");
    server.stop();
    names
}

const EMPTY_STRING_COLUMNS: [(&str, &str); 6] = [
    ("ir_ui_view", "model"),
    ("ir_action_act_window", "res_model"),
    ("ir_action_wizard", "model"),
    ("ir_action_report", "model"),
    ("ir_action_report", "module"),
    ("ir_translation", "module"),
];

/// The foreign key 7.2's update-all adds from window actions to models.
const MODEL_FOREIGN_KEYS: &str = "SELECT count(*) FROM pg_constraint \
     WHERE conrelid = 'ir_action_act_window'::regclass AND contype = 'f' \
     AND conkey = ARRAY[(SELECT attnum FROM pg_attribute \
         WHERE attrelid = 'ir_action_act_window'::regclass AND attname = 'res_model')]";

async fn empty_string_keys(fixture: &Fixture) -> i64 {
    let mut total = 0;
    for (table, column) in EMPTY_STRING_COLUMNS {
        total += fixture.count(&format!("SELECT count(*) FROM {table} WHERE {column} = ''")).await;
    }
    total
}

#[tokio::test]
async fn major_upgrade_hop_7_0_to_7_2_runs_the_documented_steps() {
    let fixture = Fixture::new("hop", "7.0").await;
    let (old, new) =
        (TrytonInstall::ensure_async("7.0").await.unwrap(), TrytonInstall::ensure_async("7.2").await.unwrap());
    let names = create_parties(&fixture, &old).await;
    let parties_before = fixture.count("SELECT count(*) FROM party_party").await;
    let addresses_before = fixture.count("SELECT count(*) FROM party_address").await;
    assert!(parties_before >= 5 && addresses_before >= 10, "{parties_before} parties, {addresses_before} addresses");
    // What the shipped pre step is for: 7.0 leaves empty strings where 7.2 adds foreign keys.
    // What the shipped pre step is for: 7.0 stores empty strings where 7.2 adds foreign keys
    // (here an action made through the 7.0 server without a model, as users and modules make).
    let empty_strings = empty_string_keys(&fixture).await;
    assert!(empty_strings > 0, "the 7.0 database has empty strings where 7.2 adds foreign keys");
    assert_eq!(fixture.count(MODEL_FOREIGN_KEYS).await, 0, "7.0 has no foreign key on res_model");

    let catalogue = Catalogue::shipped().unwrap();
    let plan = plan("tryton", version(&old), version(&new), &fixture.activated_modules().await, &catalogue).unwrap();
    assert_eq!(plan.hops.iter().map(hop_key).collect::<Vec<_>>(), ["7.0-7.2"]);
    let erp = fixture.erp("7.2").await;
    let mut reports = Vec::new();
    let started = Instant::now();
    run_plan(
        &plan,
        |series| {
            assert_eq!(series, "7.2".parse::<ErpSeries>().unwrap(), "each hop gets its target series' programs");
            Ok(erp.clone())
        },
        &fixture.database,
        &mut reports,
    )
    .await
    .unwrap_or_else(|e| panic!("the upgrade failed: {e}"));
    eprintln!("hop 7.0 → 7.2: {:?}", started.elapsed());
    for report in &reports {
        eprintln!("  {} {} ms {:?}", report.step, report.duration_ms, report.detail);
    }

    let expected: Vec<String> = plan.stages().iter().map(|s| s.key()).collect();
    assert_eq!(stage_keys(&reports), expected);
    assert_eq!(expected, ["7.0-7.2/pre/tryton-7.2-empty-foreign-keys-to-null", "7.0-7.2/update-all"]);
    assert!(reports.iter().all(|r| r.outcome == StepOutcome::Done), "{reports:?}");
    assert!(reports[0].detail.as_deref().is_some_and(|d| d == "rows changed: 1"), "{:?}", reports[0].detail);

    // The pre step ran; the update-all of 7.2 ran on every module.
    assert_eq!(empty_string_keys(&fixture).await, 0);
    assert_eq!(fixture.count(MODEL_FOREIGN_KEYS).await, 1, "7.2's schema: the foreign key on res_model");

    // The 7.2 server serves the upgraded database, with the parties intact.
    let server = new.start_server(&fixture.workdir, &fixture.config).await.expect("trytond 7.2");
    let session =
        server.login(&fixture.database.name, ADMIN_LOGIN, fixture.config.admin_password()).await.expect("login on 7.2");
    assert_eq!(session.search_count("party.party", json!([])).await.unwrap(), parties_before);
    assert_eq!(session.search_count("party.address", json!([])).await.unwrap(), addresses_before);
    let rows =
        session.search_read("party.party", json!([["name", "like", "Tenant party %"]]), &["name"]).await.unwrap();
    let mut found: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    found.sort_unstable();
    assert_eq!(found, names);
    assert_eq!(session.search_count("party.address", json!([["city", "=", "Shelbyville"]])).await.unwrap(), 5);
    let modules =
        session.search_read("ir.module", json!([["state", "=", "activated"]]), &["name", "version"]).await.unwrap();
    // `ir` and `res` (part of trytond) report no version of their own.
    let versions: Vec<&str> = modules.iter().filter_map(|m| m["version"].as_str()).filter(|v| !v.is_empty()).collect();
    assert!(modules.iter().any(|m| m["name"] == "party"), "{modules:?}");
    assert!(!versions.is_empty() && versions.iter().all(|v| v.starts_with("7.2.")), "{modules:?}");
    server.stop();
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_failing_post_step_names_the_step_and_stops() {
    let fixture = Fixture::new("post", "7.0").await;
    let (old, new) =
        (TrytonInstall::ensure_async("7.0").await.unwrap(), TrytonInstall::ensure_async("7.2").await.unwrap());
    let provider = fixture.workdir.join("provider-steps");
    write_provider_steps(&provider);
    let catalogue = Catalogue::shipped_with_provider_dir(&provider).unwrap();
    let plan = plan("tryton", version(&old), version(&new), &fixture.activated_modules().await, &catalogue).unwrap();
    let erp = fixture.erp("7.2").await;
    let mut reports = Vec::new();
    let admin_hash = "SELECT password_hash::text FROM res_user WHERE login = 'admin'";
    let hash_before = fixture.strings(admin_hash).await;

    let error = run_plan(&plan, |_| Ok(erp.clone()), &fixture.database, &mut reports).await.unwrap_err();

    let broken = "7.0-7.2/post/provider-broken-statement";
    assert!(
        matches!(&error, Error::MigrationStage { stage, step, .. } if stage == broken && step == "provider-broken-statement"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(broken) && message.contains("syntax error"), "{message}");
    assert_eq!(
        stage_keys(&reports),
        [
            "7.0-7.2/pre/tryton-7.2-empty-foreign-keys-to-null",
            "7.0-7.2/update-all",
            "7.0-7.2/post/provider-reset-admin-password",
            "7.0-7.2/post/provider-mark-upgraded",
            broken,
        ]
    );
    let outcomes: Vec<_> = reports.iter().map(|r| r.outcome.clone()).collect();
    let done = StepOutcome::Done;
    assert_eq!(outcomes, [done.clone(), done.clone(), done.clone(), done, StepOutcome::Failed]);
    assert!(reports[4].detail.as_deref().is_some_and(|d| d.contains("syntax error")), "{:?}", reports[4].detail);

    // The admin step ran with the target series' command (a fresh hash of the same password).
    let hash_after = fixture.strings(admin_hash).await;
    assert_eq!(hash_after.len(), 1);
    assert_ne!(hash_after, hash_before, "trytond-admin -p rewrote the admin's password hash");
    // The SQL step before ran; the failed step's statements were one transaction (its first
    // statement is undone); the step after never ran.
    assert_eq!(fixture.count("SELECT count(*) FROM tenantry_upgrade_mark").await, 1);
    let table = |name: &str| format!("SELECT count(*) FROM pg_tables WHERE tablename = '{name}'");
    assert_eq!(fixture.count(&table("tenantry_half_done")).await, 0);
    assert_eq!(fixture.count(&table("tenantry_never")).await, 0);
    fixture.drop_database().await;
}

fn write_provider_steps(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let text = r#"
profile = "tryton"
from = "7.0"
to = "7.2"
steps = [
  { id = "provider-reset-admin-password", phase = "post", kind = "admin", repeatable = true, description = "sets the admin password from TRYTONPASSFILE", source = "test", args = ["-p"] },
  { id = "provider-mark-upgraded", phase = "post", kind = "sql", repeatable = false, description = "marks the database", source = "test", sql = "CREATE TABLE tenantry_upgrade_mark (at timestamp); INSERT INTO tenantry_upgrade_mark VALUES (now());" },
  { id = "provider-broken-statement", phase = "post", kind = "sql", repeatable = true, description = "fails", source = "test", sql = "CREATE TABLE tenantry_half_done (x int); SELEC 1;" },
  { id = "provider-after-the-failure", phase = "post", kind = "sql", repeatable = true, description = "must not run", source = "test", sql = "CREATE TABLE tenantry_never (x int);" },
]
"#;
    std::fs::write(dir.join("7.0-7.2.toml"), text).unwrap();
}

fn script_step(id: &str, phase: Phase, script: &str) -> MigrationStep {
    MigrationStep {
        id: id.to_string(),
        phase,
        modules: Vec::new(),
        action: StepAction::Script { script: script.to_string() },
        repeatable: false,
        description: format!("test script {id}"),
        source: "test".to_string(),
        origin: "test".to_string(),
    }
}

#[tokio::test]
async fn a_failing_script_step_is_a_failure() {
    // The console of 7.2 on a 7.2 database: the scripts are what is tested, not a migration.
    let fixture = Fixture::new("script", "7.2").await;
    let erp = fixture.erp("7.2").await;
    let parties = "SELECT count(*) FROM party_party";
    let before = fixture.count(parties).await;
    let hop = Hop {
        from: "7.0".parse().unwrap(),
        to: "7.2".parse().unwrap(),
        pre: vec![
            script_step(
                "test-script-commits",
                Phase::Pre,
                "Party = pool.get('party.party')\n\
                 Party.create([{'name': \"Made by a 'script'\"}])\n\
                 transaction.commit()\n\
                 print('created', Party.search_count([]))\n",
            ),
            script_step(
                "test-script-raises",
                Phase::Pre,
                "Party = pool.get('party.party')\n\
                 Party.create([{'name': 'Never kept'}])\n\
                 def fail():\n    \
                     raise RuntimeError('deliberate failure')\n\
                 fail()\n\
                 print('not reached')\n",
            ),
        ],
        post: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
        warnings: Vec::new(),
    };
    let mut reports = Vec::new();
    let started = Instant::now();
    let error = run_hop(&hop, &erp, &fixture.database, &mut reports).await.unwrap_err();
    eprintln!("two script steps: {:?}", started.elapsed());

    let failed = "7.0-7.2/pre/test-script-raises";
    assert!(
        matches!(&error, Error::MigrationStage { stage, step, .. } if stage == failed && step == "test-script-raises"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("RuntimeError: deliberate failure"), "{message}");
    assert!(message.contains("test-script-raises"), "the traceback names the step: {message}");
    assert!(!message.contains("not reached"), "{message}");
    assert_eq!(stage_keys(&reports), ["7.0-7.2/pre/test-script-commits", failed], "the update-all never ran");
    assert_eq!(reports[0].outcome, StepOutcome::Done);
    let output = reports[0].detail.as_deref().unwrap_or_default();
    assert!(output.lines().any(|line| line == format!("created {}", before + 1)), "{output}");
    assert_eq!(reports[1].outcome, StepOutcome::Failed);

    // What the first script committed is there; what the failing one did is rolled back.
    assert_eq!(fixture.count(parties).await, before + 1);
    assert_eq!(fixture.count("SELECT count(*) FROM party_party WHERE name = 'Made by a ''script'''").await, 1);
    assert_eq!(fixture.count("SELECT count(*) FROM party_party WHERE name = 'Never kept'").await, 0);
    fixture.drop_database().await;
}
