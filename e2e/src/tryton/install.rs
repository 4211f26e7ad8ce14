//! `trytond` of one release series in a cached virtualenv, and the `trytond-admin` steps run
//! with it (initialise, activate, update — the last also being the upgrade step).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::TrytonConfig;
use super::rpc::TrytonClient;
use super::server::TrytonServer;
use crate::error::{Error, IoContext, Result};
use crate::install::{CacheLock, ensure_debian_packages, which};
use crate::paths::cache_dir;
use crate::postgres::Postgres;
use crate::process::{Spec, Supervised, WorkDir, run, run_async};
use crate::venv::{publish, remove_unused_venvs};

/// Name of the file, inside a finished virtualenv, listing what was installed into it. It is
/// written last, so a virtualenv without it (or with another list) is never used.
const MARKER: &str = ".tenantry-requirements";

/// How long a fresh server may take to answer its first JSON-RPC call.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The stable series PyPI serves and this project supports, oldest first: every one is a step
/// of an upgrade from 7.0 (odd series are development releases, never published on PyPI).
pub const SUPPORTED_SERIES: &[&str] = &["7.0", "7.2", "7.4", "7.6", "7.8", "8.0", "8.2"];

/// The Tryton modules every install carries: what the real-data fixture
/// ([`super::fixture`]) creates records of. `sale` pulls in, through its own requirements,
/// `account`, `account_invoice`, `account_invoice_stock`, `account_product`, `company`,
/// `country`, `currency`, `party`, `product` and `stock` (the same list from 7.0 to 8.2);
/// `party`, `company` and `product` are named too so a later change in `sale`'s dependencies
/// cannot silently drop them.
pub const MODULES: &[&str] = &["party", "company", "product", "sale"];

/// Modules installed but never activated by the fixture: what a test of the agent's module
/// activation activates (`party_relationship` depends on `party` alone, so activating it is
/// quick and adds its own tables).
pub const INSTALLED_NOT_ACTIVATED: &[&str] = &["party_relationship"];

