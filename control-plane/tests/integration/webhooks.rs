//! Webhook delivery end to end: a real store (SQLite in a temporary directory), the delivery
//! worker, and a real HTTP receiver on a local port that fails on demand.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control_plane::domain::plan::PlanSpec;
use control_plane::secrets::{Sealer, generate_secret};
use control_plane::slug::Slug;
use control_plane::store::{NewTenant, Store, TENANT_CREATED};
use control_plane::webhooks::{
    DestinationPolicy, DestinationResolver, Notifier, WorkerSettings, run_delivery_worker, verify,
};
use reqwest::dns::{Name, Resolve, Resolving};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const KEY: [u8; 32] = [42; 32];

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    status: u16,
    event_id: String,
    event_type: String,
    signature: String,
    content_type: String,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 server: answers 500 to the first `failures` requests, 200 afterwards.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start(failures: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/tenantry", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let log = log.clone();
                tokio::spawn(async move { answer(stream, failures, &log).await });
            }
        });
        Self { url, received, task }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(&self.received()) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {:#?}", self.received());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(mut stream: TcpStream, failures: usize, log: &Mutex<Vec<Received>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let status = {
        let mut log = log.lock().unwrap();
        let status = if log.len() < failures { 500 } else { 200 };
        log.push(Received {
            status,
            event_id: header("tenantry-event-id"),
            event_type: header("tenantry-event-type"),
            signature: header("tenantry-signature"),
            content_type: header("content-type"),
            body: buffer[head_end..head_end + length].to_vec(),
        });
        status
    };
    let reason = if status == 200 { "OK" } else { "Internal Server Error" };
    let response = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

struct Fixture {
    store: Store,
    database: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("control-plane.db").display());
    let store = Store::connect(&database).await.unwrap();
    store.migrate().await.unwrap();
    store.create_plan(&plan()).await.unwrap();
    Fixture { store, database, _dir: dir }
}

fn plan() -> PlanSpec {
    serde_json::from_value(serde_json::json!({
        "name": "business",
        "display_name": "Business",
        "price_per_seat_month": {"minor": 2900, "currency": "EUR"},
        "max_seats": 50,
        "max_concurrent_users": 40,
        "database_size_limit": "20Gi",
        "test_environment": true,
        "module_policy": "custom_allowed",
        "backup_retention_days": 30,
        "trial_days": 14
    }))
    .unwrap()
}

fn new_tenant(slug: &str) -> NewTenant {
    NewTenant {
        slug: Slug::parse(slug).unwrap(),
        display_name: "Acme Corp".into(),
        owner_email: "admin@acme.example".into(),
        plan: "business".into(),
        licensed_seats: 5,
        erp_version: control_plane::config::DEFAULT_ERP_VERSION.into(),
        first_seat: None,
        host: None,
        generated_host: None,
    }
}

/// The receivers of these tests listen on loopback, which must be allowed explicitly.
fn loopback_allowed() -> DestinationPolicy {
    DestinationPolicy::new(vec!["127.0.0.0/8".parse().unwrap()])
}

/// Tiny backoff so retries happen within the test.
fn settings(max_attempts: u32) -> WorkerSettings {
    WorkerSettings {
        batch_size: 8,
        concurrency: 4,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        max_attempts,
        min_backoff: Duration::from_millis(40),
        max_backoff: Duration::from_millis(200),
        notifier: Notifier::new(),
        destinations: DestinationResolver::new(loopback_allowed(), None),
    }
}

struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    fn start(store: &Store, settings: WorkerSettings) -> Self {
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run_delivery_worker(store.clone(), Sealer::new(KEY), settings, shutdown));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("the worker stops").unwrap();
    }
}

async fn register(store: &Store, url: &str) -> String {
    let secret = generate_secret();
    store.create_webhook(url, &[TENANT_CREATED.to_owned()], &Sealer::new(KEY).seal(secret.as_bytes())).await.unwrap();
    secret
}

