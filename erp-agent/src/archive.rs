//! The backup archive: one object holding a database dump, a file store and a manifest,
//! compressed, encrypted and authenticated.
//!
//! # Format (version [`FORMAT_VERSION`])
//!
//! `tar` (POSIX/GNU, as the `tar` crate writes it) → `zstd` (level 3 by default) → `age` (X25519
//! recipient, age's STREAM: 64 KiB chunks each authenticated, the last one flagged, so an
//! altered byte, a reordered chunk or a cut-off end are all detected). Entries, in this order:
//!
//! - a **stream part** (the database dump, a stream of unknown length) as `NAME/part-000000`,
//!   `NAME/part-000001`, … of [`ArchiveOptions::chunk_size`] bytes each (the last shorter; an
//!   empty stream is one empty part), so memory stays bounded whatever the size, and
//!   `cat NAME/part-*` gives the stream back with standard tools;
//! - a **directory part** (the file store) as a directory entry `NAME`, then one entry per
//!   directory and regular file below it, `NAME/relative/path`, in byte order of names, depth
//!   first; anything else there (a symbolic link, a socket) fails the backup rather than being
//!   left out silently;
//! - `manifest.json` **last**: the [`Manifest`], with the size and SHA-256 of every part.
//!
//! Digests: a stream part's SHA-256 is that of the stream. A directory part's is the SHA-256 of,
//! for each entry below the root in archive order, `d PATH \0` for a directory and
//! `f PATH \0 SIZE(8 bytes, big-endian) CONTENT` for a file — one pass, and any renamed, added,
//! removed or changed file changes it.
//!
//! Entries are written with mode 0600 (files) and 0700 (directories): extracted by hand, customer
//! data is readable by its owner only.
//!
//! # Disaster recovery without Tenantry
//!
//! ```text
//! age -d -i tenant.key archive.tar.zst.age | zstd -d | tar -x
//! cat database/part-* > database.dump      # then pg_restore
//! ```
//!
//! # Reading
//!
//! [`ArchiveReader::extract`] hands every part to a [`Sink`] as it streams past and checks
//! every digest against the trailing manifest; it returns the manifest only when everything
//! matched and the encrypted stream ended where its writer ended it. **What the sink received
//! is unverified until `extract` returns `Ok`**: restore into a new database and file store,
//! and throw them away on any error.
//!
//! Failures are told apart: [`Error::WrongKey`] (encrypted to another key), [`Error::Corrupt`]
//! (altered or damaged bytes; `part` says where), [`Error::Truncated`] (cut short), and
//! [`Error::Stream`] (the input or the sink failed on its own). A chunk cut in its middle fails
//! age's authentication like an altered one; given the stored size ([`Expected`]) it is reported
//! as truncated.
//!
//! Everything here is synchronous `Read`/`Write`; from async code run it in
//! `tokio::task::spawn_blocking` (as [`crate::store`] does).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::key::{BackupKey, BackupRecipient};
use crate::manifest::{Manifest, ObjectDigest, PartDigest, PartKind};

pub use crate::manifest::FORMAT_VERSION;

/// The name of the archive's last entry.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Manifests are small (a fingerprint of a few thousand tables); a larger one is not ours.
const MANIFEST_LIMIT: u64 = 16 * 1024 * 1024;
/// zstd's levels without `--ultra`; their windows are at most 2^23 bytes.
const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;
/// The largest window a reader accepts, so a restore's memory stays bounded too (an archive
/// made to demand more is refused rather than obeyed).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// Six digits of part numbers: sorted by name is sorted by number up to a million chunks.
const MAX_STREAM_CHUNKS: u64 = 1_000_000;

/// How an archive is written.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveOptions {
    /// zstd level (1–19, clamped; 3 is zstd's own default: fast, and most of the gain on SQL
    /// dumps).
    pub zstd_level: i32,
    /// Bytes of a stream part's chunk, buffered in memory while written.
    pub chunk_size: usize,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self { zstd_level: 3, chunk_size: 4 * 1024 * 1024 }
    }
}

