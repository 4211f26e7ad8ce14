//! What the agent's tests share: a real PostgreSQL (the environment's), a real Tryton of one
//! series with the fixture's modules, and one database of real ERP data per series, made once
//! per environment and copied (`CREATE DATABASE … TEMPLATE`) for each test.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use e2e::TestEnv;
use e2e::postgres::Postgres;
use e2e::process::WorkDir;
use e2e::tryton::fixture::{self, FixtureSize, ReadBack};
use e2e::tryton::{TrytonConfig, TrytonInstall, TrytonServer};
use erp_agent::database::{DatabaseName, DatabaseServer, ErpState, PgTools, ServerAddress};
use erp_agent::filestore::FileStore;
use erp_agent::journal::FileJournal;
use erp_agent::key::BackupKey;
use erp_agent::manifest::{BackupKind, ErpInfo, Summary};
use erp_agent::ops::{Environment, ErpControl, backup};
use erp_agent::store::{BackupStore, StoreOptions};
use erp_agent::{Error, Result};
use tokio::sync::{Mutex, OnceCell};

/// One series' Tryton, its configuration and a database of real data to copy from.
pub struct Tryton {
    pub install: TrytonInstall,
    pub config: TrytonConfig,
    pub postgres: &'static Postgres,
    pub server: DatabaseServer,
    pub store: FileStore,
    /// The database of real data tests copy from; never changed by a test. Its `admin` has
    /// the password of the configuration that made it: see [`Tryton::set_admin_password`].
    pub template: DatabaseName,
    pub workdir: Arc<WorkDir>,
}

/// The Tryton of `series` with its template database, prepared on first use in this process.
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
    let env = TestEnv::shared().await;
    let postgres = env.postgres().await;
    let install = TrytonInstall::ensure_async(series).await.expect("Tryton install");
    let config = TrytonConfig::write(&workdir.join(format!("tryton-{series}")), postgres).expect("trytond.conf");
    let server = DatabaseServer::new(
        ServerAddress::from_url(&postgres.url("postgres")).expect("database URL"),
        PgTools::in_dir(postgres.bin_dir()),
    );
    // One template per PostgreSQL server, series and fixture: under `testenv exec` every test
    // process shares the server, and preparing a sale database takes a minute or more. Its
    // attachments live in a file store shared the same way (this configuration's `data` folder
    // is a link to it), so copies of the template find them. It goes with the environment, as the
    // template databases do.
    let shared = env.shared_dir().join(format!("erp-agent-{}", postgres.port()));
    let data = shared.join("data");
    std::fs::create_dir_all(&data).expect("shared file store");
    let own_data = config.dir().join("data");
    std::fs::remove_dir(&own_data).expect("the configuration's empty file store");
    std::os::unix::fs::symlink(&data, &own_data).expect("linking the shared file store");
    let store = FileStore::new(&own_data);
    let template = template_name(series);

    let lock = std::fs::File::create(shared.join(format!("{template}.lock"))).expect("template lock file");
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock)).await.unwrap().expect("template lock");
    if server.exists(&template).await.expect("looking for the template") {
        eprintln!("Tryton {series}: template {template} ready");
    } else {
        // Built under a temporary name and renamed when complete: a process killed half-way
        // leaves no half-made template behind the final name.
        let building = unique_name("fixture_building");
        install.create_database(postgres, &config, building.as_str()).await.expect("trytond-admin --all");
        fixture::activate_modules(&install, &config, building.as_str())
            .await
            .expect("activating the fixture's modules");
        let initialised = started.elapsed();
        fixture::create(&install, &config, building.as_str(), &FixtureSize::small())
            .await
            .expect("creating the fixture");
        store.delete(template.as_str()).await.expect("clearing a stale template folder");
        server.rename(&building, &template, ErpState::Stopped).await.expect("publishing the template database");
        store.rename(building.as_str(), template.as_str()).await.expect("publishing the template's file store");
        eprintln!(
            "Tryton {series}: installed and initialised with {:?} in {initialised:.1?}, fixture in {:.1?}",
            e2e::tryton::MODULES,
            started.elapsed() - initialised
        );
    }
    drop(lock);
    Tryton { install, config, postgres, server, store, template, workdir }
}

/// Named after what it holds (series, requirement list, fixture size), so a long-running
/// environment (`testenv up`) never hands out a template made from other code.
fn template_name(series: &str) -> DatabaseName {
    use sha2::{Digest, Sha256};
    let recipe = format!("{:?} {:?}", e2e::tryton::requirements(series).unwrap(), FixtureSize::small());
    let hash = hex::encode(&Sha256::digest(recipe.as_bytes())[..4]);
    DatabaseName::new(format!("tenantry_fixture_{}_{hash}", series.replace('.', "_"))).unwrap()
}

