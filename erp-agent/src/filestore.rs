//! Tryton's attachment store: one folder per database name under the ERP's `[database] path`,
//! each file at `<path>/<database>/<id[0:2]>/<id[2:4]>/<id>`, where the id is the MD5 of the
//! content (with `-1`, `-2`… appended on the rare collision). A database renamed or copied
//! needs its folder renamed or copied too, or its attachments silently read as empty: Tryton
//! reports no error for a missing file, so [`check_attachments`] is how a restore proves the
//! files are there.
//!
//! Assumes `[attachment] store_prefix` is unset (Tryton's default): with it set, every
//! database shares one folder and a per-database copy is impossible.
//!
//! **Copies are hard links.** Tryton writes a file once, under a name derived from its
//! content, and never opens one for writing again (`filestore.set` returns early when the file
//! exists; 8.x's retention only unlinks). So two folders sharing the same inodes behave as two
//! independent copies for everything Tryton does: removing an attachment in one unlinks one
//! name and leaves the other. A link costs no space and no time per byte; across file systems
//! (`EXDEV`) the copy falls back to copying bytes. Anything outside Tryton that edits a stored
//! file in place would change both; nothing should.
//!
//! Every change is atomic at the folder level: a copy is built under a hidden temporary name
//! and renamed into place, a delete first renames the folder aside; a killed operation leaves
//! at most a hidden `.<name>.partial-*` or `.<name>.deleting-*` folder, which the next call on
//! that name removes. Nothing is ever written into an existing database's folder.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::{Error, Result};

/// The attachment store of one ERP configuration (`[database] path`).
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

/// What [`FileStore::copy`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CopyOutcome {
    pub files: u64,
    pub bytes: u64,
    /// Files copied byte by byte because linking was impossible (another file system).
    pub copied_not_linked: u64,
}

/// A folder's contents, summed up: what a manifest records and a restore compares.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Inventory {
    pub files: u64,
    pub bytes: u64,
    /// SHA-256 (hex) over every file in path order: its relative path, its size and the
    /// SHA-256 of its content. Equal digests mean equal folders.
    pub digest: String,
}

/// An attachment whose file is not what its row says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadAttachment {
    pub attachment_id: i64,
    pub name: String,
    pub file_id: String,
    pub problem: FileProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileProblem {
    /// No file at the path the row points to.
    Missing,
    /// The content does not hash to the id Tryton gave it (damaged or replaced).
    ContentMismatch,
}

impl FileStore {
    /// `root` is the ERP's `[database] path`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of `database`.
    pub fn folder(&self, database: &str) -> Result<PathBuf> {
        // A database name is an arbitrary string; as a folder name it must stay one component.
        let plain = !database.is_empty() && database != "." && database != ".." && !database.contains(['/', '\0']);
        if !plain || database.starts_with('.') {
            return Err(Error::Invalid(format!("`{database}` cannot name a file-store folder")));
        }
        Ok(self.root.join(database))
    }

    pub fn exists(&self, database: &str) -> Result<bool> {
        Ok(self.folder(database)?.is_dir())
    }

    /// Copies `from`'s folder to a new folder `to` (hard links where possible, see the module
    /// docs). A database without attachments has no folder: its copy is an empty folder.
    /// Fails with [`Error::AlreadyExists`] if `to` exists.
    pub async fn copy(&self, from: &str, to: &str) -> Result<CopyOutcome> {
        let (source, target) = (self.folder(from)?, self.folder(to)?);
        let (root, to) = (self.root.clone(), to.to_string());
        blocking(move || {
            if target.exists() {
                return Err(Error::AlreadyExists { what: "file-store folder", name: to });
            }
            remove_leftovers(&root, &to)?;
            let partial = root.join(format!(".{to}.partial-{}", std::process::id()));
            fs::create_dir_all(&partial).map_err(Error::io("creating a file-store folder", &partial))?;
            let mut outcome = CopyOutcome::default();
            if source.is_dir() {
                link_tree(&source, &partial, &mut outcome)?;
            }
            fs::rename(&partial, &target).map_err(Error::io("publishing a file-store copy", &target))?;
            Ok(outcome)
        })
        .await
    }

