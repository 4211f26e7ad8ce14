//! The backup store, to a directory and through a real S3-protocol server: put, list, verify,
//! extract, hold, delete, and what a half-written or damaged backup looks like.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{Duration, Utc};
use erp_agent::Error;
use erp_agent::archive::DirectorySink;
use erp_agent::key::BackupKey;
use erp_agent::manifest::{BackupId, BackupKind, ErpInfo, Manifest};
use erp_agent::store::{BackupStore, StoreOptions};

fn manifest(tenant: &str, minutes_ago: i64) -> Manifest {
    let at = Utc::now() - Duration::minutes(minutes_ago);
    Manifest::new(
        BackupId::generate(at),
        tenant,
        "production",
        BackupKind::Scheduled,
        at,
        ErpInfo { profile: "tryton".into(), version: "7.0.59".into() },
    )
    .unwrap()
}

fn dump() -> Vec<u8> {
    (0..3_000_000u32).flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 7).to_le_bytes()).collect()
}

fn file_store(root: &Path) {
    fs::create_dir_all(root.join("ab/cd")).unwrap();
    fs::write(root.join("ab/cd/abcd"), b"attachment content").unwrap();
    fs::write(root.join("ab/empty"), b"").unwrap();
}

/// Incompressible bytes, enough for several upload parts.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

/// One store under test, with a scratch directory of its own.
struct Backend {
    name: &'static str,
    store: BackupStore,
    scratch: tempfile::TempDir,
    /// The S3 bucket, or the local store's directory.
    location: String,
}

/// A directory store and an S3 store (a bucket of its own on the environment's server).
async fn stores(name: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let local = BackupStore::from_url(&format!("file://{}", backups.display()), StoreOptions::default()).unwrap();

    let s3 = e2e::TestEnv::shared().await.s3().await.clone();
    let bucket = format!("{name}-{:08x}", rand::random::<u32>());
    let endpoint = s3.clone();
    let create = bucket.clone();
    tokio::task::spawn_blocking(move || endpoint.create_bucket(&create)).await.unwrap().unwrap();
    let options = StoreOptions { config: s3.object_store_options(), ..StoreOptions::default() };
    let remote = BackupStore::from_url(&format!("s3://{bucket}/backups"), options).unwrap();
    vec![
        Backend { name: "directory", store: local, scratch: dir, location: backups.display().to_string() },
        Backend { name: "s3", store: remote, scratch: tempfile::tempdir().unwrap(), location: bucket },
    ]
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out
}