/// The archive's own output, hashed and counted on the way out.
pub struct HashingWriter<W> {
    inner: W,
    bytes: u64,
    sha256: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.sha256.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Layers<W> = tar::Builder<zstd::stream::write::Encoder<'static, age::stream::StreamWriter<HashingWriter<W>>>>;

/// Writes one archive to `W`. Parts are appended in the order of the calls; [`Self::finish`]
/// adds the manifest. Dropping a writer without finishing leaves an archive that every reader
/// refuses (age's last chunk is never written).
pub struct ArchiveWriter<W: Write> {
    tar: Layers<W>,
    options: ArchiveOptions,
    parts: Vec<PartDigest>,
    mtime: u64,
    buffer: Vec<u8>,
}

/// What [`ArchiveWriter::finish`] hands back.
#[derive(Debug)]
pub struct Finished<W> {
    /// The output, flushed.
    pub output: W,
    /// The manifest as written into the archive (its parts filled in).
    pub manifest: Manifest,
    /// Size and SHA-256 of the bytes written to the output.
    pub archive: ObjectDigest,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive encrypted to `recipient`; writes age's header at once.
    pub fn new(output: W, recipient: &BackupRecipient, options: ArchiveOptions) -> Result<Self> {
        let hashing = HashingWriter { inner: output, bytes: 0, sha256: Sha256::new() };
        let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient.age() as &dyn age::Recipient))
            .map_err(|e| Error::Invalid(format!("cannot encrypt to the backup recipient: {e}")))?;
        let encrypted = encryptor.wrap_output(hashing).map_err(|e| write_error("the archive header", e))?;
        let level = options.zstd_level.clamp(*ZSTD_LEVELS.start(), *ZSTD_LEVELS.end());
        let compressed =
            zstd::stream::write::Encoder::new(encrypted, level).map_err(|e| write_error("starting compression", e))?;
        let mut tar = tar::Builder::new(compressed);
        tar.mode(tar::HeaderMode::Deterministic);
        let mtime =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        Ok(Self { tar, options, parts: Vec::new(), mtime, buffer: Vec::new() })
    }

    /// Appends a stream of unknown length (a database dump) as part `name`, reading it to its
    /// end in chunks of [`ArchiveOptions::chunk_size`].
    pub fn append_stream(&mut self, name: &str, mut stream: impl Read) -> Result<PartDigest> {
        self.check_new_part(name)?;
        let chunk_size = self.options.chunk_size.max(1);
        self.buffer.resize(chunk_size, 0);
        let (mut sha256, mut bytes) = (Sha256::new(), 0u64);
        for index in 0.. {
            if index == MAX_STREAM_CHUNKS {
                return Err(Error::Invalid(format!(
                    "stream {name} exceeds {MAX_STREAM_CHUNKS} chunks of {chunk_size} bytes; use a larger chunk size"
                )));
            }
            let filled = read_full(&mut stream, &mut self.buffer)
                .map_err(|source| Error::Stream { what: format!("reading the stream {name}"), source })?;
            // An empty stream is still one (empty) part, so `cat NAME/part-*` finds it.
            if filled == 0 && index > 0 {
                break;
            }
            let chunk = &self.buffer[..filled];
            sha256.update(chunk);
            bytes += filled as u64;
            let mut header = entry_header(tar::EntryType::Regular, filled as u64, self.mtime);
            self.tar
                .append_data(&mut header, format!("{name}/part-{index:06}"), chunk)
                .map_err(|e| write_error(name, e))?;
            if filled < chunk_size {
                break;
            }
        }
        Ok(self.record(PartDigest {
            name: name.to_string(),
            kind: PartKind::Stream,
            bytes,
            files: 0,
            sha256: hex::encode(sha256.finalize()),
        }))
    }

    /// Appends the tree under `dir` (the file store) as part `name`: every directory and
    /// regular file, with its size as the file system gives it.
    pub fn append_dir(&mut self, name: &str, dir: &Path) -> Result<PartDigest> {
        self.check_new_part(name)?;
        let mut header = entry_header(tar::EntryType::Directory, 0, self.mtime);
        self.tar.append_data(&mut header, name, io::empty()).map_err(|e| write_error(name, e))?;
        let mut digest = DirDigest::default();
        self.append_tree(name, dir, Path::new(""), &mut digest)?;
        Ok(self.record(PartDigest {
            name: name.to_string(),
            kind: PartKind::Directory,
            bytes: digest.bytes,
            files: digest.files,
            sha256: hex::encode(digest.sha256.finalize()),
        }))
    }

    fn append_tree(&mut self, part: &str, root: &Path, relative: &Path, digest: &mut DirDigest) -> Result<()> {
        let dir = root.join(relative);
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { what: "reading the directory to back up", path, source }
        };
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(io_error(&dir))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(io_error(&dir))?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for file_name in names {
            let relative = relative.join(&file_name);
            let path = root.join(&relative);
            let entry_name = Path::new(part).join(&relative);
            let metadata = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Removed since the listing (an attachment deleted meanwhile): not part of the backup.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path)(e)),
            };
            if metadata.is_dir() {
                digest.directory(&relative);
                let mut header = entry_header(tar::EntryType::Directory, 0, self.mtime);
                self.tar.append_data(&mut header, &entry_name, io::empty()).map_err(|e| write_error(part, e))?;
                self.append_tree(part, root, &relative, digest)?;
            } else if metadata.is_file() {
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(&path)(e)),
                };
                let size = file.metadata().map_err(io_error(&path))?.len();
                digest.file(&relative, size);
                let mut header = entry_header(tar::EntryType::Regular, size, self.mtime);
                let content = ExactLength { inner: file.take(size), remaining: size, digest: &mut digest.sha256 };
                self.tar.append_data(&mut header, &entry_name, content).map_err(|e| write_error(part, e))?;
            } else {
                return Err(Error::Invalid(format!(
                    "{} is neither a file nor a directory (a symbolic link?); a backup holds only those",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Writes `manifest` (its parts set to those written) as the last entry and closes every
    /// layer; only then is the archive readable.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<Finished<W>> {
        manifest.parts = std::mem::take(&mut self.parts);
        let json = manifest.to_json();
        let mut header = entry_header(tar::EntryType::Regular, json.len() as u64, self.mtime);
        self.tar.append_data(&mut header, MANIFEST_ENTRY, json.as_slice()).map_err(|e| write_error("manifest", e))?;
        let compressed = self.tar.into_inner().map_err(|e| write_error("closing the tar stream", e))?;
        let encrypted = compressed.finish().map_err(|e| write_error("closing compression", e))?;
        let mut hashing = encrypted.finish().map_err(|e| write_error("closing encryption", e))?;
        hashing.flush().map_err(|e| write_error("flushing the archive", e))?;
        let archive = ObjectDigest { bytes: hashing.bytes, sha256: hex::encode(hashing.sha256.finalize()) };
        Ok(Finished { output: hashing.inner, manifest, archive })
    }

    fn check_new_part(&self, name: &str) -> Result<()> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(Error::Invalid(format!("part name {name:?} is not of [a-z0-9_-]")));
        }
        if self.parts.iter().any(|p| p.name == name) {
            return Err(Error::Invalid(format!("part {name} is already in the archive")));
        }
        Ok(())
    }

    fn record(&mut self, part: PartDigest) -> PartDigest {
        self.parts.push(part.clone());
        part
    }
}

