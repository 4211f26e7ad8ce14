//! A customer's export of a real Tryton backup: the SQL loads into an empty database with
//! `psql` and has every row, the zip holds every attachment byte for byte, the manifest is the
//! backup's; to a directory and through a real S3-protocol server. A wrong key or a damaged
//! backup leaves nothing at the destination.

use crate::common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use erp_agent::Error;
use erp_agent::database::DatabaseName;
use erp_agent::fingerprint;
use erp_agent::key::BackupKey;
use erp_agent::manifest::Manifest;
use erp_agent::ops::export::{
    DATABASE_OBJECT, ExportDestination, ExportSummary, FILESTORE_OBJECT, MANIFEST_OBJECT, export,
};
use erp_agent::store::StoreOptions;
use sha2::{Digest, Sha256};

use common::{Tryton, environment, stores, take_backup, tryton, unique_name};

const SERIES: &str = "7.0";

#[tokio::test]
async fn export_restores_into_an_empty_database() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let database = tryton.copy_of_template("export").await;
    let env = environment(tryton, "acme-export", &database, &version);
    let (_, store, scratch) = stores("export").await.swap_remove(0);
    let key = BackupKey::generate();
    let summary = take_backup(&env, &store, &key, scratch.path()).await;
    let original = fingerprint::read(&mut tryton.server.connect(database.as_str()).await.unwrap()).await.unwrap();
    let tools = tryton.server.tools();

    // To a directory.
    let out = tempfile::tempdir().unwrap();
    let url = format!("file://{}/customer", out.path().display());
    let destination = ExportDestination::from_url(&url, &StoreOptions::default()).unwrap();
    let exported =
        export(&store, &key, &env.tenant, "production", &summary.backup_id, tools, &destination).await.expect("export");
    let dir = out.path().join("customer");
    let names: Vec<&str> = exported.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, [DATABASE_OBJECT, FILESTORE_OBJECT, MANIFEST_OBJECT]);
    check_digests(&exported, &dir);
    assert_eq!(files_in(&dir).len(), 3, "only the export's three objects: {:?}", files_in(&dir));

    // The SQL loads into an empty database, as the agent's user, and has every row.
    let loaded = unique_name("export_loaded");
    tryton.server.create_empty(&loaded, None).await.unwrap();
    let mut psql = tools.psql(tryton.server.address(), &loaded, &["--single-transaction"]).unwrap();
    let mut input = psql.take_stdin().unwrap();
    let mut sql = tokio::fs::File::open(dir.join(DATABASE_OBJECT)).await.unwrap();
    let mut output = psql.take_stdout().unwrap();
    let drain = tokio::spawn(async move { tokio::io::copy(&mut output, &mut tokio::io::sink()).await });
    tokio::io::copy(&mut sql, &mut input).await.unwrap();
    drop(input);
    psql.finish().await.expect("database.sql loads with psql");
    drain.await.unwrap().unwrap();
    let copy = fingerprint::read(&mut tryton.server.connect(loaded.as_str()).await.unwrap()).await.unwrap();
    assert_eq!(copy, original, "every table's rows and every module");

    // Every attachment, byte for byte, and nothing else.
    let zipped = unzip(&dir.join(FILESTORE_OBJECT));
    let folder = tryton.store.folder(database.as_str()).unwrap();
    let stored: BTreeMap<String, Vec<u8>> = files_in(&folder)
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&folder).unwrap().to_str().unwrap().to_string();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    let attachments: i64 = sqlx::query_scalar("SELECT count(*) FROM ir_attachment WHERE file_id IS NOT NULL")
        .fetch_one(&mut tryton.server.connect(database.as_str()).await.unwrap())
        .await
        .unwrap();
    assert!(attachments > 0 && !stored.is_empty(), "the fixture has attachments");
    assert_eq!(zipped, stored, "the zip holds the file store exactly");

    // The manifest is the backup's.
    let manifest = Manifest::from_json(&std::fs::read(dir.join(MANIFEST_OBJECT)).unwrap()).unwrap();
    assert_eq!(manifest, store.manifest(&summary, &key).await.unwrap());
    assert_eq!(manifest.fingerprint, original.tables);

    // Through S3: the same objects under the prefix, the same bytes.
    let s3 = e2e::TestEnv::shared().await.s3().await.clone();
    let bucket = format!("export-{:08x}", rand::random::<u32>());
    let name = bucket.clone();
    let endpoint = s3.clone();
    tokio::task::spawn_blocking(move || endpoint.create_bucket(&name)).await.unwrap().unwrap();
    let options = StoreOptions { config: s3.object_store_options(), ..StoreOptions::default() };
    let remote = ExportDestination::from_url(&format!("s3://{bucket}/exports/acme"), &options).unwrap();
    let uploaded = export(&store, &key, &env.tenant, "production", &summary.backup_id, tools, &remote).await.unwrap();
    let names: Vec<&str> = uploaded.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["exports/acme/database.sql", "exports/acme/filestore.zip", "exports/acme/manifest.json"]);
    let digests = |s: &ExportSummary| s.objects.iter().map(|o| (o.bytes, o.sha256.clone())).collect::<Vec<_>>();
    // The zip and the manifest are the same bytes; the SQL the same size (pg_restore writes
    // a random `\restrict` key into each script).
    assert_eq!(digests(&uploaded)[1..], digests(&exported)[1..]);
    assert_eq!(digests(&uploaded)[0].0, digests(&exported)[0].0);

    // A wrong key: a clear error, nothing written.
    let elsewhere = tempfile::tempdir().unwrap();
    let url = format!("file://{}/wrong-key", elsewhere.path().display());
    let destination = ExportDestination::from_url(&url, &StoreOptions::default()).unwrap();
    let wrong =
        export(&store, &BackupKey::generate(), &env.tenant, "production", &summary.backup_id, tools, &destination)
            .await
            .unwrap_err();
    assert!(matches!(wrong, Error::WrongKey), "{wrong:?}");
    assert!(wrong.to_string().contains("key"), "{wrong}");
    assert_eq!(files_in(elsewhere.path()), Vec::<PathBuf>::new());

    // A damaged archive (found only while streaming it): the export fails, nothing final is
    // left, and an earlier export at that destination is no longer marked complete.
    damage_archive(scratch.path());
    let failed = export(&store, &key, &env.tenant, "production", &summary.backup_id, tools, &destination_of(&dir))
        .await
        .unwrap_err();
    assert!(matches!(failed, Error::Corrupt { .. } | Error::Stream { .. }), "{failed:?}");
    assert!(!dir.join(MANIFEST_OBJECT).exists(), "the export is no longer marked complete");
    let left: Vec<PathBuf> = files_in(&dir);
    assert!(left.iter().all(|p| !p.to_string_lossy().contains('#')), "no unfinished upload left: {left:?}");
    drop_database(tryton, &loaded).await;
}

