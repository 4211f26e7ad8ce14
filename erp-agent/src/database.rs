//! The tenant's PostgreSQL databases, as whole objects: does one exist, copy it, rename it,
//! drop it, list the ones an operation left behind; and the PostgreSQL client programs
//! (`pg_dump`, `pg_restore`, `psql`) run as streams ([`tools`]).
//!
//! Every statement goes through the server's maintenance database `postgres`, on a fresh
//! connection made from the caller's [`ServerAddress`]; the agent holds no pool and never stays
//! connected to a tenant's database, so it never blocks a copy or a rename itself.
//!
//! **Who is connected.** PostgreSQL refuses to copy (`CREATE DATABASE … TEMPLATE`), rename or
//! drop a database anyone is connected to. Whether those sessions may be ended is the caller's
//! knowledge, not the agent's, so every such call takes an [`ErpState`]:
//! - [`ErpState::MayBeRunning`]: nothing is ended; if anyone is connected the call fails with
//!   [`Error::InUse`] naming each session (pid, application, user, client), and changes nothing.
//! - [`ErpState::Stopped`]: the caller has stopped the ERP (server, cron, workers); sessions
//!   still open are left-overs and are terminated first.
//!
//! **What it never does.** It never changes a database in place (a copy is a new database, a
//! rename keeps every byte), never overwrites an existing database (copy and rename into an
//! existing name fail with [`Error::AlreadyExists`]), and never puts a password on a command
//! line or in a message.

pub mod names;
pub mod tools;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

pub use names::{DatabaseName, Derived, derived_prefix, parse_derived, replaced_name, work_copy_name};
pub use tools::{PgTools, RunningTool};

use crate::error::{Error, Result};

/// The maintenance database every administrative statement runs in.
pub const MAINTENANCE_DATABASE: &str = "postgres";

/// How this agent names itself in `pg_stat_activity`, so an [`Error::InUse`] never blames it.
const APPLICATION_NAME: &str = "tenantry-agent";

/// SQLSTATE `55006` (`object_in_use`): "source database is being accessed by other users".
const OBJECT_IN_USE: &str = "55006";

/// Whether the ERP serving a database may still be connected (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErpState {
    /// Sessions are the ERP's: refuse, naming them.
    MayBeRunning,
    /// The caller stopped the ERP: sessions still open are ended.
    Stopped,
}

/// Where the PostgreSQL server is and who the agent is on it. Built from a URL
/// (`postgres://user:password@host:port/?sslmode=require`; the path, if any, is ignored: the
/// database is always named per call). Its `Debug` hides the password.
#[derive(Clone)]
pub struct ServerAddress {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    ssl_mode: Option<String>,
}

impl ServerAddress {
    /// Reads `postgres://` or `postgresql://` URLs. A `host=/path` query parameter (libpq's way)
    /// names a Unix socket directory.
    pub fn from_url(url: &str) -> Result<Self> {
        // The URL holds the password: no part of it goes into an error message.
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::Invalid(format!(
                "the database URL cannot be read ({e}); expected postgres://user:password@host:port/"
            ))
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(Error::Invalid(format!("the database URL's scheme is `{}`, not postgres://", parsed.scheme())));
        }
        let decode = |text: &str| percent_decode(text);
        let mut host = parsed.host_str().map(decode).unwrap_or_default();
        let mut ssl_mode = None;
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "host" => host = value.into_owned(),
                "sslmode" => ssl_mode = Some(value.into_owned()),
                _ => {}
            }
        }
        if host.is_empty() {
            host = "localhost".into();
        }
        if let Some(mode) = &ssl_mode {
            PgSslMode::from_str(mode)
                .map_err(|_| Error::Invalid(format!("unknown sslmode `{mode}` in the database URL")))?;
        }
        let user = decode(parsed.username());
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(5432),
            user: if user.is_empty() { "postgres".into() } else { user },
            password: parsed.password().map(decode),
            ssl_mode,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// sqlx options for `database` on this server.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        let mut options = PgConnectOptions::new_without_pgpass()
            .username(&self.user)
            .database(database)
            .application_name(APPLICATION_NAME);
        options = if self.host.starts_with('/') {
            options.socket(&self.host).port(self.port)
        } else {
            options.host(&self.host).port(self.port)
        };
        if let Some(password) = &self.password {
            options = options.password(password);
        }
        if let Some(mode) = self.ssl_mode.as_deref().and_then(|m| PgSslMode::from_str(m).ok()) {
            options = options.ssl_mode(mode);
        }
        options
    }

    /// libpq's environment for a client program aimed at `database`: the password travels as
    /// `PGPASSWORD` in the child's environment only, never on its command line.
    pub(crate) fn libpq_environment(&self, database: &str) -> Vec<(&'static str, String)> {
        let mut environment = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", database.to_string()),
            ("PGAPPNAME", APPLICATION_NAME.to_string()),
        ];
        if let Some(password) = &self.password {
            environment.push(("PGPASSWORD", password.clone()));
        }
        if let Some(mode) = &self.ssl_mode {
            environment.push(("PGSSLMODE", mode.clone()));
        }
        environment
    }
}

