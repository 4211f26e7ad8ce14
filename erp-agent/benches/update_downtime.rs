//! How long production is unavailable during a module activation, a module update and a patch
//! update done by the agent (`erp_agent::ops::update::update`), against the floor: the ERP's own
//! update run alone on a copy of the same database. A program, not a timed test: it prints its
//! figures and judges nothing; docs/benchmarks.md explains how to run it and what they mean.
//!
//! ```sh
//! cargo bench -p erp-agent --bench update_downtime                   # 256 MiB of table data, 32 MiB of attachments
//! cargo bench -p erp-agent --bench update_downtime -- --table-mib 32 --attachment-mib 8 --rounds 1
//! ```
//!
//! The tenant is a real Tryton database (`e2e::tryton::fixture`) served by a real `trytond`,
//! which the agent stops and starts through [`ServedErp`] (a new configuration, so a new port,
//! per start). Each round, per case, in alternating order so both see the same machine:
//! - floor: `trytond-admin` (through `ErpCommand::update`) on a fresh copy of the database;
//! - agent: the update operation on another fresh copy, served by `trytond`, without a
//!   before-operation backup (that runs while the ERP still serves). Downtime is from the
//!   moment the agent calls `stop` until `start` returned, timed inside [`ServedErp`].
//!
//! The figure that does not depend on the machine's load is the CPU time (user + system) of
//! the processes the ERP's update run consists of: for the floor, the children waited for
//! during `ErpCommand::update`; for the agent, those waited for between the old server's exit
//! and the new server's start (the admin command; PostgreSQL's own work is not counted).

mod common;

use common::{children_cpu, median};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::TestEnv;
use e2e::process::WorkDir;
use e2e::tryton::fixture::{self, FixtureSize};
use e2e::tryton::{INSTALLED_NOT_ACTIVATED, TrytonConfig, TrytonInstall, TrytonServer};
use erp_agent::database::{DatabaseName, DatabaseServer, ErpState, PgTools, ServerAddress};
use erp_agent::erp::{ErpCommand, ModuleUpdate, Profile};
use erp_agent::filestore::FileStore;
use erp_agent::journal::FileJournal;
use erp_agent::manifest::ErpInfo;
use erp_agent::ops::{Environment, ErpControl, release};
use erp_agent::report::{Outcome, Report};
use tokio::sync::Mutex;

const MIB: f64 = 1024.0 * 1024.0;
/// The goal: downtime at most this times the floor, plus [`GOAL_SLACK_S`].
const GOAL_FACTOR: f64 = 1.2;
const GOAL_SLACK_S: f64 = 2.0;

#[derive(Parser, Debug)]
#[command(about = "Production downtime of the agent's module updates against the ERP's own update run")]
struct Args {
    /// Table data to generate, MiB.
    #[arg(long, default_value_t = 256)]
    table_mib: u64,
    /// Attachments to generate, MiB (1 MiB each).
    #[arg(long, default_value_t = 32)]
    attachment_mib: u64,
    /// Rounds, each measuring the floor and the agent once per case, alternating which goes first.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// The module the "module update" case updates (`-u MODULE`).
    #[arg(long, default_value = "sale")]
    module: String,
    /// The Tryton series of the tenant.
    #[arg(long, default_value = "7.0")]
    series: String,
    // `cargo bench` passes `--bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    common::run_to_exit(run(Args::parse()))
}

/// One case: what is asked of the ERP, and how to name it.
struct Case {
    name: &'static str,
    update: ModuleUpdate,
    args: String,
}

/// A floor run: the ERP's update alone.
struct Floor {
    wall: Duration,
    cpu: Duration,
}

/// An agent run: production's unavailability and what it was made of.
struct AgentRun {
    downtime: Duration,
    /// CPU of the processes waited for between the old server's exit and the new one's start.
    cpu: Duration,
    /// The report's steps (name, milliseconds), stop to start.
    steps: Vec<(String, u64)>,
    /// The first login once the ERP serves again (trytond loads the database's pool on it).
    first_login: Duration,
}