fn write_error(what: &str, source: io::Error) -> Error {
    Error::Stream { what: format!("writing the archive ({what})"), source }
}

fn entry_header(kind: tar::EntryType, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(if kind == tar::EntryType::Directory { 0o700 } else { 0o600 });
    header.set_mtime(mtime);
    header
}

/// Reads until `buf` is full or the stream ends.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The running digest of a directory part (see the module docs for what is hashed).
#[derive(Default)]
struct DirDigest {
    sha256: Sha256,
    bytes: u64,
    files: u64,
}

impl DirDigest {
    fn directory(&mut self, relative: &Path) {
        self.sha256.update(b"d ");
        self.sha256.update(relative.as_os_str().as_encoded_bytes());
        self.sha256.update([0]);
    }

    /// Records the file's name and size; its content follows through `sha256`.
    fn file(&mut self, relative: &Path, size: u64) {
        self.sha256.update(b"f ");
        self.sha256.update(relative.as_os_str().as_encoded_bytes());
        self.sha256.update([0]);
        self.sha256.update(size.to_be_bytes());
        self.bytes += size;
        self.files += 1;
    }
}

/// A file's content, exactly as long as its header said (a file that shrank while being
/// read would otherwise make a tar entry shorter than its header), hashed on the way.
struct ExactLength<'a, R> {
    inner: R,
    remaining: u64,
    digest: &'a mut Sha256,
}

