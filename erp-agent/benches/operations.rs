//! Backup and restore benchmark of `tenantry-agent` on a generated tenant of realistic size: a
//! program, not a timed test. It prints its figures beside a baseline measured in the same run
//! and judges nothing; docs/benchmarks.md explains how to run it and what each figure means.
//!
//! ```sh
//! cargo bench -p erp-agent --bench operations                        # 1 GiB of table data, 200 MiB of attachments
//! cargo bench -p erp-agent --bench operations -- --table-mib 64 --attachment-mib 16
//! ```
//!
//! The tenant is a real Tryton database (`e2e::tryton::fixture` at its benchmark size: real
//! records made through Tryton, bulk sale lines copied from a real sale by SQL, attachments of
//! random bytes made through Tryton). Each round measures, in alternating order so both see the
//! same machine:
//! - backup: the agent (the release binary, its own process) to a directory and to the
//!   environment's S3 server, against `pg_dump -Fc | zstd > file` plus `tar` of the file store;
//! - restore: the agent from the directory (into a work copy, checked, cut over), against
//!   `zstd -dc | pg_restore` into a new database plus extracting the tar.
//!
//! Throughput is the backup's data (dump and file store, uncompressed) per second of wall time;
//! the figures that do not depend on the machine's load are the CPU time (user + system, the
//! process and the children it waited for) per GiB, and the agent's peak resident set.

mod common;