impl fmt::Debug for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAddress")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One session connected to a database, as [`Error::InUse`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub pid: i32,
    pub application: String,
    pub user: String,
    pub client: String,
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let application = if self.application.is_empty() { "an unnamed client" } else { &self.application };
        write!(f, "pid {} ({application}, user {}, from {})", self.pid, self.user, self.client)
    }
}

/// One PostgreSQL server's databases (see the module docs).
#[derive(Debug, Clone)]
pub struct DatabaseServer {
    address: ServerAddress,
    tools: PgTools,
}

impl DatabaseServer {
    /// `tools` says where `pg_dump` and friends are ([`PgTools::on_path`] for `PATH`).
    pub fn new(address: ServerAddress, tools: PgTools) -> Self {
        Self { address, tools }
    }

    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    pub fn tools(&self) -> &PgTools {
        &self.tools
    }

    /// A connection to `database` (closed when dropped).
    pub async fn connect(&self, database: &str) -> Result<PgConnection> {
        PgConnection::connect_with(&self.address.connect_options(database))
            .await
            .map_err(Error::database(format!("connecting to database `{database}`")))
    }

    async fn maintenance(&self) -> Result<PgConnection> {
        self.connect(MAINTENANCE_DATABASE).await
    }

    /// `SHOW server_version`, e.g. `15.8 (Debian 15.8-0+deb12u1)`: for manifests.
    pub async fn server_version(&self) -> Result<String> {
        let mut connection = self.maintenance().await?;
        sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut connection)
            .await
            .map_err(Error::database("reading the server version"))
    }

    pub async fn exists(&self, database: &DatabaseName) -> Result<bool> {
        let mut connection = self.maintenance().await?;
        exists(&mut connection, database).await
    }

    /// The databases whose name starts with `prefix` (e.g. [`derived_prefix`]), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut connection = self.maintenance().await?;
        sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE NOT datistemplate AND left(datname, length($1)) = $1 ORDER BY 1",
        )
        .bind(prefix)
        .fetch_all(&mut connection)
        .await
        .map_err(Error::database(format!("listing the databases starting with `{prefix}`")))
    }

    /// The client sessions connected to `database`, this agent's own excepted. PostgreSQL's own
    /// workers (autovacuum) are not counted: `CREATE DATABASE`, `ALTER DATABASE` and `DROP
    /// DATABASE` make them leave by themselves.
    pub async fn sessions(&self, database: &DatabaseName) -> Result<Vec<Session>> {
        let mut connection = self.maintenance().await?;
        sessions(&mut connection, database).await
    }

    /// `CREATE DATABASE target TEMPLATE source OWNER <source's owner> STRATEGY FILE_COPY`: a
    /// file-level copy, seconds even for large databases, owned by the same role so the ERP can
    /// use it. Fails if `target` exists or `source` does not; see the module docs for `erp`.
    ///
    /// `FILE_COPY` (PostgreSQL's only way before 15, still offered) copies the files after a
    /// checkpoint; 15's default, `WAL_LOG`, writes every page of the copy to the WAL and suits
    /// small templates. The agent copies a whole tenant database while its ERP is stopped, and
    /// measured here the file copy took 0.3–0.4 s against 0.5–0.8 s for 200 MB with a few
    /// dirty pages, 1.1–3.3 s against 2.4–3.7 s for 1 GB: it is the ERP's downtime.
    pub async fn copy(&self, source: &DatabaseName, target: &DatabaseName, erp: ErpState) -> Result<()> {
        let mut connection = self.maintenance().await?;
        must_exist(&mut connection, source).await?;
        must_not_exist(&mut connection, target).await?;
        let owner: String =
            sqlx::query_scalar("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1")
                .bind(source.as_str())
                .fetch_one(&mut connection)
                .await
                .map_err(Error::database(format!("reading the owner of `{source}`")))?;
        let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
            .fetch_one(&mut connection)
            .await
            .map_err(Error::database("reading the server's version"))?;
        let strategy = if version >= 150_000 { " STRATEGY FILE_COPY" } else { "" };
        let statement = format!(
            "CREATE DATABASE {} TEMPLATE {} OWNER {}{strategy}",
            target.quoted(),
            source.quoted(),
            names::quote_identifier(&owner)
        );
        with_source_free(&mut connection, source, erp, &statement, &format!("copying `{source}` to `{target}`")).await
    }

    /// `CREATE DATABASE database` (empty, from `template0`, UTF-8), owned by `owner` or by the
    /// agent's role: what a restore loads a dump into. Fails if it exists.
    pub async fn create_empty(&self, database: &DatabaseName, owner: Option<&str>) -> Result<()> {
        let mut connection = self.maintenance().await?;
        must_not_exist(&mut connection, database).await?;
        let mut statement = format!("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'", database.quoted());
        if let Some(owner) = owner {
            statement.push_str(&format!(" OWNER {}", names::quote_identifier(owner)));
        }
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut connection)
            .await
            .map_err(Error::database(format!("creating database `{database}`")))
            .map(drop)
    }

    /// `ALTER DATABASE from RENAME TO to`. Fails if `to` exists or `from` does not.
    pub async fn rename(&self, from: &DatabaseName, to: &DatabaseName, erp: ErpState) -> Result<()> {
        let mut connection = self.maintenance().await?;
        must_exist(&mut connection, from).await?;
        must_not_exist(&mut connection, to).await?;
        let statement = format!("ALTER DATABASE {} RENAME TO {}", from.quoted(), to.quoted());
        with_source_free(&mut connection, from, erp, &statement, &format!("renaming `{from}` to `{to}`")).await
    }

    /// `DROP DATABASE IF EXISTS`: dropping a database that is not there succeeds, so a resumed
    /// operation can drop again.
    pub async fn drop_database(&self, database: &DatabaseName, erp: ErpState) -> Result<()> {
        let mut connection = self.maintenance().await?;
        let statement = format!("DROP DATABASE IF EXISTS {}", database.quoted());
        with_source_free(&mut connection, database, erp, &statement, &format!("dropping `{database}`")).await
    }
}

