//! A customer's export of one backup, in open formats, decrypted: `database.sql` (a plain SQL
//! script that loads into any empty PostgreSQL database as any user), `filestore.zip` (the
//! attachment folder) and `manifest.json` (the backup's manifest: what it holds, its rows per
//! table, its parts' digests), written to an object store (`file:///dir` or
//! `s3://bucket/prefix`).
//!
//! **Streamed.** The backup is read once: its archive is decrypted and checked as it streams
//! ([`BackupStore::extract`]); the database part (`pg_dump`'s custom format) flows through
//! `pg_restore --file=-` (no database involved) into one multipart upload, the file store
//! through a zip writer into another. Nothing of the export is held whole, in memory or on
//! local disk: memory stays near two uploads' buffers (`part_size × (max_concurrency + 1)`
//! each) plus the pipes between them.
//!
//! **Nothing final unless complete.** Both uploads are completed only once the whole archive
//! has been read and authenticated and `pg_restore` has exited cleanly; on any failure they are
//! aborted, so neither object appears. `manifest.json` is written last and is the export's
//! commit marker: it is removed before an export starts writing, so a destination holding a
//! `manifest.json` holds a complete export of the backup it names. A wrong key is found on the
//! small manifest beside the archive, before anything is written or removed.
//!
//! **What it never does.** It never writes to the backup store or to any database, never puts
//! the key or a credential on a command line or in a message, and keeps no decrypted byte on
//! local disk.

use std::io::{self, Read, Write};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::process::ChildStdin;
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use crate::archive::Sink;
use crate::database::PgTools;
use crate::error::{Error, Result};
use crate::key::BackupKey;
use crate::manifest::BackupId;
use crate::ops::backup::{DATABASE_PART, FILESTORE_PART};
use crate::store::{BackupStore, StoreOptions, object_store_from_url};

/// The plain SQL script of the database.
pub const DATABASE_OBJECT: &str = "database.sql";
/// The file store, as a zip of the attachment folder.
pub const FILESTORE_OBJECT: &str = "filestore.zip";
/// The backup's manifest, as JSON; written last.
pub const MANIFEST_OBJECT: &str = "manifest.json";

/// Bytes in flight between the zip writer and its upload, and in each read of an upload.
const PIPE_BYTES: usize = 256 * 1024;

/// Where an export is written: a prefix of an object store.
#[derive(Debug, Clone)]
pub struct ExportDestination {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    part_size: usize,
    max_concurrency: usize,
}

impl ExportDestination {
    /// `s3://bucket/prefix`, `gs://…`, `az://…` (credentials from the environment as for a
    /// backup store, then `options.config` on top) or `file:///directory` (created if missing):
    /// see [`crate::store::object_store_from_url`]. Uploads use `options.part_size` and
    /// `options.max_concurrency`.
    pub fn from_url(url: &str, options: &StoreOptions) -> Result<Self> {
        let (store, prefix) = object_store_from_url(url, &options.config, "export destination")?;
        Ok(Self { store, prefix, part_size: options.part_size, max_concurrency: options.max_concurrency.max(1) })
    }

    fn object(&self, name: &str) -> Path {
        self.prefix.clone().join(name)
    }
}

/// One object an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedObject {
    /// Its path in the destination's store (the destination's prefix, then the name).
    pub name: String,
    pub bytes: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
}

/// What an export wrote: `database.sql`, `filestore.zip`, `manifest.json`, in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    pub tenant: String,
    pub environment: String,
    pub backup_id: BackupId,
    pub objects: Vec<ExportedObject>,
}