/// The pip requirements installed for `series` (`MAJOR.MINOR`): `trytond`, [`MODULES`],
/// [`INSTALLED_NOT_ACTIVATED`] and `proteus` (the fixture's scripting library) of that series,
/// its database driver and its pins — as the Tryton image's recipe lists them
/// (`images/tryton/requirements.sh`), so the tests' servers and the image's are installed
/// alike. Only stable (even) series are published on PyPI; a development series fails at
/// install time with pip's own message.
pub fn requirements(series: &str) -> Result<Vec<String>> {
    let valid = series.split_once('.').is_some_and(|(major, minor)| is_number(major) && is_number(minor));
    if !valid {
        return Err(Error::Prerequisite(format!("Tryton series `{series}` is not of the form MAJOR.MINOR (e.g. 7.0)")));
    }
    let script = crate::images::repository_root().join("images/tryton/requirements.sh");
    let listed = run(&Spec::new("requirements.sh", "sh")
        .arg(script.display().to_string())
        .arg(series)
        .args(MODULES.iter().chain(INSTALLED_NOT_ACTIVATED).copied()))?;
    Ok(listed.lines().map(str::trim).filter(|line| !line.is_empty()).map(String::from).collect())
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `trytond` of one series, installed in a cached virtualenv.
#[derive(Debug, Clone)]
pub struct TrytonInstall {
    series: String,
    venv: PathBuf,
}

impl TrytonInstall {
    /// The virtualenv of `series`, installing it first when it is missing, unfinished or was
    /// built from another requirement list (a minute or so; milliseconds once cached).
    ///
    /// Layout: `<cache>/tryton-<series>-<hash of the requirement list>/venv` is a symlink to the finished `venv-<stamp>`
    /// directory. A venv cannot be moved after it is built (pip writes absolute paths into its
    /// scripts), so each one is built at its final path and published by atomically replacing
    /// the symlink: a half-built venv is never reachable through `venv`. A file lock makes
    /// parallel test processes wait for one install instead of racing.
    pub fn ensure(series: &str) -> Result<Self> {
        let requirements = requirements(series)?;
        let python = base_python();
        let marker = marker_text(&python, &requirements);
        // One folder per requirement list, not per series: checkouts with different lists
        // (branches, worktrees) share the cache without reinstalling over each other, or
        // removing a venv another test process still runs from.
        let name = format!("tryton-{series}-{:016x}", fnv1a(marker.as_bytes()));
        let root = cache_dir().join(&name);
        let link = root.join("venv");
        if !is_complete(&link, &marker) {
            let _lock = CacheLock::acquire(&name)?;
            // Another process may have finished the install while we waited for the lock.
            if !is_complete(&link, &marker) {
                install(series, &root, &link, &python, &requirements, &marker)?;
            }
        }
        // Resolved once, so this handle keeps using one venv even if a later install (after a
        // requirement change) publishes another.
        let venv = fs::canonicalize(&link).context(|| format!("resolving {}", link.display()))?;
        Ok(Self { series: series.to_string(), venv })
    }

    /// [`TrytonInstall::ensure`] off the async runtime's worker threads.
    pub async fn ensure_async(series: &str) -> Result<Self> {
        let series = series.to_string();
        tokio::task::spawn_blocking(move || Self::ensure(&series)).await.expect("Tryton installer panicked")
    }

    pub fn series(&self) -> &str {
        &self.series
    }

    /// The virtualenv directory (resolved, not the `venv` symlink).
    pub fn venv(&self) -> &Path {
        &self.venv
    }

    /// A program of the virtualenv (`trytond`, `trytond-admin`, `python`, `pip`).
    pub fn bin(&self, program: &str) -> PathBuf {
        self.venv.join("bin").join(program)
    }

    /// The exact installed version, e.g. `7.0.59`.
    pub fn version(&self) -> Result<String> {
        trytond_version(&self.venv)
    }

    /// `trytond-admin -c <config> <args>`, with the admin password file in its environment, for
    /// anything the helpers below do not cover. The password is passed through the file named
    /// by `TRYTONPASSFILE`, never on the command line, so it shows up in no error message.
    pub fn admin(&self, config: &TrytonConfig) -> Spec {
        Spec::new("trytond-admin", self.bin("trytond-admin"))
            .args(["-c", &config.path.display().to_string()])
            .env("TRYTONPASSFILE", config.passfile.display().to_string())
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(&config.dir)
    }

    /// Creates `database` in `postgres` and initialises it ([`TrytonInstall::initialise_database`]).
    pub async fn create_database(&self, postgres: &Postgres, config: &TrytonConfig, database: &str) -> Result<()> {
        postgres.create_database(database).await?;
        self.initialise_database(config, database).await
    }

    /// `trytond-admin -d DB --all` on an empty (existing) database: creates Tryton's tables and
    /// the `admin` user with the configuration's password. `--email` is always given because
    /// without it a first initialisation stops to ask for one on the terminal.
    pub async fn initialise_database(&self, config: &TrytonConfig, database: &str) -> Result<()> {
        let spec = self.admin(config).args(["-d", database, "--all", "--email", &config.admin_email]);
        run_async(spec).await.map(drop)
    }

    /// Activates `modules` (and the modules they depend on) in `database`.
    pub async fn activate_modules(&self, config: &TrytonConfig, database: &str, modules: &[&str]) -> Result<()> {
        self.update_modules(config, database, ModuleUpdate::Modules(modules.iter().map(|m| m.to_string()).collect()))
            .await
            .map(drop)
    }

    /// The ERP's "module update" (`--update=MODULE` / `--update=all` in the product's documents):
    /// `trytond-admin -d DB -u MODULE… --activate-dependencies` or `trytond-admin -d DB --all`.
    /// Run with the new series' install, `--all` is also the major-version migration step.
    /// Tryton reloads its modules only at start-up, so a running server must be restarted
    /// afterwards. Returns trytond-admin's output (migration warnings land there).
    pub async fn update_modules(&self, config: &TrytonConfig, database: &str, update: ModuleUpdate) -> Result<String> {
        let spec = self.admin(config).args(["-d", database]);
        let spec = match update {
            ModuleUpdate::All => spec.arg("--all"),
            ModuleUpdate::Modules(modules) => {
                if modules.is_empty() {
                    return Err(Error::Prerequisite(
                        "a module update needs at least one module (or ModuleUpdate::All)".into(),
                    ));
                }
                spec.arg("-u").args(modules).arg("--activate-dependencies")
            }
        };
        run_async(spec).await
    }

    /// Starts `trytond -c <config>` and waits until it answers JSON-RPC with this series'
    /// version (so a stray process on the same port is not mistaken for it). Its log is
    /// `<workdir>/trytond-<series>-<port>.log`; dropping the server stops it.
    pub async fn start_server(&self, workdir: &Arc<WorkDir>, config: &TrytonConfig) -> Result<TrytonServer> {
        let name = format!("trytond-{}-{}", self.series, config.port);
        let process = Supervised::spawn(
            workdir,
            Spec::new(name, self.bin("trytond"))
                .args(["-c", &config.path.display().to_string()])
                .env("PYTHONUNBUFFERED", "1")
                .current_dir(&config.dir),
        )?;
        let client = TrytonClient::new(config.url())?;
        let expected = format!("{}.", self.series);
        // The port was free when the configuration was written and is free again whenever this
        // server is stopped: another process may have taken it meanwhile, and would answer the
        // probe. Only an answer after our own server said it listens counts (werkzeug's line).
        let (log, listening) =
            (process.log_path().to_path_buf(), format!("Running on http://127.0.0.1:{}", config.port()));
        let version = process
            .wait_ready(&format!("trytond {}", self.series), SERVER_START_TIMEOUT, || {
                let client = client.clone();
                let expected = expected.clone();
                let ours = fs::read_to_string(&log).is_ok_and(|text| text.contains(&listening));
                async move {
                    if !ours {
                        return Err("not listening yet".to_string());
                    }
                    let version = client.server_version().await.map_err(|e| e.to_string())?;
                    if version.starts_with(&expected) {
                        Ok(version)
                    } else {
                        Err(format!("the server on this port is trytond {version}, not {expected}x"))
                    }
                }
            })
            .await?;
        Ok(TrytonServer { process, client, version })
    }
}

/// Which modules a [`TrytonInstall::update_modules`] call updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleUpdate {
    /// Every activated module (`--all`).
    All,
    /// These modules, activating them and their dependencies if needed (`-u …`).
    Modules(Vec<String>),
}

