//! The backup archive on its own: round trips, encryption, and every way a damaged archive
//! must be refused.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use erp_agent::Error;
use erp_agent::archive::{ArchiveOptions, ArchiveReader, ArchiveWriter, DirectorySink, DiscardSink, Expected};
use erp_agent::key::BackupKey;
use erp_agent::manifest::{BackupId, BackupKind, ErpInfo, Manifest, PartKind};
use sha2::{Digest, Sha256};

/// age's payload chunk on the wire: 64 KiB of data and a 16-byte tag.
const AGE_CHUNK: usize = 64 * 1024 + 16;

fn manifest() -> Manifest {
    let mut m = Manifest::new(
        BackupId::generate(Utc::now()),
        "acme",
        "production",
        BackupKind::Manual,
        Utc::now(),
        ErpInfo { profile: "tryton".into(), version: "7.0.59".into() },
    )
    .unwrap();
    m.modules.insert("party".into(), "7.0.3".into());
    m.fingerprint.insert("party_party".into(), 3);
    m.tools.insert("pg_dump".into(), "15.8".into());
    m
}

/// Bytes that compress poorly, so archives span many age chunks.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A file store with nested directories, an empty directory, empty files and binary content.
fn file_store(root: &Path) {
    fs::create_dir_all(root.join("ab/cd")).unwrap();
    fs::create_dir_all(root.join("ab/ef")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("ab/cd/abcd0123"), noise(200_000, 1)).unwrap();
    fs::write(root.join("ab/cd/empty"), b"").unwrap();
    fs::write(root.join("ab/ef/zeros"), vec![0u8; 70_000]).unwrap();
    fs::write(root.join("top.txt"), b"confidential invoice 2026-0042 for Acme Widgets\n").unwrap();
    fs::write(root.join("\u{e9}t\u{e9}"), [0xff, 0x00, 0xfe]).unwrap();
}

/// The dump part used throughout: several chunks of the small chunk size, not a multiple of it.
fn dump() -> Vec<u8> {
    let mut dump = b"INSERT INTO party_party VALUES (42, 'Acme Widgets GmbH');\n".repeat(1000);
    dump.extend(noise(300_000, 7));
    dump
}

const OPTIONS: ArchiveOptions = ArchiveOptions { zstd_level: 3, chunk_size: 100_000 };

/// A finished archive of `dump()` (part `database`), an empty stream (`empty`) and
/// `file_store` (`filestore`), with its manifest and stored digest.
fn archive(key: &BackupKey) -> (Vec<u8>, Manifest, Expected, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    file_store(&dir.path().join("store"));
    let mut writer = ArchiveWriter::new(Vec::new(), &key.recipient(), OPTIONS).unwrap();
    writer.append_stream("database", dump().as_slice()).unwrap();
    writer.append_stream("empty", std::io::empty()).unwrap();
    writer.append_dir("filestore", &dir.path().join("store")).unwrap();
    let finished = writer.finish(manifest()).unwrap();
    let expected = Expected { archive: finished.archive.clone(), key_fingerprint: key.recipient().fingerprint() };
    (finished.output, finished.manifest, expected, dir)
}

