//! `tenantry-agent` killed with SIGKILL at every step of its journal, then run again with the
//! same journal: the environment ends fully after the operation (or fully before it), no row or
//! attachment byte lost, and once the set-aside original is released no stray database or
//! file-store folder is left. The ERP is a real `trytond`, stopped and started by the
//! programs the agent is given, as a provider's scripts would.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::tryton::TrytonConfig;
use erp_agent::database::{DatabaseName, derived_prefix};
use erp_agent::fingerprint;
use erp_agent::journal::{FileJournal, Journal, JournalStore, Phase};
use erp_agent::key::BackupKey;

use common::{Tryton, environment, read_back, take_backup, tryton};

const SERIES: &str = "7.0";
const AGENT: &str = env!("CARGO_BIN_EXE_tenantry-agent");

/// A real `trytond` run by two shell programs, as a provider would give the agent: `start`
/// starts it unless it runs and returns once it listens; `stop` stops it unless it is stopped
/// and returns once it is gone. Both idempotent.
struct ScriptedErp {
    stop: PathBuf,
    start: PathBuf,
    pid_file: PathBuf,
    port: u16,
    /// The ERP's configuration, also what its admin command runs with.
    config: PathBuf,
}

impl ScriptedErp {
    fn new(tryton: &Tryton, dir: &Path) -> Self {
        let config = TrytonConfig::write_with_data(&dir.join("trytond"), tryton.postgres.port(), tryton.store.root())
            .expect("trytond.conf");
        let pid_file = dir.join("trytond.pid");
        let log = dir.join("trytond.log");
        let python = tryton.install.venv().join("bin/python");
        let start = dir.join("start-erp");
        let script = format!(
            r#"#!/bin/sh
set -e
# One control script at a time: a killed agent's script may still be running when the rerun's
# starts, and two starts that both find no server would start two.
exec 9>'{pid}.lock'
flock 9
# Started already (perhaps by a run killed while it waited): wait for it all the same.
if ! {{ [ -f '{pid}' ] && kill -0 "$(cat '{pid}')" 2>/dev/null; }}; then
  # Without the lock: the server outlives this script.
  setsid '{trytond}' -c '{config}' >>'{log}' 2>&1 </dev/null 9>&- &
  echo $! >'{pid}'
fi
exec '{python}' -c '
import socket, sys, time
deadline = time.time() + 60
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", {port}), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("trytond does not listen on {port}")'
"#,
            pid = pid_file.display(),
            trytond = tryton.install.bin("trytond").display(),
            config = config.path().display(),
            log = log.display(),
            python = python.display(),
            port = config.port(),
        );
        let stop = dir.join("stop-erp");
        // A zombie still answers `kill -0`: the state letter in /proc tells it is gone.
        let stop_script = format!(
            r#"#!/bin/sh
exec 9>'{pid}.lock'
flock 9
[ -f '{pid}' ] || exit 0
pid=$(cat '{pid}')
kill "$pid" 2>/dev/null || true
i=0
while [ -e /proc/$pid ] && [ "$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)" != Z ]; do
  i=$((i + 1))
  if [ $i -eq 300 ]; then kill -9 "$pid" 2>/dev/null || true; fi
  if [ $i -gt 400 ]; then echo "trytond $pid does not stop" >&2; exit 1; fi
  sleep 0.1
done
rm -f '{pid}'
"#,
            pid = pid_file.display()
        );
        for (path, text) in [(&start, &script), (&stop, &stop_script)] {
            std::fs::write(path, text).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { stop, start, pid_file, port: config.port(), config: config.path().to_path_buf() }
    }

    fn run(&self, program: &Path) {
        let status = Command::new(program).status().expect("running an ERP control script");
        assert!(status.success(), "{} failed", program.display());
    }

    fn serves(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

impl Drop for ScriptedErp {
    fn drop(&mut self) {
        if self.pid_file.exists() {
            let _ = Command::new(&self.stop).status();
        }
    }
}

/// The agent's command line for `subcommand` on `database`, its ERP run by `erp`, its journal
/// `scratch/operation.journal`.
fn agent_command(
    subcommand: &str,
    tryton: &Tryton,
    erp: &ScriptedErp,
    scratch: &Path,
    database: &DatabaseName,
    version: &str,
) -> Command {
    let mut command = Command::new(AGENT);
    command
        .arg(subcommand)
        .args(["--tenant", "acme-killed", "--database", database.as_str(), "--erp-version", version])
        .arg("--filestore")
        .arg(tryton.store.root())
        .arg("--pg-bin-dir")
        .arg(tryton.postgres.bin_dir())
        .args(["--operation", "op-killed"])
        .arg("--journal")
        .arg(scratch.join("operation.journal"))
        .arg("--stop-program")
        .arg(&erp.stop)
        .arg("--start-program")
        .arg(&erp.start)
        // The URL comes from the environment, as from a Secret: never on a command line.
        .env("TENANTRY_AGENT_DATABASE_URL", tryton.postgres.url("postgres"))
        .env("TENANTRY_AGENT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts `command` and kills it with SIGKILL as soon as its journal records `steps_done`
/// finished steps. Returns false if it finished first.
fn kill_after(mut command: Command, journal: &FileJournal, steps_done: usize) -> bool {
    let mut child = command.spawn().expect("starting the agent");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            eprintln!(
                "agent finished ({status}) before {steps_done} steps: {}",
                String::from_utf8_lossy(&output.stdout)
            );
            return false;
        }
        if journal.load().ok().flatten().is_some_and(|j: Journal| j.done.len() >= steps_done) {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        assert!(Instant::now() < deadline, "the agent took too long");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn finish(mut command: Command) -> serde_json::Value {
    let output = command.output().expect("running the agent");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the rerun failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).expect("the agent prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_every_step_resumes_or_rolls_back() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    // prepare, load, check, stop, cut-over, start: killed as soon as the first 1, 2, … 5 of them
    // are recorded, so somewhere in the step after (the journal exists only once `prepare` is
    // recorded: an agent killed before that has changed nothing).
    for steps_done in 1..=5 {
        let scratch = tempfile::tempdir().unwrap();
        let database = tryton.copy_of_template(&format!("killed{steps_done}")).await;
        let env = environment(tryton, "acme-killed", &database, &version);
        let key = BackupKey::generate();
        key.write_new(&scratch.path().join("backup.key")).unwrap();
        let store = erp_agent::store::BackupStore::from_url(
            &format!("file://{}", scratch.path().join("backups").display()),
            Default::default(),
        )
        .unwrap();
        let summary = take_backup(&env, &store, &key, scratch.path()).await;
        let backed_up = read_back(tryton, &database).await;
        // Changed after the backup: a restore that did nothing would show it.
        let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
        sqlx::query("DELETE FROM sale_line WHERE id IN (SELECT id FROM sale_line ORDER BY id DESC LIMIT 3)")
            .execute(&mut connection)
            .await
            .unwrap();
        let changed = fingerprint::read(&mut connection).await.unwrap();
        drop(connection);

        let erp = ScriptedErp::new(tryton, scratch.path());
        erp.run(&erp.start);
        let journal = FileJournal::new(scratch.path().join("operation.journal"));
        let command = || {
            let mut command = agent_command("restore", tryton, &erp, scratch.path(), &database, &version);
            command
                .args(["--store", &format!("file://{}", scratch.path().join("backups").display())])
                .arg("--key-file")
                .arg(scratch.path().join("backup.key"))
                .args(["--backup", summary.backup_id.as_str()]);
            command
        };
        let killed = kill_after(command(), &journal, steps_done);
        report_kill(&journal, steps_done, killed);

        let report = finish(command());
        assert_eq!(report["outcome"], "succeeded", "{report}");
        let record = journal.load().unwrap().unwrap();
        assert_eq!(record.phase, Phase::Succeeded);
        assert_eq!(read_back(tryton, &database).await, backed_up, "killed after {steps_done} steps: every row back");
        assert!(erp.serves(), "killed after {steps_done} steps: the ERP serves again");

        assert_eq!(
            report["kept"].as_str(),
            Some(only_the_original_is_left(tryton, &database, steps_done).await.as_str())
        );
        let mut kept = tryton.server.connect(report["kept"].as_str().unwrap()).await.unwrap();
        assert_eq!(fingerprint::read(&mut kept).await.unwrap(), changed, "the original as it was before the restore");
        drop(kept);
        release_and_check_nothing_is_left(tryton, &env, report["kept"].as_str().unwrap()).await;
        erp.run(&erp.stop);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_every_step_of_an_update_resumes_or_rolls_back() {
    let tryton = tryton(SERIES).await;
    let version = tryton.install.version().unwrap();
    let module = e2e::tryton::INSTALLED_NOT_ACTIVATED[0];
    // prepare, stop, copy, the update's start mark, update, check, cut-over, start: killed as
    // soon as the first 1, 2, … 7 of them are recorded.
    for steps_done in 1..=7 {
        let scratch = tempfile::tempdir().unwrap();
        let database = tryton.copy_of_template(&format!("killedupd{steps_done}")).await;
        let env = environment(tryton, "acme-killed", &database, &version);
        let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
        let before = fingerprint::read(&mut connection).await.unwrap();
        drop(connection);
        assert!(!before.modules.contains(module));

        let erp = ScriptedErp::new(tryton, scratch.path());
        erp.run(&erp.start);
        let journal = FileJournal::new(scratch.path().join("operation.journal"));
        let command = || {
            let mut command = agent_command("update", tryton, &erp, scratch.path(), &database, &version);
            command
                .args(["--activate", module])
                .arg("--erp-admin")
                .arg(tryton.install.bin("trytond-admin"))
                .arg("--erp-config")
                .arg(&erp.config);
            command
        };
        let killed = kill_after(command(), &journal, steps_done);
        report_kill(&journal, steps_done, killed);

        let report = finish(command());
        assert_eq!(report["outcome"], "succeeded", "{report}");
        assert_eq!(journal.load().unwrap().unwrap().phase, Phase::Succeeded);
        let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
        let after = fingerprint::read(&mut connection).await.unwrap();
        drop(connection);
        assert!(after.modules.contains(module), "killed after {steps_done} steps: {module} activated");
        let diff = fingerprint::compare(&before, &after).without(fingerprint::VOLATILE_TABLES);
        assert!(diff.loses_nothing(), "killed after {steps_done} steps: {diff:?}");
        assert!(erp.serves(), "killed after {steps_done} steps: the ERP serves again");

        let kept = only_the_original_is_left(tryton, &database, steps_done).await;
        assert_eq!(report["kept"].as_str(), Some(kept.as_str()));
        let mut original = tryton.server.connect(&kept).await.unwrap();
        let original = fingerprint::read(&mut original).await.unwrap();
        assert_eq!(original.tables, before.tables, "the original is kept as it was");
        release_and_check_nothing_is_left(tryton, &env, &kept).await;
        erp.run(&erp.stop);
    }
}

fn report_kill(journal: &FileJournal, steps_done: usize, killed: bool) {
    let at = journal.load().unwrap().map(|j| (j.done.iter().map(|r| r.step.clone()).collect::<Vec<_>>(), j.phase));
    eprintln!("steps_done={steps_done}: killed={killed}, journal then: {at:?}");
}

/// The one database the operation set aside, and nothing else derived from `database`.
async fn only_the_original_is_left(tryton: &Tryton, database: &DatabaseName, steps_done: usize) -> String {
    let derived = tryton.server.list(&derived_prefix(database)).await.unwrap();
    assert_eq!(derived.len(), 1, "killed after {steps_done} steps: {derived:?}");
    assert!(derived[0].contains("__replaced_"), "{derived:?}");
    derived[0].clone()
}

/// Releases `kept`; then no database and no file-store folder derived from the environment's
/// is left.
async fn release_and_check_nothing_is_left(tryton: &Tryton, env: &erp_agent::ops::Environment, kept: &str) {
    erp_agent::ops::release(env, kept).await.unwrap();
    assert!(tryton.server.list(&derived_prefix(&env.database)).await.unwrap().is_empty());
    let prefix = derived_prefix(&env.database);
    let strays: Vec<String> = std::fs::read_dir(tryton.store.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    assert!(strays.is_empty(), "file-store folders left: {strays:?}");
}
