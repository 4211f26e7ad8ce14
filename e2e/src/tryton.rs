//! Real Tryton ERP servers for tests: the product hosts Tryton, so backups, restores, module
//! updates and upgrades are tested against `trytond` itself and a real PostgreSQL database.
//!
//! Three layers, each usable on its own:
//! - [`TrytonInstall`]: `trytond` and its modules of one release series (`7.0`, `7.2`, …) in a
//!   virtualenv cached outside the repository, built once per requirement list.
//! - [`TrytonConfig`]: a `trytond.conf` aimed at a private [`Postgres`], with its admin password
//!   file; the same configuration serves every series, which is what an upgrade needs (run the
//!   new series' `trytond-admin --all` against the old series' database).
//! - [`TrytonServer`] and [`TrytonClient`]/[`Session`]: the running server and a JSON-RPC client
//!   speaking the protocol exactly as Tryton's own clients do (verified against 7.0 and 7.2):
//!   - every call is `POST` with `Content-Type: application/json` and a body holding exactly
//!     the keys `id`, `method`, `params` — with any other shape (or content type) the server
//!     answers a bare result or an HTML error page instead of a JSON-RPC envelope;
//!   - database-less calls (`common.server.version`, `common.db.list`) go to `/`, everything else
//!     to `/<database>/`;
//!   - `common.db.login` takes `[login, {"password": …}, language]` and returns
//!     `[user_id, session]`; a refused login is HTTP 401 (429 once rate-limited, 404 for an
//!     unknown database), not a JSON-RPC error;
//!   - later calls carry `Authorization: Session base64(login:user_id:session)`; an invalid or
//!     logged-out session is HTTP 401 with an empty body;
//!   - model methods are `model.<model>.<method>` and take the context dict as their last
//!     parameter (leaving it out is the error `Missing context argument`);
//!   - failures come back as HTTP 200 with `"error": [name, args]` for Tryton's own exceptions
//!     (`["UserError", [message, description, domain]]`) or `"error": [message, traceback]` for
//!     any other exception (e.g. `["'party.nosuch'", ""]` for an unknown model).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use crate::error::{Error, IoContext, Result};
use crate::install::{CacheLock, ensure_debian_packages, which};
use crate::paths::cache_dir;
use crate::postgres::{Postgres, SUPERUSER};
use crate::process::{Spec, Supervised, WorkDir, free_port, run, run_async};

/// The series tests use unless they are about a specific one (the product's default profile).
pub const DEFAULT_SERIES: &str = "7.0";

/// The admin account `trytond-admin` creates in every new database.
pub const ADMIN_LOGIN: &str = "admin";

/// Name of the file, inside a finished virtualenv, listing what was installed into it. It is
/// written last, so a virtualenv without it (or with another list) is never used.
const MARKER: &str = ".tenantry-requirements";

/// How long a fresh server may take to answer its first JSON-RPC call.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Extra pins a series needs to work at all, beyond its own packages.
fn series_pins(series: &str) -> &'static [&'static str] {
    match series {
        // python-sql 1.8 makes 7.2's `trytond-admin --all` fail with an SQL syntax error while
        // migrating a 7.0 database (seen on these machines); 1.5.x is what 7.2 was released with.
        "7.2" => &["python-sql==1.5.*"],
        _ => &[],
    }
}

