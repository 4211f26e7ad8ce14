//! PostgreSQL's client programs as streams: `pg_dump` writes the dump to a pipe the caller
//! reads, `pg_restore` and `psql` read theirs from a pipe the caller writes, so a backup never
//! has to sit whole in memory or on disk.
//!
//! Connection parameters go in the child's environment (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`), never on its command line, where any user of the
//! machine could read them in the process list. Every program runs with `--no-password`
//! (`-w`), so a missing password fails at once instead of waiting for a terminal.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::{DatabaseName, ServerAddress};
use crate::error::{Error, Result};

/// How much of a failing program's standard error an error message carries.
const STDERR_TAIL_BYTES: usize = 4000;

/// The environment variables through which libpq finds a server and its credentials.
const LIBPQ_VARIABLES: [&str; 9] =
    ["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSSLMODE"];

/// Where the client programs are: a directory (e.g. `/usr/lib/postgresql/15/bin`, which must
/// match or be newer than the server's major version for `pg_dump`), or `PATH`.
#[derive(Debug, Clone, Default)]
pub struct PgTools {
    bin_dir: Option<PathBuf>,
}

impl PgTools {
    /// The programs found on `PATH`.
    pub fn on_path() -> Self {
        Self { bin_dir: None }
    }

    /// The programs in `bin_dir`.
    pub fn in_dir(bin_dir: impl Into<PathBuf>) -> Self {
        Self { bin_dir: Some(bin_dir.into()) }
    }

    /// The path `program` runs from.
    pub fn program(&self, program: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        }
    }

    /// `<program> --version`, e.g. `pg_dump (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)`: for
    /// manifests.
    pub async fn version(&self, program: &str) -> Result<String> {
        let path = self.program(program);
        let output =
            Command::new(&path).arg("--version").kill_on_drop(true).output().await.map_err(|e| Error::Tool {
                program: program.to_string(),
                status: "could not start".into(),
                tail: format!("{}: {e}", path.display()),
            })?;
        if !output.status.success() {
            return Err(Error::Tool {
                program: program.to_string(),
                status: output.status.to_string(),
                tail: tail(&output.stderr),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// `program` aimed at `database` on `address`, arguments still to add.
    fn command(&self, address: &ServerAddress, program: &str, database: &DatabaseName) -> Command {
        let mut command = crate::child::command(self.program(program));
        // Only what we set: a PGPASSFILE or PGSERVICE of the agent's own environment must not
        // redirect the program to another server.
        for variable in LIBPQ_VARIABLES {
            command.env_remove(variable);
        }
        command.envs(address.libpq_environment(database.as_str()));
        command
    }

    /// `pg_dump --no-password <args>` on `database`; the dump comes out of
    /// [`RunningTool::take_stdout`]. Typical `args`: `["--format=custom"]` for a backup,
    /// `["--format=plain", "--no-owner"]` for an export.
    pub fn pg_dump(&self, address: &ServerAddress, database: &DatabaseName, args: &[&str]) -> Result<RunningTool> {
        let mut command = self.command(address, "pg_dump", database);
        command.arg("--no-password").args(args);
        RunningTool::spawn("pg_dump", command, Stdio::null(), Stdio::piped())
    }

    /// `pg_restore --no-password --exit-on-error --dbname=<database> <args>`, reading the
    /// archive from [`RunningTool::take_stdin`] (close it to end the input). `database` must
    /// exist (create it empty first).
    pub fn pg_restore(&self, address: &ServerAddress, database: &DatabaseName, args: &[&str]) -> Result<RunningTool> {
        let mut command = self.command(address, "pg_restore", database);
        // `--dbname` takes a bare name here; the connection itself comes from the environment.
        command.args(["--no-password", "--exit-on-error", "--dbname", database.as_str()]).args(args);
        RunningTool::spawn("pg_restore", command, Stdio::piped(), Stdio::null())
    }

    /// `pg_restore --no-password --exit-on-error --file=- <args>`: the archive read from
    /// [`RunningTool::take_stdin`] comes out as a plain SQL script on
    /// [`RunningTool::take_stdout`]. No database is involved, so no connection parameter is
    /// given (and none of the agent's own environment is passed on). Typical `args`:
    /// `["--no-owner", "--no-privileges"]` for a script any user can load.
    pub fn pg_restore_to_sql(&self, args: &[&str]) -> Result<RunningTool> {
        let mut command = Command::new(self.program("pg_restore"));
        for variable in LIBPQ_VARIABLES {
            command.env_remove(variable);
        }
        command.args(["--no-password", "--exit-on-error", "--file=-"]).args(args).kill_on_drop(true);
        RunningTool::spawn("pg_restore", command, Stdio::piped(), Stdio::piped())
    }

    /// `psql --no-password --no-psqlrc --quiet -v ON_ERROR_STOP=1 <args>` on `database`,
    /// reading SQL from [`RunningTool::take_stdin`]; its output is on
    /// [`RunningTool::take_stdout`].
    pub fn psql(&self, address: &ServerAddress, database: &DatabaseName, args: &[&str]) -> Result<RunningTool> {
        let mut command = self.command(address, "psql", database);
        command.args(["--no-password", "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1"]).args(args);
        RunningTool::spawn("psql", command, Stdio::piped(), Stdio::piped())
    }
}

/// A running client program. Take its pipes, drive them, then [`RunningTool::finish`]: that
/// waits for the exit and turns a failure into [`Error::Tool`] with the program's last words.
/// Dropping it kills the program.
pub struct RunningTool {
    program: String,
    child: Child,
    stderr: JoinHandle<Vec<u8>>,
}

impl RunningTool {
    fn spawn(program: &str, mut command: Command, stdin: Stdio, stdout: Stdio) -> Result<Self> {
        command.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| Error::Tool {
            program: program.to_string(),
            status: "could not start".into(),
            tail: e.to_string(),
        })?;
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // Read all along, so a chatty program never blocks on a full pipe.
        let stderr = tokio::spawn(async move {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text).await;
            text
        });
        Ok(Self { program: program.to_string(), child, stderr })
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for the program to exit (closing its input first if still held).
    pub async fn finish(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        let status = self.child.wait().await.map_err(|e| Error::Tool {
            program: self.program.clone(),
            status: "could not be waited for".into(),
            tail: e.to_string(),
        })?;
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(Error::Tool { program: self.program, status: status.to_string(), tail: tail(&stderr) })
        }
    }
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.len() <= STDERR_TAIL_BYTES {
        return text.to_string();
    }
    let mut start = text.len() - STDERR_TAIL_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// `true` if `path` is a directory holding `pg_dump`: lets a caller check a configured
/// directory before starting an operation.
pub fn has_client_programs(path: &Path) -> bool {
    path.join("pg_dump").is_file() && path.join("pg_restore").is_file() && path.join("psql").is_file()
}