#[tokio::test]
async fn backups_are_put_listed_verified_extracted_held_and_deleted() {
    for Backend { name: backend, store, scratch, .. } in stores("lifecycle").await {
        let key = BackupKey::generate();
        let files = scratch.path().join("filestore");
        file_store(&files);

        let older = manifest("acme", 60);
        let mut with_modules = manifest("acme", 5);
        with_modules.modules.insert("party".into(), "7.0.3".into());
        let dir = files.clone();
        let first = store
            .put(with_modules.clone(), &key.recipient(), move |archive| {
                archive.append_stream("database", dump().as_slice())?;
                archive.append_dir("filestore", &dir)?;
                Ok(())
            })
            .await
            .unwrap();
        let second = store
            .put(older.clone(), &key.recipient(), |archive| archive.append_stream("database", &b"small"[..]).map(drop))
            .await
            .unwrap();
        assert_eq!(first.data_bytes, dump().len() as u64 + 18, "{backend}");
        assert_eq!(first.key_fingerprint, key.recipient().fingerprint());

        // Listed oldest first; another tenant or environment sees nothing.
        let listed = store.list("acme", "production").await.unwrap();
        assert_eq!(listed, vec![second.clone(), first.clone()], "{backend}");
        assert!(store.list("acme", "test").await.unwrap().is_empty());
        assert!(store.list("globex", "production").await.unwrap().is_empty());

        // Putting the same backup again writes nothing and returns what is stored.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let again = store
            .put(with_modules.clone(), &key.recipient(), move |_| {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(again, first);
        assert!(!ran.load(Ordering::SeqCst), "{backend}: a stored backup was written again");

        // Read back in full, and extracted byte-identical.
        let verified = store.verify(&first, &key).await.unwrap();
        assert_eq!(verified.modules["party"], "7.0.3");
        assert_eq!(store.manifest(&first, &key).await.unwrap(), verified);
        let out = tempfile::tempdir().unwrap();
        let (extracted, _) = store.extract(&first, &key, DirectorySink::new(out.path())).await.unwrap();
        assert_eq!(extracted, verified);
        assert_eq!(fs::read(out.path().join("database")).unwrap(), dump(), "{backend}");
        assert_eq!(fs::read(out.path().join("filestore/ab/cd/abcd")).unwrap(), b"attachment content");
        assert_eq!(fs::read(out.path().join("filestore/ab/empty")).unwrap(), b"");
        assert!(matches!(store.verify(&first, &BackupKey::generate()).await, Err(Error::WrongKey)));

        // A held backup cannot be deleted until released; the flag shows in listings.
        let held = store.hold(&first).await.unwrap();
        assert!(held.held);
        assert!(
            store.list("acme", "production").await.unwrap().iter().any(|s| s.backup_id == first.backup_id && s.held)
        );
        assert!(matches!(store.delete(&first).await, Err(Error::Held(_))), "{backend}");
        assert!(store.verify(&held, &key).await.is_ok(), "holding changed nothing of the backup");
        let released = store.release(&held).await.unwrap();
        assert!(!released.held);

        store.delete(&first).await.unwrap();
        store.delete(&first).await.unwrap();
        assert_eq!(store.list("acme", "production").await.unwrap(), vec![second.clone()], "{backend}");
        assert!(store.summary("acme", "production", &first.backup_id).await.unwrap().is_none());
        assert!(matches!(store.verify(&first, &key).await, Err(Error::Store { .. })));
    }
}

#[tokio::test]
async fn a_half_written_backup_is_not_listed() {
    for Backend { name: backend, store, location, .. } in stores("half").await {
        let key = BackupKey::generate();
        let m = manifest("acme", 1);
        // The backup fails half-way (pg_dump died), after several parts were uploaded: nothing
        // is listed, and nothing is left behind.
        let failed = store
            .put(m.clone(), &key.recipient(), |archive| {
                archive.append_stream("database", noise(30 << 20).as_slice())?;
                Err(Error::Invalid("pg_dump died".into()))
            })
            .await;
        assert!(matches!(failed, Err(Error::Invalid(_))), "{backend}: {failed:?}");
        assert!(store.list("acme", "production").await.unwrap().is_empty(), "{backend}");
        assert!(store.summary("acme", "production", &m.backup_id).await.unwrap().is_none());
        if backend == "s3" {
            let s3 = e2e::TestEnv::shared().await.s3().await.clone();
            let pending = tokio::task::spawn_blocking(move || s3.pending_multipart_uploads(&location)).await.unwrap();
            assert_eq!(pending.unwrap(), 0, "the failed backup's upload was not aborted");
        } else {
            let leftovers = files_under(Path::new(&location));
            assert!(leftovers.is_empty(), "the failed backup left {leftovers:?}");
        }

        // Run again with the same id (a resumed operation), it completes and is listed once.
        let summary = store
            .put(m.clone(), &key.recipient(), |archive| archive.append_stream("database", &b"dump"[..]).map(drop))
            .await
            .unwrap();
        assert_eq!(store.list("acme", "production").await.unwrap(), vec![summary.clone()], "{backend}");
        store.verify(&summary, &key).await.unwrap();
    }
}

/// Without its summary (a crash after the archive was stored, or a deletion cut short after
/// its first step), a backup is invisible, and putting it again makes it whole.
#[tokio::test]
async fn a_backup_without_its_summary_is_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let store = BackupStore::from_url(&format!("file://{}/prefix", root.display()), StoreOptions::default());
    // A file:// URL's whole path is the directory; the layout starts there.
    let store = store.unwrap();
    let key = BackupKey::generate();
    let m = manifest("acme", 1);
    let summary = store
        .put(m.clone(), &key.recipient(), |archive| archive.append_stream("database", &b"dump"[..]).map(drop))
        .await
        .unwrap();
    let backup = root.join("prefix/acme/production").join(m.backup_id.as_str());
    assert!(backup.join("archive.tar.zst.age").is_file());
    assert!(backup.join("manifest.json.age").is_file());
    fs::remove_file(backup.join("summary.json")).unwrap();
    assert!(store.list("acme", "production").await.unwrap().is_empty());
    let again = store
        .put(m, &key.recipient(), |archive| archive.append_stream("database", &b"dump"[..]).map(drop))
        .await
        .unwrap();
    assert_eq!(again.backup_id, summary.backup_id);
    assert_eq!(store.list("acme", "production").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_damaged_stored_archive_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let store = BackupStore::from_url(&format!("file://{}", root.display()), StoreOptions::default()).unwrap();
    let key = BackupKey::generate();
    let m = manifest("acme", 1);
    let summary = store
        .put(m.clone(), &key.recipient(), |archive| archive.append_stream("database", dump().as_slice()).map(drop))
        .await
        .unwrap();
    let path = root.join("acme/production").join(m.backup_id.as_str()).join("archive.tar.zst.age");
    let original = fs::read(&path).unwrap();
    assert_eq!(original.len() as u64, summary.archive.bytes);

    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    fs::write(&path, &flipped).unwrap();
    assert!(matches!(store.verify(&summary, &key).await, Err(Error::Corrupt { .. })));

    fs::write(&path, &original[..original.len() - 1000]).unwrap();
    let result = store.verify(&summary, &key).await;
    assert!(matches!(result, Err(Error::Truncated(_))), "{result:?}");

    fs::write(&path, &original).unwrap();
    store.verify(&summary, &key).await.unwrap();
}
