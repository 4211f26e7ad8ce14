//! Where backups are kept: any store the `object_store` crate reaches (S3 and S3-compatible
//! servers, Google Cloud Storage, Azure Blob Storage, or a local directory).
//!
//! # Layout
//!
//! ```text
//! <prefix>/<tenant>/<environment>/<backup-id>/archive.tar.zst.age   the archive (crate::archive)
//!                                            /manifest.json.age      the manifest, encrypted too
//!                                            /summary.json           plaintext; written last
//! ```
//!
//! `summary.json` is the **commit marker**: it is written only after the archive and the
//! manifest are stored, so a listing shows complete backups only, and a backup interrupted
//! half-way is invisible (and is overwritten when the same backup id is put again). Deletion
//! removes the summary first, for the same reason. Putting a backup whose summary exists returns
//! that summary without writing anything; deleting a backup twice is not an error.
//!
//! # Streaming and memory
//!
//! The archive is written on a blocking thread ([`ArchiveWriter`] is synchronous) into a
//! multipart upload of [`StoreOptions::part_size`] parts with at most
//! [`StoreOptions::max_concurrency`] in flight, and read back the same way, so memory does not
//! grow with the size of the backup: about `part_size × (max_concurrency + 1)` for the upload
//! plus the archive's chunk size. The defaults (8 MiB parts, 2 in flight) keep the agent well
//! under 64 MB and allow objects up to 80 GB (S3's limit is 10,000 parts); raise the part size
//! for larger tenants. Size and SHA-256 of the stored object are computed on the way and kept in
//! the summary; [`BackupStore::verify`] reads everything back, nothing to disk.
//!
//! # Credentials
//!
//! From the environment as each cloud's SDK reads it (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`…, through `object_store`'s
//! `from_env` builders), then [`StoreOptions::config`] on top (`object_store`'s configuration
//! keys, e.g. `aws_endpoint`, `aws_allow_http`). Never from a command line.

use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::archive::{ArchiveOptions, ArchiveReader, ArchiveWriter, DiscardSink, Expected, Sink};
use crate::error::{Error, Result};
use crate::key::{BackupKey, BackupRecipient};
use crate::manifest::{BackupId, Manifest, Summary, check_segment};

pub const ARCHIVE_OBJECT: &str = "archive.tar.zst.age";
pub const MANIFEST_OBJECT: &str = "manifest.json.age";
pub const SUMMARY_OBJECT: &str = "summary.json";

/// How a store is reached and written.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `object_store` configuration keys and values, applied over the environment's.
    pub config: Vec<(String, String)>,
    /// Bytes of one upload part (S3 needs at least 5 MiB).
    pub part_size: usize,
    /// Parts uploaded at once.
    pub max_concurrency: usize,
    pub archive: ArchiveOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { config: Vec::new(), part_size: 8 * 1024 * 1024, max_concurrency: 2, archive: ArchiveOptions::default() }
    }
}

/// The output of an archive being stored: a multipart upload driven from a blocking thread.
/// Dropped without [`Upload::complete`] (a failed backup), it aborts the upload so no parts are
/// left behind.
pub struct Upload {
    bridge: Option<SyncIoBridge<BufWriter>>,
    handle: Handle,
    /// Set by the first write, which happens on the blocking thread: only there may `Drop`
    /// block on the runtime (an upload never written has nothing to abort).
    written: bool,
}