/// (attempts, delivered, dead, last_error) of every delivery row.
async fn delivery_rows(database: &str) -> Vec<(i64, bool, bool, Option<String>)> {
    let pool = sqlx::SqlitePool::connect(database).await.unwrap();
    let rows = sqlx::query(
        "SELECT attempts, delivered_at IS NOT NULL AS delivered, dead_at IS NOT NULL AS dead, last_error \
         FROM deliveries ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter().map(|row| (row.get("attempts"), row.get("delivered"), row.get("dead"), row.get("last_error"))).collect()
}

#[tokio::test]
async fn tenant_created_is_delivered_signed_after_failures() {
    let fixture = fixture().await;
    let receiver = Receiver::start(2).await;
    let secret = register(&fixture.store, &receiver.url).await;
    let settings = settings(12);
    let notifier = settings.notifier.clone();
    let worker = Worker::start(&fixture.store, settings);

    fixture.store.create_tenant(&new_tenant("acme")).await.unwrap();
    notifier.notify_one();
    receiver.wait_for("an accepted delivery", |got| got.iter().any(|r| r.status == 200)).await;
    // Long enough for any wrong redelivery (backoff ≤ 200 ms, poll 50 ms) to show up.
    tokio::time::sleep(Duration::from_millis(800)).await;
    worker.stop().await;

    let received = receiver.received();
    assert_eq!(received.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 200], "{received:#?}");
    let event_id = received[0].event_id.clone();
    assert!(!event_id.is_empty());
    let now = chrono::Utc::now().timestamp();
    for request in &received {
        assert_eq!(request.event_id, event_id, "the same event id on every attempt");
        assert_eq!(request.event_type, "tenant.created");
        assert_eq!(request.content_type, "application/json");
        assert!(
            verify(secret.as_bytes(), &request.signature, &request.body, now, Duration::from_secs(300)),
            "signature {:?} does not verify",
            request.signature
        );
        assert!(!verify(b"whsec_someone-else", &request.signature, &request.body, now, Duration::from_secs(300)));
        assert!(!request.signature.contains(&secret), "the secret itself is never sent");
        let event: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(event["id"], event_id.as_str());
        assert_eq!(event["type"], "tenant.created");
        assert_eq!(event["data"]["slug"], "acme");
    }
    let rows = delivery_rows(&fixture.database).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (attempts, delivered, dead, _) = &rows[0];
    assert_eq!((*attempts, *delivered, *dead), (3, true, false), "{rows:?}");
}