impl<R: Read> Read for ExactLength<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a file shrank while it was being backed up"));
        }
        self.remaining -= n as u64;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Where extracted parts go. Each method's error aborts the extraction.
pub trait Sink {
    /// The writer receiving stream part `part`; called once per chunk, in order, and expected to
    /// return the same writer each time (the chunks form one continuous stream).
    fn stream(&mut self, part: &str) -> io::Result<&mut dyn Write>;
    /// A directory of part `part`; `path` is relative and safe (no `..`, not absolute), empty
    /// for the part's root. Parents come before their children.
    fn directory(&mut self, part: &str, path: &Path) -> io::Result<()>;
    /// A file of part `part`: `size` bytes to read from `content`. What the sink leaves unread
    /// is read (and checked) after it returns.
    fn file(&mut self, part: &str, path: &Path, size: u64, content: &mut dyn Read) -> io::Result<()>;
}

/// A sink that writes every part under a directory: a stream part as the file `ROOT/NAME`, a
/// directory part as the tree `ROOT/NAME/…`. Refuses to overwrite anything.
pub struct DirectorySink {
    root: PathBuf,
    streams: HashMap<String, File>,
}

impl DirectorySink {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), streams: HashMap::new() }
    }
}

impl Sink for DirectorySink {
    fn stream(&mut self, part: &str) -> io::Result<&mut dyn Write> {
        let file = match self.streams.entry(part.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(File::create_new(self.root.join(part))?),
        };
        Ok(file)
    }

    fn directory(&mut self, part: &str, path: &Path) -> io::Result<()> {
        fs::create_dir(self.root.join(part).join(path))
    }

    fn file(&mut self, part: &str, path: &Path, _size: u64, content: &mut dyn Read) -> io::Result<()> {
        let mut file = File::create_new(self.root.join(part).join(path))?;
        io::copy(content, &mut file)?;
        Ok(())
    }
}

/// A sink that keeps nothing: reading an archive through it checks it in full.
pub struct DiscardSink(io::Sink);

impl Default for DiscardSink {
    fn default() -> Self {
        Self(io::sink())
    }
}

impl Sink for DiscardSink {
    fn stream(&mut self, _part: &str) -> io::Result<&mut dyn Write> {
        Ok(&mut self.0)
    }