/// Debian's interpreter when present, so the venv matches what a fresh Debian machine builds
/// (this machine also has a pyenv `python3` first on `PATH`).
fn base_python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.exists() { debian } else { which("python3").unwrap_or(debian) }
}

/// FNV-1a, 64 bits: a stable short name for a requirement list (not a security boundary:
/// the marker file inside still has to match exactly).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

fn marker_text(python: &Path, requirements: &[String]) -> String {
    let mut text = format!("# python: {}\n", python.display());
    for requirement in requirements {
        text.push_str(requirement);
        text.push('\n');
    }
    text
}

/// The venv behind `link` was finished from exactly this requirement list and still runs (its
/// interpreter is a symlink to the system one, which a distribution upgrade can remove).
fn is_complete(link: &Path, marker: &str) -> bool {
    fs::read_to_string(link.join(MARKER)).is_ok_and(|text| text == marker)
        && link.join("bin/python").exists()
        && link.join("bin/trytond").exists()
        && link.join("bin/trytond-admin").exists()
}

/// Builds a new venv next to `link` and publishes it. Called with the series' lock held.
fn install(series: &str, root: &Path, link: &Path, python: &Path, requirements: &[String], marker: &str) -> Result<()> {
    ensure_debian_packages(&["python3-venv"])?;
    fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
    remove_unused_venvs(root, link);
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let name = format!("venv-{stamp}-{}", std::process::id());
    let venv = root.join(&name);
    tracing::info!(series, venv = %venv.display(), ?requirements, "installing Tryton");
    let started = std::time::Instant::now();
    let result = (|| {
        run(&Spec::new("python3 -m venv", python).args(["-m", "venv", &venv.display().to_string()]))?;
        run(&Spec::new("pip", venv.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--no-input"])
            .args(requirements.iter().cloned())
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"))?;
        let version = trytond_version(&venv)?;
        if !version.starts_with(&format!("{series}.")) {
            return Err(Error::CommandFailed {
                command: format!("{} --version", venv.join("bin/trytond").display()),
                status: "an unexpected version".into(),
                tail: format!("pip installed trytond {version} for series {series}"),
            });
        }
        let marker_path = venv.join(MARKER);
        fs::write(&marker_path, marker).context(|| format!("writing {}", marker_path.display()))?;
        publish(root, link, &name)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&venv);
    } else {
        tracing::info!(series, elapsed = ?started.elapsed(), "Tryton installed");
    }
    result
}

/// `trytond --version` prints `trytond 7.0.59`.
fn trytond_version(venv: &Path) -> Result<String> {
    let output = run(&Spec::new("trytond --version", venv.join("bin/trytond")).arg("--version"))?;
    Ok(output.split_whitespace().last().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_pin_the_series_and_its_known_breakages() {
        assert_eq!(
            requirements("7.0").unwrap(),
            [
                "trytond==7.0.*",
                "trytond-party==7.0.*",
                "trytond-company==7.0.*",
                "trytond-product==7.0.*",
                "trytond-sale==7.0.*",
                "trytond-party_relationship==7.0.*",
                "proteus==7.0.*",
                "psycopg2-binary==2.9.*"
            ]
        );
        assert!(requirements("7.2").unwrap().contains(&"python-sql==1.5.*".to_string()));
        assert!(!requirements("7.4").unwrap().iter().any(|r| r.starts_with("python-sql")));
        for series in ["8.0", "8.2"] {
            let requirements = requirements(series).unwrap();
            assert!(requirements.contains(&"psycopg[binary,pool]==3.*".to_string()), "{requirements:?}");
            assert!(!requirements.iter().any(|r| r.starts_with("psycopg2")), "{requirements:?}");
        }
        for bad in ["7", "7.x", "", "7.0; rm -rf /", ".2"] {
            assert!(requirements(bad).is_err(), "{bad:?} accepted");
        }
    }
}