async fn run(args: Args) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let workdir = WorkDir::create("erp-agent-downtime").map_err(|e| err(&e))?;
    let postgres = TestEnv::shared().await.postgres().await;
    let install = TrytonInstall::ensure_async(&args.series).await.map_err(|e| err(&e))?;
    let data = workdir.join("data");
    let config = TrytonConfig::write_with_data(&workdir.join("admin"), postgres.port(), &data).map_err(|e| err(&e))?;
    let server = DatabaseServer::new(
        ServerAddress::from_url(&postgres.url("postgres")).map_err(|e| err(&e))?,
        PgTools::in_dir(postgres.bin_dir()),
    );
    let filestore = FileStore::new(&data);
    let version = install.version().map_err(|e| err(&e))?;
    let new_module = INSTALLED_NOT_ACTIVATED[0];
    let cases = [
        Case {
            name: "module activation",
            update: ModuleUpdate::Activate(vec![new_module.to_string()]),
            args: format!("-u {new_module} --activate-dependencies"),
        },
        Case {
            name: "module update",
            update: ModuleUpdate::Update(vec![args.module.clone()]),
            args: format!("-u {} --activate-dependencies", args.module),
        },
        Case { name: "patch update", update: ModuleUpdate::All, args: "--all".into() },
    ];
    let command = ErpCommand::new(Profile::Tryton, install.bin("trytond-admin"), config.path())
        .env("TRYTONPASSFILE", config.admin_password_file().display().to_string());

    let source = DatabaseName::new(format!("downtime_source_{}", std::process::id())).map_err(|e| err(&e))?;
    let size = FixtureSize::benchmark(args.table_mib << 20, args.attachment_mib << 20);
    let started = Instant::now();
    install.create_database(postgres, &config, source.as_str()).await.map_err(|e| err(&e))?;
    fixture::activate_modules(&install, &config, source.as_str()).await.map_err(|e| err(&e))?;
    fixture::create(&install, &config, source.as_str(), &size).await.map_err(|e| err(&e))?;
    let generated = started.elapsed();
    let database_bytes = database_size(&server, &source).await?;

    println!("tenantry-agent update downtime (series {}, Tryton {version})", args.series);
    println!(
        "  tenant        database {:.0} MiB on disk, {} attachments of 1 MiB; generated in {:.0} s",
        database_bytes as f64 / MIB,
        size.attachments,
        generated.as_secs_f64()
    );
    println!("  rounds        {} (floor and agent alternate which goes first)", args.rounds);
    println!("  cases         module activation: trytond-admin {}", cases[0].args);
    println!("                module update:     trytond-admin {}", cases[1].args);
    println!(
        "                patch update:      trytond-admin {} (what a patch release of the same series runs)",
        cases[2].args
    );

    let erp = ServedErp::new(install.clone(), workdir.clone(), postgres.port(), data.clone());
    let admin_password = config.admin_password().to_string();
    let mut results: Vec<(Vec<Floor>, Vec<AgentRun>)> = cases.iter().map(|_| (Vec::new(), Vec::new())).collect();
    let copies = AtomicU32::new(0);
    let fresh_copy = |label: &str| {
        let name =
            DatabaseName::new(format!("{label}_{}_{}", std::process::id(), copies.fetch_add(1, Ordering::Relaxed)));
        let (server, filestore, source) = (&server, &filestore, &source);
        async move {
            let name = name.map_err(|e| err(&e))?;
            server.copy(source, &name, ErpState::MayBeRunning).await.map_err(|e| err(&e))?;
            filestore.copy(source.as_str(), name.as_str()).await.map_err(|e| err(&e))?;
            Ok::<_, String>(name)
        }
    };
    let drop_copy = |name: DatabaseName| {
        let (server, filestore) = (&server, &filestore);
        async move {
            server.drop_database(&name, ErpState::Stopped).await.map_err(|e| err(&e))?;
            filestore.delete(name.as_str()).await.map_err(|e| err(&e))
        }
    };

    for round in 0..args.rounds {
        for (index, case) in cases.iter().enumerate() {
            let floor_first = (round as usize + index).is_multiple_of(2);
            for floor_turn in [floor_first, !floor_first] {
                if floor_turn {
                    let database = fresh_copy("downtime_floor").await?;
                    let cpu_before = children_cpu();
                    let begun = Instant::now();
                    command.update(database.as_str(), &case.update).await.map_err(|e| err(&e))?;
                    let floor = Floor { wall: begun.elapsed(), cpu: children_cpu().saturating_sub(cpu_before) };
                    results[index].0.push(floor);
                    drop_copy(database).await?;
                } else {
                    let database = fresh_copy("downtime_prod").await?;
                    let environment = Environment {
                        tenant: "bench".into(),
                        name: "production".into(),
                        database: database.clone(),
                        server: server.clone(),
                        filestore: filestore.clone(),
                        erp: ErpInfo { profile: "tryton".into(), version: version.clone() },
                    };
                    let run = agent_run(&environment, case, &command, &erp, &workdir, &admin_password, round).await?;
                    results[index].1.push(run);
                    drop_copy(database).await?;
                }
            }
            let (floor, agent) = (results[index].0.last().unwrap(), results[index].1.last().unwrap());
            eprintln!(
                "round {} {}: floor {:.1} s, downtime {:.1} s",
                round + 1,
                case.name,
                floor.wall.as_secs_f64(),
                agent.downtime.as_secs_f64()
            );
        }
    }
    erp.stop().await.map_err(|e| err(&e))?;
    drop_copy(source).await?;

    println!();
    println!(
        "  {:<18} {:>9} {:>9} {:>11} {:>9} {:>9} {:>7} {:>14}",
        "case (median)", "floor s", "CPU s", "downtime s", "CPU s", "limit s", "ratio", "within limit"
    );
    for (case, (floors, agents)) in cases.iter().zip(&results) {
        let floor = median(floors.iter().map(|f| f.wall.as_secs_f64()).collect());
        let floor_cpu = median(floors.iter().map(|f| f.cpu.as_secs_f64()).collect());
        let downtime = median(agents.iter().map(|a| a.downtime.as_secs_f64()).collect());
        let agent_cpu = median(agents.iter().map(|a| a.cpu.as_secs_f64()).collect());
        let limit = GOAL_FACTOR * floor + GOAL_SLACK_S;
        println!(
            "  {:<18} {:>9.1} {:>9.1} {:>11.1} {:>9.1} {:>9.1} {:>7.2} {:>14}",
            case.name,
            floor,
            floor_cpu,
            downtime,
            agent_cpu,
            limit,
            downtime / floor,
            if downtime <= limit { "yes" } else { "no" }
        );
    }
    println!();
    println!("  per round (floor s / downtime s, within 1.2 x floor + 2 s), and the downtime's steps:");
    for (case, (floors, agents)) in cases.iter().zip(&results) {
        let rounds: Vec<String> = floors
            .iter()
            .zip(agents)
            .map(|(f, a)| {
                let (floor, downtime) = (f.wall.as_secs_f64(), a.downtime.as_secs_f64());
                let within = if downtime <= GOAL_FACTOR * floor + GOAL_SLACK_S { "yes" } else { "no" };
                format!("{floor:.1} / {downtime:.1} {within}")
            })
            .collect();
        println!("  {:<18} {}", case.name, rounds.join("; "));
        let steps: Vec<String> = agents[0]
            .steps
            .iter()
            .map(|(step, _)| {
                let ms = median(
                    agents
                        .iter()
                        .filter_map(|a| a.steps.iter().find(|(s, _)| s == step))
                        .map(|(_, ms)| *ms as f64)
                        .collect(),
                );
                format!("{step} {:.1}", ms / 1000.0)
            })
            .collect();
        let login = median(agents.iter().map(|a| a.first_login.as_secs_f64()).collect());
        println!("  {:<18} steps (median s): {}; first login after start {login:.1} s", "", steps.join(", "));
    }
    Ok(())
}

