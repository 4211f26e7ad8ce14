//! `tenantry-agent`: the ERP operations engine as a command a Kubernetes Job (or a person) runs.
//! Every subcommand prints one JSON document on standard output and exits 0 on success, 1 when
//! the operation failed (the JSON says why), 2 on bad usage.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "tenantry-agent", version, about = "Tenantry's ERP operations engine")]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
