//! The subcommands of `tenantry-agent`: flags and environment in, one JSON document out (see
//! `main.rs` for the exit codes). Every flag can also come from the environment
//! (`TENANTRY_AGENT_…`, shown by `--help`), which is how a Kubernetes Job passes Secrets; the
//! database URL's value is never shown by `--help`, never logged and never printed. With
//! `--result-file` the document is also written to a file on one line, cut to fit a Kubernetes
//! termination message (see [`result_line`]).

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::{Args, Parser, Subcommand, ValueEnum};
use erp_agent::catalogue::{Catalogue, plan};
use erp_agent::control::ProgramControl;
use erp_agent::database::{DatabaseName, DatabaseServer, PgTools, ServerAddress};
use erp_agent::erp::{ErpCommand, ModuleUpdate, Profile};
use erp_agent::filestore::FileStore;
use erp_agent::journal::{FileJournal, JournalStore};
use erp_agent::key::{BackupKey, BackupRecipient};
use erp_agent::manifest::{BackupId, BackupKind, ErpInfo};
use erp_agent::migrate::{ErpConsole, SeriesErp};
use erp_agent::ops::{self, Environment, backup, export, restore, test_copy, update, upgrade};
use erp_agent::report::{Outcome, Report};
use erp_agent::retention::{BackupEntry, RetentionPolicy};
use erp_agent::run_claim::{self, RunClaim};
use erp_agent::store::{BackupStore, StoreOptions};
use erp_agent::{Error, Result, fingerprint, neutralize};
use serde::Serialize;
use tenantry_contract::version::{ErpSeries, ErpVersion};

pub const EXIT_DONE: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 3;

