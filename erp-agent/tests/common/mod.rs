//! What the agent's tests share: a real PostgreSQL (the environment's), a real Tryton of one
//! series with the fixture's modules, and one database of real ERP data per test binary and
//! series, made once and copied (`CREATE DATABASE … TEMPLATE`) for each test.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use e2e::TestEnv;
use e2e::postgres::Postgres;
use e2e::process::WorkDir;
use e2e::tryton::fixture::{self, FixtureSize};
use e2e::tryton::{TrytonConfig, TrytonInstall};
use erp_agent::database::{DatabaseName, DatabaseServer, ErpState, PgTools, ServerAddress};
use erp_agent::filestore::FileStore;
use tokio::sync::{Mutex, OnceCell};

/// One series' Tryton, its configuration and a database of real data to copy from.
pub struct Tryton {
    pub install: TrytonInstall,
    pub config: TrytonConfig,
    pub postgres: &'static Postgres,
    pub server: DatabaseServer,
    pub store: FileStore,
    /// The database of real data tests copy from; never changed by a test.
    pub template: DatabaseName,
    pub workdir: Arc<WorkDir>,
}

/// The Tryton of `series` with its template database, prepared on first use in this binary.
pub async fn tryton(series: &str) -> &'static Tryton {
    static ALL: OnceCell<Mutex<HashMap<String, &'static OnceCell<Tryton>>>> = OnceCell::const_new();
    let cells = ALL.get_or_init(|| async { Mutex::new(HashMap::new()) }).await;
    let cell: &'static OnceCell<Tryton> =
        cells.lock().await.entry(series.to_string()).or_insert_with(|| Box::leak(Box::new(OnceCell::new())));
    cell.get_or_init(|| prepare(series)).await
}

async fn prepare(series: &str) -> Tryton {
    let started = Instant::now();
    let workdir = WorkDir::create("erp-agent").expect("work directory");
    let postgres = TestEnv::shared().await.postgres().await;
    let install = TrytonInstall::ensure_async(series).await.expect("Tryton install");
    let config = TrytonConfig::write(&workdir.join(format!("tryton-{series}")), postgres).expect("trytond.conf");
    let server = DatabaseServer::new(
        ServerAddress::from_url(&postgres.url("postgres")).expect("database URL"),
        PgTools::in_dir(postgres.bin_dir()),
    );
    let store = FileStore::new(config.dir().join("data"));
    // Unique in the shared server, which other test processes use at the same time.
    let template = unique_name(&format!("fixture_{}", series.replace('.', "_")));
    install.create_database(postgres, &config, template.as_str()).await.expect("trytond-admin --all");
    fixture::activate_modules(&install, &config, template.as_str()).await.expect("activating the fixture's modules");
    let initialised = started.elapsed();
    fixture::create(&install, &config, template.as_str(), &FixtureSize::small()).await.expect("creating the fixture");
    eprintln!(
        "Tryton {series}: installed and initialised with {:?} in {initialised:.1?}, fixture in {:.1?}",
        e2e::tryton::MODULES,
        started.elapsed() - initialised
    );
    Tryton { install, config, postgres, server, store, template, workdir }
}

impl Tryton {
    /// A new database (and file-store folder) copied from the template.
    pub async fn copy_of_template(&self, label: &str) -> DatabaseName {
        let name = unique_name(label);
        self.server.copy(&self.template, &name, ErpState::MayBeRunning).await.expect("copying the template database");
        self.store.copy(self.template.as_str(), name.as_str()).await.expect("copying the template's file store");
        name
    }
}

/// `<label>_<pid>_<n>`: unique across the test processes sharing one server.
pub fn unique_name(label: &str) -> DatabaseName {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    DatabaseName::new(format!("{label}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
        .expect("a valid database name")
}