/// Exports backup `backup_id` of `tenant`'s `environment` from `store` to `destination`,
/// decrypted with `key`. `tools` provides `pg_restore` (of the backup's PostgreSQL major
/// version or newer). Writing again to the same destination replaces the export there.
pub async fn export(
    store: &BackupStore,
    key: &BackupKey,
    tenant: &str,
    environment: &str,
    backup_id: &BackupId,
    tools: &PgTools,
    destination: &ExportDestination,
) -> Result<ExportSummary> {
    let summary = store
        .summary(tenant, environment, backup_id)
        .await?
        .ok_or_else(|| Error::Missing { what: "backup", name: format!("{tenant}/{environment}/{backup_id}") })?;
    // The key is tried on the small manifest first: a wrong one fails before anything changes.
    store.manifest(&summary, key).await?;
    let manifest_path = destination.object(MANIFEST_OBJECT);
    match destination.store.delete(&manifest_path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(source) => return Err(Error::Store { what: format!("removing the previous {manifest_path}"), source }),
    }

    let mut to_sql = tools.pg_restore_to_sql(&["--no-owner", "--no-privileges"])?;
    let sql_upload = spawn_upload(destination, DATABASE_OBJECT, to_sql.take_stdout().expect("piped"));
    let (zip_output, zip_input) = tokio::io::duplex(PIPE_BYTES);
    let zip_upload = spawn_upload(destination, FILESTORE_OBJECT, zip_input);
    let sink = ExportSink::new(to_sql.take_stdin().expect("piped"), zip_output);
    let extracted = match store.extract(&summary, key, sink).await {
        Ok((manifest, sink)) => {
            async move {
                tokio::task::spawn_blocking(move || sink.finish())
                    .await
                    .map_err(|e| Error::Invalid(format!("the zip writer panicked: {e}")))?
                    .map_err(|source| Error::Stream { what: format!("writing {FILESTORE_OBJECT}"), source })?;
                to_sql.finish().await?;
                Ok::<_, Error>(manifest)
            }
            .await
        }
        // The sink is gone, and with it pg_restore's input: it ends. A failed write into it
        // (a broken pipe) is explained by pg_restore's own error.
        Err(error @ Error::Stream { .. }) => Err(to_sql.finish().await.err().unwrap_or(error)),
        Err(error) => {
            drop(to_sql);
            Err(error)
        }
    };
    let joined = |e: tokio::task::JoinError| Error::Invalid(format!("an export upload panicked: {e}"));
    let sql = sql_upload.await.map_err(joined).and_then(|r| r);
    let zip = zip_upload.await.map_err(joined).and_then(|r| r);

    let (manifest, mut sql, mut zip) = match (extracted, sql, zip) {
        (Ok(manifest), Ok(sql), Ok(zip)) => (manifest, sql, zip),
        (extracted, sql, zip) => {
            // Upload failures first: a broken upload breaks the pipes feeding it, and the
            // extraction's "broken pipe" would hide why.
            let mut first = None;
            for upload in [sql, zip] {
                match upload {
                    Ok(mut upload) => upload.abort().await,
                    Err(e) => first = first.or(Some(e)),
                }
            }
            return Err(first.or(extracted.err()).expect("one of them failed"));
        }
    };
    let completed = async {
        sql.complete().await?;
        zip.complete().await
    }
    .await;
    if let Err(e) = completed {
        zip.abort().await;
        return Err(e);
    }
    let json = manifest.to_json();
    let manifest_object = ExportedObject {
        name: manifest_path.to_string(),
        bytes: json.len() as u64,
        sha256: hex::encode(Sha256::digest(&json)),
    };
    destination
        .store
        .put(&manifest_path, PutPayload::from(json))
        .await
        .map_err(|source| Error::Store { what: format!("writing {manifest_path}"), source })?;
    Ok(ExportSummary {
        tenant: tenant.to_string(),
        environment: environment.to_string(),
        backup_id: backup_id.clone(),
        objects: vec![sql.object, zip.object, manifest_object],
    })
}

/// An object being uploaded, all its bytes written but not yet completed.
struct Uploaded {
    writer: BufWriter,
    object: ExportedObject,
}

impl Uploaded {
    async fn complete(&mut self) -> Result<()> {
        self.writer
            .shutdown()
            .await
            .map_err(|source| Error::Stream { what: format!("completing {}", self.object.name), source })
    }

    async fn abort(&mut self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(object = %self.object.name, error = %e, "aborting an export upload failed; its parts stay until the bucket's lifecycle removes them");
        }
    }
}

/// Uploads everything `source` yields to `name` in `destination`, hashing it on the way; the
/// upload is left open for the caller to complete or abort.
fn spawn_upload(
    destination: &ExportDestination,
    name: &str,
    mut source: impl AsyncRead + Unpin + Send + 'static,
) -> JoinHandle<Result<Uploaded>> {
    let path = destination.object(name);
    let mut writer = BufWriter::with_capacity(destination.store.clone(), path.clone(), destination.part_size)
        .with_max_concurrency(destination.max_concurrency);
    tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut buffer = vec![0; PIPE_BYTES];
        let copied: io::Result<()> = async {
            loop {
                let read = source.read(&mut buffer).await?;
                if read == 0 {
                    return Ok(());
                }
                hasher.update(&buffer[..read]);
                bytes += read as u64;
                writer.write_all(&buffer[..read]).await?;
            }
        }
        .await;
        if let Err(source) = copied {
            let _ = writer.abort().await;
            return Err(Error::Stream { what: format!("uploading {path}"), source });
        }
        let object = ExportedObject { name: path.to_string(), bytes, sha256: hex::encode(hasher.finalize()) };
        Ok(Uploaded { writer, object })
    })
}