#[tokio::test]
async fn an_endpoint_that_always_fails_ends_dead_after_max_attempts() {
    let fixture = fixture().await;
    let receiver = Receiver::start(usize::MAX).await;
    register(&fixture.store, &receiver.url).await;
    let worker = Worker::start(&fixture.store, settings(3));

    fixture.store.create_tenant(&new_tenant("acme")).await.unwrap();
    receiver.wait_for("three attempts", |got| got.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    worker.stop().await;

    let received = receiver.received();
    assert_eq!(received.len(), 3, "no attempt after the last: {received:#?}");
    assert!(received.iter().all(|r| r.event_id == received[0].event_id));
    let rows = delivery_rows(&fixture.database).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (attempts, delivered, dead, last_error) = &rows[0];
    assert_eq!((*attempts, *delivered, *dead), (3, false, true), "{rows:?}");
    let last_error = last_error.as_deref().unwrap_or_default();
    assert!(last_error.contains("500"), "{last_error}");
}

#[tokio::test]
async fn an_unreachable_endpoint_records_why() {
    let fixture = fixture().await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    register(&fixture.store, &format!("http://127.0.0.1:{closed_port}/hook")).await;
    let worker = Worker::start(&fixture.store, settings(2));

    fixture.store.create_tenant(&new_tenant("acme")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = delivery_rows(&fixture.database).await;
        if rows.iter().all(|(_, _, dead, _)| *dead) && !rows.is_empty() {
            break rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "not dead in time: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    worker.stop().await;
    let (attempts, delivered, _, last_error) = &rows[0];
    assert_eq!((*attempts, *delivered), (2, false));
    let last_error = last_error.as_deref().unwrap_or_default().to_lowercase();
    assert!(last_error.contains("connect"), "the cause is kept: {last_error}");
}

#[tokio::test]
async fn a_poke_delivers_without_waiting_for_the_poll() {
    let fixture = fixture().await;
    let receiver = Receiver::start(0).await;
    register(&fixture.store, &receiver.url).await;
    let settings = WorkerSettings { poll_interval: Duration::from_secs(3600), ..settings(12) };
    let notifier = settings.notifier.clone();
    let worker = Worker::start(&fixture.store, settings);
    // Let the worker find nothing and settle into its wait.
    tokio::time::sleep(Duration::from_millis(300)).await;

    fixture.store.create_tenant(&new_tenant("acme")).await.unwrap();
    notifier.notify_one();
    receiver.wait_for("the poked delivery", |got| got.len() == 1).await;
    worker.stop().await;
    assert_eq!(receiver.received()[0].status, 200);
}

/// Resolves the names it maps (and nothing else) without DNS: a test's stand-in for a name
/// that resolves inside the network at delivery time.
struct MappedNames(HashMap<String, IpAddr>);

impl Resolve for MappedNames {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self.0.get(name.as_str()).copied();
        Box::pin(async move {
            let address = found.ok_or_else(|| format!("{} is not mapped", name.as_str()))?;
            Ok(Box::new(std::iter::once(SocketAddr::new(address, 0))) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

#[tokio::test]
async fn webhook_delivery_checks_the_resolved_address() {
    let receiver = Receiver::start(0).await;
    let port = receiver.url.rsplit(':').next().unwrap().split('/').next().unwrap().to_owned();
    // Registered under a name (as if it was public then) that now resolves to loopback.
    let url = format!("http://receiver.rebinding.test:{port}/hooks/tenantry");
    let names: Arc<dyn Resolve> =
        Arc::new(MappedNames(HashMap::from([("receiver.rebinding.test".to_owned(), "127.0.0.1".parse().unwrap())])));

    // No allowed networks: not delivered, recorded as refused, not retried.
    let setup = fixture().await;
    register(&setup.store, &url).await;
    let refusing = WorkerSettings {
        destinations: DestinationResolver::new(DestinationPolicy::default(), Some(names.clone())),
        ..settings(5)
    };
    let worker = Worker::start(&setup.store, refusing);
    setup.store.create_tenant(&new_tenant("acme")).await.unwrap();
    let rows = settled_rows(&setup.database).await;
    worker.stop().await;
    assert!(receiver.received().is_empty(), "nothing reached the receiver: {:#?}", receiver.received());
    let (attempts, delivered, dead, last_error) = &rows[0];
    assert_eq!((*attempts, *delivered, *dead), (1, false, true), "refused at once, never retried: {rows:?}");
    let last_error = last_error.as_deref().unwrap_or_default();
    assert!(last_error.starts_with("refused: "), "{last_error}");
    assert!(last_error.contains("127.0.0.1"), "{last_error}");

    // A literal internal address is refused too (it is connected to without resolving).
    let setup = fixture().await;
    register(&setup.store, &receiver.url).await;
    let refusing = WorkerSettings { destinations: DestinationResolver::default(), ..settings(5) };
    let worker = Worker::start(&setup.store, refusing);
    setup.store.create_tenant(&new_tenant("acme")).await.unwrap();
    let rows = settled_rows(&setup.database).await;
    worker.stop().await;
    assert!(receiver.received().is_empty());
    assert!(rows[0].3.as_deref().unwrap_or_default().starts_with("refused: "), "{rows:?}");

    // With loopback allowed, the same name is delivered to.
    let setup = fixture().await;
    register(&setup.store, &url).await;
    let allowing =
        WorkerSettings { destinations: DestinationResolver::new(loopback_allowed(), Some(names)), ..settings(5) };
    let worker = Worker::start(&setup.store, allowing);
    setup.store.create_tenant(&new_tenant("acme")).await.unwrap();
    let rows = settled_rows(&setup.database).await;
    worker.stop().await;
    assert_eq!((rows[0].0, rows[0].1), (1, true), "{rows:?}");
    assert_eq!(receiver.received().len(), 1);
}

/// The delivery rows once every one is delivered or dead.
async fn settled_rows(database: &str) -> Vec<(i64, bool, bool, Option<String>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = delivery_rows(database).await;
        if !rows.is_empty() && rows.iter().all(|(_, delivered, dead, _)| *delivered || *dead) {
            return rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "not settled in time: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