fn tree(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Option<Vec<u8>>)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                out.push((relative, None));
                walk(root, &path, out);
            } else {
                out.push((relative, Some(fs::read(&path).unwrap())));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

#[test]
fn a_multi_part_dump_and_a_file_store_round_trip_byte_identical() {
    let key = BackupKey::generate();
    let (bytes, written, expected, dir) = archive(&key);
    let out = tempfile::tempdir().unwrap();
    let manifest = ArchiveReader::open_expecting(bytes.as_slice(), &key, expected)
        .unwrap()
        .extract(&mut DirectorySink::new(out.path()))
        .unwrap();

    assert_eq!(manifest, written);
    assert_eq!(fs::read(out.path().join("database")).unwrap(), dump());
    assert_eq!(fs::read(out.path().join("empty")).unwrap(), b"");
    assert_eq!(tree(&out.path().join("filestore")), tree(&dir.path().join("store")));

    let database = manifest.part("database").unwrap();
    assert_eq!(database.kind, PartKind::Stream);
    assert_eq!(database.bytes, dump().len() as u64);
    assert_eq!(database.sha256, hex::encode(Sha256::digest(dump())));
    let files = manifest.part("filestore").unwrap();
    let originals: Vec<_> = tree(&dir.path().join("store")).into_iter().filter_map(|(_, content)| content).collect();
    assert_eq!((files.kind, files.files), (PartKind::Directory, originals.len() as u64));
    assert_eq!(files.bytes, originals.iter().map(|c| c.len() as u64).sum::<u64>());
    assert_eq!(manifest.fingerprint["party_party"], 3);
}

/// The disaster path: the reference `age` command (Debian's, the Go implementation), `zstd`
/// and `tar` give the data back without any Tenantry code, as the key module documents.
#[test]
fn standard_tools_read_the_archive() {
    e2e::install::ensure_debian_packages(&["age", "zstd", "tar"]).unwrap();
    let key = BackupKey::generate();
    let (bytes, _, _, dir) = archive(&key);
    let out = tempfile::tempdir().unwrap();
    key.write_new(&out.path().join("tenant.key")).unwrap();
    fs::write(out.path().join("archive.tar.zst.age"), &bytes).unwrap();
    fs::create_dir(out.path().join("x")).unwrap();
    let script =
        "age -d -i tenant.key archive.tar.zst.age | zstd -d | tar -x -C x && cd x && cat database/part-* > ../dump";
    let run = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .current_dir(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let x = out.path().join("x");
    assert_eq!(fs::read(out.path().join("dump")).unwrap(), dump());
    assert!(fs::read_dir(x.join("database")).unwrap().count() >= 4, "expected several chunks");
    assert_eq!(tree(&x.join("filestore")), tree(&dir.path().join("store")));
    let manifest = Manifest::from_json(&fs::read(x.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.parts.len(), 3);
}

/// Decrypts and decompresses with the age and zstd libraries alone.
fn plaintext(bytes: &[u8], key: &BackupKey) -> Vec<u8> {
    let identity: age::x25519::Identity = key.expose_secret().parse().unwrap();
    let decryptor = age::Decryptor::new(bytes).unwrap();
    let mut reader = decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)).unwrap();
    let mut compressed = Vec::new();
    reader.read_to_end(&mut compressed).unwrap();
    zstd::decode_all(compressed.as_slice()).unwrap()
}

/// Encrypts `tar` the way the writer does, for archives made wrong on purpose.
fn seal(tar: &[u8], key: &BackupKey) -> Vec<u8> {
    let recipient: age::x25519::Recipient = key.recipient().to_string().parse().unwrap();
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).unwrap();
    let mut out = encryptor.wrap_output(Vec::new()).unwrap();
    out.write_all(&zstd::encode_all(tar, 3).unwrap()).unwrap();
    out.finish().unwrap()
}

#[test]
fn archive_is_encrypted_and_authenticated() {
    let key = BackupKey::generate();
    let (bytes, _, _, _dir) = archive(&key);
    for secret in [&b"Acme Widgets GmbH"[..], b"party_party", b"confidential invoice", b"manifest.json", b"part-000"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{:?} in plaintext",
            String::from_utf8_lossy(secret)
        );
    }
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    // Re-sealing the same content gives other bytes (a fresh file key each time), so two
    // backups of the same data cannot be compared from outside.
    assert_ne!(seal(&plaintext(&bytes, &key), &key), seal(&plaintext(&bytes, &key), &key));
}

/// Where age's payload starts: after the header's `--- MAC` line and the 16-byte nonce.
fn payload_start(bytes: &[u8]) -> usize {
    let mac = bytes.windows(5).position(|w| w == b"\n--- ").unwrap() + 1;
    let end = mac + bytes[mac..].iter().position(|&b| b == b'\n').unwrap() + 1;
    end + 16
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut damaged = bytes.to_vec();
    damaged[at] ^= 0x01;
    damaged
}

fn read(bytes: &[u8], key: &BackupKey, expected: Option<&Expected>) -> erp_agent::Result<Manifest> {
    let reader = match expected {
        Some(x) => ArchiveReader::open_expecting(bytes, key, x.clone())?,
        None => ArchiveReader::open(bytes, key)?,
    };
    reader.extract(&mut DiscardSink::default())
}