async fn exists(connection: &mut PgConnection, database: &DatabaseName) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(database.as_str())
        .fetch_one(connection)
        .await
        .map_err(Error::database(format!("looking for database `{database}`")))
}

async fn must_exist(connection: &mut PgConnection, database: &DatabaseName) -> Result<()> {
    if exists(connection, database).await? {
        Ok(())
    } else {
        Err(Error::Missing { what: "database", name: database.to_string() })
    }
}

async fn must_not_exist(connection: &mut PgConnection, database: &DatabaseName) -> Result<()> {
    if exists(connection, database).await? {
        Err(Error::AlreadyExists { what: "database", name: database.to_string() })
    } else {
        Ok(())
    }
}

async fn sessions(connection: &mut PgConnection, database: &DatabaseName) -> Result<Vec<Session>> {
    let rows = sqlx::query(
        "SELECT pid, coalesce(application_name, '') AS application, coalesce(usename::text, '') AS usename, \
         coalesce(host(client_addr), 'a local socket') AS client \
         FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
         ORDER BY pid",
    )
    .bind(database.as_str())
    .fetch_all(connection)
    .await
    .map_err(Error::database(format!("listing the sessions on `{database}`")))?;
    rows.iter()
        .map(|row| {
            Ok(Session {
                pid: row.try_get("pid")?,
                application: row.try_get("application")?,
                user: row.try_get("usename")?,
                client: row.try_get("client")?,
            })
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(Error::database("reading pg_stat_activity"))
}

async fn terminate_sessions(connection: &mut PgConnection, database: &DatabaseName) -> Result<()> {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .bind(database.as_str())
    .execute(connection)
    .await
    .map_err(Error::database(format!("ending the sessions on `{database}`")))
    .map(drop)
}

/// Runs `statement`, which needs nobody connected to `database`, under the policy of `erp`.
async fn with_source_free(
    connection: &mut PgConnection,
    database: &DatabaseName,
    erp: ErpState,
    statement: &str,
    what: &str,
) -> Result<()> {
    // A stopped ERP's sessions end at once, but a pooled client may reconnect in between:
    // a few rounds of terminate-then-try, then the precise error.
    let attempts = match erp {
        ErpState::MayBeRunning => 1,
        ErpState::Stopped => 5,
    };
    for attempt in 1..=attempts {
        match erp {
            ErpState::MayBeRunning => {
                let open = sessions(connection, database).await?;
                if !open.is_empty() {
                    return Err(in_use(database, &open));
                }
            }
            ErpState::Stopped => terminate_sessions(connection, database).await?,
        }
        match sqlx::raw_sql(AssertSqlSafe(statement.to_string())).execute(&mut *connection).await {
            Ok(_) => return Ok(()),
            Err(error) if is_object_in_use(&error) => {
                if attempt == attempts {
                    let open = sessions(connection, database).await?;
                    return Err(in_use(database, &open));
                }
                // Terminated backends take a moment to leave pg_stat_activity.
                tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
            }
            Err(source) => return Err(Error::Database { what: what.to_string(), source }),
        }
    }
    unreachable!("the last attempt returns")
}

fn in_use(database: &DatabaseName, sessions: &[Session]) -> Error {
    let sessions = if sessions.is_empty() {
        // Gone between the failure and the listing: still name the cause.
        vec!["a session that has just ended".to_string()]
    } else {
        sessions.iter().map(Session::to_string).collect()
    };
    Error::InUse { database: database.to_string(), sessions }
}

fn is_object_in_use(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == OBJECT_IN_USE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_passwords_hidden() {
        let address =
            ServerAddress::from_url("postgres://tenant%40x:s%3Acret@db.example:6543/ignored?sslmode=require").unwrap();
        assert_eq!((address.host(), address.port(), address.user()), ("db.example", 6543, "tenant@x"));
        assert_eq!(address.password.as_deref(), Some("s:cret"));
        let debug = format!("{address:?}");
        assert!(!debug.contains("s:cret") && debug.contains("<redacted>"), "{debug}");
        let environment = address.libpq_environment("acme");
        assert!(environment.contains(&("PGPASSWORD", "s:cret".to_string())));
        assert!(environment.contains(&("PGSSLMODE", "require".to_string())));
        assert!(environment.contains(&("PGDATABASE", "acme".to_string())));

        let socket = ServerAddress::from_url("postgresql://postgres@localhost/?host=/run/postgresql").unwrap();
        assert_eq!((socket.host(), socket.port(), socket.user()), ("/run/postgresql", 5432, "postgres"));
        assert!(socket.password.is_none());
        assert!(!socket.libpq_environment("x").iter().any(|(k, _)| *k == "PGPASSWORD"));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in ["mysql://u:topsecret@h/", "postgres://u:topsecret@h/?sslmode=sometimes", "not a url topsecret"] {
            let error = ServerAddress::from_url(url).unwrap_err().to_string();
            assert!(!error.contains("topsecret"), "{error}");
        }
    }

    #[test]
    fn sessions_are_named_for_people() {
        let session =
            Session { pid: 42, application: "trytond".into(), user: "acme".into(), client: "10.0.0.7".into() };
        let error = in_use(&DatabaseName::new("acme").unwrap(), &[session]);
        assert_eq!(
            error.to_string(),
            "database `acme` is in use by pid 42 (trytond, user acme, from 10.0.0.7); stop the ERP first (or declare it stopped)"
        );
    }
}
