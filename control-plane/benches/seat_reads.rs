//! Seat-count reads as billing systems make them: a program, not a timed test. It prints its
//! figures next to a baseline measured in the same run on the same PostgreSQL, and judges
//! nothing (it exits 0 unless something broke); docs/benchmarks.md explains how to run it and
//! what each figure means.
//!
//! ```sh
//! cargo bench -p control-plane --bench seat_reads
//! cargo bench -p control-plane --bench seat_reads -- --tenants 1000 --seconds 20 --connections 64
//! ```
//!
//! 1. A private PostgreSQL and Redis (no Kubernetes), and the real `control-plane` binary
//!    (built in the bench profile) as a supervised child: `serve` on PostgreSQL + Redis with no
//!    provisioner.
//! 2. N tenants with 1 to 10 seats each, written through the store library on the server's own
//!    database; a billing-reader token minted from the server's key settings.
//! 3. Warm-up: every tenant's seat count read once over HTTP and checked against what was
//!    seeded, which also fills the cache.
//! 4. The control plane: `wrk` against `GET /v1/tenants/{slug}/seats`, spread round-robin over
//!    every tenant, with the billing-reader token.
//! 5. The baseline, afterwards and never at the same time: `pgbench -S -M prepared` (select-only)
//!    with the same number of connections, against a second database of the same PostgreSQL.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use control_plane::auth::Role;
use control_plane::catalogue;
use control_plane::config::{self, Layer, Secret, Settings};
use control_plane::slug::Slug;
use control_plane::store::{NewTenant, SeatAdded, Store};
use e2e::postgres::{Postgres, PostgresServer};
use e2e::process::{Spec, Supervised, WorkDir};
use e2e::redis_server::Redis;
use futures::{StreamExt, TryStreamExt, stream};

