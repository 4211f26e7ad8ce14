//! Children that die with the agent.
//!
//! The agent may be killed at any instant (SIGKILL, an evicted pod, a lost node) and run again
//! with the same journal. A child it started that outlived it would go on writing: the ERP's
//! admin command, a Python program, ignores the broken pipe of its log and keeps updating the
//! work copy while the resumed run drops and re-makes it under the same name — the two then
//! collide on the ERP's own tables. So every child that writes to a database is started under
//! `setpriv --pdeathsig KILL` (util-linux, in every Debian-based ERP image): the kernel kills
//! it when the agent dies, however it dies — but for the moment between `setpriv` starting and
//! its setting the signal. That moment is covered by [`crate::run_claim`]: each child carries its
//! run's mark in its environment, and a rerun kills whatever carries it before it goes on.
//!
//! Where `setpriv` is missing the child is started plainly and the loss of that guarantee is
//! logged once; where the program itself cannot be found it is started plainly too, so that the
//! caller's error names the missing program rather than `setpriv`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::process::Command;

/// A command for `program` that is killed when the agent dies (and when it is dropped).
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let program = program.as_ref();
    let mut command = match (setpriv(), find(program)) {
        (Some(setpriv), Some(_)) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--"]).arg(program);
            command
        }
        _ => Command::new(program),
    };
    if let Some(mark) = crate::run_claim::current_mark() {
        command.env(crate::run_claim::RUN_MARK, mark);
    }
    command.kill_on_drop(true);
    command
}

fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            let found = find(OsStr::new("setpriv"));
            if found.is_none() {
                tracing::warn!(
                    "setpriv (util-linux) is not on PATH: a child of a killed agent may outlive it until it ends"
                );
            }
            found
        })
        .as_deref()
}

/// `program` as the system would find it: a path as given, a bare name on `PATH`.
fn find(program: &OsStr) -> Option<PathBuf> {
    let program = Path::new(program);
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// The state letter of `/proc/<pid>/stat` (`Z` for a zombie), or `None` once it is reaped.
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())
    }

    /// Set in the process [`a_child_dies_with_the_agent`] starts to play the agent.
    const PLAY_THE_AGENT: &str = "TENANTRY_TEST_PLAY_THE_AGENT";

    /// The agent, when run by [`a_child_dies_with_the_agent`]: starts a guarded child, says
    /// its pid and waits to be killed. Run plainly, it does nothing.
    #[test]
    fn agent_with_a_guarded_child() {
        if std::env::var_os(PLAY_THE_AGENT).is_none() {
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut command = command("sleep");
            let child = command.arg("600").spawn().expect("sleep starts");
            // libtest writes `test <name> ... ` before this, on the same line.
            println!("guarded-child-pid={}", child.id().expect("running"));
            std::thread::sleep(Duration::from_secs(600));
        });
    }

    #[test]
    fn a_child_dies_with_the_agent() {
        assert!(setpriv().is_some(), "setpriv is part of util-linux, on every machine this runs on");
        let mut agent = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child::tests::agent_with_a_guarded_child", "--nocapture", "--test-threads=1"])
            .env(PLAY_THE_AGENT, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(agent.stdout.take().unwrap()));
        let pid: u32 = lines
            .find_map(|line| line.unwrap().split_once("guarded-child-pid=").map(|(_, pid)| pid.trim().parse().unwrap()))
            .expect("the agent names its child");
        // Once `setpriv` has made way for the program it has set the signal: until then, a
        // window of microseconds, a dying agent leaves its child behind.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap() != b"sleep\x00600\x00" {
            assert!(Instant::now() < deadline, "setpriv never started the child {pid}");
            std::thread::sleep(Duration::from_millis(1));
        }
        // SIGKILL: no destructor, no kill_on_drop runs.
        agent.kill().unwrap();
        agent.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(state(pid), None | Some('Z')) {
            assert!(Instant::now() < deadline, "the child {pid} outlived the agent");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_missing_program_is_started_plainly_so_its_error_names_it() {
        let error = command("/nonexistent/trytond-admin").spawn().expect_err("no such program");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn programs_are_found_by_path_or_on_path() {
        assert!(find(OsStr::new("sh")).is_some());
        assert!(find(OsStr::new("/bin/sh")).is_some());
        assert!(find(OsStr::new("no-such-program-here")).is_none());
    }
}
