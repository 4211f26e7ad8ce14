//! Backups and restores of a real Tryton environment (real data, real attachments) on a real
//! PostgreSQL, to a directory and through a real S3-protocol server, with a real `trytond`
//! stopped and started around the cut-over.

use crate::common;

use erp_agent::Error;
use erp_agent::database::{DatabaseName, derived_prefix};
use erp_agent::journal::FileJournal;
use erp_agent::key::BackupKey;
use erp_agent::manifest::{BackupId, BackupKind, FingerprintTotals};
use erp_agent::ops::{ErpControl, backup, restore};
use erp_agent::report::Outcome;
use erp_agent::store::{BackupStore, StoreOptions};

use common::{Erp, Tryton, environment, read_back, stores, take_backup, tryton};

const SERIES: &str = "7.0";

/// Changes the data after a backup: some parties gone, one attachment's file gone.
async fn damage(tryton: &Tryton, database: &DatabaseName) {
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    sqlx::query("DELETE FROM party_address WHERE party IN (SELECT id FROM party_party ORDER BY id DESC LIMIT 2)")
        .execute(&mut connection)
        .await
        .unwrap();
    let file_id: String = sqlx::query_scalar("SELECT file_id FROM ir_attachment WHERE file_id IS NOT NULL LIMIT 1")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    let folder = tryton.store.folder(database.as_str()).unwrap();
    std::fs::remove_file(erp_agent::filestore::file_path(&folder, &file_id).unwrap()).unwrap();
}

#[tokio::test]
async fn backup_restore_round_trip() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    for (backend, store, scratch) in stores("round-trip").await {
        let database = tryton.copy_of_template("round_trip").await;
        let env = environment(tryton, &format!("acme-{backend}"), &database, &version);
        let erp = Erp::new(tryton, &format!("round-trip-{backend}")).await;
        let before = read_back(tryton, &database).await;
        assert!(before.parties > 0 && before.attachments > 0 && before.attachment_bytes > 0, "{before:?}");

        let key = BackupKey::generate();
        let summary = take_backup(&env, &store, &key, scratch.path()).await;
        assert_eq!(store.list(&env.tenant, "production").await.unwrap(), std::slice::from_ref(&summary), "{backend}");

        damage(tryton, &database).await;
        assert_ne!(read_back(tryton, &database).await, before, "the damage shows");

        let journal = FileJournal::new(scratch.path().join("restore.json"));
        let report = restore::restore(&env, &store, &key, "production", &summary.backup_id, "op-1", &erp, &journal)
            .await
            .expect("restore");
        assert_eq!(report.outcome, Outcome::Succeeded, "{backend}: {report}");
        let steps: Vec<&str> = report.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(steps, ["load", "check", "stop", "cut-over", "start"], "{backend}");
        assert_eq!(read_back(tryton, &database).await, before, "{backend}: every row and attachment byte back");
        assert!(erp.running.lock().await.is_some(), "{backend}: the ERP serves again");

        // Run again with the same journal: finished, nothing done twice.
        let again = restore::restore(&env, &store, &key, "production", &summary.backup_id, "op-1", &erp, &journal)
            .await
            .unwrap();
        assert_eq!(again.outcome, Outcome::Succeeded);
        assert_eq!(erp.starts.load(std::sync::atomic::Ordering::Relaxed), 2, "{backend}: started once by the restore");
        erp.stop().await.unwrap();
    }
}

#[tokio::test]
async fn restore_keeps_the_replaced_database_until_released() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let (_, store, scratch) = stores("keeps").await.swap_remove(0);
    let database = tryton.copy_of_template("keeps").await;
    let env = environment(tryton, "acme-keeps", &database, &version);
    let erp = Erp::new(tryton, "keeps").await;
    let key = BackupKey::generate();
    let summary = take_backup(&env, &store, &key, scratch.path()).await;
    damage(tryton, &database).await;
    let damaged = read_back(tryton, &database).await;

    let journal = FileJournal::new(scratch.path().join("restore.json"));
    let report = restore::restore(&env, &store, &key, "production", &summary.backup_id, "op-keep", &erp, &journal)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
    erp.stop().await.unwrap();

    let derived = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert_eq!(derived.len(), 1, "only the replaced original is left, no work copy: {derived:?}");
    let kept = DatabaseName::new(&derived[0]).unwrap();
    assert!(derived[0].contains("__replaced_"), "{derived:?}");
    assert!(tryton.store.exists(kept.as_str()).unwrap(), "its file store folder is kept with it");
    assert_eq!(read_back(tryton, &kept).await, damaged, "the replaced database is the one from before the restore");

    erp_agent::ops::release(&env, kept.as_str()).await.unwrap();
    assert!(!tryton.server.exists(&kept).await.unwrap() && !tryton.store.exists(kept.as_str()).unwrap());
    let error = erp_agent::ops::release(&env, database.as_str()).await.unwrap_err();
    assert!(error.to_string().contains("not a database an operation set aside"), "{error}");
    assert!(tryton.server.exists(&database).await.unwrap(), "the live database is never released");
}

