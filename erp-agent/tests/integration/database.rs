//! Database operations on a real PostgreSQL holding a real Tryton database: copies, renames,
//! drops and listings under the named-session policy, the client programs as streams, and
//! fingerprints.

use crate::common;

use std::time::Instant;

use e2e::tryton::ADMIN_LOGIN;
use erp_agent::Error;
use erp_agent::database::{self, DatabaseName, ErpState};
use erp_agent::fingerprint;

#[tokio::test]
async fn copy_refuses_a_database_in_use_and_names_who_uses_it() {
    let tryton = common::tryton("7.0").await;
    let source = tryton.copy_of_template("in_use").await;
    let target = common::unique_name("in_use_copy");

    // A real ERP server holding a session on the source.
    tryton.set_admin_password(&source).await;
    let server = tryton.install.start_server(&tryton.workdir, &tryton.config).await.unwrap();
    let session = server.login(source.as_str(), ADMIN_LOGIN, tryton.config.admin_password()).await.unwrap();
    assert!(!tryton.server.sessions(&source).await.unwrap().is_empty());

    match tryton.server.copy(&source, &target, ErpState::MayBeRunning).await {
        Err(Error::InUse { database, sessions }) => {
            assert_eq!(database, source.as_str());
            assert!(!sessions.is_empty() && sessions.iter().all(|s| s.starts_with("pid ")), "{sessions:?}");
        }
        other => panic!("copying a database in use: {other:?}"),
    }
    assert!(!tryton.server.exists(&target).await.unwrap(), "a refused copy created its target");
    let refused = tryton.server.rename(&source, &target, ErpState::MayBeRunning).await;
    assert!(matches!(refused, Err(Error::InUse { .. })), "{refused:?}");
    let refused = tryton.server.drop_database(&source, ErpState::MayBeRunning).await;
    assert!(matches!(refused, Err(Error::InUse { .. })), "{refused:?}");
    assert!(tryton.server.exists(&source).await.unwrap());

    // Once the caller says the ERP is stopped, left-over sessions are ended and the copy made.
    server.stop();
    drop(session);
    let started = Instant::now();
    tryton.server.copy(&source, &target, ErpState::Stopped).await.unwrap();
    eprintln!("copy of a fixture database: {:.2?}", started.elapsed());
    let mut a = tryton.server.connect(source.as_str()).await.unwrap();
    let mut b = tryton.server.connect(target.as_str()).await.unwrap();
    assert_eq!(fingerprint::read(&mut a).await.unwrap(), fingerprint::read(&mut b).await.unwrap());
}

#[tokio::test]
async fn copies_renames_drops_and_lists_by_name() {
    let tryton = common::tryton("7.0").await;
    let db = tryton.copy_of_template("acme").await;
    let prefix = database::derived_prefix(&db);
    assert!(tryton.server.list(&prefix).await.unwrap().is_empty());

    let work = database::work_copy_name(&db, "op-1").unwrap();
    tryton.server.copy(&db, &work, ErpState::MayBeRunning).await.unwrap();
    // Never onto an existing database; never from a missing one.
    let existing = tryton.server.copy(&db, &work, ErpState::MayBeRunning).await;
    assert!(matches!(existing, Err(Error::AlreadyExists { .. })), "{existing:?}");
    let missing = DatabaseName::new(format!("{}_missing", db)).unwrap();
    let absent = tryton.server.copy(&missing, &common::unique_name("x"), ErpState::MayBeRunning).await;
    assert!(matches!(absent, Err(Error::Missing { .. })), "{absent:?}");

    // The cut-over: original aside under a dated name, work copy into its place.
    let replaced = database::replaced_name(&db, chrono::Utc::now()).unwrap();
    tryton.server.rename(&db, &replaced, ErpState::Stopped).await.unwrap();
    tryton.server.rename(&work, &db, ErpState::Stopped).await.unwrap();
    assert_eq!(tryton.server.list(&prefix).await.unwrap(), [replaced.as_str()]);
    assert!(matches!(
        database::parse_derived(replaced.as_str()),
        Some(database::Derived::Replaced { tenant_database, .. }) if tenant_database == db.as_str()
    ));
    let onto_existing = tryton.server.rename(&replaced, &db, ErpState::Stopped).await;
    assert!(matches!(onto_existing, Err(Error::AlreadyExists { .. })), "{onto_existing:?}");

    tryton.server.drop_database(&replaced, ErpState::Stopped).await.unwrap();
    tryton.server.drop_database(&replaced, ErpState::Stopped).await.expect("dropping twice is fine");
    assert!(tryton.server.list(&prefix).await.unwrap().is_empty());
    assert!(tryton.server.exists(&db).await.unwrap());
}

