//! The ERP's own admin command, per profile: module updates and activations, the update-all run
//! of an upgrade, the record validation, and the admin steps of the migration catalogue.
//!
//! The command runs with its configuration file and the database it works on; credentials reach
//! it through its environment (e.g. `TRYTONPASSFILE`, `TRYTOND_DATABASE__URI`), never its
//! arguments, so they show up in no process list and no error message. Its output is read as it
//! comes and only its last lines are kept: a verbose `--all` writes thousands.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::error::{Error, Result};

/// Lines of the ERP's log kept for a report or an error.
const LOG_TAIL_LINES: usize = 40;

/// Which ERP the admin command belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `trytond-admin -c CONF -d DB …`
    Tryton,
    /// `odoo -c CONF -d DB … --stop-after-init`
    Odoo,
}

/// What a module update does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleUpdate {
    /// Every activated module (`--update=all`; with a new series' command, the upgrade step).
    All,
    /// These activated modules.
    Update(Vec<String>),
    /// Activate these modules, with the modules they depend on.
    Activate(Vec<String>),
}

/// The admin command of one ERP installation (one series).
#[derive(Debug, Clone)]
pub struct ErpCommand {
    profile: Profile,
    program: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

/// What a successful run left: its duration and the last lines of its log (warnings of a
/// migration land there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub duration: Duration,
    pub log_tail: String,
}

impl ErpCommand {
    pub fn new(profile: Profile, program: impl Into<PathBuf>, config: impl Into<PathBuf>) -> Self {
        Self { profile, program: program.into(), config: config.into(), env: Vec::new() }
    }

    /// Adds an environment variable for the command (credentials go here, never in arguments).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The arguments of a module update (pure).
    pub fn update_args(&self, update: &ModuleUpdate) -> Result<Vec<String>> {
        let names = |modules: &Vec<String>| -> Result<Vec<String>> {
            if modules.is_empty() {
                return Err(Error::Invalid("a module update names at least one module".into()));
            }
            if let Some(bad) = modules.iter().find(|m| !is_module_name(m)) {
                return Err(Error::Invalid(format!("`{bad}` is not a module name")));
            }
            Ok(modules.clone())
        };
        Ok(match (self.profile, update) {
            (Profile::Tryton, ModuleUpdate::All) => vec!["--all".into()],
            (Profile::Tryton, ModuleUpdate::Update(modules) | ModuleUpdate::Activate(modules)) => {
                let mut args = vec!["-u".to_string()];
                args.extend(names(modules)?);
                args.push("--activate-dependencies".into());
                args
            }
            (Profile::Odoo, ModuleUpdate::All) => vec!["-u".into(), "all".into(), "--stop-after-init".into()],
            (Profile::Odoo, ModuleUpdate::Update(modules)) => {
                vec!["-u".into(), names(modules)?.join(","), "--stop-after-init".into()]
            }
            (Profile::Odoo, ModuleUpdate::Activate(modules)) => {
                vec!["-i".into(), names(modules)?.join(","), "--stop-after-init".into()]
            }
        })
    }

    /// Runs a module update on `database`.
    pub async fn update(&self, database: &str, update: &ModuleUpdate) -> Result<Run> {
        let args = self.update_args(update)?;
        self.run(database, &args).await
    }

    /// The ERP's own validation of every record, where it has one (Tryton: `--validate`).
    pub async fn validate(&self, database: &str) -> Result<Option<Run>> {
        match self.profile {
            Profile::Tryton => self.run(database, &["--validate".to_string()]).await.map(Some),
            Profile::Odoo => Ok(None),
        }
    }