/// The agent's update of `environment` while a real `trytond` serves it; the ERP is started
/// before and stopped after, outside the measured window.
async fn agent_run(
    environment: &Environment,
    case: &Case,
    command: &ErpCommand,
    erp: &ServedErp,
    workdir: &Arc<WorkDir>,
    admin_password: &str,
    round: u32,
) -> Result<AgentRun, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    erp.start().await.map_err(|e| err(&e))?;
    erp.reset_window();
    let operation = format!("bench-{round}-{}", rand::random::<u32>());
    let journal = FileJournal::new(workdir.join(format!("{operation}.json")));
    let report = erp_agent::ops::update::update(environment, &case.update, command, None, &operation, erp, &journal)
        .await
        .map_err(|e| err(&e))?;
    if report.outcome != Outcome::Succeeded {
        return Err(format!("{}: the update did not succeed:\n{report}", case.name));
    }
    let window = erp.window();
    let (Some(stop_called), Some(stopped), Some(start_called), Some(start_returned)) =
        (window.stop_called, window.stopped, window.start_called, window.start_returned)
    else {
        return Err(format!("{}: the ERP was not stopped and started: {window:?}", case.name));
    };
    // Tryton loads a database's pool on its first request: the first login shows what a user
    // waits for beyond the server answering.
    let login_started = Instant::now();
    {
        let running = erp.running.lock().await;
        let server = running.as_ref().ok_or("the ERP is not running after the update")?;
        let session =
            server.login(environment.database.as_str(), "admin", admin_password).await.map_err(|e| err(&e))?;
        session.logout().await.ok();
    }
    let first_login = login_started.elapsed();
    erp.stop().await.map_err(|e| err(&e))?;
    let kept = kept_database(&report)?;
    release(environment, &kept).await.map_err(|e| err(&e))?;
    Ok(AgentRun {
        downtime: start_returned.duration_since(stop_called),
        cpu: start_called.1.saturating_sub(stopped.1),
        steps: report.steps.iter().map(|s| (s.step.clone(), s.duration_ms)).collect(),
        first_login,
    })
}