#[tokio::test]
async fn restore_refuses_a_newer_backup() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let (_, store, scratch) = stores("newer").await.swap_remove(0);
    let database = tryton.copy_of_template("newer").await;
    let key = BackupKey::generate();
    let summary =
        take_backup(&environment(tryton, "acme-newer", &database, &version), &store, &key, scratch.path()).await;
    let before = read_back(tryton, &database).await;

    // The same environment, said to run an older series than the backup's.
    let older = environment(tryton, "acme-newer", &database, "6.8.0");
    let erp = Erp::new(tryton, "newer").await;
    let journal = FileJournal::new(scratch.path().join("restore.json"));
    let error = restore::restore(&older, &store, &key, "production", &summary.backup_id, "op-newer", &erp, &journal)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("newer than the 6.8.0 this environment runs"), "{error}");
    assert!(!journal.path().exists(), "nothing was started");
    assert_eq!(read_back(tryton, &database).await, before);
    assert!(tryton.server.list(&derived_prefix(&database)).await.unwrap().is_empty());
    erp.stop().await.unwrap();
}

#[tokio::test]
async fn backup_is_encrypted_and_authenticated() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let (_, store, scratch) = stores("sealed").await.swap_remove(0);
    let database = tryton.copy_of_template("sealed").await;
    let env = environment(tryton, "acme-sealed", &database, &version);
    let key = BackupKey::generate();
    let summary = take_backup(&env, &store, &key, scratch.path()).await;

    // Nothing of the data is readable in what was stored: no party's name, no attachment.
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM party_party WHERE length(name) >= 8")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    assert!(!names.is_empty());
    let archives: Vec<std::path::PathBuf> =
        walk(scratch.path()).into_iter().filter(|p| p.ends_with("archive.tar.zst.age")).collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    let stored = std::fs::read(&archives[0]).unwrap();
    for name in &names {
        assert!(!contains(&stored, name.as_bytes()), "`{name}` is readable in the stored backup");
    }

    // One flipped byte: the restore fails, says why, and changes nothing.
    damage(tryton, &database).await;
    let before = read_back(tryton, &database).await;
    let mut flipped = stored.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&archives[0], &flipped).unwrap();
    let erp = Erp::new(tryton, "sealed").await;
    let journal = FileJournal::new(scratch.path().join("restore.json"));
    let report = restore::restore(&env, &store, &key, "production", &summary.backup_id, "op-sealed", &erp, &journal)
        .await
        .unwrap();
    match &report.outcome {
        Outcome::RolledBack { step, reason } => {
            assert_eq!(step, "load");
            assert!(
                reason.contains("SHA-256") || reason.contains("authentic") || reason.contains("corrupt"),
                "{reason}"
            );
        }
        other => panic!("a damaged backup was restored: {other:?}"),
    }
    let failed = report.steps.last().unwrap();
    assert_eq!(failed.step, "load");
    assert!(failed.duration_ms > 0, "the failed step's own duration is reported: {report}");
    assert_eq!(read_back(tryton, &database).await, before, "the environment is as it was");
    assert!(tryton.server.list(&derived_prefix(&database)).await.unwrap().is_empty(), "no work copy left");
    assert!(!tryton.store.exists(&format!("{}__work_op-sealed", database.as_str())).unwrap());
    erp.stop().await.unwrap();
}

