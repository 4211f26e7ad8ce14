//! Child processes owned by the test environment.
//!
//! Every long-running program (etcd, kube-*, postgres, redis, trytond) runs as a [`Supervised`]
//! child: its output goes to a log file in the environment's work directory, a crash is reported
//! with the tail of that log, and dropping it stops the process (a polite signal first, then
//! `SIGKILL`). Only processes started here are ever signalled, always by their own PID.
//!
//! Rust never runs destructors of statics, so a process-wide shared environment would leak its
//! children when the test binary exits. The [`WorkDir`] therefore starts a small *reaper* shell
//! that blocks reading a pipe from this process; the kernel closes the pipe when this process
//! ends, however it ends, and the reaper then stops the PIDs recorded in the work directory and
//! removes it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Result};

/// How many lines of a log are quoted when something fails.
const TAIL_LINES: usize = 40;

/// A temporary directory that is removed when dropped, or by its reaper if this process dies
/// before it can drop it.
pub struct WorkDir {
    path: PathBuf,
    pids: Mutex<File>,
    reaper: Mutex<Option<(Child, ChildStdin)>>,
    keep: bool,
}

impl WorkDir {
    /// Creates a fresh directory `tenantry-<prefix>-XXXX` under the system temp dir.
    /// Set `TENANTRY_KEEP_WORKDIR=1` to keep it (and its logs) after the run.
    pub fn create(prefix: &str) -> Result<Arc<Self>> {
        let path = tempfile::Builder::new()
            .prefix(&format!("tenantry-{prefix}-"))
            .tempdir()
            .context(|| "creating a temporary directory".into())?
            .keep();
        let keep = std::env::var_os("TENANTRY_KEEP_WORKDIR").is_some_and(|v| v != "0");
        let pids_path = path.join(".pids");
        let pids = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pids_path)
            .context(|| format!("creating {}", pids_path.display()))?;
        // Lets the test command tell its own leftovers from another run's environment.
        if let Some(run) = std::env::var_os("TENANTRY_RUN_ID") {
            let file = path.join(".run-id");
            fs::write(&file, run.as_encoded_bytes()).context(|| format!("writing {}", file.display()))?;
        }
        let reaper = spawn_reaper(&path, keep)?;
        Ok(Arc::new(Self { path, pids: Mutex::new(pids), reaper: Mutex::new(Some(reaper)), keep }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    fn record_pid(&self, pid: u32) {
        let mut file = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        // Losing this line only weakens the crash fallback; the normal drop path still works.
        let _ = writeln!(file, "{pid}");
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
        if let Some((mut child, stdin)) = self.reaper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Closing the pipe wakes the reaper; it finds nothing left to do and exits.
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The reaper: `read` blocks in the shell itself (no child process), so the only thing it waits
/// on is the pipe, whose write end only this process holds (std opens pipes close-on-exec).
fn spawn_reaper(dir: &Path, keep: bool) -> Result<(Child, ChildStdin)> {
    let script = r#"
read _ignored
[ -f "$1/.pids" ] || exit 0
pids=$(cat "$1/.pids")
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
for p in $pids; do kill -TERM "$p" 2>/dev/null; done
i=0
while [ $i -lt 100 ]; do
  left=""
  for p in $pids; do alive "$p" && left="$left $p"; done
  [ -z "$left" ] && break
  sleep 0.1; i=$((i+1))
done
for p in $pids; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
# What outlives the processes (the real node's cgroups) is removed by the script they left.
[ -f "$1/.cleanup" ] && sh "$1/.cleanup"
[ "$2" = keep ] || rm -rf "$1"
"#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("tenantry-reaper")
        .arg(dir)
        .arg(if keep { "keep" } else { "remove" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(|| "starting the clean-up reaper (sh)".into())?;
    let stdin = child.stdin.take().expect("stdin was piped");
    Ok((child, stdin))
}

/// What to run, and how to stop it politely.
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub current_dir: Option<PathBuf>,
    /// Run as this system user (only when we are root; e.g. PostgreSQL refuses to run as root).
    pub user: Option<String>,
    /// Signal for a graceful stop (PostgreSQL's fast shutdown is `SIGINT`).
    pub stop_signal: Signal,
}

impl Spec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            user: None,
            stop_signal: Signal::SIGTERM,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    pub fn user(mut self, user: Option<String>) -> Self {
        self.user = user;
        self
    }

    pub fn stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// The command as a person would type it, for error messages.
    pub fn display(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self, workdir: Option<&WorkDir>) -> Command {
        let mut command = match &self.user {
            Some(user) if nix::unistd::geteuid().is_root() => {
                let mut c = Command::new("setpriv");
                c.args([&format!("--reuid={user}"), &format!("--regid={user}"), "--init-groups", "--"])
                    .arg(&self.program);
                c
            }
            _ => Command::new(&self.program),
        };
        command.args(&self.args).stdin(Stdio::null());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if let Some(dir) = self.current_dir.as_deref().or(workdir.map(WorkDir::path)) {
            command.current_dir(dir);
        }
        command
    }
}

/// A running child process, stopped when dropped.
pub struct Supervised {
    name: String,
    child: Mutex<Child>,
    log: PathBuf,
    stop_signal: Signal,
    // Keeps the directory holding the log (and the reaper) alive as long as the process.
    _workdir: Arc<WorkDir>,
}

impl Supervised {
    /// Starts `spec` with stdout and stderr appended to `<workdir>/<name>.log`.
    pub fn spawn(workdir: &Arc<WorkDir>, spec: Spec) -> Result<Self> {
        let log = workdir.join(format!("{}.log", spec.name));
        let out = File::create(&log).context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context(|| format!("opening {}", log.display()))?;
        let child = spec
            .command(Some(workdir))
            .stdout(out)
            .stderr(err)
            .spawn()
            .context(|| format!("starting {} (`{}`)", spec.name, spec.display()))?;
        workdir.record_pid(child.id());
        tracing::debug!(name = %spec.name, pid = child.id(), "started");
        Ok(Self {
            name: spec.name,
            child: Mutex::new(child),
            log,
            stop_signal: spec.stop_signal,
            _workdir: workdir.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_tail(&self) -> String {
        tail_of_file(&self.log, TAIL_LINES)
    }

    /// `Ok` while the process runs; a [`Error::ChildExited`] with its log tail once it has died.
    pub fn check_alive(&self) -> Result<()> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::ChildExited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: self.log_tail(),
            }),
            Err(e) => Err(Error::Io { context: format!("checking on {}", self.name), source: e }),
        }
    }

    /// Polls `probe` until it succeeds, failing early with the log tail if the process dies.
    pub async fn wait_ready<F, Fut, T>(&self, what: &str, timeout: Duration, mut probe: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, String>>,
    {
        let start = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            self.check_alive()?;
            let last_error = match probe().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if start.elapsed() > timeout {
                return Err(Error::NotReady {
                    what: what.to_string(),
                    waited: start.elapsed(),
                    last_error,
                    log: self.log.clone(),
                    tail: self.log_tail(),
                });
            }
            tokio::time::sleep(delay).await;
            // Probes are cheap (a request, a log read); a coarse one would be counted into
            // every measured start (the update benchmark's downtime ends at this answer).
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// Stops the process: the graceful signal, up to `grace` to exit, then `SIGKILL`.
    pub fn stop(&self, grace: Duration) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, self.stop_signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                tracing::debug!(name = %self.name, "stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(name = %self.name, "did not stop in {grace:?}; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Runs a command to completion with its output captured; a failure quotes the output's tail.
pub fn run(spec: &Spec) -> Result<String> {
    let output = spec.command(None).output().context(|| format!("running `{}`", spec.display()))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(text)
    } else {
        Err(Error::CommandFailed {
            command: spec.display(),
            status: output.status.to_string(),
            tail: tail_of_text(&text, TAIL_LINES),
        })
    }
}

/// Like [`run`], off the async runtime's worker threads.
pub async fn run_async(spec: Spec) -> Result<String> {
    tokio::task::spawn_blocking(move || run(&spec)).await.expect("command runner panicked")
}

/// Runs a command with its output appended to a log file (for long builds), failing with the tail.
pub fn run_logged(spec: &Spec, log: &Path) -> Result<()> {
    let out = File::options().create(true).append(true).open(log).context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone().context(|| format!("opening {}", log.display()))?;
    let status =
        spec.command(None).stdout(out).stderr(err).status().context(|| format!("running `{}`", spec.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::CommandFailed {
            command: spec.display(),
            status: status.to_string(),
            tail: format!("(full log: {})\n{}", log.display(), tail_of_file(log, TAIL_LINES)),
        })
    }
}

fn tail_of_file(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    // Logs can be large (the apiserver is chatty); the tail lives in the last few KiB.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    tail_of_text(&String::from_utf8_lossy(&bytes), lines)
}

fn tail_of_text(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free TCP port on 127.0.0.1. The port is released before use, so another process could in
/// principle take it first; the start-up of whatever uses it then fails loudly rather than
/// silently sharing a port.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context(|| "finding a free port".into())?;
    Ok(listener.local_addr().context(|| "finding a free port".into())?.port())
}

/// (VmHWM, VmRSS) in KiB: the peak and the current resident set of process `pid`, for the
/// benchmarks' figures.
pub fn resident_memory_kib(pid: u32) -> std::result::Result<(u64, u64), String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in {path}"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> std::result::Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    // Fields after the command (which may hold spaces) start at the state, field 3; utime and
    // stime are fields 14 and 15, in clock ticks of 1/100 s (USER_HZ on Linux).
    let fields: Vec<&str> =
        text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| {
        fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| format!("no field {i} in {path}"))
    };
    Ok(Duration::from_millis((ticks(14)? + ticks(15)?) * 10))
}

/// Resolves on Ctrl-C or SIGTERM: what a long-running tool (a bench, the demo) stops on. Never
/// resolves when no SIGTERM handler can be installed (Ctrl-C still works then).
pub async fn interrupted() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let text = (1..=100).map(|i| i.to_string()).collect::<Vec<_>>().join("\n");
        assert_eq!(tail_of_text(&text, 3), "98\n99\n100");
        assert_eq!(tail_of_text("a\nb", 5), "a\nb");
    }

    #[tokio::test]
    async fn a_crashed_child_is_reported_with_its_log() {
        let dir = WorkDir::create("unit").unwrap();
        let child = Supervised::spawn(
            &dir,
            Spec::new("crasher", "sh").args(["-c", "echo about to fail; echo boom >&2; exit 3"]),
        )
        .unwrap();
        let err = child
            .wait_ready("never", Duration::from_secs(10), || async { Err::<(), _>("not yet".to_string()) })
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("crasher exited unexpectedly"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("about to fail") && message.contains("boom"), "{message}");
    }

    #[test]
    fn dropping_stops_the_child_and_removes_the_directory() {
        let dir = WorkDir::create("unit").unwrap();
        let path = dir.path().to_path_buf();
        let child = Supervised::spawn(&dir, Spec::new("sleeper", "sleep").arg("600")).unwrap();
        let pid = child.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(child);
        drop(dir);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "child {pid} still running");
        assert!(!path.exists(), "{} was not removed", path.display());
    }
}
