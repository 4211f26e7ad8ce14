//! One run of an operation at a time, and nothing left running of an earlier one.
//!
//! A rerun after a crash trusts the journal to say what the environment holds. A child of the
//! killed run that still runs breaks that trust: it goes on writing into the work copy the rerun
//! drops and makes again under the same name, and the two collide on the ERP's own tables.
//! [`crate::child::command`] has the kernel kill a child when the agent dies — but not when the
//! agent dies in the millisecond between starting it and `setpriv` setting that signal, which is
//! exactly when a journal step has just been recorded. So every such child also carries its run's
//! mark in its environment (`TENANTRY_AGENT_RUN=<journal>`, set before it starts, inherited by
//! its own children), and a run, once it holds its journal's lock, kills every process that
//! carries that mark before it reads the journal.
//!
//! The lock (`flock` on `<journal>.lock`) is held by the agent alone, not by its children: it
//! goes with the agent, and while it is held another agent on the same journal stops at once
//! with a conflict instead of undoing a live run's work.
//!
//! Processes are seen through `/proc`, so within one PID namespace: on Kubernetes a killed
//! agent's pod takes its children with it, and on one machine they share the namespace.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// The environment variable that marks a child with its run's journal.
pub const RUN_MARK: &str = "TENANTRY_AGENT_RUN";

/// The mark of the run this process has claimed, while it holds the claim.
static CLAIMED: Mutex<Option<OsString>> = Mutex::new(None);

/// The mark the children this process starts now must carry, if it has claimed a run.
pub(crate) fn current_mark() -> Option<OsString> {
    CLAIMED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

fn set_mark(mark: Option<OsString>) {
    *CLAIMED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = mark;
}

/// How long a lock may stay held after its holder let it go.
const LOCK_GRACE: Duration = Duration::from_secs(2);

/// How long the processes of an earlier run may take to be gone once killed.
const GONE_WITHIN: Duration = Duration::from_secs(30);

/// This process's claim on an operation: while it lives, no other agent runs the operation and
/// the children it starts through [`crate::child::command`] carry its mark.
#[derive(Debug)]
pub struct RunClaim {
    _lock: File,
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        set_mark(None);
    }
}

/// Claims the operation journaled at `journal`: takes its lock (a [`Error::Conflict`] if another
/// agent holds it), then kills whatever an earlier run of it left running.
pub fn claim(journal: &Path) -> Result<RunClaim> {
    let mark = mark_of(journal)?;
    let lock_path = with_suffix(journal, ".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| Error::Io { what: "opening the operation's lock", path: lock_path.clone(), source })?;
    // A lock whose holder has just closed it or died may take a moment to be let go (the
    // kernel can release a file's last reference after `close` returns): only a lock still
    // held after that grace is another agent's.
    let grace = Instant::now() + LOCK_GRACE;
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < grace => std::thread::sleep(Duration::from_millis(10)),
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Conflict(format!(
                    "another agent is running the operation of {} (it holds {}): let it finish, or stop it first",
                    journal.display(),
                    lock_path.display()
                )));
            }
            Err(TryLockError::Error(source)) => {
                return Err(Error::Io { what: "locking the operation", path: lock_path, source });
            }
        }
    }
    end_earlier_runs(&mark)?;
    set_mark(Some(mark));
    Ok(RunClaim { _lock: lock })
}

/// The mark of the run journaled at `journal`: its absolute path, so two operations never share
/// one and two spellings of the same journal do.
fn mark_of(journal: &Path) -> Result<OsString> {
    let name =
        journal.file_name().ok_or_else(|| Error::Invalid(format!("--journal {} names no file", journal.display())))?;
    let parent = journal.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent = parent.canonicalize().map_err(|source| Error::Io {
        what: "finding the journal's directory",
        path: parent.to_path_buf(),
        source,
    })?;
    Ok(parent.join(name).into_os_string())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut path = path.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// Kills every process carrying `mark` and waits until none is left (a killed process keeps no
/// environment once it is a zombie).
fn end_earlier_runs(mark: &OsStr) -> Result<()> {
    let deadline = Instant::now() + GONE_WITHIN;
    loop {
        let left = marked_processes(mark);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Conflict(format!(
                "processes {left:?} of an earlier run of this operation do not end when killed"
            )));
        }
        for pid in left {
            tracing::warn!(pid, "killing a process an earlier, killed run of this operation left running");
            // Gone already is as good.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes, other than this one, whose environment carries `mark`. Those whose
/// environment cannot be read (another user's, gone meanwhile) are not ours.
fn marked_processes(mark: &OsStr) -> Vec<i32> {
    let mut wanted = Vec::from(RUN_MARK.as_bytes());
    wanted.push(b'=');
    wanted.extend_from_slice(mark.as_bytes());
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|&byte| byte == 0).any(|variable| variable == wanted))
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rerun_kills_what_a_killed_run_left_running() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("op.journal");
        let first = claim(&journal).unwrap();
        let mut orphan = crate::child::command("sleep").arg("600").spawn().unwrap();
        let mut bystander = tokio::process::Command::new("sleep").arg("600").kill_on_drop(true).spawn().unwrap();
        // The run dies; its child lives on, as when the agent is killed before `setpriv` has set
        // the signal that would have taken the child with it.
        drop(first);
        let _rerun = claim(&journal).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), orphan.wait()).await.unwrap().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(Signal::SIGKILL as i32));
        assert!(bystander.try_wait().unwrap().is_none(), "an unmarked process is left alone");
    }

    #[test]
    fn a_second_agent_on_the_same_operation_stops_with_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("op.journal");
        let _first = claim(&journal).unwrap();
        // Another spelling of the same journal is the same operation.
        let other_spelling = dir.path().join(".").join("op.journal");
        let error = claim(&other_spelling).unwrap_err();
        assert!(matches!(error, Error::Conflict(_)), "{error}");
        assert!(error.to_string().contains("another agent is running"), "{error}");
        // Another operation is not held up.
        claim(&dir.path().join("other.journal")).unwrap();
    }
}
