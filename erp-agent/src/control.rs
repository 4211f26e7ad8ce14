//! [`ErpControl`]s for callers that do not drive the ERP from Rust: programs the caller names
//! (a script that scales a Deployment, a service manager's stop and start), or a caller that
//! stopped the ERP before running the agent and starts it after.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::ops::ErpControl;

/// Lines of a control program's output kept for an error.
const OUTPUT_TAIL_BYTES: usize = 2000;

/// How the agent has the environment's ERP stopped and started.
#[derive(Debug, Clone)]
pub enum ProgramControl {
    /// Runs `stop` and `start` (each without arguments or shell: a script of the caller's). Each
    /// must be idempotent — a resumed operation may run it again — and return only once the ERP
    /// is stopped (nothing connected to its database) or serving.
    Programs { stop: PathBuf, start: PathBuf },
    /// The caller stopped the ERP before running the agent and starts it afterwards (a Job run
    /// between scaling a Deployment down and up): stopping and starting are nothing to do.
    /// Sessions still open on the database when the agent renames it are ended as left-overs.
    StoppedByCaller,
}

impl ErpControl for ProgramControl {
    async fn stop(&self) -> Result<()> {
        match self {
            Self::Programs { stop, .. } => run(stop, "stopping the ERP").await,
            Self::StoppedByCaller => Ok(()),
        }
    }

    async fn start(&self) -> Result<()> {
        match self {
            Self::Programs { start, .. } => run(start, "starting the ERP").await,
            Self::StoppedByCaller => Ok(()),
        }
    }
}

async fn run(program: &PathBuf, what: &str) -> Result<()> {
    let output = Command::new(program)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| Error::Io { what: "running an ERP control program", path: program.clone(), source })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    let start = text.len().saturating_sub(OUTPUT_TAIL_BYTES);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    Err(Error::Tool {
        program: format!("{} ({what})", program.display()),
        status: output.status.to_string(),
        tail: text[start..].trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn programs_are_run_and_their_failure_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("stopped");
        let stop = script(dir.path(), "stop", &format!("touch {}", marker.display()));
        let start = script(dir.path(), "start", "echo 'deployment not found' >&2; exit 3");
        let control = ProgramControl::Programs { stop, start };
        control.stop().await.unwrap();
        assert!(marker.exists());
        let error = control.start().await.unwrap_err().to_string();
        assert!(error.contains("starting the ERP") && error.contains("deployment not found"), "{error}");
        assert!(error.contains("exit status: 3"), "{error}");
        ProgramControl::StoppedByCaller.stop().await.unwrap();
    }
}