/// A backup under the caller's id (a Kubernetes Job's): run again in a new pod, with a fresh
/// journal, it finds the backup stored and returns it rather than taking a second one; a
/// journal holding a backup under another id is refused.
#[tokio::test]
async fn a_backup_under_the_callers_id_is_taken_once_whatever_the_journal() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let url = format!("file://{}", scratch.path().join("backups").display());
    std::fs::create_dir(scratch.path().join("backups")).unwrap();
    let store = BackupStore::from_url(&url, StoreOptions::default()).unwrap();
    let database = tryton.copy_of_template("given_id").await;
    let env = environment(tryton, "acme-given-id", &database, &version);
    let key = BackupKey::generate();
    let id = BackupId::parse("job-7f3a-backup").unwrap();
    let run = async |journal: &str, id: &BackupId| {
        let journal = FileJournal::new(scratch.path().join(journal));
        backup::backup_with_id(&env, &store, &key.recipient(), Some(&key), BackupKind::Manual, Some(id), &journal).await
    };

    let first = run("pod-1.json", &id).await.expect("backup");
    assert_eq!(first.backup_id, id);
    let manifest = store.manifest(&first, &key).await.unwrap();
    assert_eq!(first.fingerprint, FingerprintTotals::of(&manifest.fingerprint));
    assert!(first.fingerprint.tables > 0 && first.fingerprint.rows > 0, "{:?}", first.fingerprint);

    let again = run("pod-2.json", &id).await.expect("the same backup");
    assert_eq!(again, first, "the stored backup, not a new one");
    assert_eq!(store.list(&env.tenant, "production").await.unwrap(), std::slice::from_ref(&first));

    let other = BackupId::parse("job-7f3a-other").unwrap();
    let error = run("pod-1.json", &other).await.unwrap_err();
    assert!(matches!(error, Error::Journal(_)), "{error}");
    assert!(store.summary(&env.tenant, "production", &other).await.unwrap().is_none());
    assert_eq!(store.list(&env.tenant, "production").await.unwrap().len(), 1);
}

/// A database without attachments has no file-store folder: the restore has no folder to set
/// aside, puts the backup's (empty) one in place, and a rerun finds it done.
#[tokio::test]
async fn restore_into_an_environment_without_a_file_store_folder() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let (_, store, scratch) = stores("nofolder").await.swap_remove(0);
    let database = tryton.copy_of_template("nofolder").await;
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    sqlx::query("DELETE FROM ir_attachment").execute(&mut connection).await.unwrap();
    drop(connection);
    tryton.store.delete(database.as_str()).await.unwrap();
    assert!(!tryton.store.exists(database.as_str()).unwrap());
    let env = environment(tryton, "acme-nofolder", &database, &version);
    let erp = Erp::new(tryton, "nofolder").await;
    let key = BackupKey::generate();
    let summary = take_backup(&env, &store, &key, scratch.path()).await;
    let before = read_back(tryton, &database).await;
    assert_eq!(before.attachments, 0, "{before:?}");
    damage_rows(tryton, &database).await;

    let journal = FileJournal::new(scratch.path().join("restore.json"));
    let report = restore::restore(&env, &store, &key, "production", &summary.backup_id, "op-nofolder", &erp, &journal)
        .await
        .expect("restore");
    assert_eq!(report.outcome, Outcome::Succeeded, "{report}");
    assert_eq!(read_back(tryton, &database).await, before, "every row back");
    assert!(erp.running.lock().await.is_some(), "the ERP serves again");
    let kept = report.kept.clone().expect("the replaced database is kept");
    assert!(!tryton.store.exists(&kept).unwrap(), "there was no folder to keep");
    let again = restore::restore(&env, &store, &key, "production", &summary.backup_id, "op-nofolder", &erp, &journal)
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Succeeded);
    erp_agent::ops::release(&env, &kept).await.unwrap();
    let derived = tryton.server.list(&derived_prefix(&database)).await.unwrap();
    assert!(derived.is_empty(), "no work copy, nothing kept after the release: {derived:?}");
    erp.stop().await.unwrap();
}

/// Some parties' addresses gone (no attachment touched).
async fn damage_rows(tryton: &Tryton, database: &DatabaseName) {
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    sqlx::query("DELETE FROM party_address WHERE party IN (SELECT id FROM party_party ORDER BY id DESC LIMIT 2)")
        .execute(&mut connection)
        .await
        .unwrap();
}

/// A restarted ERP listens on a fresh port: while it was stopped, another process may have
/// taken the old one.
#[tokio::test]
async fn a_restarted_test_erp_does_not_need_its_old_port() {
    let tryton = tryton(SERIES).await;
    let erp = Erp::new(tryton, "restart").await;
    let first = erp.url().await;
    erp.stop().await.unwrap();
    let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the stopped ERP's port is free");
    erp.start().await.expect("started again elsewhere");
    let second = erp.url().await;
    assert_ne!(first, second);
    let running = erp.running.lock().await;
    let version = running.as_ref().unwrap().client().server_version().await.unwrap();
    assert!(version.starts_with(&format!("{SERIES}.")), "{version}");
    drop(running);
    erp.stop().await.unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { found.extend(walk(&path)) } else { found.push(path) }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