impl Upload {
    fn complete(&mut self) -> io::Result<()> {
        let mut bridge = self.bridge.take().expect("an upload completes once");
        bridge.shutdown()
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = true;
        self.bridge.as_mut().expect("not completed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.bridge.as_mut().expect("not completed").flush()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(bridge) = self.bridge.take()
            && self.written
        {
            let mut upload = bridge.into_inner();
            // Always on the blocking thread that wrote, where blocking on the runtime is allowed.
            if let Err(e) = self.handle.block_on(upload.abort()) {
                tracing::warn!(error = %e, "aborting an unfinished backup upload failed; its parts stay until the bucket's lifecycle removes them");
            }
        }
    }
}

/// The writer a [`BackupStore::put`] closure fills.
pub type StoreWriter = ArchiveWriter<Upload>;

/// The object store a URL names and the prefix in it: `s3://bucket/prefix`, `gs://bucket/prefix`,
/// `az://container/prefix` (also `azure://`, `abfs://`), or `file:///directory` (created if
/// missing). Credentials come from the environment as each cloud's SDK reads it, then `config`
/// (`object_store`'s configuration keys) on top. `what` names the store in messages ("backup
/// store", "export destination"). The one builder of every store the agent writes to.
pub(crate) fn object_store_from_url(
    url: &str,
    config: &[(String, String)],
    what: &str,
) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let parsed = url::Url::parse(url).map_err(|e| Error::Invalid(format!("{what} URL: {e}")))?;
    let bad_key = |key: &str| Error::Invalid(format!("unknown object store option {key:?}"));
    let build = |kind: &str, e: object_store::Error| Error::Store {
        what: format!("configuring the {what} ({kind})"),
        source: e,
    };
    let (store, prefix): (Arc<dyn ObjectStore>, &str) = match parsed.scheme() {
        "s3" | "s3a" => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(url);
            for (key, value) in config {
                let key = object_store::aws::AmazonS3ConfigKey::from_str(key).map_err(|_| bad_key(key))?;
                builder = builder.with_config(key, value);
            }
            (Arc::new(builder.build().map_err(|e| build("S3", e))?), parsed.path())
        }
        "gs" => {
            let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
            for (key, value) in config {
                let key = object_store::gcp::GoogleConfigKey::from_str(key).map_err(|_| bad_key(key))?;
                builder = builder.with_config(key, value);
            }
            (Arc::new(builder.build().map_err(|e| build("Google Cloud Storage", e))?), parsed.path())
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
            for (key, value) in config {
                let key = object_store::azure::AzureConfigKey::from_str(key).map_err(|_| bad_key(key))?;
                builder = builder.with_config(key, value);
            }
            (Arc::new(builder.build().map_err(|e| build("Azure", e))?), parsed.path())
        }
        "file" => {
            let dir =
                parsed.to_file_path().map_err(|()| Error::Invalid(format!("{url} is not a local directory URL")))?;
            std::fs::create_dir_all(&dir).map_err(Error::io("creating a store's directory", &dir))?;
            let local =
                object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| build("directory", e))?;
            (Arc::new(local), "")
        }
        other => return Err(Error::Invalid(format!("{what} URL scheme {other:?} is not s3, gs, az or file"))),
    };
    let prefix =
        Path::parse(prefix.trim_matches('/')).map_err(|e| Error::Invalid(format!("{what} prefix {prefix:?}: {e}")))?;
    Ok((store, prefix))
}

/// The backups of every tenant under one prefix of one object store.
#[derive(Debug, Clone)]
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    options: StoreOptions,
}

impl BackupStore {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` (also `azure://`,
    /// `abfs://`), or `file:///directory` (created if missing).
    pub fn from_url(url: &str, options: StoreOptions) -> Result<Self> {
        let (store, prefix) = object_store_from_url(url, &options.config, "backup store")?;
        Ok(Self { store, prefix, options })
    }

    fn backup_dir(&self, tenant: &str, environment: &str, id: &BackupId) -> Result<Path> {
        check_segment("tenant", tenant)?;
        check_segment("environment", environment)?;
        Ok(self.environment_dir(tenant, environment).clone().join(id.as_str()))
    }

    fn environment_dir(&self, tenant: &str, environment: &str) -> Path {
        self.prefix.clone().join(tenant).join(environment)
    }

    fn object(&self, summary: &Summary, name: &str) -> Result<Path> {
        Ok(self.backup_dir(&summary.tenant, &summary.environment, &summary.backup_id)?.join(name))
    }

    /// Stores a backup: runs `fill` on a blocking thread to append the parts to an archive
    /// streamed into the store, then writes the encrypted manifest and, last, the summary.
    /// `manifest` describes the backup (its parts are filled in from what `fill` wrote).
    /// If a complete backup with this id is already stored, returns its summary and runs
    /// nothing. An error from `fill` (say, `pg_dump` exiting non-zero after its output: check
    /// it inside `fill`) aborts the upload and stores nothing.
    pub async fn put<F>(&self, manifest: Manifest, recipient: &BackupRecipient, fill: F) -> Result<Summary>
    where
        F: FnOnce(&mut StoreWriter) -> Result<()> + Send + 'static,
    {
        let dir = self.backup_dir(&manifest.tenant, &manifest.environment, &manifest.backup_id)?;
        if let Some(existing) = self.read_summary(&dir.clone().join(SUMMARY_OBJECT)).await? {
            return Ok(existing);
        }
        let upload =
            BufWriter::with_capacity(self.store.clone(), dir.clone().join(ARCHIVE_OBJECT), self.options.part_size)
                .with_max_concurrency(self.options.max_concurrency.max(1));
        let handle = Handle::current();
        let upload =
            Upload { bridge: Some(SyncIoBridge::new_with_handle(upload, handle.clone())), handle, written: false };
        let (archive_options, for_archive) = (self.options.archive, recipient.clone());
        let finished = tokio::task::spawn_blocking(move || {
            let mut writer = ArchiveWriter::new(upload, &for_archive, archive_options)?;
            fill(&mut writer)?;
            let mut finished = writer.finish(manifest)?;
            finished
                .output
                .complete()
                .map_err(|source| Error::Stream { what: "completing the archive upload".into(), source })?;
            Ok::<_, Error>(finished)
        })
        .await
        .map_err(|e| Error::Invalid(format!("the archive writer panicked: {e}")))??;

        let sealed = seal(recipient, &finished.manifest.to_json())?;
        self.put_object(&dir.clone().join(MANIFEST_OBJECT), sealed, "storing the manifest").await?;
        let summary = Summary::new(&finished.manifest, finished.archive, recipient.fingerprint());
        self.write_summary(&summary).await?;
        Ok(summary)
    }

