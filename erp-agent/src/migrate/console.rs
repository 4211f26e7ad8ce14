//! `script` steps: Python run by the ERP's console (`trytond-console -c CONF -d DB`, the
//! script on standard input), wrapped so that a failing script is a failed step.
//!
//! Why the wrapper: the console runs its input with Python's `InteractiveConsole.runcode`, which
//! prints an exception's traceback and carries on, so the console exits 0 after a script that
//! raised (and rolls back what the script did not commit). The wrapper runs the script with
//! `exec` inside `try`; on any exception it prints the traceback and exits 1 (which the console
//! lets through, rolling back), and after the script's last line it prints a marker. Success is
//! exit status 0 **and** the marker: a console that stopped early for any other reason fails.
//! The script travels hex-encoded inside the wrapper, so no quote or backslash in it can change
//! the wrapper's meaning.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// Lines of a script's output kept for a report or an error.
const OUTPUT_TAIL_LINES: usize = 40;

/// The ERP's console of one series (`trytond-console`).
#[derive(Clone)]
pub struct ErpConsole {
    program: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl ErpConsole {
    pub fn new(program: impl Into<PathBuf>, config: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), config: config.into(), env: Vec::new() }
    }

    /// The console installed beside the admin program `admin` (Tryton's `trytond-console` in the
    /// same `bin/` directory of the series' environment).
    pub fn beside_admin(admin: &Path, config: impl Into<PathBuf>) -> Self {
        let program = admin.with_file_name("trytond-console");
        Self::new(program, config)
    }

    /// Adds an environment variable (credentials go here, never in arguments).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs `script` (the catalogue step `step_id`'s) on `database`. `Ok` holds the script's
    /// output, if any; `Err` says why it failed, with the output's last lines.
    pub(super) async fn run_script(
        &self,
        database: &str,
        step_id: &str,
        script: &str,
    ) -> Result<Option<String>, String> {
        let marker = end_marker();
        let wrapped = wrap(step_id, script, &marker);
        let mut command = crate::child::command(&self.program);
        command
            .arg("-c")
            .arg(&self.config)
            .arg("-d")
            .arg(database)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            command.spawn().map_err(|e| format!("starting the ERP's console {}: {e}", self.program.display()))?;
        let mut stdin = child.stdin.take().expect("piped");
        // Written while the output is read: neither side can block the other on a full pipe.
        let feed = async move {
            let written = stdin.write_all(wrapped.as_bytes()).await;
            drop(stdin);
            written
        };
        let (written, output) = tokio::join!(feed, child.wait_with_output());
        let output = output.map_err(|e| format!("waiting for the ERP's console: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let finished = stdout.lines().any(|line| line == marker);
        let printed: Vec<&str> = stdout.lines().filter(|line| *line != marker).chain(stderr.lines()).collect();
        let tail = tail(&printed);
        if output.status.success() && finished {
            return Ok((!tail.is_empty()).then_some(tail));
        }
        let why = match written {
            Err(e) => format!("the console did not take the script ({e})"),
            Ok(()) if output.status.success() => "the script did not run to its end".to_string(),
            Ok(()) => format!("the script failed ({})", output.status),
        };
        Err(if tail.is_empty() { why } else { format!("{why}:\n{tail}") })
    }
}

impl fmt::Debug for ErpConsole {
    // By hand: the environment may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErpConsole")
            .field("program", &self.program)
            .field("config", &self.config)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// A line no script prints by chance: changes with every run.
fn end_marker() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("tenantry-script-finished-{}-{nanos}", std::process::id())
}

/// The Python the console is given: `script` run inside `try`, then `marker` printed.
fn wrap(step_id: &str, script: &str, marker: &str) -> String {
    let hex = |text: &str| text.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    // `globals()` inside the console's `exec` is its namespace: `pool` and `transaction`.
    format!(
        "import sys as _tenantry_sys, traceback as _tenantry_traceback\n\
         try:\n    \
             exec(compile(bytes.fromhex('{script}').decode('utf-8'), bytes.fromhex('{name}').decode('utf-8'), 'exec'), globals())\n\
         except BaseException:\n    \
             _tenantry_traceback.print_exc()\n    \
             _tenantry_sys.stderr.flush()\n    \
             _tenantry_sys.exit(1)\n\
         print(bytes.fromhex('{marker}').decode('utf-8'), flush=True)\n",
        script = hex(script),
        name = hex(&format!("<migration step {step_id}>")),
        marker = hex(marker),
    )
}

fn tail(lines: &[&str]) -> String {
    let kept: VecDeque<&str> = lines.iter().rev().take(OUTPUT_TAIL_LINES).rev().copied().collect();
    kept.into_iter().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_carries_the_script_verbatim_and_ends_with_the_marker() {
        let script = "print('it''s \\\\ \"quoted\"')\nraise SystemExit(0)\n# é ''' \"\"\"";
        let wrapped = wrap("a-step", script, "the-marker");
        let hex: String = script.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(wrapped.contains(&format!("bytes.fromhex('{hex}')")), "{wrapped}");
        assert!(!wrapped.contains("it''s"), "the script's text never appears raw: {wrapped}");
        assert!(wrapped.contains("except BaseException:") && wrapped.contains("_tenantry_sys.exit(1)"), "{wrapped}");
        let last = wrapped.lines().last().unwrap();
        let marker_hex: String = "the-marker".bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(last, format!("print(bytes.fromhex('{marker_hex}').decode('utf-8'), flush=True)"));
    }

    #[test]
    fn markers_differ_between_runs() {
        assert_ne!(end_marker(), end_marker());
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let lines: Vec<String> = (0..100).map(|n| format!("line {n}")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let kept = tail(&lines);
        assert_eq!(kept.lines().count(), OUTPUT_TAIL_LINES);
        assert!(kept.starts_with("line 60\n") && kept.ends_with("line 99"), "{kept}");
    }
}