#[derive(Debug, Parser)]
#[command(name = "tenantry-agent", version, about = "Tenantry's ERP operations engine")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Also write the JSON document to this file, on one line (e.g. `/dev/termination-log`); a
    /// document longer than 4000 bytes is cut to its top-level values that are neither arrays
    /// nor objects, and its error, with `"truncated": true`.
    #[arg(long, global = true, env = "TENANTRY_AGENT_RESULT_FILE")]
    result_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Back the environment up (database and file store) into the backup store, encrypted.
    Backup {
        #[command(flatten)]
        environment: EnvironmentArgs,
        #[command(flatten)]
        store: StoreArgs,
        /// The tenant's public backup key (`age1…`).
        #[arg(long, env = "TENANTRY_AGENT_RECIPIENT")]
        recipient: String,
        /// The tenant's secret backup key file (0600): when given, the backup is read back in
        /// full and checked after writing.
        #[arg(long, env = "TENANTRY_AGENT_KEY_FILE")]
        key_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Kind::Manual)]
        kind: Kind,
        /// With `--kind before-operation`: the operation the backup is taken for.
        #[arg(long, required_if_eq("kind", "before-operation"))]
        for_operation: Option<String>,
        /// The backup's id (`[A-Za-z0-9._-]`; default: made from the time), taken by a new
        /// journal only. Run again with a new journal and the same id, the backup is returned
        /// if it is stored already.
        #[arg(long, env = "TENANTRY_AGENT_BACKUP_ID")]
        backup_id: Option<String>,
        #[command(flatten)]
        journal: JournalArgs,
    },
    /// Restore a backup into the environment, never in place: loaded into a new database,
    /// checked, then cut over; the replaced database is kept until released.
    Restore {
        #[command(flatten)]
        environment: EnvironmentArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The backup's id.
        #[arg(long)]
        backup: String,
        /// The environment the backup was taken of (default: this one).
        #[arg(long)]
        from_environment: Option<String>,
        #[command(flatten)]
        operation: OperationArgs,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Update or activate modules on a copy of the environment's database, cut over only on
    /// success; a before-operation backup first when a store is given.
    Update {
        #[command(flatten)]
        environment: EnvironmentArgs,
        #[command(flatten)]
        modules: ModuleArgs,
        #[command(flatten)]
        erp: ErpArgs,
        /// Where the before-operation backup goes (none taken without it).
        #[arg(long, env = "TENANTRY_AGENT_STORE", requires = "recipient")]
        store: Option<String>,
        #[arg(long = "store-option", value_parser = key_value)]
        store_options: Vec<(String, String)>,
        /// The tenant's public backup key (`age1…`), for the before-operation backup.
        #[arg(long, env = "TENANTRY_AGENT_RECIPIENT")]
        recipient: Option<String>,
        #[command(flatten)]
        operation: OperationArgs,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Make the test environment a neutralized copy of production (read live, or from one of
    /// its backups), verified before it replaces the test database.
    TestCopy {
        /// Production: the environment copied from (never stopped, never written).
        #[command(flatten)]
        environment: EnvironmentArgs,
        /// The test environment's database.
        #[arg(long, env = "TENANTRY_AGENT_TEST_DATABASE")]
        test_database: String,
        /// The test environment's attachment store (default: production's).
        #[arg(long, env = "TENANTRY_AGENT_TEST_FILESTORE")]
        test_filestore: Option<PathBuf>,
        /// Copy from this backup of production instead of production as it is now.
        #[arg(long, requires_all = ["store", "key_file"])]
        from_backup: Option<String>,
        #[arg(long, env = "TENANTRY_AGENT_STORE")]
        store: Option<String>,
        #[arg(long = "store-option", value_parser = key_value)]
        store_options: Vec<(String, String)>,
        #[arg(long, env = "TENANTRY_AGENT_KEY_FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        operation: OperationArgs,
        /// How the test environment's ERP is stopped and started.
        #[command(flatten)]
        control: ControlArgs,
    },
    /// A customer-downloadable export of a backup in open formats: `database.sql` (plain SQL,
    /// loads with `psql` into any empty database), `filestore.zip`, `manifest.json`; decrypted
    /// and streamed to the destination.
    Export {
        #[command(flatten)]
        target: BackupTarget,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        backup: String,
        /// `file:///dir` or `s3://bucket/prefix` (S3 options: `--store-option`).
        #[arg(long)]
        destination: String,
        /// Where `pg_restore` is (default: the `PATH`).
        #[arg(long, env = "TENANTRY_AGENT_PG_BIN_DIR")]
        pg_bin_dir: Option<PathBuf>,
    },
    /// Upgrade the environment to a newer major version by the seven steps: back up, stop the
    /// old server, pre-migration steps, the new series' update-all, post-migration steps (every
    /// intermediate series in turn), start the new version and test it; any failure returns to
    /// the old version and the backed-up data.
    Upgrade {
        #[command(flatten)]
        environment: EnvironmentArgs,
        /// The version to upgrade to.
        #[arg(long)]
        to: String,
        /// Where each series' programs are: `SERIES=DIR`, DIR holding `trytond-admin` and
        /// `trytond-console` (repeatable; every series on the way is needed).
        #[arg(long = "series-bin", value_parser = key_value, required = true)]
        series_bins: Vec<(String, String)>,
        /// The ERP's configuration file (the same for every series).
        #[arg(long, env = "TENANTRY_AGENT_ERP_CONFIG")]
        erp_config: PathBuf,
        #[command(flatten)]
        catalogue: CatalogueArgs,
        /// Where the upgrade's first step, the backup, goes.
        #[command(flatten)]
        store: StoreArgs,
        /// The tenant's public backup key (`age1…`).
        #[arg(long, env = "TENANTRY_AGENT_RECIPIENT")]
        recipient: String,
        /// The new server's address once started (`http://host:port`), to log in and test it.
        #[arg(long)]
        serving_url: String,
        #[arg(long, default_value = "admin")]
        serving_login: String,
        /// A file holding that login's password.
        #[arg(long, env = "TENANTRY_AGENT_SERVING_PASSWORD_FILE")]
        serving_password_file: PathBuf,
        /// Also run the ERP's validation of every record on the upgraded copy.
        #[arg(long)]
        validate: bool,
        #[command(flatten)]
        operation: OperationArgs,
        /// How the old version's ERP is stopped and started.
        #[command(flatten)]
        control: ControlArgs,
        /// A program that stops the new version's ERP.
        #[arg(long, env = "TENANTRY_AGENT_STOP_NEW_PROGRAM", required_unless_present = "from_backup")]
        stop_new_program: Option<PathBuf>,
        /// A program that starts the new version's ERP and returns once it serves.
        #[arg(long, env = "TENANTRY_AGENT_START_NEW_PROGRAM", required_unless_present = "from_backup")]
        start_new_program: Option<PathBuf>,
        /// Restore this backup, taken on an older series, upgrading it on the way to the version
        /// the environment runs (`--to` is that version; the ERP's stop and start programs are the
        /// environment's).
        #[arg(long, requires = "key_file", conflicts_with_all = ["stop_new_program", "start_new_program"])]
        from_backup: Option<String>,
        /// The environment the backup was taken of (default: this one).
        #[arg(long, requires = "from_backup")]
        from_environment: Option<String>,
        /// The tenant's secret backup key file, to read the backup.
        #[arg(long, env = "TENANTRY_AGENT_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
    /// The environment's complete backups, oldest first.
    List {
        #[command(flatten)]
        target: BackupTarget,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Read a backup back in full: authenticity, every part's size and SHA-256, its manifest.
    Verify {
        #[command(flatten)]
        backup: OneBackup,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Delete one backup (refused while it is held).
    Delete {
        #[command(flatten)]
        backup: OneBackup,
    },
    /// Mark a backup as held: retention and `delete` never remove it.
    Hold {
        #[command(flatten)]
        backup: OneBackup,
    },
    /// Take a backup's hold off.
    Unhold {
        #[command(flatten)]
        backup: OneBackup,
    },
    /// Apply a retention policy to the environment's backups: what it keeps (and why) and what
    /// it deletes (nothing with `--dry-run`).
    Prune {
        #[command(flatten)]
        target: BackupTarget,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop a database (and its file-store folder) an operation set aside, e.g. the one a
    /// restore replaced. Nothing else can be released.
    Release {
        #[command(flatten)]
        environment: EnvironmentArgs,
        /// The set-aside database's name, as the operation's report gives it.
        #[arg(long)]
        kept: String,
    },
    /// Check that the environment's database is neutralized (no cron active, no integration
    /// credential left, marked): exit 1 naming everything still live.
    CheckNeutralized {
        #[command(flatten)]
        environment: EnvironmentArgs,
    },
    /// The upgrade plan from the environment's version to another: every hop's pre-migration
    /// steps, update-all and post-migration steps, from the shipped catalogue and the
    /// provider's. Changes nothing.
    Plan {
        #[command(flatten)]
        environment: EnvironmentArgs,
        /// The version to upgrade to.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        catalogue: CatalogueArgs,
    },
}

/// The tenant environment an operation works on.
#[derive(Debug, Args)]
struct EnvironmentArgs {
    #[arg(long, env = "TENANTRY_AGENT_TENANT")]
    tenant: String,
    /// `production` or `test`.
    #[arg(long, env = "TENANTRY_AGENT_ENVIRONMENT", default_value = "production")]
    environment: String,
    /// The database the ERP serves.
    #[arg(long, env = "TENANTRY_AGENT_DATABASE")]
    database: String,
    /// `postgres://user:password@host:port/`. Prefer `--database-url-file` (a mounted Secret).
    #[arg(long, env = "TENANTRY_AGENT_DATABASE_URL", hide_env_values = true, conflicts_with = "database_url_file")]
    database_url: Option<String>,
    /// A file holding the database URL.
    #[arg(long, env = "TENANTRY_AGENT_DATABASE_URL_FILE")]
    database_url_file: Option<PathBuf>,
    /// Where `pg_dump`, `pg_restore` and `psql` are (default: the `PATH`).
    #[arg(long, env = "TENANTRY_AGENT_PG_BIN_DIR")]
    pg_bin_dir: Option<PathBuf>,
    /// The ERP's attachment store (the directory holding one folder per database).
    #[arg(long, env = "TENANTRY_AGENT_FILESTORE")]
    filestore: PathBuf,
    #[arg(long, env = "TENANTRY_AGENT_PROFILE", default_value = "tryton")]
    profile: String,
    /// The ERP version the environment runs (e.g. 7.0.59).
    #[arg(long, env = "TENANTRY_AGENT_ERP_VERSION")]
    erp_version: String,
}

/// One backup of an environment, in a store.
#[derive(Debug, Args)]
struct OneBackup {
    #[command(flatten)]
    target: BackupTarget,
    #[command(flatten)]
    store: StoreArgs,
    /// The backup's id.
    #[arg(long)]
    backup: String,
}

impl OneBackup {
    /// The store and the backup's summary (it must exist).
    async fn open(self) -> Result<(BackupStore, erp_agent::manifest::Summary)> {
        let store = self.store.open()?;
        let id = BackupId::parse(&self.backup)?;
        let summary = store.existing(&self.target.tenant, &self.target.environment, &id).await?;
        Ok((store, summary))
    }
}

/// Which environment's backups.
#[derive(Debug, Args)]
struct BackupTarget {
    #[arg(long, env = "TENANTRY_AGENT_TENANT")]
    tenant: String,
    #[arg(long, env = "TENANTRY_AGENT_ENVIRONMENT", default_value = "production")]
    environment: String,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// `file:///dir`, `s3://bucket/prefix`, `gs://…`, `az://…`; credentials from the usual
    /// environment variables of each (`AWS_ACCESS_KEY_ID`, …).
    #[arg(long, env = "TENANTRY_AGENT_STORE")]
    store: String,
    /// An object-store option (`key=value`, e.g. `aws_endpoint=http://…`), repeatable.
    #[arg(long = "store-option", value_parser = key_value)]
    store_options: Vec<(String, String)>,
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// The tenant's secret backup key file (`AGE-SECRET-KEY-1…`, mode 0600 or stricter, or
    /// root's and readable by its group only).
    #[arg(long, env = "TENANTRY_AGENT_KEY_FILE")]
    key_file: PathBuf,
}

#[derive(Debug, Args)]
struct JournalArgs {
    /// The operation's journal file: run again with the same file to resume.
    #[arg(long, env = "TENANTRY_AGENT_JOURNAL")]
    journal: PathBuf,
}

#[derive(Debug, Args)]
struct OperationArgs {
    /// The caller's id of this operation (1–32 letters, digits or `-`): names its work copy.
    #[arg(long, env = "TENANTRY_AGENT_OPERATION")]
    operation: String,
    #[command(flatten)]
    journal: JournalArgs,
}

/// How the agent has the ERP stopped and started around a cut-over.
#[derive(Debug, Args)]
struct ControlArgs {
    /// A program that stops the environment's ERP and returns once nothing of it is connected.
    #[arg(long, env = "TENANTRY_AGENT_STOP_PROGRAM", requires = "start_program", conflicts_with = "erp_stopped")]
    stop_program: Option<PathBuf>,
    /// A program that starts the ERP and returns once it serves.
    #[arg(long, env = "TENANTRY_AGENT_START_PROGRAM", requires = "stop_program")]
    start_program: Option<PathBuf>,
    /// The caller has stopped the ERP and starts it afterwards.
    #[arg(long, env = "TENANTRY_AGENT_ERP_STOPPED")]
    erp_stopped: bool,
}

/// Which modules an update works on: exactly one of the three.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ModuleArgs {
    /// Update every activated module.
    #[arg(long)]
    all: bool,
    /// Update these activated modules (comma-separated).
    #[arg(long, value_delimiter = ',')]
    modules: Vec<String>,
    /// Activate these modules, with the modules they depend on (comma-separated).
    #[arg(long, value_delimiter = ',')]
    activate: Vec<String>,
}

/// The ERP's admin command. Its credentials (admin password file, database URI) reach it
/// through the agent's environment (`TRYTONPASSFILE`, `TRYTOND_DATABASE__URI`…), never flags.
#[derive(Debug, Args)]
struct ErpArgs {
    /// The admin program (`trytond-admin`, or `odoo` for the odoo profile).
    #[arg(long, env = "TENANTRY_AGENT_ERP_ADMIN")]
    erp_admin: PathBuf,
    /// The ERP's configuration file.
    #[arg(long, env = "TENANTRY_AGENT_ERP_CONFIG")]
    erp_config: PathBuf,
}

#[derive(Debug, Args)]
struct PolicyArgs {
    #[arg(long, default_value_t = 0)]
    daily: u32,
    #[arg(long, default_value_t = 0)]
    weekly: u32,
    #[arg(long, default_value_t = 0)]
    monthly: u32,
    /// Keep every backup younger than this many days.
    #[arg(long, default_value_t = 0)]
    keep_days: u32,
    /// Keep before-operation backups younger than this many days.
    #[arg(long, default_value_t = 0)]
    before_operation_days: u32,
}

#[derive(Debug, Args)]
struct CatalogueArgs {
    /// The provider's own migration steps (`*.toml`), merged after the shipped catalogue.
    #[arg(long, env = "TENANTRY_AGENT_CATALOGUE_DIR")]
    catalogue_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Scheduled,
    Manual,
    BeforeOperation,
}

fn key_value(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

/// Runs the command; returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let Cli { command, result_file } = cli;
    let result_file = result_file.as_deref();
    match dispatch(command).await {
        Ok(Done::Value(value)) => {
            emit(&value, result_file);
            EXIT_DONE
        }
        Ok(Done::Report(report)) => {
            emit(&report, result_file);
            match report.outcome {
                Outcome::Succeeded => EXIT_DONE,
                Outcome::RolledBack { .. } => EXIT_FAILED,
            }
        }
        Ok(Done::Interrupted { error }) => {
            emit(&error_document(&error), result_file);
            EXIT_INTERRUPTED
        }
        Err(error) => {
            emit(&error_document(&error), result_file);
            match error {
                Error::Invalid(_) | Error::Key(_) => EXIT_INVALID,
                _ => EXIT_FAILED,
            }
        }
    }
}

impl Cli {
    /// Reports an error that stopped the agent before the command ran, as [`run`] reports one.
    pub fn fail(&self, error: &Error) {
        emit(&error_document(error), self.result_file.as_deref());
    }
}

enum Done {
    Value(serde_json::Value),
    Report(Box<Report>),
    /// A journaled operation stopped midway: its journal holds an unfinished operation.
    Interrupted {
        error: Error,
    },
}

/// Prints the document on standard output and, with `--result-file`, writes it there on one
/// line. A result file that cannot be written is a warning: the exit code stays the command's.
fn emit(document: &impl Serialize, result_file: Option<&Path>) {
    println!("{}", serde_json::to_string_pretty(document).expect("serializable"));
    if let Some(path) = result_file {
        // Written in place, not beside and renamed: `/dev/termination-log` is a file Kubernetes
        // mounts into the container.
        if let Err(error) = std::fs::write(path, result_line(document) + "\n") {
            tracing::warn!(path = %path.display(), "writing the result file: {error}");
        }
    }
}

/// A Kubernetes termination message keeps at most 4096 bytes; the result file's line stays under.
const RESULT_LIMIT: usize = 4000;

/// The document as the result file's line: compact JSON, at most [`RESULT_LIMIT`] bytes. Too
/// long, it keeps only the top-level members whose values are neither arrays nor objects, and
/// the `error` (what the caller must not lose), with `"truncated": true`; still too long, only
/// `"truncated": true` and the error, its message (or the error itself, as text) cut to fit.
fn result_line(document: &impl Serialize) -> String {
    let line = serde_json::to_string(document).expect("serializable");
    if line.len() <= RESULT_LIMIT {
        return line;
    }
    let document = serde_json::to_value(document).expect("serializable");
    let mut kept = serde_json::Map::new();
    if let serde_json::Value::Object(members) = &document {
        for (name, value) in members {
            if !(value.is_array() || value.is_object()) || name == "error" {
                kept.insert(name.clone(), value.clone());
            }
        }
    }
    kept.insert("truncated".into(), true.into());
    let line = serde_json::Value::Object(kept).to_string();
    if line.len() <= RESULT_LIMIT {
        return line;
    }
    let truncated = serde_json::json!({"truncated": true}).to_string();
    let Some(error) = document.get("error") else { return truncated };
    // The text to cut: the error's message, or the error itself as text.
    let message = error.get("message").and_then(serde_json::Value::as_str);
    let text = match (message, error) {
        (Some(message), _) => message.to_string(),
        (None, serde_json::Value::String(text)) => text.clone(),
        (None, other) => other.to_string(),
    };
    let with = |piece: String| {
        let mut error = error.clone();
        match error.get_mut("message") {
            Some(message) if message.is_string() => *message = piece.into(),
            _ => error = piece.into(),
        }
        serde_json::json!({"truncated": true, "error": error}).to_string()
    };
    let whole = with(text.clone());
    if whole.len() <= RESULT_LIMIT {
        return whole;
    }
    // The longest start of the text that fits, marked as cut (no more than the limit's bytes
    // of text can fit).
    let cut = |end: usize| with(format!("{}…", &text[..end]));
    let ends: Vec<usize> = text.char_indices().map(|(at, _)| at).take_while(|&at| at <= RESULT_LIMIT).collect();
    match ends.partition_point(|&end| cut(end).len() <= RESULT_LIMIT) {
        0 => truncated,
        fitting => cut(ends[fitting - 1]),
    }
}

/// The error as the JSON document a Job's caller reads: its kind and its message (which never
/// holds a secret: see `erp_agent::Error`). Logged too.
fn error_document(error: &Error) -> serde_json::Value {
    tracing::error!(kind = error.kind(), "{error}");
    serde_json::json!({"error": {"kind": error.kind(), "message": error.to_string()}})
}

fn value(value: impl Serialize) -> Result<Done> {
    Ok(Done::Value(serde_json::to_value(value).expect("serializable")))
}

/// The operation's journal, claimed for this run: no other agent runs it meanwhile and nothing
/// an earlier, killed run started is still running (see [`run_claim`]).
fn claimed(path: PathBuf) -> Result<(FileJournal, RunClaim)> {
    let claim = run_claim::claim(&path)?;
    Ok((FileJournal::new(path), claim))
}

async fn dispatch(command: Command) -> Result<Done> {
    match command {
        Command::Backup { environment, store, recipient, key_file, kind, for_operation, backup_id, journal } => {
            let backup_id = backup_id.as_deref().map(BackupId::parse).transpose()?;
            let environment = environment.open()?;
            let store = store.open()?;
            let recipient = BackupRecipient::parse(&recipient)?;
            let key = key_file.as_deref().map(BackupKey::load).transpose()?;
            let kind = match (kind, for_operation) {
                (Kind::Scheduled, None) => BackupKind::Scheduled,
                (Kind::Manual, None) => BackupKind::Manual,
                (Kind::BeforeOperation, Some(operation)) => BackupKind::BeforeOperation { operation },
                _ => return Err(Error::Invalid("--for-operation goes with --kind before-operation only".into())),
            };
            let (journal, _claim) = claimed(journal.journal)?;
            let result = backup::backup_with_id(
                &environment,
                &store,
                &recipient,
                key.as_ref(),
                kind,
                backup_id.as_ref(),
                &journal,
            )
            .await;
            journaled(&journal, result)
        }
        Command::Restore { environment, store, key, backup, from_environment, operation, control } => {
            let environment = environment.open()?;
            let store = store.open()?;
            let key = BackupKey::load(&key.key_file)?;
            let backup = BackupId::parse(&backup)?;
            let from = from_environment.unwrap_or_else(|| environment.name.clone());
            let control = control.open()?;
            let (journal, _claim) = claimed(operation.journal.journal)?;
            let result =
                restore::restore(&environment, &store, &key, &from, &backup, &operation.operation, &control, &journal)
                    .await;
            report(&journal, result)
        }
        Command::Update { environment, modules, erp, store, store_options, recipient, operation, control } => {
            let environment = environment.open()?;
            let command = erp.command(&environment.erp.profile)?;
            let store = store.map(|store| StoreArgs { store, store_options }.open()).transpose()?;
            let recipient = recipient.as_deref().map(BackupRecipient::parse).transpose()?;
            let backup = store
                .as_ref()
                .zip(recipient.as_ref())
                .map(|(store, recipient)| update::BeforeOperationBackup { store, recipient });
            let control = control.open()?;
            let (journal, _claim) = claimed(operation.journal.journal)?;
            let result = update::update(
                &environment,
                &modules.update(),
                &command,
                backup,
                &operation.operation,
                &control,
                &journal,
            )
            .await;
            report(&journal, result)
        }
        Command::TestCopy {
            environment,
            test_database,
            test_filestore,
            from_backup,
            store,
            store_options,
            key_file,
            operation,
            control,
        } => {
            let production = environment.open()?;
            let test = Environment {
                name: "test".to_string(),
                database: DatabaseName::new(test_database)?,
                filestore: test_filestore.map_or_else(|| production.filestore.clone(), FileStore::new),
                ..production.clone()
            };
            let store = store.map(|store| StoreArgs { store, store_options }.open()).transpose()?;
            let key = key_file.as_deref().map(BackupKey::load).transpose()?;
            let backup_id = from_backup.as_deref().map(BackupId::parse).transpose()?;
            let source = match (&store, &key, &backup_id) {
                (Some(store), Some(key), Some(backup_id)) => test_copy::CopySource::Backup { store, key, backup_id },
                _ => test_copy::CopySource::Live,
            };
            let control = control.open()?;
            let (journal, _claim) = claimed(operation.journal.journal)?;
            let result =
                test_copy::test_copy(&production, &test, source, &operation.operation, &control, &journal).await;
            report(&journal, result)
        }
        Command::Export { target, store, key, backup, destination, pg_bin_dir } => {
            let options = StoreOptions { config: store.store_options.clone(), ..StoreOptions::default() };
            let store = store.open()?;
            let key = BackupKey::load(&key.key_file)?;
            let destination = export::ExportDestination::from_url(&destination, &options)?;
            let tools = pg_bin_dir.map_or_else(PgTools::on_path, PgTools::in_dir);
            let id = BackupId::parse(&backup)?;
            value(export::export(&store, &key, &target.tenant, &target.environment, &id, &tools, &destination).await?)
        }
        Command::Upgrade {
            environment,
            to,
            series_bins,
            erp_config,
            catalogue,
            store,
            recipient,
            serving_url,
            serving_login,
            serving_password_file,
            validate,
            operation,
            control,
            stop_new_program,
            start_new_program,
            from_backup,
            from_environment,
            key_file,
        } => {
            let environment = environment.open()?;
            let catalogue = catalogue.open()?;
            let version = to.parse::<ErpVersion>().map_err(|e| Error::Invalid(format!("--to: {e}")))?;
            let mut bins = std::collections::BTreeMap::new();
            for (series, dir) in series_bins {
                let series: ErpSeries = series
                    .parse()
                    .map_err(|_| Error::Invalid(format!("--series-bin: `{series}` is not a series A.B")))?;
                bins.insert(series, PathBuf::from(dir));
            }
            let erp_for = |series: ErpSeries| -> Result<SeriesErp> {
                let dir = bins
                    .get(&series)
                    .ok_or_else(|| Error::Invalid(format!("no --series-bin for {series}, a series on the way")))?;
                let admin = dir.join("trytond-admin");
                Ok(SeriesErp {
                    console: ErpConsole::beside_admin(&admin, &erp_config),
                    admin: ErpCommand::new(Profile::Tryton, admin, &erp_config),
                })
            };
            let store = store.open()?;
            let recipient = BackupRecipient::parse(&recipient)?;
            let target = upgrade::Target {
                version,
                erp_for: &erp_for,
                serving: upgrade::ServingCheck {
                    url: serving_url,
                    login: serving_login,
                    password_file: serving_password_file,
                },
                validate,
            };
            let backup = upgrade::BeforeOperationBackup { store: &store, recipient: &recipient };
            let old = control.open()?;
            let (journal, _claim) = claimed(operation.journal.journal)?;
            if let Some(backup_id) = from_backup {
                let key = BackupKey::load(key_file.as_deref().expect("clap requires --key-file"))?;
                let from = from_environment.unwrap_or_else(|| environment.name.clone());
                let result = upgrade::restore_older(
                    &environment,
                    &catalogue,
                    target,
                    backup,
                    &store,
                    &key,
                    &from,
                    &BackupId::parse(&backup_id)?,
                    &operation.operation,
                    &old,
                    &journal,
                )
                .await;
                return report(&journal, result);
            }
            let (Some(stop), Some(start)) = (stop_new_program, start_new_program) else {
                return Err(Error::Invalid("--stop-new-program and --start-new-program are needed".into()));
            };
            let new = ProgramControl::Programs { stop, start };
            let result =
                upgrade::upgrade(&environment, &catalogue, target, backup, &operation.operation, &old, &new, &journal)
                    .await;
            report(&journal, result)
        }
        Command::List { target, store } => value(store.open()?.list(&target.tenant, &target.environment).await?),
        Command::Verify { backup, key } => {
            let (store, summary) = backup.open().await?;
            let manifest = store.verify(&summary, &BackupKey::load(&key.key_file)?).await?;
            value(serde_json::json!({"verified": true, "summary": summary, "manifest": manifest}))
        }
        Command::Delete { backup } => {
            let (store, summary) = backup.open().await?;
            store.delete(&summary).await?;
            value(serde_json::json!({"deleted": summary.backup_id}))
        }
        Command::Hold { backup } => {
            let (store, summary) = backup.open().await?;
            value(store.hold(&summary).await?)
        }
        Command::Unhold { backup } => {
            let (store, summary) = backup.open().await?;
            value(store.release(&summary).await?)
        }
        Command::Prune { target, store, policy, dry_run } => {
            let store = store.open()?;
            prune(&store, &target, &policy.policy(), dry_run).await
        }
        Command::Release { environment, kept } => {
            let environment = environment.open()?;
            ops::release(&environment, &kept).await?;
            value(serde_json::json!({"released": kept}))
        }
        Command::CheckNeutralized { environment } => {
            let environment = environment.open()?;
            let mut connection = environment.server.connect(environment.database.as_str()).await?;
            neutralize::verify(&mut connection).await?;
            value(serde_json::json!({"neutralized": true, "database": environment.database.as_str()}))
        }
        Command::Plan { environment, to, catalogue } => {
            let environment = environment.open()?;
            let catalogue = catalogue.open()?;
            let parse = |text: &str| text.parse::<ErpVersion>().map_err(|e| Error::Invalid(e.to_string()));
            let mut connection = environment.server.connect(environment.database.as_str()).await?;
            let modules = fingerprint::read(&mut connection).await?.modules;
            value(plan(&environment.erp.profile, parse(&environment.erp.version)?, parse(&to)?, &modules, &catalogue)?)
        }
    }
}

/// A journaled operation's result: an error with the journal left unfinished is an
/// interruption (rerun to resume); any other error changed nothing.
fn journaled<T: Serialize>(journal: &dyn JournalStore, result: Result<T>) -> Result<Done> {
    match result {
        Ok(done) => value(done),
        Err(error) => match journal.load() {
            Ok(Some(record)) if !record.is_finished() => Ok(Done::Interrupted { error }),
            _ => Err(error),
        },
    }
}

fn report(journal: &dyn JournalStore, result: Result<Report>) -> Result<Done> {
    match result {
        Ok(report) => Ok(Done::Report(Box::new(report))),
        Err(error) => journaled::<()>(journal, Err(error)),
    }
}

async fn prune(store: &BackupStore, target: &BackupTarget, policy: &RetentionPolicy, dry_run: bool) -> Result<Done> {
    let backups = store.list(&target.tenant, &target.environment).await?;
    let entries: Vec<BackupEntry> = backups.iter().map(|summary| summary.retention_entry()).collect();
    let decision = policy.apply(&entries, Utc::now()).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut deleted = Vec::new();
    if !dry_run {
        for entry in &decision.delete {
            let summary = backups.iter().find(|s| s.backup_id.as_str() == entry.id).expect("listed above");
            store.delete(summary).await?;
            deleted.push(entry.id.clone());
        }
    }
    value(serde_json::json!({"dry_run": dry_run, "keep": decision.keep, "delete": decision.delete, "deleted": deleted}))
}

impl EnvironmentArgs {
    fn open(self) -> Result<Environment> {
        let url = match (self.database_url, self.database_url_file) {
            (Some(url), None) => url,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map_err(|source| Error::Io { what: "reading the database URL", path, source })?
                .trim()
                .to_string(),
            _ => return Err(Error::Invalid("give the database URL: --database-url or --database-url-file".into())),
        };
        self.erp_version.parse::<ErpVersion>().map_err(|e| Error::Invalid(format!("--erp-version: {e}")))?;
        let tools = self.pg_bin_dir.map_or_else(PgTools::on_path, PgTools::in_dir);
        Ok(Environment {
            tenant: self.tenant,
            name: self.environment,
            database: DatabaseName::new(self.database)?,
            server: DatabaseServer::new(ServerAddress::from_url(&url)?, tools),
            filestore: FileStore::new(self.filestore),
            erp: ErpInfo { profile: self.profile, version: self.erp_version },
        })
    }
}

impl StoreArgs {
    fn open(self) -> Result<BackupStore> {
        BackupStore::from_url(&self.store, StoreOptions { config: self.store_options, ..StoreOptions::default() })
    }
}

impl ControlArgs {
    fn open(self) -> Result<ProgramControl> {
        match (self.stop_program, self.start_program, self.erp_stopped) {
            (Some(stop), Some(start), false) => Ok(ProgramControl::Programs { stop, start }),
            (None, None, true) => Ok(ProgramControl::StoppedByCaller),
            _ => Err(Error::Invalid(
                "say how the ERP is stopped and started: --stop-program and --start-program, or --erp-stopped".into(),
            )),
        }
    }
}

impl ModuleArgs {
    fn update(self) -> ModuleUpdate {
        if self.all {
            ModuleUpdate::All
        } else if !self.activate.is_empty() {
            ModuleUpdate::Activate(self.activate)
        } else {
            ModuleUpdate::Update(self.modules)
        }
    }
}

impl ErpArgs {
    fn command(self, profile: &str) -> Result<ErpCommand> {
        let profile = match profile {
            "tryton" => Profile::Tryton,
            "odoo" => Profile::Odoo,
            other => return Err(Error::Invalid(format!("no admin command is known for the ERP profile `{other}`"))),
        };
        Ok(ErpCommand::new(profile, self.erp_admin, self.erp_config))
    }
}

impl PolicyArgs {
    fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
            keep_all_days: self.keep_days,
            before_operation_days: self.before_operation_days,
            ..RetentionPolicy::default()
        }
    }
}

impl CatalogueArgs {
    fn open(self) -> Result<Catalogue> {
        match self.catalogue_dir {
            Some(dir) => Catalogue::shipped_with_provider_dir(&dir),
            None => Catalogue::shipped(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use serde_json::{Value, json};

    fn line(document: &Value) -> Value {
        let line = result_line(document);
        assert!(line.len() <= RESULT_LIMIT, "{} bytes", line.len());
        assert!(!line.contains('\n'), "{line}");
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn the_result_line_is_the_compact_document_when_it_fits() {
        let document = json!({"backup_id": "b-1", "archive": {"bytes": 10}, "held": false, "steps": [1, 2]});
        assert_eq!(result_line(&document), serde_json::to_string(&document).unwrap());
        assert_eq!(line(&document), document);
        let list = json!([{"backup_id": "b-1"}]);
        assert_eq!(line(&list), list);
    }

    #[test]
    fn a_long_document_keeps_its_top_level_scalars_and_says_it_was_truncated() {
        let steps: Vec<Value> = (0..200).map(|n| json!({"step": format!("step-{n}"), "duration_ms": n})).collect();
        let report = json!({
            "operation": "op-1", "kind": "upgrade", "outcome": "rolled-back", "step": "post-migration",
            "rehearsal": false, "kept": null, "steps": steps, "fingerprint": {"party_party": {"before": 1}},
        });
        assert!(serde_json::to_string(&report).unwrap().len() > RESULT_LIMIT);
        assert_eq!(
            line(&report),
            json!({"operation": "op-1", "kind": "upgrade", "outcome": "rolled-back", "step": "post-migration",
                   "rehearsal": false, "kept": null, "truncated": true})
        );

        // Not an object at all (the backups `list` gives): nothing but the mark.
        let list = Value::Array((0..200).map(|n| json!({"backup_id": format!("backup-{n}")})).collect());
        assert_eq!(line(&list), json!({"truncated": true}));

        // Scalars too long themselves: only the mark.
        let long = json!({"outcome": "rolled-back", "reason": "x".repeat(5000), "steps": []});
        assert_eq!(line(&long), json!({"truncated": true}));
    }

    #[test]
    fn a_long_error_keeps_its_kind_and_the_start_of_its_message() {
        let short = json!({"error": {"kind": "invalid", "message": "no such backup"}});
        assert_eq!(line(&short), short);

        // Quotes and multi-byte characters take more room in JSON than in the text.
        let message = format!("pg_restore failed: {}", "« \"ligne\" »\n".repeat(1000));
        let error = json!({"error": {"kind": "database", "message": message}, "steps": [1]});
        let cut = line(&error);
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["error"]["kind"], "database");
        let kept = cut["error"]["message"].as_str().unwrap();
        assert!(kept.ends_with('…') && kept.len() > 3000, "{kept}");
        assert!(message.starts_with(kept.trim_end_matches('…')));
        assert_eq!(cut.as_object().unwrap().len(), 2, "{cut}");

        // An error given as text, or as something else, is cut as text.
        let text = line(&json!({"error": "e".repeat(9000)}));
        assert!(text["error"].as_str().unwrap().starts_with("eee") && text["truncated"] == true);
        let odd = line(&json!({"error": {"codes": vec![12345; 2000]}}));
        assert!(odd["error"].as_str().unwrap().starts_with("{\"codes\":[12345,"), "{odd}");
        // Nothing of the error fits: only the mark.
        assert_eq!(line(&json!({"error": {"kind": "k".repeat(5000), "message": "m"}})), json!({"truncated": true}));
    }

    #[test]
    fn the_result_file_and_the_backup_id_are_options_of_every_subcommand_and_the_backup() {
        Cli::command().debug_assert();
        let list = Cli::try_parse_from([
            "tenantry-agent",
            "list",
            "--tenant",
            "acme",
            "--store",
            "file:///backups",
            "--result-file",
            "/dev/termination-log",
        ])
        .unwrap();
        assert_eq!(list.result_file.as_deref(), Some(Path::new("/dev/termination-log")));
        let backup = Cli::try_parse_from([
            "tenantry-agent",
            "--result-file",
            "result.json",
            "backup",
            "--tenant",
            "acme",
            "--database",
            "acme",
            "--filestore",
            "/data",
            "--erp-version",
            "7.0.1",
            "--store",
            "file:///backups",
            "--recipient",
            "age1x",
            "--journal",
            "j.json",
            "--backup-id",
            "b-42",
        ])
        .unwrap();
        assert_eq!(backup.result_file.as_deref(), Some(Path::new("result.json")));
        assert!(matches!(backup.command, Command::Backup { backup_id: Some(ref id), .. } if id == "b-42"));
    }
}