    /// Renames `from`'s folder to `to`. Fails with [`Error::AlreadyExists`] if `to` exists; a
    /// missing `from` (no attachments, or renamed already by a resumed operation) does nothing.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (source, target) = (self.folder(from)?, self.folder(to)?);
        let to = to.to_string();
        blocking(move || {
            if target.exists() {
                return Err(Error::AlreadyExists { what: "file-store folder", name: to });
            }
            if !source.exists() {
                return Ok(());
            }
            fs::rename(&source, &target).map_err(Error::io("renaming a file-store folder", &source))
        })
        .await
    }

    /// Deletes `database`'s folder; deleting a missing folder succeeds.
    pub async fn delete(&self, database: &str) -> Result<()> {
        let folder = self.folder(database)?;
        let (root, database) = (self.root.clone(), database.to_string());
        blocking(move || {
            if folder.exists() {
                let aside = root.join(format!(".{database}.deleting-{}", std::process::id()));
                fs::rename(&folder, &aside).map_err(Error::io("setting a file-store folder aside", &folder))?;
            }
            remove_leftovers(&root, &database)
        })
        .await
    }

    /// Counts, sizes and digests `database`'s folder (all zero for a missing folder).
    pub async fn inventory(&self, database: &str) -> Result<Inventory> {
        let folder = self.folder(database)?;
        blocking(move || inventory(&folder)).await
    }

    /// The number of files in `database`'s folder and their total size (zero for a missing
    /// folder), without reading them: what a check compares before it reads the files it has
    /// reasons to expect ([`Self::check_attachments`]).
    pub async fn tally(&self, database: &str) -> Result<(u64, u64)> {
        let folder = self.folder(database)?;
        blocking(move || {
            let (mut files, mut bytes) = (0, 0);
            if folder.is_dir() {
                for entry in walk(&folder) {
                    let entry = entry?;
                    if entry.file_type().is_file() {
                        let metadata =
                            entry.metadata().map_err(|e| Error::io("reading a file's size", entry.path())(e.into()))?;
                        files += 1;
                        bytes += metadata.len();
                    }
                }
            }
            Ok((files, bytes))
        })
        .await
    }

    /// Checks that every attachment row of the database `connection` is connected to has its
    /// file in `database`'s folder, with the content its id names. Empty means all are good.
    pub async fn check_attachments(&self, connection: &mut PgConnection, database: &str) -> Result<Vec<BadAttachment>> {
        let folder = self.folder(database)?;
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id::bigint, coalesce(name, '')::text, file_id::text FROM ir_attachment \
             WHERE file_id IS NOT NULL AND file_id <> '' ORDER BY id",
        )
        .fetch_all(connection)
        .await
        .map_err(Error::database("reading the attachments' file ids"))?;
        blocking(move || {
            let mut bad = Vec::new();
            for (attachment_id, name, file_id) in rows {
                if let Some(problem) = check_file(&folder, &file_id)? {
                    bad.push(BadAttachment { attachment_id, name, file_id, problem });
                }
            }
            Ok(bad)
        })
        .await
    }
}

/// The path of a file id, as Tryton's `filestore._filename` builds it.
pub fn file_path(folder: &Path, file_id: &str) -> Option<PathBuf> {
    let plain = file_id.len() >= 4 && file_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plain.then(|| folder.join(&file_id[0..2]).join(&file_id[2..4]).join(file_id))
}

fn check_file(folder: &Path, file_id: &str) -> Result<Option<FileProblem>> {
    let Some(path) = file_path(folder, file_id) else {
        return Ok(Some(FileProblem::Missing));
    };
    let mut file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(FileProblem::Missing)),
        Err(e) => return Err(Error::io("opening an attachment", &path)(e)),
    };
    // `<md5>-<n>` names a collision: its content hashes to the `<md5>` part yet differs from
    // the file named `<md5>`; only the hash can be checked.
    let expected = file_id.split('-').next().unwrap_or(file_id);
    let mut hasher = Md5::new();
    hash_reader(&mut file, &path, |chunk| hasher.update(chunk))?;
    let actual = hex::encode(hasher.finalize());
    Ok((actual != expected).then_some(FileProblem::ContentMismatch))
}

/// Everything under `folder` (not itself), in path order.
fn walk(folder: &Path) -> impl Iterator<Item = Result<walkdir::DirEntry>> + '_ {
    walkdir::WalkDir::new(folder).min_depth(1).sort_by_file_name().into_iter().map(move |entry| {
        entry.map_err(|e| {
            let path = e.path().unwrap_or(folder).to_path_buf();
            Error::io("walking a file-store folder", path)(e.into())
        })
    })
}

fn hash_reader(reader: &mut impl Read, path: &Path, mut update: impl FnMut(&[u8])) -> Result<u64> {
    let mut buffer = vec![0; 256 * 1024];
    let mut total = 0;
    loop {
        let read = reader.read(&mut buffer).map_err(Error::io("reading an attachment", path))?;
        if read == 0 {
            return Ok(total);
        }
        update(&buffer[..read]);
        total += read as u64;
    }
}

fn link_tree(source: &Path, target: &Path, outcome: &mut CopyOutcome) -> Result<()> {
    for entry in walk(source) {
        let entry = entry?;
        let relative = entry.path().strip_prefix(source).expect("walkdir stays under its root");
        let destination = target.join(relative);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&destination).map_err(Error::io("creating a file-store folder", &destination))?;
        } else if entry.file_type().is_file() {
            outcome.files += 1;
            outcome.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::hard_link(entry.path(), &destination) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                    fs::copy(entry.path(), &destination).map_err(Error::io("copying an attachment", &destination))?;
                    outcome.copied_not_linked += 1;
                }
                Err(e) => return Err(Error::io("linking an attachment", &destination)(e)),
            }
        }
    }
    Ok(())
}

