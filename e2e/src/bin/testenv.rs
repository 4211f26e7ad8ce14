//! `testenv`: the local environment from the command line.
//!
//! - `testenv install` installs and builds what is missing (Debian packages, Kubernetes
//!   v1.20.2, Tryton virtualenvs), then exits.
//! - `testenv up` starts the environment, prints the exports to use it, and keeps it running
//!   until Ctrl-C.
//! - `testenv exec -- CMD…` starts it, runs CMD with those variables set, stops it, and exits
//!   with CMD's status: how the test suite shares one cluster between test processes.
//! - `testenv demo [--port 8080] [--real]` starts it with the operator and the control plane on
//!   it, prints the signup URL and a provider-admin token, and keeps everything running until
//!   Ctrl-C; with `--real` the tenants' ERPs run on the real node and answer.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use e2e::Environment;
use tokio::signal::unix::{SignalKind, signal};

// A binary's root resolves modules next to itself, where cargo would take them for binaries of
// their own; the demo's module lives in a folder named after this one.
#[path = "testenv/demo.rs"]
mod demo;

#[derive(Parser)]
#[command(
    about = "Tenantry's local test environment: Kubernetes v1.20.2 with one real node and simulated ones, PostgreSQL, Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install and build whatever is missing, then exit.
    Install {
        /// Tryton series to prepare virtualenvs for: the ones the test suite uses (7.0 the
        /// default profile, 7.2 the first upgrade step, 8.2 the newest layout the
        /// neutralization checks). Any of `e2e::tryton::SUPPORTED_SERIES` can be added.
        #[arg(long = "tryton", value_delimiter = ',', default_value = "7.0,7.2,8.2")]
        tryton_series: Vec<String>,
    },
    /// Start the environment and keep it running until interrupted.
    Up,
    /// Start the environment, run a command inside it, stop the environment.
    Exec {
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Start the environment with the tenant operator and the control plane on it, print the
    /// signup URL and a provider-admin token, and keep everything running until interrupted.
    Demo(demo::DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match Cli::parse().command {
        Command::Demo(args) => demo::run(args).await,
        command => run(command).await.map_err(|e| e.to_string()),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("testenv: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> e2e::Result<ExitCode> {
    match command {
        Command::Install { tryton_series } => {
            let started = Instant::now();
            tokio::task::spawn_blocking(move || {
                // The virtualenvs wait on PyPI, the rest mostly on the processors: side by side,
                // once Debian's packages (Python's `venv` among them) are in.
                e2e::install::ensure_debian_packages(e2e::install::RUNTIME_PACKAGES)?;
                let tryton = std::thread::spawn(move || {
                    tryton_series.iter().try_for_each(|series| e2e::tryton::TrytonInstall::ensure(series).map(drop))
                });
                let installed = e2e::install::ensure_all().map(drop);
                let tryton = tryton
                    .join()
                    .unwrap_or_else(|_| Err(e2e::Error::Prerequisite("the Tryton installer panicked".into())));
                installed.and(tryton)
            })
            .await
            .expect("installer panicked")?;
            eprintln!("testenv: everything is installed ({:.0?})", started.elapsed());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(_) => unreachable!("main runs the demo"),
        Command::Up => {
            let env = start().await?;
            // Before the exports are printed: whoever reads them may stop us at once, and a
            // SIGTERM before the handler exists would kill the process without the clean stop.
            let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
            // The exports end with a newline; a second, separate write could meet a reader gone.
            print!("{}", env.info().exports(env.state_file()));
            eprintln!(
                "testenv: running; logs in {}. Paste the exports above into a shell; Ctrl-C stops everything.",
                env.workdir().display()
            );
            let mut check = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = terminate.recv() => break,
                    _ = check.tick() => env.check_alive()?,
                }
            }
            eprintln!("testenv: stopping");
            drop(env);
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec { command } => {
            let env = start().await?;
            let info = env.info();
            let mut child = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .env("KUBECONFIG", &info.kubeconfig)
                .env("DATABASE_URL", info.postgres.url("postgres"))
                .env("REDIS_URL", &info.redis_url)
                .env(e2e::env::STATE_VAR, env.state_file())
                .spawn()
                .map_err(|e| e2e::Error::Io { context: format!("starting `{}`", command.join(" ")), source: e })?;
            // Ctrl-C reaches the command too (same process group); wait for it to finish, then
            // stop the environment either way.
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    _ = tokio::signal::ctrl_c() => continue,
                }
            }
            .map_err(|e| e2e::Error::Io { context: format!("waiting for `{}`", command.join(" ")), source: e })?;
            if let Err(e) = env.check_alive() {
                eprintln!("testenv: a component of the environment died during the run: {e}");
            }
            drop(env);
            Ok(match status.code() {
                Some(0) => ExitCode::SUCCESS,
                Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                None => ExitCode::FAILURE,
            })
        }
    }
}

async fn start() -> e2e::Result<Environment> {
    let started = Instant::now();
    let env = Environment::start().await?;
    eprintln!("testenv: environment ready in {:.1?}", started.elapsed());
    Ok(env)
}
