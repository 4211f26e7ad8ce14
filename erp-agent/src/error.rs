//! The agent's one error type: every failure names what it was doing, so a report or a Job's
//! log says which step failed and why.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{what} ({path}): {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// The caller asked for something that cannot be done (bad flag, unknown profile…).
    #[error("{0}")]
    Invalid(String),
    /// A query or a connection to PostgreSQL failed. `what` says what was being done; the
    /// connection URL (and its password) is never part of the message.
    #[error("{what}: {source}")]
    Database { what: String, source: sqlx::Error },
    /// A database operation needs nobody connected to a database, and someone is: named so the
    /// caller can stop them (or say the ERP is stopped and let the agent end their sessions).
    #[error("database `{database}` is in use by {}; stop the ERP first (or declare it stopped)", .sessions.join(", "))]
    InUse { database: String, sessions: Vec<String> },
    /// A database or file-store folder that must not exist yet does (never overwritten).
    #[error("{what} `{name}` already exists")]
    AlreadyExists { what: &'static str, name: String },
    /// A database or file-store folder that must exist does not.
    #[error("{what} `{name}` does not exist")]
    Missing { what: &'static str, name: String },
    /// A copy that should be neutralized still reaches the outside world: each thing named.
    #[error("the database is not neutralized: {}", .0.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("; "))]
    StillLive(Vec<crate::neutralize::StillLive>),
    /// An external program (`pg_dump`, `pg_restore`, `psql`, …) failed or could not start.
    #[error("{program} {status}: {tail}")]
    Tool { program: String, status: String, tail: String },
}

impl Error {
    /// A short, stable name of the kind of failure, for exit reports and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Invalid(_) => "invalid",
            Self::Database { .. } => "database",
            Self::InUse { .. } => "in_use",
            Self::AlreadyExists { .. } => "already_exists",
            Self::Missing { .. } => "missing",
            Self::Tool { .. } => "tool",
            Self::StillLive(_) => "still_live",
        }
    }

    /// [`Error::Database`] for a query or connection that failed while doing `what`.
    pub(crate) fn database(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let what = what.into();
        move |source| Self::Database { what, source }
    }

    /// [`Error::Io`] for `path`.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}