fn inventory(folder: &Path) -> Result<Inventory> {
    let mut summary = Sha256::new();
    let mut inventory = Inventory::default();
    if folder.is_dir() {
        for entry in walk(folder) {
            let entry = entry?;
            if !entry.file_type().is_file() {
                continue;
            }
            let mut file = fs::File::open(entry.path()).map_err(Error::io("opening an attachment", entry.path()))?;
            let mut content = Sha256::new();
            let size = hash_reader(&mut file, entry.path(), |chunk| content.update(chunk))?;
            let relative = entry.path().strip_prefix(folder).expect("walkdir stays under its root");
            summary.update(relative.to_string_lossy().as_bytes());
            summary.update([0]);
            summary.update(size.to_string().as_bytes());
            summary.update([0]);
            summary.update(hex::encode(content.finalize()).as_bytes());
            summary.update(b"\n");
            inventory.files += 1;
            inventory.bytes += size;
        }
    }
    inventory.digest = hex::encode(summary.finalize());
    Ok(inventory)
}

/// Removes the hidden folders a killed copy or delete of `name` left behind.
fn remove_leftovers(root: &Path, name: &str) -> Result<()> {
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(());
    };
    let (partial, deleting) = (format!(".{name}.partial-"), format!(".{name}.deleting-"));
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with(&partial) || file_name.starts_with(&deleting) {
            fs::remove_dir_all(entry.path())
                .map_err(Error::io("removing a leftover file-store folder", entry.path()))?;
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.expect("a file-store task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &FileStore, database: &str, content: &[u8]) -> String {
        let id = hex::encode(Md5::digest(content));
        let path = file_path(&store.folder(database).unwrap(), &id).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        id
    }

    #[tokio::test]
    async fn copies_are_links_that_survive_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let id = put(&store, "acme", b"invoice scan");
        put(&store, "acme", &[7u8; 100_000]);
        let outcome = store.copy("acme", "acme__work_1").await.unwrap();
        assert_eq!(outcome, CopyOutcome { files: 2, bytes: 100_012, copied_not_linked: 0 });
        let original = store.inventory("acme").await.unwrap();
        assert_eq!(store.inventory("acme__work_1").await.unwrap(), original);
        assert_eq!((original.files, original.bytes), (2, 100_012));

        // Deleting the original leaves the copy whole.
        store.delete("acme").await.unwrap();
        assert!(!store.exists("acme").unwrap());
        let copy = store.folder("acme__work_1").unwrap();
        assert_eq!(check_file(&copy, &id).unwrap(), None);
        assert_eq!(store.inventory("acme__work_1").await.unwrap(), original);
        // Deleting again is fine; copying onto an existing folder is not.
        store.delete("acme").await.unwrap();
        put(&store, "other", b"x");
        assert!(matches!(store.copy("other", "acme__work_1").await, Err(Error::AlreadyExists { .. })));
        assert_eq!(store.inventory("acme__work_1").await.unwrap(), original);
    }

    #[tokio::test]
    async fn inventories_tell_folders_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let empty = store.inventory("none").await.unwrap();
        assert_eq!((empty.files, empty.bytes), (0, 0));
        let id = put(&store, "a", b"one");
        store.copy("a", "b").await.unwrap();
        assert_eq!(store.inventory("a").await.unwrap(), store.inventory("b").await.unwrap());
        // Same size, other content: the digest differs.
        let path = file_path(&store.folder("b").unwrap(), &id).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"two").unwrap();
        assert_eq!(check_file(&store.folder("b").unwrap(), &id).unwrap(), Some(FileProblem::ContentMismatch));
        let (a, b) = (store.inventory("a").await.unwrap(), store.inventory("b").await.unwrap());
        assert_eq!((a.files, a.bytes), (b.files, b.bytes));
        assert_ne!(a.digest, b.digest);
    }

    #[tokio::test]
    async fn renames_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let id = put(&store, "a", b"one");
        // A killed copy's leftover is cleared by the next copy of that name.
        fs::create_dir_all(dir.path().join(".c.partial-1/ab")).unwrap();
        store.copy("a", "c").await.unwrap();
        assert!(!dir.path().join(".c.partial-1").exists());
        store.rename("a", "a__replaced_20260101T000000Z").await.unwrap();
        assert!(!store.exists("a").unwrap());
        assert_eq!(check_file(&store.folder("a__replaced_20260101T000000Z").unwrap(), &id).unwrap(), None);
        assert_eq!(check_file(&store.folder("a").unwrap(), &id).unwrap(), Some(FileProblem::Missing));
        // Renaming a missing folder is a no-op (a resumed operation); onto an existing one, refused.
        store.rename("a", "z").await.unwrap();
        assert!(matches!(store.rename("c", "a__replaced_20260101T000000Z").await, Err(Error::AlreadyExists { .. })));
        for bad in ["", ".", "..", "a/b", ".hidden"] {
            assert!(store.folder(bad).is_err(), "{bad:?}");
        }
    }
}
