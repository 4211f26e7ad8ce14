//! `tenantry-agent`: the ERP operations engine as a command a Kubernetes Job (or a person) runs.
//! Every subcommand prints one JSON document on standard output (with `--result-file`, also
//! writes it to that file on one line, for a Kubernetes termination message); its log goes to
//! standard error. Exit codes (also in `docs/operations.md`):
//! - 0: done;
//! - 1: failed, and the environment is as it was (the operation rolled back, or refused before
//!   changing anything); the JSON says which step and why;
//! - 2: bad usage or invalid input (nothing was started);
//! - 3: interrupted: the operation could neither finish nor roll back; its journal says where it
//!   stands — run the same command again with the same journal.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TENANTRY_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            cli.fail(&erp_agent::Error::Invalid(format!("starting the runtime: {error}")));
            return ExitCode::from(cli::EXIT_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(cli::run(cli)))
}