#[tokio::test]
async fn dump_and_restore_stream_through_pipes() {
    let tryton = common::tryton("7.0").await;
    let tools = tryton.server.tools();
    for program in ["pg_dump", "pg_restore", "psql"] {
        let version = tools.version(program).await.unwrap();
        assert!(version.starts_with(&format!("{program} (PostgreSQL) ")), "{version}");
    }
    let server_version = tryton.server.server_version().await.unwrap();
    assert!(server_version.chars().next().is_some_and(|c| c.is_ascii_digit()), "{server_version}");

    let address = tryton.server.address();
    let target = common::unique_name("restored");
    tryton.server.create_empty(&target, None).await.unwrap();
    let started = Instant::now();
    let mut dump = tools.pg_dump(address, &tryton.template, &["--format=custom"]).unwrap();
    let mut restore = tools.pg_restore(address, &target, &[]).unwrap();
    let (mut from, mut into) = (dump.take_stdout().unwrap(), restore.take_stdin().unwrap());
    let bytes = tokio::io::copy(&mut from, &mut into).await.unwrap();
    drop(into);
    dump.finish().await.unwrap();
    restore.finish().await.unwrap();
    eprintln!("pg_dump | pg_restore of the fixture: {bytes} bytes in {:.2?}", started.elapsed());

    let mut original = tryton.server.connect(tryton.template.as_str()).await.unwrap();
    let mut restored = tryton.server.connect(target.as_str()).await.unwrap();
    let before = fingerprint::read(&mut original).await.unwrap();
    assert_eq!(before, fingerprint::read(&mut restored).await.unwrap());
    for module in ["ir", "res", "party", "company", "product", "sale", "account", "stock", "currency"] {
        assert!(before.modules.contains(module), "{module} not in {:?}", before.modules);
    }
    assert_eq!(before.tables["sale_sale"], 4);
    assert_eq!(before.tables["sale_line"], 12);

    // psql reads SQL from its pipe and fails with the server's message.
    let mut psql = tools.psql(address, &target, &["--tuples-only", "--no-align"]).unwrap();
    let (mut input, mut output) = (psql.take_stdin().unwrap(), psql.take_stdout().unwrap());
    tokio::io::AsyncWriteExt::write_all(&mut input, b"SELECT count(*) FROM party_party;\n").await.unwrap();
    drop(input);
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut output, &mut text).await.unwrap();
    psql.finish().await.unwrap();
    assert_eq!(text.trim(), before.tables["party_party"].to_string());
    let mut failing = tools.psql(address, &target, &[]).unwrap();
    let mut input = failing.take_stdin().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, b"SELECT * FROM no_such_table;\n").await.unwrap();
    drop(input);
    let error = failing.finish().await.unwrap_err().to_string();
    assert!(error.contains("no_such_table"), "{error}");

    // A dump of a missing database fails with pg_dump's own words.
    let missing = common::unique_name("never_created");
    let mut dump = tools.pg_dump(address, &missing, &["--format=custom"]).unwrap();
    let mut sink = tokio::io::sink();
    tokio::io::copy(&mut dump.take_stdout().unwrap(), &mut sink).await.unwrap();
    let error = dump.finish().await.unwrap_err().to_string();
    assert!(error.contains(missing.as_str()), "{error}");
}