use common::{children_cpu, median};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::TestEnv;
use e2e::process::WorkDir;
use e2e::tryton::fixture::{self, FixtureSize};
use e2e::tryton::{TrytonConfig, TrytonInstall};
use erp_agent::key::BackupKey;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Parser, Debug)]
#[command(about = "Backup and restore benchmark of tenantry-agent against pg_dump, zstd and tar")]
struct Args {
    /// Table data to generate, MiB.
    #[arg(long, default_value_t = 1024)]
    table_mib: u64,
    /// Attachments to generate, MiB (1 MiB each).
    #[arg(long, default_value_t = 200)]
    attachment_mib: u64,
    /// Rounds, each measuring every run once, alternating which goes first.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// The Tryton series of the tenant.
    #[arg(long, default_value = "7.0")]
    series: String,
    // `cargo bench` passes `--bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What one run of a program cost.
#[derive(Debug, Clone, Copy)]
struct Cost {
    wall: Duration,
    /// User + system CPU of the process and every child it waited for.
    cpu: Duration,
    /// The agent's peak resident set (VmHWM), where measured.
    peak_rss: Option<u64>,
}

fn main() -> ExitCode {
    common::run_to_exit(run(Args::parse()))
}

struct Tenant {
    database: String,
    url: String,
    pg_bin: PathBuf,
    filestore: PathBuf,
    version: String,
    data_bytes: u64,
}

async fn run(args: Args) -> Result<(), String> {
    let agent = build_agent()?;
    let workdir = WorkDir::create("erp-agent-bench").map_err(|e| e.to_string())?;
    let env = TestEnv::shared().await;
    let postgres = env.postgres().await;
    let s3 = env.s3().await.clone();
    let install = TrytonInstall::ensure_async(&args.series).await.map_err(|e| e.to_string())?;
    let config = TrytonConfig::write(&workdir.join("tryton"), postgres).map_err(|e| e.to_string())?;
    let database = "bench_tenant".to_string();
    let size = FixtureSize::benchmark(args.table_mib << 20, args.attachment_mib << 20);

    let started = Instant::now();
    install.create_database(postgres, &config, &database).await.map_err(|e| e.to_string())?;
    fixture::activate_modules(&install, &config, &database).await.map_err(|e| e.to_string())?;
    fixture::create(&install, &config, &database, &size).await.map_err(|e| e.to_string())?;
    let tenant = Tenant {
        version: install.version().map_err(|e| e.to_string())?,
        database: database.clone(),
        url: postgres.url("postgres"),
        pg_bin: postgres.bin_dir().to_path_buf(),
        filestore: config.dir().join("data"),
        data_bytes: 0,
    };
    let generated = started.elapsed();

    let scratch = workdir.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let key_file = scratch.join("backup.key");
    let key = BackupKey::generate();
    key.write_new(&key_file).map_err(|e| e.to_string())?;
    let recipient = key.recipient().to_string();
    let bucket = format!("bench-{:08x}", rand::random::<u32>());
    {
        let (s3, bucket) = (s3.clone(), bucket.clone());
        tokio::task::spawn_blocking(move || s3.create_bucket(&bucket))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }

    println!("tenantry-agent backup and restore (series {}, Tryton {})", args.series, tenant.version);
    let database_bytes = database_size(&tenant)?;
    let mut tenant = tenant;
    println!(
        "  tenant        database {:.0} MiB on disk, {} attachments of 1 MiB; generated in {:.0} s",
        database_bytes as f64 / MIB,
        size.attachments,
        generated.as_secs_f64()
    );
    println!("  rounds        {} (agent and baseline alternate which goes first)", args.rounds);

    let mut backup_dir = Vec::new();
    let mut backup_s3 = Vec::new();
    let mut backup_base = Vec::new();
    let mut restore_agent = Vec::new();
    let mut restore_base = Vec::new();
    let mut restore_steps: Vec<Vec<(String, f64)>> = Vec::new();
    for round in 0..args.rounds {
        let agent_first = round % 2 == 0;
        let store_dir = scratch.join(format!("store-{round}"));
        let base_dir = scratch.join(format!("baseline-{round}"));
        std::fs::create_dir_all(&base_dir).map_err(|e| e.to_string())?;
        let dir_url = format!("file://{}", store_dir.display());
        let s3_url = format!("s3://{bucket}/round-{round}");

        let mut agent_runs = |tenant: &mut Tenant| -> Result<(), String> {
            let (cost, summary) =
                agent_backup(&agent, tenant, &dir_url, &[], &recipient, &key_file, &scratch, round, "dir")?;
            tenant.data_bytes = summary["data_bytes"].as_u64().ok_or("no data_bytes in the summary")?;
            backup_dir.push(cost);
            let options: Vec<String> = s3.object_store_options().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            backup_s3
                .push(agent_backup(&agent, tenant, &s3_url, &options, &recipient, &key_file, &scratch, round, "s3")?.0);
            let id = summary["backup_id"].as_str().ok_or("no backup_id")?.to_string();
            let (cost, steps) = agent_restore(&agent, tenant, &dir_url, &key_file, &id, &scratch, round)?;
            restore_agent.push(cost);
            restore_steps.push(steps);
            Ok(())
        };
        let baseline_runs = |tenant: &Tenant| -> Result<(Cost, Cost), String> {
            let backup = baseline_backup(tenant, &base_dir)?;
            let restore = baseline_restore(tenant, &base_dir, round)?;
            Ok((backup, restore))
        };
        if agent_first {
            agent_runs(&mut tenant)?;
            let (b, r) = baseline_runs(&tenant)?;
            backup_base.push(b);
            restore_base.push(r);
        } else {
            let (b, r) = baseline_runs(&tenant)?;
            backup_base.push(b);
            restore_base.push(r);
            agent_runs(&mut tenant)?;
        }
        // The next round starts from the same disk use.
        let _ = std::fs::remove_dir_all(&store_dir);
        let _ = std::fs::remove_dir_all(&base_dir);
    }

    let data = tenant.data_bytes as f64;
    println!("  data          {:.0} MiB per backup (dump and file store, uncompressed)", data / MIB);
    println!();
    println!(
        "  {:<34} {:>10} {:>10} {:>12} {:>12}",
        "run (median of rounds)", "wall s", "MiB/s", "CPU s/GiB", "peak RSS"
    );
    let line = |name: &str, costs: &[Cost]| {
        let wall = median(costs.iter().map(|c| c.wall.as_secs_f64()).collect());
        let cpu = median(costs.iter().map(|c| c.cpu.as_secs_f64()).collect());
        let rss = costs.iter().filter_map(|c| c.peak_rss).max();
        println!(
            "  {:<34} {:>10.1} {:>10.1} {:>12.2} {:>12}",
            name,
            wall,
            data / MIB / wall,
            cpu / (data / GIB),
            rss.map_or("-".to_string(), |b| format!("{:.1} MiB", b as f64 / MIB))
        );
    };
    line("backup: agent to a directory", &backup_dir);
    line("backup: agent to S3 (moto)", &backup_s3);
    line("backup: pg_dump -Fc | zstd + tar", &backup_base);
    line("restore: agent from a directory", &restore_agent);
    line("restore: zstd -dc | pg_restore + tar", &restore_base);
    // Where the agent's restore spends its time: its report's steps.
    let names: Vec<String> =
        restore_steps.first().map(|s| s.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default();
    let steps: Vec<String> = names
        .iter()
        .map(|name| {
            let times =
                restore_steps.iter().filter_map(|s| s.iter().find(|(n, _)| n == name).map(|(_, t)| *t)).collect();
            format!("{name} {:.1}", median(times))
        })
        .collect();
    println!("  {:<34} {}", "restore steps (median s)", steps.join(", "));
    println!();
    let ratio = |agent: &[Cost], base: &[Cost]| -> Vec<f64> {
        agent.iter().zip(base).map(|(a, b)| b.wall.as_secs_f64() / a.wall.as_secs_f64()).collect()
    };
    for (name, ratios) in [
        ("backup to a directory", ratio(&backup_dir, &backup_base)),
        ("backup to S3", ratio(&backup_s3, &backup_base)),
        ("restore", ratio(&restore_agent, &restore_base)),
    ] {
        let text: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "  throughput ratio, {name:<22} median {:.2} (rounds: {}; goal >= 0.9)",
            median(ratios.clone()),
            text.join(", ")
        );
    }
    let peak = backup_dir.iter().chain(&backup_s3).chain(&restore_agent).filter_map(|c| c.peak_rss).max();
    println!("  agent peak RSS                     {:.1} MiB (goal < 64 MiB)", peak.unwrap_or(0) as f64 / MIB);
    Ok(())
}

/// The release build of the agent, built by this bench so the figures are an optimised binary's.
fn build_agent() -> Result<PathBuf, String> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "erp-agent", "--bin", "tenantry-agent"])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("building the agent failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("release/tenantry-agent"))
}