fn kept_database(report: &Report) -> Result<String, String> {
    report.kept.clone().ok_or_else(|| format!("the update's report names no kept database:\n{report}"))
}

/// When the agent stopped and started the ERP, with the children's CPU at the edges.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    stop_called: Option<Instant>,
    /// The old server exited (and was waited for), and the children's CPU then.
    stopped: Option<(Instant, Duration)>,
    /// The new server is about to start, and the children's CPU then.
    start_called: Option<(Instant, Duration)>,
    start_returned: Option<Instant>,
}

/// A real `trytond` over the tenant's databases, stopped and started as the single-server
/// runtime would; every start gets a new configuration, so a new port (the old one may linger
/// in TIME_WAIT or be taken meanwhile).
struct ServedErp {
    install: TrytonInstall,
    workdir: Arc<WorkDir>,
    postgres_port: u16,
    data: PathBuf,
    running: Mutex<Option<TrytonServer>>,
    starts: AtomicU32,
    window: std::sync::Mutex<Window>,
}

impl ServedErp {
    fn new(install: TrytonInstall, workdir: Arc<WorkDir>, postgres_port: u16, data: PathBuf) -> Self {
        Self {
            install,
            workdir,
            postgres_port,
            data,
            running: Mutex::new(None),
            starts: AtomicU32::new(0),
            window: Default::default(),
        }
    }

    fn reset_window(&self) {
        *self.window.lock().expect("window") = Window::default();
    }

    fn window(&self) -> Window {
        *self.window.lock().expect("window")
    }
}

impl ErpControl for ServedErp {
    async fn stop(&self) -> erp_agent::Result<()> {
        // The first call opens the window; a repeated one (a resumed operation) does not move it.
        self.window.lock().expect("window").stop_called.get_or_insert_with(Instant::now);
        if let Some(server) = self.running.lock().await.take() {
            server.stop();
        }
        let cpu = children_cpu();
        self.window.lock().expect("window").stopped.get_or_insert((Instant::now(), cpu));
        Ok(())
    }

    async fn start(&self) -> erp_agent::Result<()> {
        let mut running = self.running.lock().await;
        if running.is_none() {
            let cpu = children_cpu();
            self.window.lock().expect("window").start_called = Some((Instant::now(), cpu));
            let n = self.starts.fetch_add(1, Ordering::Relaxed);
            let dir = self.workdir.join(format!("server-{n}"));
            let config = TrytonConfig::write_with_data(&dir, self.postgres_port, &self.data)
                .map_err(|e| erp_agent::Error::Invalid(format!("writing trytond.conf: {e}")))?;
            let server = self
                .install
                .start_server(&self.workdir, &config)
                .await
                .map_err(|e| erp_agent::Error::Invalid(format!("starting trytond: {e}")))?;
            *running = Some(server);
            self.window.lock().expect("window").start_returned = Some(Instant::now());
        }
        Ok(())
    }
}

async fn database_size(server: &DatabaseServer, database: &DatabaseName) -> Result<u64, String> {
    let mut connection = server.connect(database.as_str()).await.map_err(|e| e.to_string())?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    Ok(bytes as u64)
}