    fn directory(&mut self, _part: &str, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn file(&mut self, _part: &str, _path: &Path, _size: u64, content: &mut dyn Read) -> io::Result<()> {
        io::copy(content, &mut io::sink()).map(drop)
    }
}

/// What the reader knows of an archive from outside it (its [`crate::manifest::Summary`]),
/// for sharper errors and one more check: the stored size and SHA-256.
#[derive(Debug, Clone)]
pub struct Expected {
    pub archive: ObjectDigest,
    /// The fingerprint of the key it was encrypted to ([`BackupRecipient::fingerprint`]).
    pub key_fingerprint: String,
}

/// What happened under the decompression and tar layers, shared with the taps that see it.
#[derive(Default)]
struct Observed {
    input_bytes: u64,
    input_sha256: Sha256,
    input_ended: bool,
    /// The input itself failed (a network error): not the archive's fault.
    input_failed: bool,
    /// age refused a chunk (authentication, truncation).
    age_failure: Option<io::ErrorKind>,
}

type Shared = Arc<Mutex<Observed>>;

fn observed(shared: &Shared) -> MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The raw input, hashed and counted.
struct InputTap<R> {
    inner: R,
    shared: Shared,
}

impl<R: Read> Read for InputTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        let mut seen = observed(&self.shared);
        match &result {
            Ok(0) if !buf.is_empty() => seen.input_ended = true,
            Ok(n) => {
                seen.input_bytes += *n as u64;
                seen.input_sha256.update(&buf[..*n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => seen.input_failed = true,
        }
        result
    }
}

/// age's decrypted stream, its failures noted before the layers above wrap them.
struct AgeTap<R> {
    inner: R,
    shared: Shared,
}

impl<R: Read> Read for AgeTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        if let Err(e) = &result
            && e.kind() != io::ErrorKind::Interrupted
        {
            observed(&self.shared).age_failure.get_or_insert(e.kind());
        }
        result
    }
}

type Decrypted<R> = AgeTap<age::stream::StreamReader<InputTap<R>>>;
type Decompressed<R> = zstd::stream::read::Decoder<'static, BufReader<Decrypted<R>>>;

/// Reads one archive. See the module docs for what is checked and what the errors mean.
pub struct ArchiveReader<R: Read> {
    tar: tar::Archive<Decompressed<R>>,
    shared: Shared,
    expected: Option<Expected>,
}

impl<R: Read> ArchiveReader<R> {
    /// Reads age's header and opens it with `key`.
    pub fn open(input: R, key: &BackupKey) -> Result<Self> {
        Self::open_inner(input, key, None)
    }

    /// Like [`Self::open`], for an archive whose stored size, SHA-256 and key are known.
    pub fn open_expecting(input: R, key: &BackupKey, expected: Expected) -> Result<Self> {
        Self::open_inner(input, key, Some(expected))
    }

