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
    /// The ERP's admin command failed: which command, on which module, and its log's last lines.
    #[error("{command} failed ({status}){}:\n{log_tail}", module.as_ref().map(|m| format!(" in module {m}")).unwrap_or_default())]
    Erp { command: String, status: String, module: Option<String>, log_tail: String },
    /// What was found is not what the operation expects (names taken, a copy missing): nothing
    /// was changed, a person must look.
    #[error("{0}")]
    Conflict(String),
    /// A journal that cannot be read or does not belong to the operation asked for.
    #[error("{0}")]
    Journal(String),
    /// A migration-step file (shipped or a provider's) is malformed or conflicts with another.
    #[error("migration catalogue {origin}: {reason}")]
    Catalogue { origin: String, reason: String },
    /// No upgrade path between the two versions (downgrade, same series, gap…).
    #[error(transparent)]
    UpgradePlan(#[from] crate::catalogue::PlanError),
    /// A stream (a dump being read, an archive being written or read) failed for a reason of
    /// its own, not because of what it carried.
    #[error("{what}: {source}")]
    Stream { what: String, source: std::io::Error },
    /// A backup key that cannot be used: unparsable, or in a file others can read. Never
    /// carries the key itself.
    #[error("backup key: {0}")]
    Key(String),
    /// The backup key given does not open this archive: it was encrypted to another key.
    #[error("the backup key does not open this archive: it was encrypted to another key")]
    WrongKey,
    /// An archive's bytes are not what was written: altered, damaged, or not a backup at all.
    #[error("the archive is damaged ({part}): {detail}")]
    Corrupt { part: String, detail: String },
    /// An archive ends before its end: an interrupted upload or a cut copy.
    #[error("the archive is truncated: {0}")]
    Truncated(String),
    /// The object store (S3, GCS, Azure, a directory) failed.
    #[error("object store, {what}: {source}")]
    Store { what: String, source: object_store::Error },
    /// The backup is held and cannot be deleted until it is released.
    #[error("backup {0} is held; release it before deleting it")]
    Held(String),
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
    /// A stage of a major upgrade failed: its key (`7.0-7.2/post/<id>`), the catalogue step it
    /// ran (`update-all` for the new series' update), and why (the SQL error, the ERP's log tail).
    #[error("upgrade stage {stage} (step `{step}`) failed: {reason}")]
    MigrationStage { stage: String, step: String, reason: String },
    /// The ERP server does not serve as it should after an operation: no answer, another
    /// version, a refused login, an error reading. Never carries a password or a session.
    #[error("the ERP does not serve: {0}")]
    NotServing(String),
}

impl Error {
    /// A short, stable name of the kind of failure, for exit reports and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Invalid(_) => "invalid",
            Self::Journal(_) => "journal",
            Self::Conflict(_) => "conflict",
            Self::Erp { .. } => "erp",
            Self::Catalogue { .. } => "catalogue",
            Self::UpgradePlan(_) => "upgrade-plan",
            Self::Stream { .. } => "io",
            Self::Key(_) => "key",
            Self::WrongKey => "wrong-key",
            Self::Corrupt { .. } => "corrupt",
            Self::Truncated(_) => "truncated",
            Self::Store { .. } => "store",
            Self::Held(_) => "held",
            Self::Database { .. } => "database",
            Self::InUse { .. } => "in-use",
            Self::AlreadyExists { .. } => "already-exists",
            Self::Missing { .. } => "missing",
            Self::Tool { .. } => "tool",
            Self::StillLive(_) => "still-live",
            Self::MigrationStage { .. } => "migration-stage",
            Self::NotServing(_) => "not-serving",
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