fn database_size(tenant: &Tenant) -> Result<u64, String> {
    let output = Command::new(tenant.pg_bin.join("psql"))
        .args(["-At", "-d", &database_url(tenant, &tenant.database)])
        .args(["-c", &format!("SELECT pg_database_size('{}')", tenant.database)])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&output.stdout).trim().parse().map_err(|e| format!("database size: {e}"))
}

fn agent_command(agent: &Path, tenant: &Tenant, subcommand: &str) -> Command {
    let mut command = Command::new(agent);
    command
        .arg(subcommand)
        .args(["--tenant", "bench", "--database", &tenant.database, "--erp-version", &tenant.version])
        .arg("--filestore")
        .arg(&tenant.filestore)
        .arg("--pg-bin-dir")
        .arg(&tenant.pg_bin)
        .env("TENANTRY_AGENT_DATABASE_URL", &tenant.url)
        .env("TENANTRY_AGENT_LOG", "warn");
    command
}

#[allow(clippy::too_many_arguments)]
fn agent_backup(
    agent: &Path,
    tenant: &Tenant,
    store: &str,
    options: &[String],
    recipient: &str,
    key_file: &Path,
    scratch: &Path,
    round: u32,
    label: &str,
) -> Result<(Cost, serde_json::Value), String> {
    let mut command = agent_command(agent, tenant, "backup");
    command.args(["--store", store, "--recipient", recipient]).arg("--key-file").arg(key_file);
    for option in options {
        command.args(["--store-option", option]);
    }
    command.arg("--journal").arg(scratch.join(format!("backup-{label}-{round}.json")));
    let (cost, output) = measure(command, true)?;
    let summary: serde_json::Value = serde_json::from_str(&output).map_err(|e| format!("{e}: {output}"))?;
    Ok((cost, summary))
}