fn destination_of(dir: &Path) -> ExportDestination {
    ExportDestination::from_url(&format!("file://{}", dir.display()), &StoreOptions::default()).unwrap()
}

fn check_digests(summary: &ExportSummary, dir: &Path) {
    for object in &summary.objects {
        let bytes = std::fs::read(dir.join(&object.name)).unwrap();
        assert_eq!(bytes.len() as u64, object.bytes, "{}", object.name);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), object.sha256, "{}", object.name);
    }
}

fn unzip(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        if entry.is_dir() {
            continue;
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        let name = entry.name().unwrap().into_owned();
        files.insert(name, content);
    }
    files
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() { found.extend(files_in(&path)) } else { found.push(path) }
        }
    }
    found.sort();
    found
}

/// Flips one byte in the middle of the stored archive.
fn damage_archive(root: &Path) {
    let archive = files_in(root).into_iter().find(|p| p.ends_with("archive.tar.zst.age")).expect("the archive");
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();
}

async fn drop_database(tryton: &Tryton, database: &DatabaseName) {
    tryton.server.drop_database(database, erp_agent::database::ErpState::Stopped).await.unwrap();
}

/// The export streams: with a file store far larger than its buffers, the process's peak
/// memory grows by about the uploads' buffers, not by the export's size.
#[tokio::test]
async fn export_streams_in_bounded_memory() {
    const LARGE: usize = 96 * 1024 * 1024;
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let database = tryton.copy_of_template("export_large").await;
    let env = environment(tryton, "acme-large", &database, &version);
    // One large incompressible file in the file store (no row needs to name it: a backup
    // carries the folder as it is).
    let folder = tryton.store.folder(database.as_str()).unwrap().join("ff").join("ff");
    std::fs::create_dir_all(&folder).unwrap();
    let mut content = vec![0u8; LARGE];
    rand::fill(&mut content[..]);
    std::fs::write(folder.join("ffff-large"), &content).unwrap();
    drop(content);
    let (_, store, scratch) = stores("export-large").await.swap_remove(0);
    let key = BackupKey::generate();
    let summary = take_backup(&env, &store, &key, scratch.path()).await;

    let out = tempfile::tempdir().unwrap();
    let options = StoreOptions { part_size: 5 * 1024 * 1024, max_concurrency: 1, ..StoreOptions::default() };
    let destination = ExportDestination::from_url(&format!("file://{}", out.path().display()), &options).unwrap();
    // Peak resident memory from here on (`5` resets the high-water mark).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = resident_peak_kib();
    let exported =
        export(&store, &key, &env.tenant, "production", &summary.backup_id, tryton.server.tools(), &destination)
            .await
            .unwrap();
    let grown_mib = (resident_peak_kib() - before) / 1024;
    assert!(exported.objects[1].bytes > LARGE as u64, "{exported:?}");
    assert!(grown_mib < 64, "the export grew the process by {grown_mib} MiB for a {} MiB zip", LARGE >> 20);
    eprintln!("export of a {} MiB file store: peak memory +{grown_mib} MiB", LARGE >> 20);
    let zipped = zip::ZipArchive::new(std::fs::File::open(out.path().join(FILESTORE_OBJECT)).unwrap()).unwrap();
    assert_eq!(zipped.len(), files_in(&tryton.store.folder(database.as_str()).unwrap()).len() + dirs(&zipped));
}