    /// The complete backups of one environment, oldest first.
    pub async fn list(&self, tenant: &str, environment: &str) -> Result<Vec<Summary>> {
        check_segment("tenant", tenant)?;
        check_segment("environment", environment)?;
        let dir = self.environment_dir(tenant, environment);
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_filter(|meta| futures::future::ready(meta.location.filename() == Some(SUMMARY_OBJECT)))
            .try_collect()
            .await
            .map_err(|e| Error::Store { what: format!("listing {dir}"), source: e })?;
        let mut summaries = Vec::with_capacity(objects.len());
        for meta in objects {
            // Deleted between the listing and now: no longer a backup.
            if let Some(summary) = self.read_summary(&meta.location).await? {
                summaries.push(summary);
            }
        }
        summaries.sort_by(|a, b| (a.created_at, &a.backup_id).cmp(&(b.created_at, &b.backup_id)));
        Ok(summaries)
    }

    /// One backup's summary, if it is stored complete.
    pub async fn summary(&self, tenant: &str, environment: &str, id: &BackupId) -> Result<Option<Summary>> {
        self.read_summary(&self.backup_dir(tenant, environment, id)?.join(SUMMARY_OBJECT)).await
    }

    /// One backup's summary; [`Error::Missing`] naming it if it is not stored complete.
    pub async fn existing(&self, tenant: &str, environment: &str, id: &BackupId) -> Result<Summary> {
        self.summary(tenant, environment, id)
            .await?
            .ok_or_else(|| Error::Missing { what: "backup", name: format!("{tenant}/{environment}/{id}") })
    }

    /// The manifest stored beside the archive (small; for planning a restore without reading
    /// the archive). [`Self::extract`] and [`Self::verify`] check the one inside the archive.
    pub async fn manifest(&self, summary: &Summary, key: &BackupKey) -> Result<Manifest> {
        let path = self.object(summary, MANIFEST_OBJECT)?;
        let sealed = self
            .store
            .get(&path)
            .await
            .map_err(|e| Error::Store { what: format!("reading {path}"), source: e })?
            .bytes()
            .await
            .map_err(|e| Error::Store { what: format!("reading {path}"), source: e })?;
        Manifest::from_json(&unseal(key, &sealed)?)
    }