/// The pip requirements installed for `series` (`MAJOR.MINOR`). Only stable (even) series are
/// published on PyPI; a development series fails at install time with pip's own message.
pub fn requirements(series: &str) -> Result<Vec<String>> {
    let valid = series.split_once('.').is_some_and(|(major, minor)| is_number(major) && is_number(minor));
    if !valid {
        return Err(Error::Prerequisite(format!("Tryton series `{series}` is not of the form MAJOR.MINOR (e.g. 7.0)")));
    }
    let mut requirements = vec![
        format!("trytond=={series}.*"),
        format!("trytond-party=={series}.*"),
        // The binary wheel needs no compiler or libpq headers on the machine.
        "psycopg2-binary==2.9.*".to_string(),
    ];
    requirements.extend(series_pins(series).iter().map(|pin| pin.to_string()));
    Ok(requirements)
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
    /// Layout: `<cache>/tryton-<series>/venv` is a symlink to the finished `venv-<stamp>`
    /// directory. A venv cannot be moved after it is built (pip writes absolute paths into its
    /// scripts), so each one is built at its final path and published by atomically replacing
    /// the symlink: a half-built venv is never reachable through `venv`. A file lock makes
    /// parallel test processes wait for one install instead of racing.
    pub fn ensure(series: &str) -> Result<Self> {
        let requirements = requirements(series)?;
        let root = cache_dir().join(format!("tryton-{series}"));
        let link = root.join("venv");
        let python = base_python();
        let marker = marker_text(&python, &requirements);
        if !is_complete(&link, &marker) {
            let _lock = CacheLock::acquire(&format!("tryton-{series}"))?;
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
        let version = process
            .wait_ready(&format!("trytond {}", self.series), SERVER_START_TIMEOUT, || {
                let client = client.clone();
                let expected = expected.clone();
                async move {
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

/// Points `link` at `root/<name>` in one `rename`, so readers see the old venv or the new one.
fn publish(root: &Path, link: &Path, name: &str) -> Result<()> {
    // A real directory there (not made by this code) cannot be replaced by a rename.
    if fs::symlink_metadata(link).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(link).context(|| format!("removing {}", link.display()))?;
    }
    let temporary = root.join(format!(".venv-link-{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    std::os::unix::fs::symlink(name, &temporary).context(|| format!("creating {}", temporary.display()))?;
    fs::rename(&temporary, link).context(|| format!("publishing {}", link.display()))
}

/// Removes venvs left by failed or superseded installs, except the one `link` points to (a
/// test process may still be running from it).
fn remove_unused_venvs(root: &Path, link: &Path) {
    let current = fs::read_link(link).ok();
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_venv = name.to_str().is_some_and(|n| n.starts_with("venv-"));
        if is_venv && current.as_deref() != Some(Path::new(&name)) {
            tracing::debug!(path = %entry.path().display(), "removing an unused Tryton venv");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// `trytond --version` prints `trytond 7.0.59`.
fn trytond_version(venv: &Path) -> Result<String> {
    let output = run(&Spec::new("trytond --version", venv.join("bin/trytond")).arg("--version"))?;
    Ok(output.split_whitespace().last().unwrap_or_default().to_string())
}

/// A `trytond.conf` and what goes with it (admin password file, attachment store), in one
/// directory, aimed at one PostgreSQL server and one free web port.
pub struct TrytonConfig {
    dir: PathBuf,
    path: PathBuf,
    passfile: PathBuf,
    admin_password: String,
    admin_email: String,
    port: u16,
}

impl TrytonConfig {
    /// Writes `<dir>/trytond.conf` for `postgres` (created with `dir` if needed).
    pub fn write(dir: &Path, postgres: &Postgres) -> Result<Self> {
        Self::write_for_port(dir, postgres.port())
    }

    /// Writes `<dir>/trytond.conf` for the PostgreSQL server listening on 127.0.0.1:`port`
    /// with trust authentication for the `postgres` role.
    pub fn write_for_port(dir: &Path, postgres_port: u16) -> Result<Self> {
        let data = dir.join("data");
        fs::create_dir_all(&data).context(|| format!("creating {}", data.display()))?;
        let port = free_port()?;
        let path = dir.join("trytond.conf");
        let text = format!(
            "# Written by Tenantry's test environment.\n\
             [database]\n\
             uri = postgresql://{SUPERUSER}@127.0.0.1:{postgres_port}/\n\
             path = {data}\n\
             list = True\n\
             \n\
             [web]\n\
             listen = 127.0.0.1:{port}\n",
            data = data.display(),
        );
        fs::write(&path, text).context(|| format!("writing {}", path.display()))?;
        let admin_password = generate_password();
        let passfile = dir.join("admin-password");
        write_private(&passfile, &format!("{admin_password}\n"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            path,
            passfile,
            admin_password,
            admin_email: "admin@example.com".to_string(),
            port,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The web port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The password of `admin` in every database this configuration initialises.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The file `trytond-admin` reads it from (`TRYTONPASSFILE`).
    pub fn admin_password_file(&self) -> &Path {
        &self.passfile
    }
}

impl fmt::Debug for TrytonConfig {
    // By hand, so the admin password never reaches a log or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrytonConfig")
            .field("path", &self.path)
            .field("port", &self.port)
            .field("admin_password", &"<redacted>")
            .finish()
    }
}

/// 32 distinct letters and digits: long, unrepeated and free of symbols, so neither a
/// password rule of the configuration (`[password] length`, …) nor shell or URL quoting can
/// trip over it.
fn generate_password() -> String {
    let mut alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    alphabet.shuffle(&mut rand::rng());
    alphabet.into_iter().take(32).collect()
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).context(|| format!("writing {}", path.display()))
}

/// A running `trytond`, stopped when dropped.
pub struct TrytonServer {
    process: Supervised,
    client: TrytonClient,
    version: String,
}

impl TrytonServer {
    /// What the server itself reports (`common.server.version`), e.g. `7.0.59`.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn url(&self) -> &str {
        self.client.url()
    }

    pub fn client(&self) -> &TrytonClient {
        &self.client
    }

    pub async fn login(&self, database: &str, login: &str, password: &str) -> Result<Session> {
        self.client.login(database, login, password).await
    }

    pub fn process(&self) -> &Supervised {
        &self.process
    }

    /// Stops the server now (e.g. before a module update or a restore), rather than on drop.
    pub fn stop(&self) {
        self.process.stop(Duration::from_secs(10));
    }
}

/// A JSON-RPC connection to one Tryton server, before login.
#[derive(Clone)]
pub struct TrytonClient {
    http: reqwest::Client,
    url: String,
    next_id: Arc<AtomicU64>,
}

impl TrytonClient {
    /// `url` is the server's root, e.g. `http://127.0.0.1:8000`.
    pub fn new(url: impl Into<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            // Loopback: a proxy from the environment must not get in the way.
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            // Generous: creating many records or a first call loading the module pool is slow.
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self { http, url: url.into().trim_end_matches('/').to_string(), next_id: Arc::new(AtomicU64::new(1)) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `common.server.version`: needs no database, so it is the readiness probe.
    pub async fn server_version(&self) -> Result<String> {
        let version = self.post(None, None, "common.server.version", json!([])).await?;
        as_str("common.server.version", &version).map(str::to_string)
    }

    /// `common.db.list`: the databases the server sees.
    pub async fn list_databases(&self) -> Result<Vec<String>> {
        let method = "common.db.list";
        let list = self.post(None, None, method, json!([])).await?;
        let items = list.as_array().ok_or_else(|| unexpected(method, "a list", &list))?;
        items.iter().map(|item| as_str(method, item).map(str::to_string)).collect()
    }

    /// `common.db.login`. A wrong login or password is an [`Error::TrytonRpc`] saying
    /// "login refused" with HTTP 401.
    pub async fn login(&self, database: &str, login: &str, password: &str) -> Result<Session> {
        let method = "common.db.login";
        let answer = self.post(Some(database), None, method, json!([login, {"password": password}, "en"])).await?;
        let (user_id, token) = match answer.as_array().map(Vec::as_slice) {
            Some([user_id, token]) => (user_id.as_i64(), token.as_str()),
            _ => (None, None),
        };
        let (Some(user_id), Some(token)) = (user_id, token) else {
            return Err(unexpected(method, "[user_id, session]", &answer));
        };
        let authorization = format!(
            "Session {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{login}:{user_id}:{token}"))
        );
        Ok(Session {
            client: self.clone(),
            database: database.to_string(),
            login: login.to_string(),
            user_id,
            authorization,
        })
    }

    /// One JSON-RPC exchange. `database` selects the `/<database>/` endpoint.
    async fn post(
        &self,
        database: Option<&str>,
        authorization: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let url = match database {
            Some(database) => format!("{}/{database}/", self.url),
            None => format!("{}/", self.url),
        };
        // Exactly these three keys: anything else and trytond drops the JSON-RPC envelope.
        let mut request = self.http.post(&url).json(&json!({"id": id, "method": method, "params": params}));
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        let rpc_error = |message: String| Error::TrytonRpc { method: method.to_string(), message };
        if !status.is_success() {
            return Err(rpc_error(http_failure(status, database, method, &body)));
        }
        let envelope: Value = serde_json::from_str(&body)
            .map_err(|e| rpc_error(format!("answer is not JSON ({e}): {}", excerpt(&body))))?;
        if envelope.get("id") != Some(&json!(id)) {
            return Err(rpc_error(format!(
                "answer is for request id {:?}, not {id}: {}",
                envelope.get("id"),
                excerpt(&body)
            )));
        }
        if let Some(error) = envelope.get("error").filter(|e| !e.is_null()) {
            return Err(rpc_error(describe_error(error)));
        }
        envelope
            .get("result")
            .cloned()
            .ok_or_else(|| rpc_error(format!("answer has neither result nor error: {}", excerpt(&body))))
    }
}

impl fmt::Debug for TrytonClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrytonClient").field("url", &self.url).finish()
    }
}

/// What an HTTP status means for this call; trytond signals authentication outcomes with the
/// status alone.
fn http_failure(status: reqwest::StatusCode, database: Option<&str>, method: &str, body: &str) -> String {
    let detail = match (status.as_u16(), method) {
        (401, "common.db.login") => "login refused: wrong login or password".to_string(),
        (401, _) => "session refused: not logged in, logged out, or expired".to_string(),
        (429, _) => "too many failed logins; the server is rate-limiting this login".to_string(),
        (403, "common.db.list") => "database listing is disabled ([database] list)".to_string(),
        (404, _) => match database {
            Some(database) => format!("database `{database}` does not exist or cannot be reached"),
            None => "not found".to_string(),
        },
        _ => excerpt(body),
    };
    format!("HTTP {status}: {detail}")
}

/// Tryton's `error` member: `[name, args]` for its own exceptions, `[message, traceback]` for
/// any other.
fn describe_error(error: &Value) -> String {
    match error.as_array().map(Vec::as_slice) {
        Some([Value::String(name), Value::Array(args)]) => {
            let parts: Vec<String> = args
                .iter()
                .filter_map(|arg| match arg {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect();
            format!("{name}: {}", parts.join(" — "))
        }
        Some([Value::String(message), Value::String(traceback)]) if traceback.is_empty() => {
            format!("server exception: {message}")
        }
        Some([Value::String(message), Value::String(traceback)]) => {
            format!("server exception: {message}\n{traceback}")
        }
        _ => format!("server error: {error}"),
    }
}

fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    let mut cut: String = body.chars().take(500).collect();
    if cut.len() < body.len() {
        cut.push('…');
    }
    cut
}

fn unexpected(method: &str, wanted: &str, got: &Value) -> Error {
    Error::TrytonRpc { method: method.to_string(), message: format!("expected {wanted}, got {got}") }
}

fn as_str<'a>(method: &str, value: &'a Value) -> Result<&'a str> {
    value.as_str().ok_or_else(|| unexpected(method, "a string", value))
}

/// A logged-in user of one database.
pub struct Session {
    client: TrytonClient,
    database: String,
    login: String,
    user_id: i64,
    authorization: String,
}

impl Session {
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn login(&self) -> &str {
        &self.login
    }

    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// Any method on this database, with `params` sent as they are. Model methods
    /// (`model.<model>.<method>`) need the context as their last parameter; [`Session::model`]
    /// adds it.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value> {
        self.client.post(Some(&self.database), Some(&self.authorization), method, Value::Array(params)).await
    }

    /// `model.<model>.<method>(*args, context={})`.
    pub async fn model(&self, model: &str, method: &str, mut args: Vec<Value>) -> Result<Value> {
        args.push(json!({}));
        self.call(&format!("model.{model}.{method}"), args).await
    }

    /// Creates one record per value (field name → value) and returns their ids, in order.
    pub async fn create(&self, model: &str, records: Vec<Value>) -> Result<Vec<i64>> {
        let ids = self.model(model, "create", vec![Value::Array(records)]).await?;
        let method = format!("model.{model}.create");
        ids.as_array()
            .and_then(|ids| ids.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| unexpected(&method, "a list of ids", &ids))
    }

    /// How many records match `domain` (a Tryton domain, e.g. `[["name", "=", "Alpha"]]`).
    pub async fn search_count(&self, model: &str, domain: Value) -> Result<i64> {
        let count = self.model(model, "search_count", vec![domain]).await?;
        count.as_i64().ok_or_else(|| unexpected(&format!("model.{model}.search_count"), "a number", &count))
    }

    /// The `fields` (plus `id`) of every record matching `domain`, ordered by the model's
    /// default order.
    pub async fn search_read(&self, model: &str, domain: Value, fields: &[&str]) -> Result<Vec<Value>> {
        let rows =
            self.model(model, "search_read", vec![domain, json!(0), Value::Null, Value::Null, json!(fields)]).await?;
        match rows {
            Value::Array(rows) => Ok(rows),
            other => Err(unexpected(&format!("model.{model}.search_read"), "a list of records", &other)),
        }
    }

    /// `common.db.logout`: the server forgets the session; later calls with it are refused.
    pub async fn logout(&self) -> Result<()> {
        self.call("common.db.logout", Vec::new()).await.map(drop)
    }
}

impl fmt::Debug for Session {
    // By hand: the session token is a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.client.url)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_pin_the_series_and_its_known_breakages() {
        assert_eq!(requirements("7.0").unwrap(), ["trytond==7.0.*", "trytond-party==7.0.*", "psycopg2-binary==2.9.*"]);
        assert!(requirements("7.2").unwrap().contains(&"python-sql==1.5.*".to_string()));
        for bad in ["7", "7.x", "", "7.0; rm -rf /", ".2"] {
            assert!(requirements(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_are_long_and_distinct() {
        let password = generate_password();
        assert_eq!(password.len(), 32);
        let mut chars: Vec<char> = password.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        assert_eq!(chars.len(), 32);
        assert_ne!(password, generate_password());
    }

    #[test]
    fn tryton_errors_are_described() {
        let user_error = json!(["UserError", ["The code on party must be unique.", "", null]]);
        assert_eq!(describe_error(&user_error), "UserError: The code on party must be unique.");
        assert_eq!(describe_error(&json!(["'party.nosuch'", ""])), "server exception: 'party.nosuch'");
        assert_eq!(
            describe_error(&json!(["LoginException", ["password", "Password for admin", "password"]])),
            "LoginException: password — Password for admin — password"
        );
    }
}
