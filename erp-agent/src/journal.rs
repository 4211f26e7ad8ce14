//! The journal of one operation: which steps are done, kept by the caller (a file here; a
//! table for the single-server runtime, an object's status in Kubernetes) so that a process
//! killed at any instant and started again with the same journal knows where it was.
//!
//! The rule every operation follows: a step's effect happens first, then its completion is
//! recorded; a step is written so that running it again after an interruption is harmless
//! (idempotent). So after a crash the step in progress simply runs again. A journal is only
//! ever replaced whole (written beside, flushed, renamed over), never edited in place: a crash
//! while saving leaves the previous journal, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where an operation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Going forward: the next step is the first one not in `done`.
    Running,
    /// Something failed: the steps' compensations run, newest first, until the environment is
    /// as it was before the operation.
    RollingBack,
    /// Finished; nothing more to do when run again.
    Succeeded,
    /// Rolled back; the environment is as it was before. `failure` says why.
    RolledBack,
}

/// A step that is done, with what it found or made (names, sizes, digests) for the steps after
/// it and for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub output: serde_json::Value,
}

/// Why an operation is rolling back or rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub step: String,
    pub message: String,
    /// When the failed step started and failed, for the report (absent in journals written
    /// before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// The journal of one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The operation's id: names its work copies, so a rerun finds them.
    pub operation: String,
    /// What operation this is (`backup`, `restore`, `upgrade`…) and its parameters: a rerun with
    /// a journal of another operation is refused rather than mixing the two.
    pub kind: String,
    pub parameters: serde_json::Value,
    pub started_at: DateTime<Utc>,
    pub phase: Phase,
    pub done: Vec<StepRecord>,
    /// Compensations already run while rolling back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

impl Journal {
    pub fn new(operation: &str, kind: &str, parameters: serde_json::Value) -> Self {
        Self {
            operation: operation.to_string(),
            kind: kind.to_string(),
            parameters,
            started_at: Utc::now(),
            phase: Phase::Running,
            done: Vec::new(),
            undone: Vec::new(),
            failure: None,
        }
    }

    pub fn is_done(&self, step: &str) -> bool {
        self.done.iter().any(|record| record.step == step)
    }

    /// What a done step recorded.
    pub fn output(&self, step: &str) -> Option<&serde_json::Value> {
        self.done.iter().find(|record| record.step == step).map(|record| &record.output)
    }

    pub fn is_undone(&self, step: &str) -> bool {
        self.undone.iter().any(|s| s == step)
    }

    /// Whether the operation has nothing left to do.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Succeeded | Phase::RolledBack)
    }
}

/// Where a journal is kept. `save` must be atomic: after a crash, `load` returns the previous
/// or the new journal, never a mix.
pub trait JournalStore: Send + Sync {
    fn load(&self) -> Result<Option<Journal>>;
    fn save(&self, journal: &Journal) -> Result<()>;
}

/// A journal in a file, replaced atomically: written to a temporary file beside it, flushed to
/// disk, renamed over the old one, and the directory flushed so the rename itself survives a
/// power cut.
#[derive(Debug, Clone)]
pub struct FileJournal {
    path: PathBuf,
}

impl FileJournal {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl JournalStore for FileJournal {
    fn load(&self) -> Result<Option<Journal>> {
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { what: "reading the journal", path: self.path.clone(), source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::Journal(format!("{} is not a journal this agent can read: {e}", self.path.display())))
    }

    fn save(&self, journal: &Journal) -> Result<()> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { what, path, source }
        };
        let directory = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let temporary = self.path.with_extension("journal-new");
        let text = serde_json::to_vec_pretty(journal).expect("a journal always serializes");
        let mut file = fs::File::create(&temporary).map_err(io("writing the journal", &temporary))?;
        file.write_all(&text).map_err(io("writing the journal", &temporary))?;
        file.sync_all().map_err(io("flushing the journal", &temporary))?;
        fs::rename(&temporary, &self.path).map_err(io("replacing the journal", &self.path))?;
        fs::File::open(directory).and_then(|d| d.sync_all()).map_err(io("flushing the journal's directory", directory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_recorded_before_its_times_reads_back() {
        let old = serde_json::json!({"step": "load", "message": "damaged"});
        let failure: Failure = serde_json::from_value(old).unwrap();
        assert_eq!((failure.started_at, failure.finished_at), (None, None));
        let now = Utc::now();
        let timed = Failure { started_at: Some(now), finished_at: Some(now), ..failure };
        let read: Failure = serde_json::from_value(serde_json::to_value(&timed).unwrap()).unwrap();
        assert_eq!(read, timed);
    }

    #[test]
    fn a_saved_journal_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournal::new(dir.path().join("op.json"));
        assert_eq!(store.load().unwrap(), None, "no journal yet");
        let mut journal = Journal::new("op-1", "backup", serde_json::json!({"environment": "production"}));
        store.save(&journal).unwrap();
        let now = Utc::now();
        journal.done.push(StepRecord {
            step: "dump".into(),
            started_at: now,
            finished_at: now,
            output: serde_json::json!({"bytes": 12}),
        });
        store.save(&journal).unwrap();
        let read = store.load().unwrap().unwrap();
        assert_eq!(read, journal);
        assert!(read.is_done("dump") && !read.is_done("upload"));
        assert_eq!(read.output("dump").unwrap()["bytes"], 12);
        assert!(!dir.path().join("op.journal-new").exists(), "no temporary file left");
    }

    #[test]
    fn an_unfinished_save_leaves_the_previous_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournal::new(dir.path().join("op.json"));
        let journal = Journal::new("op-1", "backup", serde_json::Value::Null);
        store.save(&journal).unwrap();
        // A crash between writing the new text and renaming it over the old one.
        fs::write(dir.path().join("op.journal-new"), b"{\"operation\": \"op-1\", \"ki").unwrap();
        assert_eq!(store.load().unwrap(), Some(journal));
    }

    #[test]
    fn a_damaged_journal_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("op.json");
        fs::write(&path, b"not json").unwrap();
        let error = FileJournal::new(&path).load().unwrap_err();
        assert!(error.to_string().contains("is not a journal"), "{error}");
    }
}