#[test]
fn a_flipped_byte_anywhere_is_refused_as_corrupt() {
    let key = BackupKey::generate();
    let (bytes, _, expected, _dir) = archive(&key);
    let start = payload_start(&bytes);
    let mac = bytes.windows(5).position(|w| w == b"\n--- ").unwrap() + 6;
    assert!(bytes.len() > start + 4 * AGE_CHUNK, "the archive should span several chunks");
    let offsets = [
        ("magic", 3),
        ("header MAC", mac),
        ("nonce", start - 5),
        ("first chunk", start + 10),
        ("middle", start + (bytes.len() - start) / 2),
        ("chunk tag", start + AGE_CHUNK - 1),
        ("last chunk", bytes.len() - 20),
        ("last byte", bytes.len() - 1),
    ];
    for (name, at) in offsets {
        for expected in [None, Some(&expected)] {
            match read(&flip(&bytes, at), &key, expected) {
                Err(Error::Corrupt { part, detail }) => assert!(!detail.is_empty(), "{name}: {part}"),
                other => panic!("{name} (offset {at}, expected {}): {other:?}", expected.is_some()),
            }
        }
    }
}

/// A flip in the recipient stanza makes the key not open the header: without the stored
/// summary that cannot be told from another key, with it the header is reported damaged.
#[test]
fn a_damaged_key_stanza_is_damage_when_the_key_is_known_to_be_right() {
    let key = BackupKey::generate();
    let (bytes, _, expected, _dir) = archive(&key);
    let stanza = bytes.windows(10).position(|w| w == b"-> X25519 ").unwrap() + 12;
    let damaged = flip(&bytes, stanza);
    assert!(matches!(read(&damaged, &key, Some(&expected)), Err(Error::Corrupt { ref part, .. }) if part == "header"));
    assert!(matches!(read(&damaged, &key, None), Err(Error::WrongKey | Error::Corrupt { .. })));
}

#[test]
fn a_truncated_archive_is_refused_as_truncated() {
    let key = BackupKey::generate();
    let (bytes, _, expected, _dir) = archive(&key);
    let start = payload_start(&bytes);
    // On a chunk boundary age itself knows the last chunk is missing.
    for cut in [start, start + AGE_CHUNK, start + 3 * AGE_CHUNK] {
        for expected in [None, Some(&expected)] {
            let result = read(&bytes[..cut], &key, expected);
            assert!(matches!(result, Err(Error::Truncated(_))), "cut at {cut}: {result:?}");
        }
    }
    // Inside the header.
    assert!(matches!(read(&bytes[..30], &key, None), Err(Error::Truncated(_) | Error::Corrupt { .. })));
    // Inside a chunk: a cut chunk fails authentication like an altered one; the stored size
    // tells which it was.
    for cut in [start + AGE_CHUNK + 100, bytes.len() - 1] {
        let result = read(&bytes[..cut], &key, Some(&expected));
        assert!(matches!(result, Err(Error::Truncated(_))), "cut at {cut}: {result:?}");
        let result = read(&bytes[..cut], &key, None);
        assert!(matches!(result, Err(Error::Corrupt { .. })), "cut at {cut}: {result:?}");
    }
    // Bytes added at the end are damage too.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"trailing");
    assert!(matches!(read(&longer, &key, None), Err(Error::Corrupt { .. })));
}

#[test]
fn another_key_is_refused_as_the_wrong_key() {
    let key = BackupKey::generate();
    let (bytes, _, expected, _dir) = archive(&key);
    let other = BackupKey::generate();
    assert!(matches!(read(&bytes, &other, None), Err(Error::WrongKey)));
    assert!(matches!(read(&bytes, &other, Some(&expected)), Err(Error::WrongKey)));
    assert!(read(&bytes, &key, Some(&expected)).is_ok());
}