type ZipOutput = ZipWriter<StreamWriter<io::BufWriter<ZipPipe>>>;

/// The zip's way to its upload. Once the export is abandoned, what the zip writer still writes
/// as it is dropped (it finishes the archive in its `Drop`) is discarded: that may happen on
/// an async thread, where the bridge must not block, and the upload is aborted anyway.
struct ZipPipe {
    bridge: SyncIoBridge<DuplexStream>,
    abandoned: Arc<AtomicBool>,
}

impl Write for ZipPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.abandoned.load(Ordering::Relaxed) { Ok(buf.len()) } else { self.bridge.write(buf) }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.abandoned.load(Ordering::Relaxed) { Ok(()) } else { self.bridge.flush() }
    }
}

/// Where an export's archive goes: the dump into `pg_restore`, the files into the zip.
struct ExportSink {
    database: Option<SyncIoBridge<ChildStdin>>,
    zip: Option<ZipOutput>,
    abandoned: Arc<AtomicBool>,
}

impl ExportSink {
    fn new(database: ChildStdin, zip_output: DuplexStream) -> Self {
        let abandoned = Arc::new(AtomicBool::new(false));
        let pipe = ZipPipe { bridge: SyncIoBridge::new(zip_output), abandoned: abandoned.clone() };
        Self {
            database: Some(SyncIoBridge::new(database)),
            zip: Some(ZipWriter::new_stream(io::BufWriter::with_capacity(PIPE_BYTES, pipe))),
            abandoned,
        }
    }

    /// Ends both outputs: `pg_restore`'s input closed, the zip's central directory written.
    /// Runs on a blocking thread.
    fn finish(mut self) -> io::Result<()> {
        drop(self.database.take());
        let zip = self.zip.take().expect("finished once");
        let mut output = zip.finish().map_err(io::Error::other)?.into_inner();
        output.flush()
    }

    fn zip(&mut self, part: &str) -> io::Result<&mut ZipOutput> {
        if part != FILESTORE_PART {
            return Err(io::Error::other(format!("unexpected part `{part}` in a backup")));
        }
        Ok(self.zip.as_mut().expect("not finished"))
    }
}

impl Drop for ExportSink {
    fn drop(&mut self) {
        if self.zip.is_some() {
            self.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

impl Sink for ExportSink {
    fn stream(&mut self, part: &str) -> io::Result<&mut dyn Write> {
        match (part, self.database.as_mut()) {
            (DATABASE_PART, Some(input)) => Ok(input),
            _ => Err(io::Error::other(format!("unexpected stream part `{part}` in a backup"))),
        }
    }

    fn directory(&mut self, part: &str, path: &FsPath) -> io::Result<()> {
        let zip = self.zip(part)?;
        if path.as_os_str().is_empty() {
            return Ok(());
        }
        let options = SimpleFileOptions::default().unix_permissions(0o755);
        zip.add_directory(zip_name(path)?, options).map_err(io::Error::other)
    }

    fn file(&mut self, part: &str, path: &FsPath, size: u64, content: &mut dyn Read) -> io::Result<()> {
        let zip = self.zip(part)?;
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(0o644)
            .large_file(size >= zip::ZIP64_BYTES_THR);
        zip.start_file(zip_name(path)?, options).map_err(io::Error::other)?;
        io::copy(content, zip).map(drop)
    }
}

/// A relative path as a zip entry name: its components joined by `/`.
fn zip_name(path: &FsPath) -> io::Result<String> {
    let parts: Option<Vec<&str>> = path.components().map(|c| c.as_os_str().to_str()).collect();
    parts
        .map(|parts| parts.join("/"))
        .ok_or_else(|| io::Error::other(format!("{} is not a UTF-8 name", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The export destination is built as a backup store is: every scheme a store takes.
    #[test]
    fn an_export_goes_wherever_a_backup_store_can_be() {
        let options = StoreOptions {
            config: vec![
                ("azure_storage_account_name".into(), "tenantry".into()),
                ("azure_storage_account_key".into(), "dGVzdCBrZXk=".into()),
            ],
            ..StoreOptions::default()
        };
        let destination = ExportDestination::from_url("az://exports/acme/2026", &options).unwrap();
        assert_eq!(destination.object(MANIFEST_OBJECT).as_ref(), "acme/2026/manifest.json");
        let error = ExportDestination::from_url("ftp://host/dir", &options).unwrap_err();
        assert!(error.to_string().contains("export destination URL scheme"), "{error}");
    }
}
