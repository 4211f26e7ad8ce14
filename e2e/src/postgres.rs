//! A private PostgreSQL server (Debian's `postgresql`) on a free loopback port.

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::install::ensure_debian_packages;
use crate::process::{Spec, Supervised, WorkDir, free_port, run_async};

/// The role every test connects as (trust authentication, loopback only).
pub const SUPERUSER: &str = "postgres";

/// How to reach a private PostgreSQL server; what tests and helpers take.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Postgres {
    port: u16,
    bin_dir: PathBuf,
    run_as: Option<String>,
}

/// A private PostgreSQL server owned by this process; usable wherever a [`Postgres`] is.
pub struct PostgresServer {
    connection: Postgres,
    process: Supervised,
}

impl Deref for PostgresServer {
    type Target = Postgres;

    fn deref(&self) -> &Postgres {
        &self.connection
    }
}

impl PostgresServer {
    /// `initdb` into the work directory and start the server. Durability settings are off:
    /// this server holds test data only.
    pub async fn start(workdir: &Arc<WorkDir>) -> Result<Self> {
        ensure_debian_packages(&["postgresql"])?;
        let bin_dir = postgres_bin_dir()?;
        // PostgreSQL refuses to run as root; as root we run it as the `postgres` system user.
        let run_as = nix::unistd::geteuid().is_root().then(|| "postgres".to_string());
        let data = workdir.join("postgres");
        fs::create_dir_all(&data).context(|| format!("creating {}", data.display()))?;
        if let Some(user) = &run_as {
            let owner = nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .ok_or_else(|| Error::Prerequisite(format!("system user `{user}` (from Debian's postgresql)")))?;
            make_traversable(workdir.path())?;
            nix::unistd::chown(&data, Some(owner.uid), Some(owner.gid))
                .map_err(|e| Error::Prerequisite(format!("chown {} to {user}: {e}", data.display())))?;
        }
        run_async(
            Spec::new("initdb", bin_dir.join("initdb"))
                .args(["-D", &data.display().to_string(), "-U", SUPERUSER])
                .args(["--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"])
                .user(run_as.clone()),
        )
        .await?;
        let port = free_port()?;
        let process = Supervised::spawn(
            workdir,
            Spec::new("postgres", bin_dir.join("postgres"))
                .args(["-D", &data.display().to_string(), "-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=200"])
                .user(run_as.clone())
                .stop_signal(Signal::SIGINT),
        )?;
        let server = Self { connection: Postgres { port, bin_dir, run_as }, process };
        let isready = server.bin_dir.join("pg_isready");
        server
            .process
            .wait_ready("PostgreSQL", Duration::from_secs(60), || {
                let spec = Spec::new("pg_isready", &isready).args(["-h", "127.0.0.1", "-p", &port.to_string()]);
                async move { run_async(spec).await.map(drop).map_err(|e| e.to_string()) }
            })
            .await?;
        Ok(server)
    }

    pub fn connection(&self) -> &Postgres {
        &self.connection
    }

    pub fn process(&self) -> &Supervised {
        &self.process
    }
}

impl Postgres {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Where `psql`, `pg_dump`, `pg_restore` and friends of this server's version live.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A client program of this server (`psql`, `createdb`, `pg_dump`, …) aimed at it.
    pub fn client(&self, program: &str) -> Spec {
        Spec::new(program, self.bin_dir.join(program))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", SUPERUSER])
            .user(self.run_as.clone())
    }

    pub async fn create_database(&self, name: &str) -> Result<()> {
        run_async(self.client("createdb").arg(name)).await.map(drop)
    }
}

/// The newest `/usr/lib/postgresql/<major>/bin`.
fn postgres_bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = fs::read_dir(root)
        .context(|| format!("listing {}", root.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .ok_or_else(|| Error::Prerequisite(format!("no PostgreSQL server under {}", root.display())))?;
    Ok(root.join(newest.to_string()).join("bin"))
}

/// Lets another user reach a directory inside the (private, 0700) work directory.
fn make_traversable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = fs::metadata(dir).context(|| format!("reading {}", dir.display()))?.permissions();
    permissions.set_mode(permissions.mode() | 0o711);
    fs::set_permissions(dir, permissions).context(|| format!("chmod {}", dir.display()))
}