    /// Streams the archive through `sink` on a blocking thread and returns the checked manifest
    /// and the sink. What the sink received is trustworthy only if this returns `Ok` (see
    /// [`crate::archive`]).
    pub async fn extract<S: Sink + Send + 'static>(
        &self,
        summary: &Summary,
        key: &BackupKey,
        mut sink: S,
    ) -> Result<(Manifest, S)> {
        let path = self.object(summary, ARCHIVE_OBJECT)?;
        let stream = self
            .store
            .get(&path)
            .await
            .map_err(|e| Error::Store { what: format!("reading {path}"), source: e })?
            .into_stream()
            .map_err(io::Error::other);
        let input = SyncIoBridge::new(StreamReader::new(stream.boxed()));
        let expected = Expected { archive: summary.archive.clone(), key_fingerprint: summary.key_fingerprint.clone() };
        let key = key.clone();
        let (manifest, sink) = tokio::task::spawn_blocking(move || {
            let manifest = ArchiveReader::open_expecting(input, &key, expected)?.extract(&mut sink)?;
            Ok::<_, Error>((manifest, sink))
        })
        .await
        .map_err(|e| Error::Invalid(format!("the archive reader panicked: {e}")))??;
        check_identity(summary, &manifest)?;
        Ok((manifest, sink))
    }

    /// Reads the backup back in full, nothing to disk: the stored size and SHA-256, every
    /// chunk's authentication, every part's digest, and the manifest beside the archive.
    pub async fn verify(&self, summary: &Summary, key: &BackupKey) -> Result<Manifest> {
        let (manifest, _) = self.extract(summary, key, DiscardSink::default()).await?;
        if self.manifest(summary, key).await? != manifest {
            return Err(Error::Corrupt {
                part: MANIFEST_OBJECT.into(),
                detail: "differs from the manifest inside the archive".into(),
            });
        }
        Ok(manifest)
    }

    /// Deletes a backup: the summary first (it disappears from listings at once), then the rest.
    /// A held backup is refused; a backup already gone is not an error.
    pub async fn delete(&self, summary: &Summary) -> Result<()> {
        let dir = self.backup_dir(&summary.tenant, &summary.environment, &summary.backup_id)?;
        if let Some(stored) = self.read_summary(&dir.clone().join(SUMMARY_OBJECT)).await?
            && stored.held
        {
            return Err(Error::Held(summary.backup_id.to_string()));
        }
        for name in [SUMMARY_OBJECT, MANIFEST_OBJECT, ARCHIVE_OBJECT] {
            let path = dir.clone().join(name);
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::Store { what: format!("deleting {path}"), source: e }),
            }
        }
        Ok(())
    }

    /// Marks a backup held: never deleted until released. Returns the updated summary.
    pub async fn hold(&self, summary: &Summary) -> Result<Summary> {
        self.set_held(summary, true).await
    }

    pub async fn release(&self, summary: &Summary) -> Result<Summary> {
        self.set_held(summary, false).await
    }

    async fn set_held(&self, summary: &Summary, held: bool) -> Result<Summary> {
        let path = self.object(summary, SUMMARY_OBJECT)?;
        let mut stored = self
            .read_summary(&path)
            .await?
            .ok_or_else(|| Error::Invalid(format!("backup {} is not in the store", summary.backup_id)))?;
        if stored.held != held {
            stored.held = held;
            self.write_summary(&stored).await?;
        }
        Ok(stored)
    }

    async fn write_summary(&self, summary: &Summary) -> Result<()> {
        let json = serde_json::to_vec_pretty(summary).expect("a summary always serialises");
        self.put_object(&self.object(summary, SUMMARY_OBJECT)?, json, "storing the summary").await
    }

    async fn read_summary(&self, path: &Path) -> Result<Option<Summary>> {
        let bytes = match self.store.get(path).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match bytes {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt { part: path.to_string(), detail: e.to_string() }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::Store { what: format!("reading {path}"), source: e }),
        }
    }

    async fn put_object(&self, path: &Path, bytes: Vec<u8>, what: &str) -> Result<()> {
        self.store
            .put(path, PutPayload::from(Bytes::from(bytes)))
            .await
            .map(drop)
            .map_err(|e| Error::Store { what: format!("{what} at {path}"), source: e })
    }
}

/// The archive must be the backup its summary names (a summary copied onto another backup's
/// archive would otherwise restore the wrong data).
fn check_identity(summary: &Summary, manifest: &Manifest) -> Result<()> {
    let same = manifest.backup_id == summary.backup_id
        && manifest.tenant == summary.tenant
        && manifest.environment == summary.environment;
    if same {
        Ok(())
    } else {
        Err(Error::Corrupt {
            part: "manifest".into(),
            detail: format!(
                "the archive is backup {}/{}/{}, not {}/{}/{}",
                manifest.tenant,
                manifest.environment,
                manifest.backup_id,
                summary.tenant,
                summary.environment,
                summary.backup_id
            ),
        })
    }
}

/// A small age file in memory (the manifest copy).
fn seal(recipient: &BackupRecipient, plaintext: &[u8]) -> Result<Vec<u8>> {
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient.age() as &dyn age::Recipient))
        .map_err(|e| Error::Invalid(format!("cannot encrypt to the backup recipient: {e}")))?;
    let io = |source| Error::Stream { what: "encrypting the manifest".into(), source };
    let mut writer = encryptor.wrap_output(Vec::new()).map_err(io)?;
    writer.write_all(plaintext).map_err(io)?;
    writer.finish().map_err(io)
}

fn unseal(key: &BackupKey, sealed: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::Corrupt { part: MANIFEST_OBJECT.into(), detail };
    let decryptor = age::Decryptor::new(sealed).map_err(|e| corrupt(e.to_string()))?;
    let mut reader = decryptor.decrypt(std::iter::once(key.identity() as &dyn age::Identity)).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => Error::WrongKey,
        other => corrupt(other.to_string()),
    })?;
    let mut plaintext = Vec::new();
    reader.read_to_end(&mut plaintext).map_err(|e| corrupt(e.to_string()))?;
    Ok(plaintext)
}