fn agent_restore(
    agent: &Path,
    tenant: &Tenant,
    store: &str,
    key_file: &Path,
    backup: &str,
    scratch: &Path,
    round: u32,
) -> Result<(Cost, Vec<(String, f64)>), String> {
    let mut command = agent_command(agent, tenant, "restore");
    command
        .args(["--store", store, "--backup", backup, "--operation", &format!("bench-{round}"), "--erp-stopped"])
        .arg("--key-file")
        .arg(key_file)
        .arg("--journal")
        .arg(scratch.join(format!("restore-{round}.json")));
    let (cost, output) = measure(command, true)?;
    let report: serde_json::Value = serde_json::from_str(&output).map_err(|e| format!("{e}: {output}"))?;
    if report["outcome"] != "succeeded" {
        return Err(format!("the restore did not succeed: {report}"));
    }
    let steps = report["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| Some((s["step"].as_str()?.to_string(), s["duration_ms"].as_u64()? as f64 / 1000.0)))
                .collect()
        })
        .unwrap_or_default();
    // The replaced original is released, so every round restores over the same data.
    let kept =
        report["kept"].as_str().ok_or_else(|| format!("the restore's report names no kept database: {report}"))?;
    let mut release = agent_command(agent, tenant, "release");
    release.args(["--kept", kept]);
    measure(release, false)?;
    Ok((cost, steps))
}

fn baseline_backup(tenant: &Tenant, dir: &Path) -> Result<Cost, String> {
    let script = format!(
        "set -e -o pipefail; '{pg}/pg_dump' -Fc -d \"$URL\" | zstd -q > '{dir}/dump.zst'; tar -cf '{dir}/files.tar' -C '{files}' '{db}'",
        pg = tenant.pg_bin.display(),
        dir = dir.display(),
        files = tenant.filestore.display(),
        db = tenant.database,
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script]).env("URL", database_url(tenant, &tenant.database));
    Ok(measure(command, false)?.0)
}

fn baseline_restore(tenant: &Tenant, dir: &Path, round: u32) -> Result<Cost, String> {
    let target = format!("bench_baseline_{round}");
    let files = dir.join("restored");
    std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    let script = format!(
        "set -e -o pipefail; '{pg}/createdb' -d \"$ADMIN\" '{target}' 2>/dev/null || '{pg}/psql' -q -d \"$ADMIN\" -c 'CREATE DATABASE {target}'; \
         zstd -dc '{dir}/dump.zst' | '{pg}/pg_restore' --no-owner -d \"$URL\"; tar -xf '{dir}/files.tar' -C '{files}'",
        pg = tenant.pg_bin.display(),
        dir = dir.display(),
        files = files.display(),
    );
    let mut command = Command::new("bash");
    command
        .args(["-c", &script])
        .env("URL", database_url(tenant, &target))
        .env("ADMIN", database_url(tenant, "postgres"));
    let cost = measure(command, false)?.0;
    let drop = Command::new(tenant.pg_bin.join("psql"))
        .args(["-q", "-d", &database_url(tenant, "postgres"), "-c", &format!("DROP DATABASE {target}")])
        .status()
        .map_err(|e| e.to_string())?;
    if !drop.success() {
        return Err(format!("dropping {target}"));
    }
    Ok(cost)
}

fn database_url(tenant: &Tenant, database: &str) -> String {
    let base = tenant.url.trim_end_matches("postgres").trim_end_matches('/');
    format!("{base}/{database}")
}

/// Runs `command` to its end: wall time, the CPU of it and its children (from the kernel's
/// accounting of waited-for children), and — when `watch_rss` — its peak resident set, read
/// from `/proc` until it exits (VmHWM only grows, so the last reading is at most one poll
/// short of the peak).
fn measure(mut command: Command, watch_rss: bool) -> Result<(Cost, String), String> {
    let before = children_cpu();
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let mut peak = None;
    let status = loop {
        if watch_rss && let Some(hwm) = vm_hwm(child.id()) {
            peak = Some(hwm);
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let output = reader.join().expect("reader").map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{command:?} failed ({status}): {output}"));
    }
    Ok((Cost { wall, cpu: children_cpu().saturating_sub(before), peak_rss: peak }, output))
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