    /// Runs the admin command on `database` with `args` after its configuration and database.
    pub async fn run(&self, database: &str, args: &[String]) -> Result<Run> {
        let started = Instant::now();
        let mut command = crate::child::command(&self.program);
        command.arg("-c").arg(&self.config).arg("-d").arg(database);
        if self.profile == Profile::Tryton {
            // The modules being loaded appear in the log only at level INFO: they name the one
            // that failed. Each `-v` lowers trytond's level by one from ERROR, so INFO is `-vv`.
            command.arg("-vv");
        }
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{} {}", self.program.display(), args.join(" "));
        let mut child = command.spawn().map_err(|source| Error::Io {
            what: "starting the ERP's admin command",
            path: self.program.clone(),
            source,
        })?;
        let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let tail = std::sync::Arc::new(std::sync::Mutex::new(LogTail::default()));
        let collect = |stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            let tail = tail.clone();
            async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tail.lock().expect("log tail poisoned").push(line);
                }
            }
        };
        let (status, _, _) = tokio::join!(child.wait(), collect(Box::new(stdout)), collect(Box::new(stderr)));
        let status = status.map_err(|source| Error::Io {
            what: "waiting for the ERP's admin command",
            path: self.program.clone(),
            source,
        })?;
        let tail = std::mem::take(&mut *tail.lock().expect("log tail poisoned"));
        if status.success() {
            return Ok(Run { duration: started.elapsed(), log_tail: tail.text() });
        }
        Err(Error::Erp {
            command: what,
            status: status.to_string(),
            module: tail.module.clone(),
            log_tail: tail.text(),
        })
    }
}

/// The last lines of a log, and the module it was last working on.
#[derive(Debug, Default)]
struct LogTail {
    lines: VecDeque<String>,
    module: Option<String>,
}

impl LogTail {
    fn push(&mut self, line: String) {
        if let Some(module) = module_of(&line) {
            self.module = Some(module.to_string());
        }
        if self.lines.len() == LOG_TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    fn text(&self) -> String {
        self.lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

/// The module a line of Tryton's verbose log is about: `… INFO trytond.modules sale:loading …`
/// or `… trytond.modules sale:register …`.
fn module_of(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once(" trytond.modules ")?;
    let (module, _) = rest.split_once(':')?;
    is_module_name(module).then_some(module)
}

/// A module name: lowercase letters, digits and underscores, as both ERPs name them.
fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(profile: Profile, update: ModuleUpdate) -> Result<Vec<String>> {
        ErpCommand::new(profile, "admin", "erp.conf").update_args(&update)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_profile_spells_the_update_its_way() {
        assert_eq!(args(Profile::Tryton, ModuleUpdate::All).unwrap(), ["--all"]);
        assert_eq!(
            args(Profile::Tryton, ModuleUpdate::Update(strings(&["sale", "party"]))).unwrap(),
            ["-u", "sale", "party", "--activate-dependencies"]
        );
        assert_eq!(args(Profile::Odoo, ModuleUpdate::All).unwrap(), ["-u", "all", "--stop-after-init"]);
        assert_eq!(
            args(Profile::Odoo, ModuleUpdate::Activate(strings(&["sale", "stock"]))).unwrap(),
            ["-i", "sale,stock", "--stop-after-init"]
        );
    }

    #[test]
    fn module_names_are_checked_before_anything_runs() {
        assert!(args(Profile::Tryton, ModuleUpdate::Update(vec![])).is_err());
        for bad in ["--all", "sale;rm", "Sale", "", "1sale", "sale stock"] {
            let error = args(Profile::Tryton, ModuleUpdate::Activate(strings(&[bad]))).unwrap_err();
            assert!(error.to_string().contains("is not a module name"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_failing_module_is_the_last_one_the_log_names() {
        let mut tail = LogTail::default();
        for line in [
            "2026-12-06 10:00:00,000 123 140 INFO trytond.modules party:loading party.xml",
            "2026-12-06 10:00:01,000 123 140 INFO trytond.modules sale:register Sale",
            "Traceback (most recent call last):",
        ] {
            tail.push(line.to_string());
        }
        assert_eq!(tail.module.as_deref(), Some("sale"));
        for n in 0..100 {
            tail.push(format!("line {n}"));
        }
        assert_eq!(tail.lines.len(), LOG_TAIL_LINES, "only the tail is kept");
        assert!(tail.text().ends_with("line 99"));
    }
}
