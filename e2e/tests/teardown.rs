//! The environment leaves nothing behind: not when it is stopped politely, and not when the
//! process owning it is killed outright (the reaper's job).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Starts `testenv up` and reads its exports: the work directory and the PIDs of its children.
fn start_testenv() -> (Child, PathBuf, Vec<u32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .arg("up")
        .env_remove(e2e::env::STATE_VAR)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("testenv starts");
    let stdout = child.stdout.take().unwrap();
    let mut workdir = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("testenv output");
        if let Some(state) = line.strip_prefix(&format!("export {}=", e2e::env::STATE_VAR)) {
            workdir = Path::new(state).parent().map(Path::to_path_buf);
            break;
        }
    }
    // Keep reading what testenv still prints: a closed pipe would make its next print fail.
    std::thread::spawn(move || lines.for_each(drop));
    let workdir = workdir.expect("testenv printed its exports (see its stderr above)");
    let pids: Vec<u32> =
        std::fs::read_to_string(workdir.join(".pids")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    // etcd, apiserver, controller-manager, scheduler, PostgreSQL, Redis, the S3 server.
    assert_eq!(pids.len(), 7, "{pids:?}");
    for pid in &pids {
        assert!(running(*pid), "child {pid} is not running");
    }
    (child, workdir, pids)
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
}

/// Polls the process table: there is no event to wait on for another process's orphans.
fn assert_all_gone(pids: &[u32], workdir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| running(*p)).collect();
        if left.is_empty() && !workdir.exists() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {left:?}, directory {} exists: {}",
            workdir.display(),
            workdir.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stopping_testenv_leaves_nothing_behind() {
    let (mut child, workdir, pids) = start_testenv();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "testenv exited with {status}");
    // A polite stop is complete by the time the command exits.
    let left: Vec<u32> = pids.iter().copied().filter(|p| running(*p)).collect();
    assert!(left.is_empty(), "still running after testenv exited: {left:?}");
    assert!(!workdir.exists(), "{} was not removed", workdir.display());
}

#[test]
fn killing_testenv_leaves_nothing_behind() {
    let (mut child, workdir, pids) = start_testenv();
    // SIGKILL: no destructor runs; only the reaper can clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_all_gone(&pids, &workdir);
}
