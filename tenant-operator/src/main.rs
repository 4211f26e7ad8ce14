//! `tenant-operator`: `run` reconciles Tenants and their backups (the default), `crd` prints
//! or writes the CRDs' YAML.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tenant_operator::controller::{self, OperatorConfig, crd_yaml};
use tenant_operator::http::{self, HttpState, Readiness};
use tenant_operator::leader::{LeaderElection, default_identity};
use tenant_operator::metrics::Metrics;
use tenant_operator::placement::{Placement, parse_node_selector, parse_tolerations};
use tenant_operator::profile::ImageDefaults;
use tenant_operator::telemetry;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "tenant-operator",
    version,
    about = "Tenantry's tenant operator: one ERP server, web client and PostgreSQL per Tenant"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile Tenants (the default).
    Run(Box<RunArgs>),
    /// Print the CRDs (YAML documents), generated from the Rust types; with `--dir`, write each
    /// to its file there (`charts/tenantry/crds`).
    Crd {
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Serve only Tenants matching this label selector (sharding, or a test's own Tenants).
    #[arg(long, env = "TENANTRY_TENANT_SELECTOR")]
    tenant_selector: Option<String>,
    /// Reconciles running at once.
    #[arg(long, env = "TENANTRY_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// How long a Tenant's reconcile waits for more changes after one arrives (milliseconds),
    /// so that a burst of child events costs one reconcile.
    #[arg(long, env = "TENANTRY_DEBOUNCE_MS", default_value_t = 0)]
    debounce_ms: u64,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "TENANTRY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Elect one leader among the replicas through a Lease (off: this instance reconciles).
    #[arg(long, env = "TENANTRY_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tenantry-system")]
    lease_namespace: String,
    #[arg(long, env = "TENANTRY_LEASE_NAME", default_value = "tenantry-operator")]
    lease_name: String,
    /// Image repository of the tryton profile's server (tagged with the ERP series).
    #[arg(long, env = "TENANTRY_TRYTON_IMAGE", default_value = "tryton/tryton")]
    tryton_image: String,
    /// Image repository of the odoo profile's server.
    #[arg(long, env = "TENANTRY_ODOO_IMAGE", default_value = "odoo")]
    odoo_image: String,
    /// The web role's reverse proxy image.
    #[arg(long, env = "TENANTRY_WEB_PROXY_IMAGE", default_value = "nginxinc/nginx-unprivileged:1.27-alpine")]
    web_proxy_image: String,
    #[arg(long, env = "TENANTRY_POSTGRES_IMAGE", default_value = "postgres:15")]
    postgres_image: String,
    /// The ERP agent's image, which backups run in (defaults to this release's).
    #[arg(long, env = "TENANTRY_AGENT_IMAGE", default_value = concat!("tenantry/erp-agent:", env!("CARGO_PKG_VERSION")))]
    agent_image: String,
    /// The backup store's TCP port(s), the only ones backup pods may reach outside their
    /// namespace (comma-separated; 443 for the clouds' stores).
    #[arg(long, env = "TENANTRY_BACKUP_STORE_PORTS", default_value = "443", value_delimiter = ',')]
    backup_store_ports: Vec<u16>,
    /// Node selector of every tenant pod (`key=value,…`): the nodes tenants run on.
    #[arg(long, env = "TENANTRY_NODE_SELECTOR", default_value = "")]
    node_selector: String,
    /// Tolerations of every tenant pod, written as taints are (`key=value:Effect`, `key:Effect`
    /// or `key`, comma-separated): the taints of nodes reserved for tenants.
    #[arg(long, env = "TENANTRY_TOLERATIONS", default_value = "")]
    tolerations: String,
    /// Labels of the ingress controller's namespace (`key=value,…`), allowed to reach web clients.
    #[arg(long, env = "TENANTRY_INGRESS_NAMESPACE_LABELS", default_value = "app.kubernetes.io/name=ingress-nginx")]
    ingress_namespace_labels: String,
    #[arg(long, env = "TENANTRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(Box::new(cli.run))) {
        Command::Crd { dir: None } => {
            let documents: Vec<String> = controller::crds().iter().map(|(_, crd)| crd_yaml(crd)).collect();
            print!("{}", documents.join("---\n"));
            ExitCode::SUCCESS
        }
        Command::Crd { dir: Some(dir) } => {
            for (file, crd) in controller::crds() {
                let path = dir.join(file);
                if let Err(e) = std::fs::write(&path, crd_yaml(&crd)) {
                    eprintln!("writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            telemetry::init(matches!(args.log_format, LogFormat::Json));
            match run(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    tracing::error!(error = %message, "the operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let ingress_controller_namespace = parse_labels(&args.ingress_namespace_labels)?;
    let placement = Placement {
        node_selector: parse_node_selector(&args.node_selector).map_err(|e| format!("--node-selector: {e}"))?,
        tolerations: parse_tolerations(&args.tolerations).map_err(|e| format!("--tolerations: {e}"))?,
    };
    let config = OperatorConfig {
        tenant_selector: args.tenant_selector,
        concurrency: args.concurrency,
        debounce: std::time::Duration::from_millis(args.debounce_ms),
        images: ImageDefaults {
            tryton: args.tryton_image,
            odoo: args.odoo_image,
            web_proxy: args.web_proxy_image,
            postgres: args.postgres_image,
            agent: args.agent_image,
        },
        backup_store_ports: args.backup_store_ports.into_iter().map(i32::from).collect(),
        ingress_controller_namespace,
        placement,
        ..OperatorConfig::default()
    };
    let metrics = Metrics::new();
    // Every request the operator sends (reads and watches too) is counted in
    // tenantry_operator_api_requests_total.
    let kube_config = kube::Config::infer().await.map_err(|e| format!("connecting to Kubernetes: {e}"))?;
    let client = kube::client::ClientBuilder::try_from(kube_config)
        .map_err(|e| format!("connecting to Kubernetes: {e}"))?
        .with_layer(&metrics.count_requests())
        .build();
    let readiness = Readiness::new();
    let listener =
        std::net::TcpListener::bind(args.listen).map_err(|e| format!("listening on {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "serving /metrics, /healthz and /readyz");
    let server =
        tokio::spawn(http::serve(listener, HttpState { metrics: metrics.clone(), readiness: readiness.clone() }));

    let controller = {
        let (client, metrics, readiness) = (client.clone(), metrics.clone(), readiness.clone());
        move || controller::run(client, config, metrics, readiness, shutdown_signal())
    };
    let result = if args.leader_election {
        let election = LeaderElection::new(client, &args.lease_namespace, &args.lease_name, default_identity());
        let mut leading = election.is_leader();
        let leader_metric = {
            let metrics = metrics.clone();
            async move {
                while leading.changed().await.is_ok() {
                    metrics.set_leader(*leading.borrow());
                }
            }
        };
        let leader_task = tokio::spawn(leader_metric);
        // A standby is healthy and ready to take over: reporting it unready would stall the
        // rollouts of a two-replica Deployment. The leader turns unready only until its cache
        // is synced.
        readiness.set_ready();
        tracing::info!(identity = election.identity(), lease = %args.lease_name, "waiting for leadership");
        let outcome = election.run_until(controller, shutdown_signal()).await;
        leader_task.abort();
        outcome.map(drop).map_err(|e| e.to_string())
    } else {
        metrics.set_leader(true);
        controller().await;
        Ok(())
    };
    server.abort();
    result
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("`{pair}` is not key=value (in --ingress-namespace-labels)"))
        })
        .collect()
}
