//! `control-plane`: serves the API, migrates the store, issues tokens and imports plans.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use control_plane::auth::{AuthError, Role};
use control_plane::catalogue::{self, CatalogueError};
use control_plane::config::{self, ConfigError, Layer, LogFormat, ProvisionerSetting, Settings};
use control_plane::store::{Store, StoreError};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "control-plane", version, about = "Tenantry control plane: plans, tenants, seats and billing")]
struct Cli {
    /// YAML configuration file; environment variables and flags override it field by field.
    #[arg(long, global = true, value_name = "FILE", env = "TENANTRY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP API and the background workers.
    Serve(ServeArgs),
    /// Applies the database migrations.
    Migrate,
    /// Mints API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manages the plan catalogue.
    #[command(subcommand)]
    Plans(PlansCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where desired Tenants go.
    #[arg(long, value_name = "cluster|manifests:<dir>|none")]
    provisioner: Option<ProvisionerSetting>,
    /// postgres://… or sqlite:… [default: SQLite in the data directory].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// redis://… [default: in-process cache and rate limits].
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Prints a signed token on stdout, and nothing else.
    Issue(IssueArgs),
}

#[derive(Args)]
struct IssueArgs {
    /// What the token allows.
    #[arg(long, value_name = "provider-admin|tenant-admin|billing-reader")]
    role: Role,
    /// The tenant a tenant-admin token is bound to (required for tenant-admin, refused otherwise).
    #[arg(long, value_name = "SLUG")]
    tenant: Option<String>,
    /// Lifetime, e.g. 15m, 1h, 7d [default: auth.token_ttl, 1h].
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    ttl: Option<Duration>,
    /// Who the token is for [default: cli:$USER].
    #[arg(long, value_name = "NAME")]
    subject: Option<String>,
}

#[derive(Subcommand)]
enum PlansCommand {
    /// Creates or revises every plan of a YAML list; imports nothing if any plan is invalid.
    Import {
        #[arg(value_name = "FILE.yaml")]
        file: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    App(#[from] control_plane::app::Error),
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Catalogue { path: PathBuf, source: CatalogueError },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let flags = match &cli.command {
        Command::Serve(args) => Layer {
            listen: args.listen,
            provisioner: args.provisioner.clone(),
            database_url: args.database_url.clone(),
            redis_url: args.redis_url.clone(),
            ..Layer::default()
        },
        _ => Layer::default(),
    };
    let outcome = Settings::load(cli.config.as_deref(), flags).map_err(CliError::from).and_then(|settings| {
        init_logging(settings.log_format);
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CliError::Runtime)?;
        runtime.block_on(run(cli.command, settings))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> Result<(), CliError> {
    match command {
        Command::Serve(_) => {
            settings.ensure_data_dir()?;
            Ok(control_plane::app::serve(settings).await?)
        }
        Command::Migrate => {
            let store = connect(&settings).await?;
            store.migrate().await?;
            println!(
                "{} database {} is migrated to the latest schema",
                backend_name(&store),
                config::redact_url(&settings.database_url())
            );
            Ok(())
        }
        Command::Token(TokenCommand::Issue(args)) => issue_token(&settings, args),
        Command::Plans(PlansCommand::Import { file }) => import_plans(&settings, &file).await,
    }
}

fn issue_token(settings: &Settings, args: IssueArgs) -> Result<(), CliError> {
    let subject = args.subject.unwrap_or_else(|| {
        format!("cli:{}", std::env::var("USER").ok().filter(|user| !user.is_empty()).as_deref().unwrap_or("unknown"))
    });
    let ttl = args.ttl.unwrap_or(settings.auth.token_ttl);
    let token = settings.jwt_keys()?.issue(args.role, args.tenant.as_deref(), &subject, ttl)?;
    println!("{token}");
    Ok(())
}

async fn import_plans(settings: &Settings, file: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file).map_err(|source| CliError::Read { path: file.to_path_buf(), source })?;
    // Every plan is checked before the store is touched, so a bad file imports nothing.
    let plans = catalogue::parse(&text).map_err(|source| CliError::Catalogue { path: file.to_path_buf(), source })?;
    let store = connect(settings).await?;
    store.migrate().await?;
    for spec in &plans {
        let (plan, written) = store.import_plan(spec).await?;
        let outcome = match (written, plan.version) {
            (false, _) => "unchanged",
            (true, 1) => "created",
            (true, _) => "revised",
        };
        println!("{}: {outcome} (version {})", spec.name, plan.version);
    }
    Ok(())
}

async fn connect(settings: &Settings) -> Result<Store, CliError> {
    if settings.database_url.is_none() {
        settings.ensure_data_dir()?;
    }
    Ok(Store::connect(&settings.database_url()).await?)
}

fn backend_name(store: &Store) -> &'static str {
    match store.backend() {
        control_plane::store::Backend::Postgres => "PostgreSQL",
        control_plane::store::Backend::Sqlite => "SQLite",
    }
}

/// Logs go to stderr, so stdout carries only a command's output (a token, for instance).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
