//! `trytond.conf` and its admin password file.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;

use crate::error::{IoContext, Result};
use crate::postgres::{Postgres, SUPERUSER};
use crate::process::free_port;

/// A `trytond.conf` and what goes with it (admin password file, attachment store), in one
/// directory, aimed at one PostgreSQL server and one free web port.
pub struct TrytonConfig {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) passfile: PathBuf,
    pub(super) admin_password: String,
    pub(super) admin_email: String,
    pub(super) port: u16,
}

impl TrytonConfig {
    /// Writes `<dir>/trytond.conf` for `postgres` (created with `dir` if needed).
    pub fn write(dir: &Path, postgres: &Postgres) -> Result<Self> {
        Self::write_for_port(dir, postgres.port())
    }

    /// Writes `<dir>/trytond.conf` for the PostgreSQL server listening on 127.0.0.1:`port`
    /// with trust authentication for the `postgres` role.
    pub fn write_for_port(dir: &Path, postgres_port: u16) -> Result<Self> {
        Self::write_with_data(dir, postgres_port, &dir.join("data"))
    }

    /// Like [`TrytonConfig::write_for_port`], with the attachment store at `data`: a second
    /// server (its own port and admin password file) over the databases and files of another
    /// configuration.
    pub fn write_with_data(dir: &Path, postgres_port: u16, data: &Path) -> Result<Self> {
        for needed in [dir, data] {
            fs::create_dir_all(needed).context(|| format!("creating {}", needed.display()))?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