impl Tryton {
    /// A new database (and file-store folder) copied from the template.
    pub async fn copy_of_template(&self, label: &str) -> DatabaseName {
        let name = unique_name(label);
        // Other tests read the template itself (briefly); a copy waits for them to leave.
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            match self.server.copy(&self.template, &name, ErpState::MayBeRunning).await {
                Ok(()) => break,
                Err(Error::InUse { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(error) => panic!("copying the template database: {error}"),
            }
        }
        self.store.copy(self.template.as_str(), name.as_str()).await.expect("copying the template's file store");
        name
    }

    /// Gives `database`'s `admin` this configuration's password (`trytond-admin -p`), for a
    /// test that logs in to a copy of a template another process made.
    pub async fn set_admin_password(&self, database: &DatabaseName) {
        e2e::process::run_async(self.install.admin(&self.config).args(["-d", database.as_str(), "-p"]))
            .await
            .expect("trytond-admin -p");
    }
}

/// `<label>_<pid>_<n>`: unique across the test processes sharing one server.
pub fn unique_name(label: &str) -> DatabaseName {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    DatabaseName::new(format!("{label}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
        .expect("a valid database name")
}

/// A real `trytond` over the environment's database, stopped and started as the operator or
/// the single-server runtime would.
/// Every start writes a new configuration with a port free at that moment: the port of a
/// stopped server may be taken meanwhile by another test's.
pub struct Erp {
    pub tryton: &'static Tryton,
    label: String,
    pub workdir: Arc<WorkDir>,
    pub running: Mutex<Option<TrytonServer>>,
    pub starts: std::sync::atomic::AtomicU32,
}

impl Erp {
    pub async fn new(tryton: &'static Tryton, label: &str) -> Self {
        let erp = Self {
            tryton,
            label: label.to_string(),
            workdir: tryton.workdir.clone(),
            running: Mutex::new(None),
            starts: Default::default(),
        };
        erp.start().await.unwrap();
        erp
    }

    /// The running server's address (it changes with every start).
    pub async fn url(&self) -> String {
        self.running.lock().await.as_ref().expect("the ERP is running").url().to_string()
    }
}

impl ErpControl for Erp {
    async fn stop(&self) -> Result<()> {
        if let Some(server) = self.running.lock().await.take() {
            server.stop();
        }
        Ok(())
    }

    async fn start(&self) -> Result<()> {
        let mut running = self.running.lock().await;
        if running.is_none() {
            let start = self.starts.load(std::sync::atomic::Ordering::Relaxed) + 1;
            let dir = self.tryton.workdir.join(format!("server-{}-{start}", self.label));
            let config = TrytonConfig::write_with_data(&dir, self.tryton.postgres.port(), self.tryton.store.root())
                .map_err(|e| Error::Invalid(format!("writing trytond.conf: {e}")))?;
            let server = self
                .tryton
                .install
                .start_server(&self.workdir, &config)
                .await
                .map_err(|e| Error::Invalid(format!("starting trytond: {e}")))?;
            self.starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *running = Some(server);
        }
        Ok(())
    }
}

/// The production environment of `tenant` on `database`.
pub fn environment(tryton: &Tryton, tenant: &str, database: &DatabaseName, version: &str) -> Environment {
    environment_named(tryton, tenant, "production", database, version)
}

/// Environment `name` (`production` or `test`) of `tenant` on `database`.
pub fn environment_named(
    tryton: &Tryton,
    tenant: &str,
    name: &str,
    database: &DatabaseName,
    version: &str,
) -> Environment {
    Environment {
        tenant: tenant.to_string(),
        name: name.to_string(),
        database: database.clone(),
        server: tryton.server.clone(),
        filestore: tryton.store.clone(),
        erp: ErpInfo { profile: "tryton".into(), version: version.into() },
    }
}

pub async fn read_back(tryton: &Tryton, database: &DatabaseName) -> ReadBack {
    fixture::read_back(&tryton.install, &tryton.config, database.as_str()).await.expect("reading the data back")
}

/// A directory store and an S3 store (its own bucket on the environment's server).
pub async fn stores(label: &str) -> Vec<(&'static str, BackupStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let local = BackupStore::from_url(&format!("file://{}", dir.path().display()), StoreOptions::default()).unwrap();
    let s3 = e2e::TestEnv::shared().await.s3().await.clone();
    let bucket = format!("{label}-{:08x}", rand::random::<u32>());
    let (endpoint, name) = (s3.clone(), bucket.clone());
    tokio::task::spawn_blocking(move || endpoint.create_bucket(&name)).await.unwrap().unwrap();
    let options = StoreOptions { config: s3.object_store_options(), ..StoreOptions::default() };
    let remote = BackupStore::from_url(&format!("s3://{bucket}/backups"), options).unwrap();
    vec![("directory", local, dir), ("s3", remote, tempfile::tempdir().unwrap())]
}

pub async fn take_backup(
    env: &Environment,
    store: &BackupStore,
    key: &BackupKey,
    scratch: &std::path::Path,
) -> Summary {
    let journal = FileJournal::new(scratch.join(format!("backup-{}.json", rand::random::<u32>())));
    backup::backup(env, store, &key.recipient(), Some(key), BackupKind::Manual, &journal).await.expect("backup")
}