    fn open_inner(input: R, key: &BackupKey, expected: Option<Expected>) -> Result<Self> {
        let shared = Shared::default();
        let tap = InputTap { inner: input, shared: shared.clone() };
        let header_error = |e: age::DecryptError| match e {
            age::DecryptError::NoMatchingKeys => {
                let ours = expected.as_ref().is_some_and(|x| x.key_fingerprint == key.recipient().fingerprint());
                if ours {
                    // The key is the one this backup was made with: its header must be damaged.
                    Error::Corrupt { part: "header".into(), detail: "the key does not open it".into() }
                } else {
                    Error::WrongKey
                }
            }
            age::DecryptError::Io(source) if observed(&shared).input_failed => {
                Error::Stream { what: "reading the archive".into(), source }
            }
            age::DecryptError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Error::Truncated("it ends inside its header".into())
            }
            other => Error::Corrupt { part: "header".into(), detail: other.to_string() },
        };
        let decryptor = age::Decryptor::new(tap).map_err(header_error)?;
        let decrypted =
            decryptor.decrypt(std::iter::once(key.identity() as &dyn age::Identity)).map_err(header_error)?;
        let mut decompressed = zstd::stream::read::Decoder::new(AgeTap { inner: decrypted, shared: shared.clone() })
            .map_err(|e| Error::Invalid(format!("starting decompression: {e}")))?;
        decompressed
            .window_log_max(ZSTD_WINDOW_LOG_MAX)
            .map_err(|e| Error::Invalid(format!("starting decompression: {e}")))?;
        Ok(Self { tar: tar::Archive::new(decompressed), shared, expected })
    }

    /// Hands every part to `sink`, checks everything, and returns the manifest. The data the
    /// sink received is trustworthy only if this returns `Ok`.
    pub fn extract(mut self, sink: &mut dyn Sink) -> Result<Manifest> {
        let shared = self.shared.clone();
        let expected = self.expected.clone();
        let classify = |part: &str, e: io::Error| classify(&shared, expected.as_ref(), part, e);

        let mut parts: Vec<PartDigest> = Vec::new();
        let mut current: Option<PartReading> = None;
        let mut manifest: Option<Manifest> = None;
        for entry in self.tar.entries().map_err(|e| classify("archive", e))? {
            let where_ = current.as_ref().map_or("archive", |c| c.name.as_str()).to_string();
            let mut entry = entry.map_err(|e| classify(&where_, e))?;
            let path = entry.path_bytes().into_owned();
            let kind = entry.header().entry_type();
            let corrupt = |detail: String| Error::Corrupt { part: where_.clone(), detail };
            if manifest.is_some() {
                return Err(corrupt("entries follow the manifest".into()));
            }
            if path == MANIFEST_ENTRY.as_bytes() {
                if !kind.is_file() || entry.size() > MANIFEST_LIMIT {
                    return Err(corrupt("the manifest entry is not a small file".into()));
                }
                let mut json = Vec::new();
                entry.read_to_end(&mut json).map_err(|e| classify("manifest", e))?;
                parts.extend(current.take().map(PartReading::finish));
                manifest = Some(Manifest::from_json(&json)?);
                continue;
            }
            let (part, rest) = split_entry(&path).ok_or_else(|| corrupt("an entry name that is no part".into()))?;
            if current.as_ref().is_none_or(|c| c.name != part) {
                parts.extend(current.take().map(PartReading::finish));
                if parts.iter().any(|p| p.name == part) {
                    return Err(corrupt(format!("part {part} appears twice")));
                }
                current = Some(PartReading::start(part.clone(), &rest, kind).ok_or_else(|| {
                    corrupt(format!("part {part} starts with neither part-000000 nor its directory"))
                })?);
            }
            let reading = current.as_mut().expect("set above");
            reading.entry(rest, kind, &mut entry, sink).map_err(|e| match e {
                EntryError::Format(detail) => Error::Corrupt { part: reading.name.clone(), detail },
                EntryError::Data(e) => classify(&reading.name, e),
                EntryError::Sink(source) => {
                    if observed(&shared).age_failure.is_some() || observed(&shared).input_failed {
                        classify(&reading.name, source)
                    } else {
                        Error::Stream { what: format!("extracting part {}", reading.name), source }
                    }
                }
            })?;
        }
        let manifest = manifest.ok_or_else(|| Error::Corrupt {
            part: "manifest".into(),
            detail: "the archive ends without its manifest".into(),
        })?;
        // Read the encrypted stream to its end: only age's last chunk proves nothing was cut.
        let mut rest = self.tar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| classify("archive", e))?;
        check_expected(&shared, expected.as_ref())?;
        check_parts(&manifest, &parts)?;
        Ok(manifest)
    }
}

/// The stored size and SHA-256, once the whole input has been read.
fn check_expected(shared: &Shared, expected: Option<&Expected>) -> Result<()> {
    let Some(expected) = expected else { return Ok(()) };
    let seen = observed(shared);
    let bytes = seen.input_bytes;
    if bytes < expected.archive.bytes {
        return Err(Error::Truncated(format!("{bytes} of {} bytes", expected.archive.bytes)));
    }
    let sha256 = hex::encode(seen.input_sha256.clone().finalize());
    if bytes != expected.archive.bytes || sha256 != expected.archive.sha256 {
        return Err(Error::Corrupt {
            part: "archive".into(),
            detail: format!("{bytes} bytes with SHA-256 {sha256}, stored as {:?}", expected.archive),
        });
    }
    Ok(())
}