/// A validly encrypted archive whose data does not match its manifest (what a buggy writer, or
/// someone holding the public key, could produce) is refused, naming the part.
#[test]
fn a_part_that_differs_from_the_manifest_is_refused() {
    let key = BackupKey::generate();
    let (bytes, manifest, _, _dir) = archive(&key);
    let mut tar = plaintext(&bytes, &key);
    let sha = manifest.part("database").unwrap().sha256.as_bytes().to_vec();
    let at = tar.windows(sha.len()).position(|w| w == sha.as_slice()).unwrap();
    tar[at] = if tar[at] == b'0' { b'1' } else { b'0' };
    let result = read(&seal(&tar, &key), &key, None);
    assert!(matches!(result, Err(Error::Corrupt { ref part, .. }) if part == "database"), "{result:?}");
    // Unchanged, the same re-sealed content reads fine: the check above is about the digest.
    assert!(read(&seal(&plaintext(&bytes, &key), &key), &key, None).is_ok());
}

/// Hand-made tar entries, bypassing the tar crate's own refusal of `..`.
fn raw_entry(name: &[u8], kind: u8, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    header.as_old_mut().linkflag = [kind];
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn entry_names_that_climb_out_are_refused() {
    let key = BackupKey::generate();
    let outside = tempfile::tempdir().unwrap();
    let root = outside.path().join("restore");
    fs::create_dir(&root).unwrap();
    for evil in [&b"filestore/../../escaped"[..], b"filestore/a/../../../escaped", b"/escaped"] {
        let mut tar = raw_entry(b"filestore", b'5', b"");
        tar.extend(raw_entry(evil, b'0', b"pwned"));
        tar.extend([0u8; 1024]);
        let result =
            ArchiveReader::open(seal(&tar, &key).as_slice(), &key).unwrap().extract(&mut DirectorySink::new(&root));
        assert!(matches!(result, Err(Error::Corrupt { .. })), "{}: {result:?}", String::from_utf8_lossy(evil));
        assert!(!outside.path().join("escaped").exists());
        let _ = fs::remove_dir_all(root.join("filestore"));
    }
    // A symbolic link entry is no file or directory of a file store.
    let mut tar = raw_entry(b"filestore", b'5', b"");
    tar.extend(raw_entry(b"filestore/link", b'2', b""));
    tar.extend([0u8; 1024]);
    let result = ArchiveReader::open(seal(&tar, &key).as_slice(), &key).unwrap().extract(&mut DiscardSink::default());
    assert!(matches!(result, Err(Error::Corrupt { .. })), "{result:?}");
}

#[test]
fn a_symbolic_link_in_the_file_store_fails_the_backup() {
    let key = BackupKey::generate();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("real"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
    let mut writer = ArchiveWriter::new(Vec::new(), &key.recipient(), OPTIONS).unwrap();
    assert!(matches!(writer.append_dir("filestore", dir.path()), Err(Error::Invalid(_))));
}

#[test]
fn an_unfinished_archive_is_refused() {
    let key = BackupKey::generate();
    let mut out = Vec::new();
    {
        let mut writer = ArchiveWriter::new(&mut out, &key.recipient(), OPTIONS).unwrap();
        writer.append_stream("database", dump().as_slice()).unwrap();
        // Dropped without finish: what a crash mid-backup leaves.
    }
    assert!(matches!(read(&out, &key, None), Err(Error::Truncated(_) | Error::Corrupt { .. })));
}

/// The reader bounds zstd's window (restores stay in bounded memory); every level a writer may
/// use must still read back.
#[test]
fn every_compression_level_reads_back() {
    let key = BackupKey::generate();
    let data = dump();
    for zstd_level in [1, 19, 22] {
        let mut writer =
            ArchiveWriter::new(Vec::new(), &key.recipient(), ArchiveOptions { zstd_level, chunk_size: 1 << 20 })
                .unwrap();
        writer.append_stream("database", data.as_slice()).unwrap();
        let finished = writer.finish(manifest()).unwrap();
        let out = tempfile::tempdir().unwrap();
        ArchiveReader::open(finished.output.as_slice(), &key)
            .unwrap()
            .extract(&mut DirectorySink::new(out.path()))
            .unwrap();
        assert_eq!(fs::read(out.path().join("database")).unwrap(), data, "level {zstd_level}");
    }
}
