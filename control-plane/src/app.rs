//! `control-plane serve`: the store (migrated), the cache, the background workers (provisioning,
//! status mirror, webhook delivery) and the HTTP server, wired from the settings.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{App, HttpServer, middleware, web};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::AuthError;
use crate::cache::{Cache, CacheError, RateLimit};
use crate::config::{ConfigError, Settings};
use crate::http::{self, ApiSettings, AppState};
use crate::provision::provisioner::{ProvisionError, Provisioner};
use crate::secrets::Sealer;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// How often ended trials are looked for.
const TRIAL_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A started control plane: the HTTP server and its workers.
pub struct Running {
    /// Where the server listens (the real port when `listen` asked for port 0).
    pub addr: SocketAddr,
    pub tls: bool,
    pub store: Store,
    server: actix_web::dev::ServerHandle,
    served: JoinHandle<std::io::Result<()>>,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Until the server stops (Ctrl-C or SIGTERM), then the workers.
    pub async fn wait(self) -> Result<(), Error> {
        let Self { served, shutdown, workers, .. } = self;
        let result = served.await.map_err(std::io::Error::other)?;
        let _ = shutdown.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        Ok(result?)
    }

    /// Stops gracefully: in-flight requests finish, workers end after their current job.
    pub async fn stop(self) -> Result<(), Error> {
        self.server.stop(true).await;
        self.wait().await
    }
}

/// Runs until stopped, printing where it listens and how to get an admin token.
pub async fn serve(settings: Settings) -> Result<(), Error> {
    let running = start(settings).await?;
    println!("Tenantry control plane listening on {}", running.url());
    println!("  API documentation: {}/openapi.json", running.url());
    println!("  an admin token:    cargo run -p control-plane -- token issue --role provider-admin");
    running.wait().await
}

/// Starts everything and returns once the server listens.
pub async fn start(settings: Settings) -> Result<Running, Error> {
    let cache = Cache::connect(settings.redis_url.as_deref()).await?;
    start_with_cache(settings, cache).await
}

/// The same with a cache of the caller's (tests give each server its own Redis key prefix).
pub async fn start_with_cache(settings: Settings, cache: Cache) -> Result<Running, Error> {
    let store = Store::connect_with(&settings.database_url(), settings.database_max_connections).await?;
    store.migrate().await?;
    if store.plans().await?.is_empty() {
        for plan in crate::catalogue::default_plans() {
            store.import_plan(&plan).await?;
        }
        tracing::info!("imported the default plan catalogue into an empty store");
    }
    let keys = web::Data::new(settings.jwt_keys()?);
    let sealer = Sealer::new(settings.secret_key()?);
    let provisioner = Provisioner::from_setting(&settings.provisioner, settings.kubeconfig.as_deref()).await?;
    tracing::info!(
        database = ?store.backend(),
        cache = cache.backend_name(),
        provisioner = %provisioner.describe(),
        "starting"
    );

    let cluster = match &provisioner {
        Provisioner::Cluster(client) => Some(client.clone()),
        Provisioner::Manifests(_) | Provisioner::None => None,
    };
    let metrics = Arc::new(http::metrics::Metrics::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let provisioning = crate::provision::worker::Wakeup::new();
    let webhooks = crate::webhooks::Notifier::new();
    let mut workers = Vec::new();
    let simulated_workloads = crate::provision::simulated::SimulatedWorkloads::default();
    if let Provisioner::Cluster(client) = &provisioner {
        workers.push(tokio::spawn(crate::provision::simulated::run_detection(
            client.clone(),
            simulated_workloads.clone(),
            shutdown_rx.clone(),
        )));
        workers.push(tokio::spawn(crate::provision::mirror::run_status_mirror(
            store.clone(),
            client.clone(),
            shutdown_rx.clone(),
        )));
    }
    let worker_settings = crate::provision::worker::WorkerSettings {
        wakeup: provisioning.clone(),
        metrics: metrics.provisioning.clone(),
        decorations: settings.tenants.clone(),
        ..Default::default()
    };
    workers.push(tokio::spawn(crate::provision::worker::run_worker(
        store.clone(),
        provisioner,
        worker_settings,
        shutdown_rx.clone(),
    )));
    workers.push(tokio::spawn(crate::trials::run_trial_expiry(
        store.clone(),
        TRIAL_CHECK_INTERVAL,
        webhooks.clone(),
        shutdown_rx.clone(),
    )));
    workers.push(tokio::spawn(crate::retention::run_retention(
        store.clone(),
        settings.history_retention,
        crate::retention::PRUNE_INTERVAL,
        shutdown_rx.clone(),
    )));
    workers.push(tokio::spawn(crate::webhooks::run_delivery_worker(
        store.clone(),
        Sealer::new(settings.secret_key()?),
        crate::webhooks::WorkerSettings {
            notifier: webhooks.clone(),
            max_attempts: settings.webhook.max_attempts,
            timeout: settings.webhook.timeout,
            destinations: crate::webhooks::DestinationResolver::new(
                crate::webhooks::DestinationPolicy::new(settings.webhook.allowed_networks.clone()),
                None,
            ),
            ..Default::default()
        },
        shutdown_rx.clone(),
    )));

    let state = AppState {
        store: store.clone(),
        cache,
        keys: keys.clone(),
        sealer,
        settings: ApiSettings {
            signup_rate: RateLimit { per_minute: settings.signup.per_minute, burst: settings.signup.burst },
            trusted_proxies: settings.trusted_proxies.clone(),
            webhook_destinations: crate::webhooks::DestinationPolicy::new(settings.webhook.allowed_networks.clone()),
            default_erp_version: settings.default_erp_version.clone(),
            erp_versions: settings.erp_versions.clone(),
            tenant_hosts: settings.tenants.clone(),
            signup_token_ttl: settings.auth.signup_token_ttl,
            max_body_bytes: settings.max_body_bytes,
        },
        provisioning,
        webhooks,
        metrics: metrics.clone(),
        cluster,
        simulated_workloads,
    };
    let max_body_bytes = settings.max_body_bytes;
    let metrics_data = web::Data::from(metrics);
    // Runs on each worker thread: each worker gets its own cache connection.
    let factory = move || {
        let worker_state = AppState { cache: state.cache.for_worker(), ..state.clone() };
        App::new()
            .app_data(web::Data::new(worker_state))
            .app_data(keys.clone())
            .app_data(metrics_data.clone())
            .wrap(middleware::from_fn(http::metrics::record))
            .configure(|config| http::configure(config, max_body_bytes))
    };
    let server = HttpServer::new(factory).shutdown_timeout(10);
    let server = match settings.workers {
        Some(workers) => server.workers(workers),
        None => server,
    };
    let tls = settings.rustls_config()?;
    let server = match tls.clone() {
        Some(config) => server.bind_rustls_0_23(settings.listen, config)?,
        None => server.bind(settings.listen)?,
    };
    let addr = server.addrs().first().copied().unwrap_or(settings.listen);
    let server = server.run();
    let handle = server.handle();
    let served = tokio::spawn(server);
    Ok(Running { addr, tls: tls.is_some(), store, server: handle, served, shutdown, workers })
}