/// Turns an error surfacing through zstd or tar into what really happened below them.
fn classify(shared: &Shared, expected: Option<&Expected>, part: &str, e: io::Error) -> Error {
    let seen = observed(shared);
    if seen.input_failed {
        return Error::Stream { what: "reading the archive".into(), source: e };
    }
    match seen.age_failure {
        Some(io::ErrorKind::UnexpectedEof) => Error::Truncated("it ends before its last chunk".into()),
        Some(_) if expected.is_some_and(|x| seen.input_ended && seen.input_bytes < x.archive.bytes) => {
            Error::Truncated(format!("{} of {} bytes", seen.input_bytes, expected.map_or(0, |x| x.archive.bytes)))
        }
        Some(_) => Error::Corrupt {
            part: part.to_string(),
            detail: "authentication failed: the encrypted data was altered, damaged or cut".into(),
        },
        // age vouched for the bytes, yet they are not a valid archive: a writer's fault.
        None => Error::Corrupt { part: part.to_string(), detail: format!("not a valid archive: {e}") },
    }
}

fn check_parts(manifest: &Manifest, parts: &[PartDigest]) -> Result<()> {
    for part in parts {
        match manifest.part(&part.name) {
            Some(listed) if listed == part => {}
            Some(listed) => {
                return Err(Error::Corrupt {
                    part: part.name.clone(),
                    detail: format!("read {part:?}, the manifest says {listed:?}"),
                });
            }
            None => {
                return Err(Error::Corrupt { part: part.name.clone(), detail: "not in the manifest".into() });
            }
        }
    }
    if let Some(missing) = manifest.parts.iter().find(|m| !parts.iter().any(|p| p.name == m.name)) {
        return Err(Error::Corrupt {
            part: missing.name.clone(),
            detail: "in the manifest, not in the archive".into(),
        });
    }
    Ok(())
}

/// `NAME/rest` → (`NAME`, `rest`); a directory part's root entry is `NAME` (or `NAME/`).
fn split_entry(path: &[u8]) -> Option<(String, Vec<u8>)> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    let (part, rest) = match path.iter().position(|&b| b == b'/') {
        Some(i) => (&path[..i], path[i + 1..].to_vec()),
        None => (path, Vec::new()),
    };
    let part = std::str::from_utf8(part).ok()?;
    let valid = !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    valid.then(|| (part.to_string(), rest))
}

/// A relative path of plain names only: nothing absolute, no `..` or `.`, no empty names.
fn safe_relative(rest: &[u8]) -> Option<PathBuf> {
    if rest.is_empty() || rest.contains(&0) {
        return None;
    }
    let path = Path::new(std::ffi::OsStr::from_bytes(rest));
    let plain = rest.split(|&b| b == b'/').all(|name| !name.is_empty() && name != b"." && name != b"..")
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| path.to_path_buf())
}

enum EntryError {
    /// The entry breaks the format (name, order, type).
    Format(String),
    /// Reading the entry's data failed.
    Data(io::Error),
    /// The sink failed (or failed because reading failed under it).
    Sink(io::Error),
}

/// The part being read and its running digest.
struct PartReading {
    name: String,
    kind: PartKind,
    next_chunk: u64,
    root_seen: bool,
    bytes: u64,
    files: u64,
    sha256: Sha256,
}

impl PartReading {
    fn start(name: String, first: &[u8], kind: tar::EntryType) -> Option<Self> {
        let part_kind = if first.is_empty() && kind.is_dir() {
            PartKind::Directory
        } else if first == b"part-000000" && kind.is_file() {
            PartKind::Stream
        } else {
            return None;
        };
        Some(Self { name, kind: part_kind, next_chunk: 0, root_seen: false, bytes: 0, files: 0, sha256: Sha256::new() })
    }

