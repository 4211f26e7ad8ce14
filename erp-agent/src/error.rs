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
    /// A stage of a major upgrade failed: its key (`7.0-7.2/post/<id>`), the catalogue step it
    /// ran (`update-all` for the new series' update), and why (the SQL error, the ERP's log tail).
    #[error("upgrade stage {stage} (step `{step}`) failed: {reason}")]
    MigrationStage { stage: String, step: String, reason: String },
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
            Self::MigrationStage { .. } => "migration-stage",
        }
    }
}
