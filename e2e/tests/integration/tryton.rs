//! A real Tryton server on a real PostgreSQL: the ERP every backup, restore, module update and
//! upgrade test relies on. If any piece (the cached install, `trytond-admin`, the server, the
//! JSON-RPC client, the database) is broken, these tests fail.

use std::sync::Arc;
use std::time::Instant;

use e2e::postgres::Postgres;
use e2e::process::{Spec, WorkDir, run_async};
use e2e::tryton::{ADMIN_LOGIN, TrytonConfig, TrytonInstall};
use e2e::{Error, TestEnv};
use serde_json::json;

/// What the tests need around Tryton: a work directory of their own for the server's
/// configuration and log, and the environment's shared PostgreSQL server.
struct Env {
    workdir: Arc<WorkDir>,
    postgres: &'static Postgres,
}

async fn environment() -> Env {
    let workdir = WorkDir::create("tryton").expect("work directory");
    let postgres = TestEnv::shared().await.postgres().await;
    Env { workdir, postgres }
}

#[tokio::test]
async fn tryton_server_is_real() {
    let started = Instant::now();
    round_trip("7.0").await;
    eprintln!("tryton_server_is_real: {:?}", started.elapsed());
}

/// Installs `series`, initialises a database, serves it and works with it over JSON-RPC.
async fn round_trip(series: &str) {
    let env = environment().await;
    let install = TrytonInstall::ensure_async(series).await.expect("Tryton install");
    assert!(install.version().unwrap().starts_with(&format!("{series}.")));
    let config = TrytonConfig::write(&env.workdir.join("tryton"), env.postgres).unwrap();

    // Unique in the shared server, which other test processes use at the same time.
    let database = &format!("tenant_acme_{}", std::process::id());
    install.create_database(env.postgres, &config, database).await.expect("trytond-admin --all on a new database");
    install.activate_modules(&config, database, &["party"]).await.expect("activating party");

    let server = install.start_server(&env.workdir, &config).await.expect("trytond");
    assert!(server.version().starts_with(&format!("{series}.")), "{}", server.version());
    let databases = server.client().list_databases().await.unwrap();
    assert!(databases.iter().any(|d| d == database), "{databases:?}");

    let session = server.login(database, ADMIN_LOGIN, config.admin_password()).await.expect("admin login");
    assert_eq!(session.search_count("party.party", json!([])).await.unwrap(), 0);
    let ids = session
        .create("party.party", vec![json!({"name": "Alpha"}), json!({"name": "Beta"}), json!({"name": "Gamma"})])
        .await
        .expect("creating parties");
    assert_eq!(ids.len(), 3);
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "{ids:?}");

    // A second query, on a new request, sees the committed records.
    assert_eq!(session.search_count("party.party", json!([])).await.unwrap(), 3);
    assert_eq!(session.search_count("party.party", json!([["name", "=", "Beta"]])).await.unwrap(), 1);
    let rows = session.search_read("party.party", json!([["id", "in", ids]]), &["name"]).await.unwrap();
    let mut names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Alpha", "Beta", "Gamma"]);

    // And the rows are really in PostgreSQL.
    let count =
        run_async(env.postgres.client("psql").args(["-d", database, "-tAc", "SELECT count(*) FROM party_party"]))
            .await
            .unwrap();
    assert_eq!(count.trim(), "3");

    // Server-side failures come back as precise errors.
    let err = session.search_count("no.such.model", json!([])).await.unwrap_err();
    assert!(matches!(&err, Error::TrytonRpc { method, .. } if method == "model.no.such.model.search_count"), "{err}");
    let err = session.create("party.address", vec![json!({"street": "1 Main St"})]).await.unwrap_err();
    assert!(err.to_string().contains("UserError"), "{err}");

    // A wrong password is refused.
    let err = server.login(database, ADMIN_LOGIN, "not-the-password").await.unwrap_err();
    assert!(
        matches!(&err, Error::TrytonRpc { method, message } if method == "common.db.login" && message.contains("401")),
        "{err}"
    );

    // A logged-out session is refused too.
    let other = server.login(database, ADMIN_LOGIN, config.admin_password()).await.unwrap();
    assert_eq!(other.search_count("party.party", json!([])).await.unwrap(), 3);
    other.logout().await.unwrap();
    let err = other.search_count("party.party", json!([])).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert_eq!(session.search_count("party.party", json!([])).await.unwrap(), 3);

    server.process().check_alive().unwrap();
}

/// The 7.2 install is what upgrade tests migrate 7.0 databases with; it must install cleanly
/// and carry the python-sql pin that keeps its migration working.
#[tokio::test]
async fn tryton_7_2_install_is_usable() {
    let started = Instant::now();
    let install = TrytonInstall::ensure_async("7.2").await.expect("Tryton 7.2 install");
    assert!(install.version().unwrap().starts_with("7.2."));
    let python_sql = run_async(
        Spec::new("python", install.bin("python"))
            .args(["-c", "import sql, psycopg2, trytond.modules.party; print(sql.__version__)"]),
    )
    .await
    .unwrap();
    assert!(python_sql.trim().starts_with("1.5."), "python-sql {python_sql}");
    eprintln!("tryton_7_2_install_is_usable: {:?}", started.elapsed());
}