    fn entry<R: Read>(
        &mut self,
        rest: Vec<u8>,
        kind: tar::EntryType,
        entry: &mut tar::Entry<'_, R>,
        sink: &mut dyn Sink,
    ) -> std::result::Result<(), EntryError> {
        match self.kind {
            PartKind::Stream => {
                let expected = format!("part-{:06}", self.next_chunk);
                if rest != expected.as_bytes() || !kind.is_file() {
                    return Err(EntryError::Format(format!(
                        "expected {}/{expected}, found {}",
                        self.name,
                        String::from_utf8_lossy(&rest)
                    )));
                }
                self.next_chunk += 1;
                let writer = sink.stream(&self.name).map_err(EntryError::Sink)?;
                let mut buf = [0u8; 64 * 1024];
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(EntryError::Data(e)),
                    };
                    self.sha256.update(&buf[..n]);
                    self.bytes += n as u64;
                    writer.write_all(&buf[..n]).map_err(EntryError::Sink)?;
                }
                Ok(())
            }
            PartKind::Directory => {
                if rest.is_empty() {
                    return if kind.is_dir() && !self.root_seen {
                        self.root_seen = true;
                        sink.directory(&self.name, Path::new("")).map_err(EntryError::Sink)
                    } else {
                        Err(EntryError::Format("the part's root appears twice".into()))
                    };
                }
                let path = safe_relative(&rest).ok_or_else(|| {
                    EntryError::Format(format!("unsafe entry name {:?}", String::from_utf8_lossy(&rest)))
                })?;
                let mut digest = DirDigest { sha256: std::mem::take(&mut self.sha256), bytes: 0, files: 0 };
                let result = if kind.is_dir() {
                    digest.directory(&path);
                    sink.directory(&self.name, &path).map_err(EntryError::Sink)
                } else if kind.is_file() {
                    let size = entry.size();
                    digest.file(&path, size);
                    let mut content = HashingReader { inner: entry, sha256: &mut digest.sha256, error: None };
                    let result = sink.file(&self.name, &path, size, &mut content).map_err(EntryError::Sink);
                    let drained = io::copy(&mut content, &mut io::sink());
                    match (content.error.take(), result, drained) {
                        (Some(e), _, _) => Err(EntryError::Data(e)),
                        (None, Err(e), _) => Err(e),
                        (None, Ok(()), Err(e)) => Err(EntryError::Data(e)),
                        (None, Ok(()), Ok(_)) => Ok(()),
                    }
                } else {
                    Err(EntryError::Format(format!("{} is neither a file nor a directory", path.display())))
                };
                self.sha256 = digest.sha256;
                self.bytes += digest.bytes;
                self.files += digest.files;
                result
            }
        }
    }

    fn finish(self) -> PartDigest {
        PartDigest {
            name: self.name,
            kind: self.kind,
            bytes: self.bytes,
            files: self.files,
            sha256: hex::encode(self.sha256.finalize()),
        }
    }
}

/// A file's content on its way to the sink, hashed; a read error is kept so it is not
/// mistaken for the sink's own.
struct HashingReader<'a, R> {
    inner: R,
    sha256: &'a mut Sha256,
    error: Option<io::Error>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.sha256.update(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_split_into_part_and_a_safe_path() {
        assert_eq!(split_entry(b"filestore"), Some(("filestore".into(), vec![])));
        assert_eq!(split_entry(b"filestore/"), Some(("filestore".into(), vec![])));
        assert_eq!(split_entry(b"database/part-000001"), Some(("database".into(), b"part-000001".to_vec())));
        assert_eq!(split_entry(b"/etc/passwd"), None);
        assert_eq!(split_entry(b"../x"), None);
        assert_eq!(safe_relative(b"ab/cd/0123"), Some(PathBuf::from("ab/cd/0123")));
        for bad in [&b""[..], b"../x", b"a/../../x", b"a//b", b"./a", b"a/.", b"/abs"] {
            assert_eq!(safe_relative(bad), None, "{:?} accepted", String::from_utf8_lossy(bad));
        }
    }
}