/// The plan every benchmark tenant is on.
const PLAN: &str = "bench-seats";
/// Tenants get 1 to this many seats.
const MAX_SEATS: u32 = 10;
/// Tenants written at once while seeding, and seat counts read at once during the warm-up.
const SEED_CONCURRENCY: usize = 16;
/// Connections the seeding store opens.
const SEED_CONNECTIONS: u32 = 16;
/// wrk threads (fewer when there are fewer connections).
const WRK_THREADS: u32 = 2;
/// pgbench threads, as `-j`.
const PGBENCH_THREADS: u32 = 2;
/// `pgbench -i -s`: 1,000,000 rows in `pgbench_accounts`.
const PGBENCH_SCALE: u32 = 10;
/// The PostgreSQL of the e2e crate accepts 200 connections; the server's pool keeps up to 32 of
/// them open while pgbench runs.
const MAX_CONNECTIONS: u32 = 160;
/// How long wrk or pgbench may run beyond `--seconds` before the bench gives up on it.
const PROGRAM_GRACE: Duration = Duration::from_secs(300);
/// The goals of the issue, printed beside the figures.
const RATIO_GOAL: f64 = 1.0;
const P99_GOAL: Duration = Duration::from_millis(10);
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Parser, Debug)]
#[command(about = "Seat-count reads of the control plane (wrk) beside pgbench select-only on the same PostgreSQL")]
struct Args {
    /// Tenants seeded with 1 to 10 seats each, and spread over by the reads.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    tenants: u32,
    /// Length of the wrk run and of the pgbench run, each.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=3600))]
    seconds: u32,
    /// Connections of wrk and clients of pgbench (at most 160: the private PostgreSQL allows 200).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    connections: u32,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = tokio::select! {
        outcome = run(&args) => outcome,
        // Dropping `run` stops the server, Redis, PostgreSQL, wrk and pgbench.
        _ = e2e::process::interrupted() => Err("interrupted".into()),
    };
    match outcome {
        Ok(report) => {
            report.print();
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("seat_reads: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What runs for the bench. Fields drop in order: the server before the services it uses.
struct Services {
    server: ServerProcess,
    redis: Redis,
    postgres: PostgresServer,
    workdir: Arc<WorkDir>,
}

async fn run(args: &Args) -> Result<Report, String> {
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let machine_at_start = Machine::now()?;

    progress("installing wrk if missing");
    tokio::task::spawn_blocking(|| e2e::install::ensure_debian_packages(&["wrk"]))
        .await
        .map_err(|e| format!("installing wrk: {e}"))?
        .map_err(|e| format!("installing wrk: {e}"))?;
    let wrk = e2e::install::which("wrk").ok_or("wrk is installed but not on PATH")?;

    progress("starting PostgreSQL and Redis");
    let workdir = WorkDir::create("seat-reads").map_err(|e| e.to_string())?;
    let postgres = PostgresServer::start(&workdir).await.map_err(|e| format!("starting PostgreSQL: {e}"))?;
    let redis = Redis::start(&workdir).await.map_err(|e| format!("starting Redis: {e}"))?;
    let database = "seat_reads";
    postgres.create_database(database).await.map_err(|e| format!("creating database {database}: {e}"))?;

    progress("starting the control plane");
    let key = Secret::random(32);
    let server_env = server_env(&workdir, &postgres.url(database), &redis.url(), &key)?;
    let server = ServerProcess::start(&workdir, &server_env)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(SEED_CONCURRENCY)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    server.wait_ready(&http).await?;
    let services = Services { server, redis, postgres, workdir };

    let measured = measure(args, &services, &server_env, &http, &wrk).await;
    let log = services.server.keep_log(&run_id);
    let figures = measured.map_err(|e| format!("{e} (control-plane log: {})", log.display()))?;
    Ok(Report { run_id, args: ArgsEcho::from(args), machine_at_start, figures, log })
}

/// The environment of `control-plane serve`; also what the bench's token is minted from, so the
/// token verifies with exactly the server's key settings.
fn server_env(
    workdir: &WorkDir,
    database_url: &str,
    redis_url: &str,
    key: &Secret,
) -> Result<Vec<(String, String)>, String> {
    let port = e2e::process::free_port().map_err(|e| e.to_string())?;
    Ok(vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("REDIS_URL".into(), redis_url.into()),
        ("TENANTRY_LISTEN".into(), format!("127.0.0.1:{port}")),
        ("TENANTRY_PROVISIONER".into(), "none".into()),
        ("TENANTRY_DATA_DIR".into(), workdir.join("cp").display().to_string()),
        ("TENANTRY_JWT_KEYS".into(), format!("bench:{}", key.to_base64())),
        ("TENANTRY_JWT_SIGNING_KID".into(), "bench".into()),
        ("RUST_LOG".into(), "warn".into()),
    ])
}

async fn measure(
    args: &Args,
    services: &Services,
    server_env: &[(String, String)],
    http: &reqwest::Client,
    wrk: &Path,
) -> Result<Figures, String> {
    let database_url = env_value(server_env, "DATABASE_URL")?;
    progress(&format!("seeding {} tenants with 1 to {MAX_SEATS} seats each", args.tenants));
    let started = Instant::now();
    let tenants = seed(database_url, args.tenants).await?;
    let seeding = started.elapsed();

    let token = billing_reader_token(server_env, args.seconds)?;
    progress("warm-up: reading every tenant's seat count once");
    let started = Instant::now();
    warm_up(http, &services.server.base_url, &token, &tenants).await?;
    let warm_up = started.elapsed();

    let slugs: Vec<&str> = tenants.iter().map(|t| t.slug.as_str()).collect();
    let script = write_wrk_script(&services.workdir, &token, &slugs)?;
    let machine_before = Machine::now()?;
    let redis_before = redis_info(&services.redis.url()).await?;
    let server_cpu_before = e2e::process::cpu_time(services.server.process.pid())?;
    let redis_cpu_before = e2e::process::cpu_time(services.redis.process().pid())?;
    let busy_before = CpuSample::now()?;
    progress(&format!("wrk: {} connections for {} s", args.connections, args.seconds));
    let wrk = run_wrk(wrk, &services.server.base_url, &script, args).await?;
    let busy = CpuSample::now()?.busy_since(&busy_before);
    services.server.process.check_alive().map_err(|e| e.to_string())?;
    let server_cpu = e2e::process::cpu_time(services.server.process.pid())? - server_cpu_before;
    let redis_cpu = e2e::process::cpu_time(services.redis.process().pid())? - redis_cpu_before;
    let (peak_rss_kib, rss_kib) = e2e::process::resident_memory_kib(services.server.process.pid())?;
    let redis_after = redis_info(&services.redis.url()).await?;
    let control_plane = ControlPlane {
        wrk,
        cache_hits: redis_after.keyspace_hits.saturating_sub(redis_before.keyspace_hits),
        cache_misses: redis_after.keyspace_misses.saturating_sub(redis_before.keyspace_misses),
        server_cpu,
        redis_cpu,
        busy_cpus: busy,
        rss_kib,
        peak_rss_kib,
    };

    let baseline = run_pgbench(&services.postgres, args).await?;
    let seats = tenants.iter().map(|t| u64::from(t.seats)).sum();
    Ok(Figures {
        seats,
        seeding,
        warm_up,
        machine_before,
        redis_version: redis_after.version,
        postgres_version: postgres_major(services.postgres.bin_dir()),
        control_plane,
        baseline,
    })
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    env.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()).ok_or_else(|| format!("{name} is not set"))
}

// ---------------------------------------------------------------------------------------------
// The server

/// The `control-plane` binary, a supervised child of the e2e crate: stopped when dropped, and by
/// the work directory's reaper if this process dies without dropping it.
struct ServerProcess {
    process: Supervised,
    base_url: String,
}

impl ServerProcess {
    fn start(workdir: &Arc<WorkDir>, env: &[(String, String)]) -> Result<Self, String> {
        let listen = env_value(env, "TENANTRY_LISTEN")?;
        let spec = env.iter().fold(
            Spec::new("control-plane", env!("CARGO_BIN_EXE_control-plane")).arg("serve"),
            |spec, (key, value)| spec.env(key, value),
        );
        let process = Supervised::spawn(workdir, spec).map_err(|e| format!("starting the control plane: {e}"))?;
        Ok(Self { process, base_url: format!("http://{listen}") })
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> Result<(), String> {
        let url = format!("{}/readyz", self.base_url);
        self.process
            .wait_ready("the control plane", Duration::from_secs(120), || {
                let request = http.get(&url).send();
                async move {
                    let response = request.await.map_err(|e| e.to_string())?;
                    match response.status() {
                        reqwest::StatusCode::OK => Ok(()),
                        status => Err(format!("/readyz answered {status}")),
                    }
                }
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Copies the log out of the work directory (removed at the end); returns where it is.
    fn keep_log(&self, run_id: &str) -> PathBuf {
        let kept = std::env::temp_dir().join(format!("tenantry-bench-{run_id}-control-plane.log"));
        match std::fs::copy(self.process.log_path(), &kept) {
            Ok(_) => kept,
            Err(_) => self.process.log_path().to_path_buf(),
        }
    }
}

/// A billing-reader token from the server's own settings (issuer, audience, keys), living a
/// little longer than the run.
fn billing_reader_token(server_env: &[(String, String)], seconds: u32) -> Result<String, String> {
    let env: BTreeMap<String, String> = server_env.iter().cloned().collect();
    let settings = Settings::from_sources(Layer::default(), &env, Layer::default())
        .map_err(|e| format!("the server's settings: {e}"))?;
    let keys = settings.jwt_keys().map_err(|e| format!("the server's JWT keys: {e}"))?;
    let ttl = Duration::from_secs(3600 + 2 * u64::from(seconds));
    keys.issue(Role::BillingReader, None, "seat-reads-bench", ttl).map_err(|e| format!("minting a token: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Seeding and warm-up

struct SeededTenant {
    slug: String,
    seats: u32,
}

/// Tenant `i` has `1 + 7i mod 10` seats: every count from 1 to 10, evenly, in no simple order.
fn seats_of(index: u32) -> u32 {
    1 + (index * 7) % MAX_SEATS
}

async fn seed(database_url: &str, tenants: u32) -> Result<Vec<SeededTenant>, String> {
    let store = Store::connect_with(database_url, SEED_CONNECTIONS).await.map_err(|e| format!("connecting: {e}"))?;
    // The default catalogue's largest plan, renamed, so the resources are valid by construction.
    let mut plan = catalogue::default_plans()
        .into_iter()
        .max_by_key(|plan| plan.max_seats)
        .ok_or("the default plan catalogue is empty")?;
    plan.name = PLAN.into();
    plan.display_name = "Seat-read benchmark".into();
    plan.max_seats = plan.max_seats.max(MAX_SEATS);
    store.create_plan(&plan).await.map_err(|e| format!("creating plan {PLAN}: {e}"))?;

    let seeded = stream::iter(0..tenants)
        .map(|index| {
            let store = store.clone();
            async move {
                let slug = format!("seats-{index:05}");
                let seats = seats_of(index);
                let new = NewTenant {
                    slug: Slug::parse(&slug).map_err(|e| format!("slug {slug}: {e}"))?,
                    display_name: format!("Seat reads {index}"),
                    owner_email: format!("owner@{slug}.example.com"),
                    plan: PLAN.into(),
                    licensed_seats: MAX_SEATS,
                    erp_version: config::DEFAULT_ERP_VERSION.into(),
                    first_seat: None,
                    host: None,
                    generated_host: None,
                };
                store.create_tenant(&new).await.map_err(|e| format!("creating tenant {slug}: {e}"))?;
                for user in 0..seats {
                    let email = format!("user{user}@{slug}.example.com");
                    match store.add_seat(&slug, &email).await {
                        Ok(SeatAdded::Added(_)) => {}
                        Ok(SeatAdded::AlreadyHeld(_)) => return Err(format!("{email} already held a seat of {slug}")),
                        Err(e) => return Err(format!("seating {email} in {slug}: {e}")),
                    }
                }
                Ok(SeededTenant { slug, seats })
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await;
    store.close().await;
    let mut seeded = seeded?;
    seeded.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(seeded)
}

#[derive(serde::Deserialize)]
struct SeatsAnswer {
    tenant: String,
    count: u32,
}

/// Reads every tenant's count once (which fills the cache) and checks it against the seeding.
async fn warm_up(http: &reqwest::Client, base_url: &str, token: &str, tenants: &[SeededTenant]) -> Result<(), String> {
    stream::iter(tenants)
        .map(|tenant| async move {
            let url = format!("{base_url}/v1/tenants/{}/seats", tenant.slug);
            let response = http.get(&url).bearer_auth(token).send().await.map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                let body = response.text().await.unwrap_or_default();
                return Err(format!("GET {url} answered {status}: {}", body.chars().take(300).collect::<String>()));
            }
            let answer: SeatsAnswer = response.json().await.map_err(|e| format!("GET {url}: {e}"))?;
            if answer.tenant != tenant.slug || answer.count != tenant.seats {
                return Err(format!(
                    "GET {url} answered tenant {:?} with {} seats; {} were seeded",
                    answer.tenant, answer.count, tenant.seats
                ));
            }
            Ok(())
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<()>()
        .await
}

// ---------------------------------------------------------------------------------------------
// wrk

/// The Lua script: every request pre-formatted once per wrk thread, then handed out
/// round-robin, each thread starting elsewhere in the list, so wrk spends no time building
/// requests. The file holds the token: private to its owner, removed with the work directory.
fn write_wrk_script(workdir: &WorkDir, token: &str, slugs: &[&str]) -> Result<PathBuf, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::from("local slugs = {\n");
    for slug in slugs {
        // Slugs are DNS labels and tokens base64url with dots: nothing to escape in a Lua string.
        let _ = writeln!(text, "  \"{slug}\",");
    }
    let _ = writeln!(text, "}}\nlocal token = \"{token}\"");
    text.push_str(
        r#"
local requests = {}
local next_index = 0
local threads = 0

function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function init(args)
  local headers = { ["Authorization"] = "Bearer " .. token, ["Accept"] = "application/json" }
  for i, slug in ipairs(slugs) do
    requests[i] = wrk.format("GET", "/v1/tenants/" .. slug .. "/seats", headers)
  end
  next_index = (thread_number * 7919) % #requests
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
"#,
    );
    let path = workdir.join("seat-reads.lua");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

#[derive(Debug, Default)]
struct WrkFigures {
    requests: u64,
    elapsed: Duration,
    requests_per_sec: f64,
    average: Duration,
    max: Duration,
    p50: Duration,
    p75: Duration,
    p90: Duration,
    p99: Duration,
    non_2xx: u64,
    /// wrk's `Socket errors:` line, when it printed one.
    socket_errors: Option<String>,
}

async fn run_wrk(wrk: &Path, base_url: &str, script: &Path, args: &Args) -> Result<WrkFigures, String> {
    let threads = WRK_THREADS.min(args.connections);
    let command = [
        format!("-t{threads}"),
        format!("-c{}", args.connections),
        format!("-d{}s", args.seconds),
        "--latency".into(),
        "-s".into(),
        script.display().to_string(),
        format!("{base_url}/"),
    ];
    let limit = Duration::from_secs(args.seconds.into()) + PROGRAM_GRACE;
    let output = run_program(wrk, &command, limit).await?;
    parse_wrk(&output).map_err(|e| format!("wrk: {e}; its output:\n{output}"))
}

fn parse_wrk(output: &str) -> Result<WrkFigures, String> {
    let mut figures = WrkFigures::default();
    let (mut rate, mut total, mut thread_latency) = (false, false, false);
    let mut percentiles = 0;
    for line in output.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            figures.requests_per_sec = rest.trim().parse().map_err(|_| format!("bad Requests/sec line {line:?}"))?;
            rate = true;
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            figures.non_2xx = rest.trim().parse().map_err(|_| format!("bad non-2xx line {line:?}"))?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            figures.socket_errors = Some(rest.trim().to_string());
        } else if fields.first() == Some(&"Latency") && fields.len() >= 5 && fields[1] != "Distribution" {
            // Thread Stats: avg, stdev, max, +/- stdev.
            figures.average = parse_wrk_time(fields[1])?;
            figures.max = parse_wrk_time(fields[3])?;
            thread_latency = true;
        } else if let [label @ ("50%" | "75%" | "90%" | "99%"), value] = fields.as_slice() {
            let value = parse_wrk_time(value)?;
            match *label {
                "50%" => figures.p50 = value,
                "75%" => figures.p75 = value,
                "90%" => figures.p90 = value,
                _ => figures.p99 = value,
            }
            percentiles += 1;
        } else if fields.len() >= 4 && fields[1] == "requests" && fields[2] == "in" {
            // "246912 requests in 20.00s, 45.21MB read"
            figures.requests = fields[0].parse().map_err(|_| format!("bad request total {line:?}"))?;
            figures.elapsed = parse_wrk_time(fields[3].trim_end_matches(','))?;
            total = true;
        }
    }
    match (rate, total, thread_latency, percentiles) {
        (true, true, true, 4) => Ok(figures),
        _ => Err("could not find Requests/sec, the request total, the latency and its 50/75/90/99% lines".into()),
    }
}

/// wrk's times: `812.00us`, `1.23ms`, `2.00s`, `1.50m`, `1.00h`.
fn parse_wrk_time(text: &str) -> Result<Duration, String> {
    let units = [("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    let (number, scale) = units
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|number| (number, *scale)))
        .ok_or_else(|| format!("no time unit in {text:?}"))?;
    let value: f64 = number.parse().map_err(|_| format!("not a time: {text:?}"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("not a time: {text:?}"))
}

// ---------------------------------------------------------------------------------------------
// pgbench

#[derive(Debug, Default)]
struct PgbenchFigures {
    tps: f64,
    latency_average: Duration,
    transactions: u64,
    failed: u64,
    busy_cpus: f64,
}

async fn run_pgbench(postgres: &Postgres, args: &Args) -> Result<PgbenchFigures, String> {
    let database = "pgbench";
    postgres.create_database(database).await.map_err(|e| format!("creating database {database}: {e}"))?;
    let pgbench = postgres.bin_dir().join("pgbench");
    // pgbench is a client: it runs as this user and connects over TCP as the superuser.
    let connection = ["-h".to_string(), "127.0.0.1".into(), "-p".into(), postgres.port().to_string(), "-U".into()]
        .into_iter()
        .chain([e2e::postgres::SUPERUSER.to_string()]);

    progress(&format!("pgbench: initialising scale {PGBENCH_SCALE}"));
    let init: Vec<String> =
        connection.clone().chain(["-i", "-q", "-s", &PGBENCH_SCALE.to_string(), database].map(String::from)).collect();
    run_program(&pgbench, &init, PROGRAM_GRACE).await?;

    progress(&format!("pgbench: select-only, {} clients for {} s", args.connections, args.seconds));
    let threads = PGBENCH_THREADS.min(args.connections);
    let select_only: Vec<String> = connection
        .chain(
            [
                "-S",
                "-M",
                "prepared",
                &format!("-c{}", args.connections),
                &format!("-j{threads}"),
                &format!("-T{}", args.seconds),
                "-n",
                database,
            ]
            .map(String::from),
        )
        .collect();
    let limit = Duration::from_secs(args.seconds.into()) + PROGRAM_GRACE;
    let busy_before = CpuSample::now()?;
    let output = run_program(&pgbench, &select_only, limit).await?;
    let busy_cpus = CpuSample::now()?.busy_since(&busy_before);
    let mut figures = parse_pgbench(&output).map_err(|e| format!("pgbench: {e}; its output:\n{output}"))?;
    figures.busy_cpus = busy_cpus;
    Ok(figures)
}

fn parse_pgbench(output: &str) -> Result<PgbenchFigures, String> {
    let mut figures = PgbenchFigures::default();
    let (mut tps, mut latency, mut transactions) = (false, false, false);
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("tps = ").filter(|_| line.contains("without initial connection time")) {
            let number = rest.split_whitespace().next().unwrap_or_default();
            figures.tps = number.parse().map_err(|_| format!("bad tps line {line:?}"))?;
            tps = true;
        } else if let Some(rest) = line.strip_prefix("latency average = ") {
            let ms: f64 = rest
                .strip_suffix(" ms")
                .and_then(|number| number.trim().parse().ok())
                .ok_or_else(|| format!("bad latency line {line:?}"))?;
            figures.latency_average =
                Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| format!("bad latency line {line:?}"))?;
            latency = true;
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            let number = rest.split_whitespace().next().unwrap_or_default().split('/').next().unwrap_or_default();
            figures.transactions = number.parse().map_err(|_| format!("bad transactions line {line:?}"))?;
            transactions = true;
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            let number = rest.split_whitespace().next().unwrap_or_default();
            figures.failed = number.parse().map_err(|_| format!("bad failed-transactions line {line:?}"))?;
        }
    }
    if tps && latency && transactions {
        Ok(figures)
    } else {
        Err("could not find tps (without initial connection time), latency average and the transaction count".into())
    }
}

/// `/usr/lib/postgresql/15/bin` → `15`.
fn postgres_major(bin_dir: &Path) -> String {
    bin_dir
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "?".to_string(), |name| name.to_string_lossy().into_owned())
}

// ---------------------------------------------------------------------------------------------
// Processes, Redis and the machine

/// Runs a program to the end (killed if the bench stops first) and returns its stdout and stderr.
async fn run_program(program: &Path, args: &[String], limit: Duration) -> Result<String, String> {
    let shown = program.file_name().map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into());
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| format!("{shown} did not finish within {limit:?}"))?
        .map_err(|e| format!("running {shown}: {e}"))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(text)
    } else {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("{shown} failed ({}):\n{}", output.status, tail.join("\n")))
    }
}

struct RedisInfo {
    version: String,
    keyspace_hits: u64,
    keyspace_misses: u64,
}

async fn redis_info(url: &str) -> Result<RedisInfo, String> {
    let client = redis::Client::open(url).map_err(|e| format!("Redis: {e}"))?;
    let mut connection = client.get_multiplexed_async_connection().await.map_err(|e| format!("Redis: {e}"))?;
    let text: String = redis::cmd("INFO").query_async(&mut connection).await.map_err(|e| format!("Redis INFO: {e}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(str::to_string)
            .ok_or_else(|| format!("Redis INFO has no {name}"))
    };
    let number = |name: &str| field(name)?.parse::<u64>().map_err(|_| format!("Redis INFO {name} is not a number"));
    Ok(RedisInfo {
        version: field("redis_version")?,
        keyspace_hits: number("keyspace_hits")?,
        keyspace_misses: number("keyspace_misses")?,
    })
}

/// The whole machine's CPU counters (`/proc/stat`), to tell how busy every CPU was meanwhile.
struct CpuSample {
    at: Instant,
    busy_ticks: u64,
}

impl CpuSample {
    fn now() -> Result<Self, String> {
        let text = std::fs::read_to_string("/proc/stat").map_err(|e| format!("reading /proc/stat: {e}"))?;
        let ticks: Vec<u64> = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("cpu "))
            .ok_or("no cpu line in /proc/stat")?
            .split_whitespace()
            .map(|field| field.parse().map_err(|_| format!("bad /proc/stat field {field:?}")))
            .collect::<Result<_, _>>()?;
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        Ok(Self { at: Instant::now(), busy_ticks: total - idle })
    }

    /// CPUs busy on average since `earlier` (2.0 = two CPUs fully busy).
    fn busy_since(&self, earlier: &Self) -> f64 {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        self.busy_ticks.saturating_sub(earlier.busy_ticks) as f64 / 100.0 / seconds
    }
}

struct Machine {
    cpus: usize,
    model: String,
    memory_gib: f64,
    load: String,
}

impl Machine {
    fn now() -> Result<Self, String> {
        let load = std::fs::read_to_string("/proc/loadavg").map_err(|e| format!("reading /proc/loadavg: {e}"))?;
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")?.split_once(':').map(|(_, model)| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:")?.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Ok(Self {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            model,
            memory_gib: memory_kib / MIB,
            load: load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        })
    }
}

fn progress(message: &str) {
    eprintln!("seat_reads: {message}");
}

// ---------------------------------------------------------------------------------------------
// The report

struct ArgsEcho {
    tenants: u32,
    seconds: u32,
    connections: u32,
}

impl From<&Args> for ArgsEcho {
    fn from(args: &Args) -> Self {
        Self { tenants: args.tenants, seconds: args.seconds, connections: args.connections }
    }
}

struct ControlPlane {
    wrk: WrkFigures,
    cache_hits: u64,
    cache_misses: u64,
    server_cpu: Duration,
    redis_cpu: Duration,
    busy_cpus: f64,
    rss_kib: u64,
    peak_rss_kib: u64,
}

struct Figures {
    seats: u64,
    seeding: Duration,
    warm_up: Duration,
    machine_before: Machine,
    redis_version: String,
    postgres_version: String,
    control_plane: ControlPlane,
    baseline: PgbenchFigures,
}

struct Report {
    run_id: String,
    args: ArgsEcho,
    machine_at_start: Machine,
    figures: Figures,
    log: PathBuf,
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

impl Report {
    fn print(&self) {
        let Self { run_id, args, machine_at_start: start, figures, log } = self;
        let cp = &figures.control_plane;
        let wrk = &cp.wrk;
        let base = &figures.baseline;
        let wrk_secs = wrk.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let ratio = if base.tps > 0.0 { wrk.requests_per_sec / base.tps } else { f64::NAN };
        let threads = WRK_THREADS.min(args.connections);

        println!();
        println!("control plane seat reads (run {run_id})");
        println!(
            "  machine      {} CPUs ({}), {:.1} GiB; load average {} at start, {} before wrk",
            start.cpus, start.model, start.memory_gib, start.load, figures.machine_before.load
        );
        println!(
            "  services     PostgreSQL {} and Redis {}, private to this run; control-plane serve (bench profile)",
            figures.postgres_version, figures.redis_version
        );
        println!(
            "  workload     {} tenants, {} seats (1 to {MAX_SEATS} each), seeded through the store in {:.1} s",
            args.tenants,
            figures.seats,
            figures.seeding.as_secs_f64()
        );
        println!(
            "  warm-up      every tenant's count read once over HTTP and checked: {:.1} s",
            figures.warm_up.as_secs_f64()
        );
        println!();
        println!(
            "control plane  GET /v1/tenants/{{slug}}/seats, billing-reader token, wrk -t{threads} -c{} -d{}s",
            args.connections, args.seconds
        );
        println!(
            "  requests/s          {:>10.1}   ({} requests in {:.1} s)",
            wrk.requests_per_sec, wrk.requests, wrk_secs
        );
        println!(
            "  latency             p50 {}   p75 {}   p90 {}   p99 {}   (average {}, max {})",
            ms(wrk.p50),
            ms(wrk.p75),
            ms(wrk.p90),
            ms(wrk.p99),
            ms(wrk.average),
            ms(wrk.max)
        );
        println!("  non-2xx responses   {:>10}", wrk.non_2xx);
        println!("  socket errors       {}", wrk.socket_errors.as_deref().unwrap_or("none"));
        println!("  cache (Redis GETs)  {:>10} hits, {} misses", cp.cache_hits, cp.cache_misses);
        let per_request =
            |cpu: Duration| if wrk.requests > 0 { cpu.as_secs_f64() * 1e6 / wrk.requests as f64 } else { 0.0 };
        println!(
            "  server CPU          {:>10.1} s   ({:.2} CPUs, {:.0} µs per request)",
            cp.server_cpu.as_secs_f64(),
            cp.server_cpu.as_secs_f64() / wrk_secs,
            per_request(cp.server_cpu)
        );
        println!(
            "  Redis CPU           {:>10.1} s   ({:.2} CPUs, {:.0} µs per request)",
            cp.redis_cpu.as_secs_f64(),
            cp.redis_cpu.as_secs_f64() / wrk_secs,
            per_request(cp.redis_cpu)
        );
        println!(
            "  machine busy        {:>10.2} of {} CPUs (wrk and everything else included)",
            cp.busy_cpus, start.cpus
        );
        println!(
            "  server memory       RSS {:.1} MiB, peak (VmHWM) {:.1} MiB",
            cp.rss_kib as f64 / 1024.0,
            cp.peak_rss_kib as f64 / 1024.0
        );
        println!();
        println!(
            "baseline       pgbench -S -M prepared -c{} -j{} -T{} -n, scale {PGBENCH_SCALE}, same PostgreSQL",
            args.connections,
            PGBENCH_THREADS.min(args.connections),
            args.seconds
        );
        println!(
            "  transactions/s      {:>10.1}   ({} transactions, {} failed)",
            base.tps, base.transactions, base.failed
        );
        println!("  latency average     {:>10}", ms(base.latency_average));
        println!("  machine busy        {:>10.2} of {} CPUs", base.busy_cpus, start.cpus);
        println!();
        println!("ratio control plane requests/s / pgbench TPS   {ratio:.2}");
        println!();
        println!("goals (printed, not enforced)");
        println!("  ratio >= {RATIO_GOAL:.1}      {} ({ratio:.2})", met(ratio >= RATIO_GOAL));
        println!("  p99 <= {}     {} ({})", ms(P99_GOAL), met(wrk.p99 <= P99_GOAL), ms(wrk.p99));
        if wrk.non_2xx > 0 || wrk.socket_errors.is_some() {
            println!(
                "  note: {} non-2xx responses, socket errors: {}; see the log {}",
                wrk.non_2xx,
                wrk.socket_errors.as_deref().unwrap_or("none"),
                log.display()
            );
        }
        println!("  control-plane log   {}", log.display());
    }
}