fn resident_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn dirs(archive: &zip::ZipArchive<std::fs::File>) -> usize {
    archive.file_names().filter(|name| name.as_ref().unwrap().ends_with('/')).count()
}

/// `pg_restore` as the export runs it: a custom-format dump in, a plain SQL script out, with no
/// database; input that is no dump fails with pg_restore's own words.
#[tokio::test]
async fn pg_restore_turns_a_dump_into_sql() {
    let tryton = tryton(SERIES).await;
    let tools = tryton.server.tools();
    let mut dump = tools.pg_dump(tryton.server.address(), &tryton.template, &["--format=custom"]).unwrap();
    let mut to_sql = tools.pg_restore_to_sql(&["--no-owner", "--no-privileges"]).unwrap();
    let (mut dumped, mut input) = (dump.take_stdout().unwrap(), to_sql.take_stdin().unwrap());
    let mut output = to_sql.take_stdout().unwrap();
    let read = tokio::spawn(async move {
        let mut sql = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut output, &mut sql).await.map(|_| sql)
    });
    tokio::io::copy(&mut dumped, &mut input).await.unwrap();
    drop((dumped, input));
    dump.finish().await.unwrap();
    to_sql.finish().await.unwrap();
    let sql = String::from_utf8(read.await.unwrap().unwrap()).unwrap();
    assert!(sql.contains("CREATE TABLE public.party_party"), "{}", &sql[..sql.len().min(2000)]);
    assert!(!sql.contains("OWNER TO"), "no owner in a script any user loads");

    let mut to_sql = tools.pg_restore_to_sql(&[]).unwrap();
    let mut input = to_sql.take_stdin().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, b"not a dump at all").await.unwrap();
    drop(input);
    let error = to_sql.finish().await.unwrap_err();
    assert!(matches!(&error, Error::Tool { program, .. } if program == "pg_restore"), "{error}");
}
