//! A backup far larger than the memory it may use streams through: the agent must never hold a
//! backup in memory, whatever its size. One test alone in its binary, so the peak resident set
//! measured is this backup's.

use std::io::Read;
use std::time::Instant;

use chrono::Utc;
use erp_agent::key::BackupKey;
use erp_agent::manifest::{BackupId, BackupKind, ErpInfo, Manifest};
use erp_agent::store::{BackupStore, StoreOptions};

/// Bytes of the generated dump.
const DUMP_BYTES: u64 = 200 * 1024 * 1024;
/// What the backup may add to the process's peak resident set: buffers of a few MiB, never
/// the data.
const PEAK_LIMIT_KIB: u64 = 64 * 1024;

/// Incompressible bytes (zstd must not shrink the problem away), generated as they are read.
struct Generated {
    left: u64,
    state: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize) / 8 * 8;
        let n = if n == 0 { buf.len().min(self.left as usize) } else { n };
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn peak_and_current_kib() -> (u64, u64) {
    e2e::process::resident_memory_kib(std::process::id()).unwrap()
}

#[tokio::test]
async fn a_large_backup_streams_through_bounded_memory() {
    let s3 = e2e::TestEnv::shared().await.s3().await.clone();
    let bucket = format!("memory-{:08x}", rand::random::<u32>());
    let endpoint = s3.clone();
    let create = bucket.clone();
    tokio::task::spawn_blocking(move || endpoint.create_bucket(&create)).await.unwrap().unwrap();
    let options = StoreOptions { config: s3.object_store_options(), ..StoreOptions::default() };
    let remote = BackupStore::from_url(&format!("s3://{bucket}/backups"), options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = BackupStore::from_url(&format!("file://{}", dir.path().display()), StoreOptions::default()).unwrap();
    for (backend, store) in [("S3", remote), ("a directory", local)] {
        measure(backend, &store).await;
    }
}

async fn measure(backend: &str, store: &BackupStore) {
    let key = BackupKey::generate();
    let manifest = Manifest::new(
        BackupId::generate(Utc::now()),
        "acme",
        "production",
        BackupKind::Manual,
        Utc::now(),
        ErpInfo { profile: "tryton".into(), version: "7.0.59".into() },
    )
    .unwrap();

    // Start the peak from here (Linux: writing 5 to clear_refs resets VmHWM to the current RSS).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let (_, before) = peak_and_current_kib();
    let started = Instant::now();
    let summary = store
        .put(manifest, &key.recipient(), |archive| {
            archive.append_stream("database", Generated { left: DUMP_BYTES, state: 0x9E37_79B9_7F4A_7C15 }).map(drop)
        })
        .await
        .unwrap();
    let put = started.elapsed();
    let (peak_put, _) = peak_and_current_kib();

    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let (_, before_verify) = peak_and_current_kib();
    let started = Instant::now();
    let manifest = store.verify(&summary, &key).await.unwrap();
    let verify = started.elapsed();
    let (peak_verify, _) = peak_and_current_kib();

    assert_eq!(manifest.part("database").unwrap().bytes, DUMP_BYTES);
    assert!(summary.archive.bytes > DUMP_BYTES, "the generated data should not compress");
    let mib = DUMP_BYTES as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{mib:.0} MiB through {backend}: put {:.1} MiB/s, peak +{} KiB; verify {:.1} MiB/s, peak +{} KiB",
        mib / put.as_secs_f64(),
        peak_put - before,
        mib / verify.as_secs_f64(),
        peak_verify - before_verify,
    );
    assert!(peak_put - before < PEAK_LIMIT_KIB, "{backend}: put grew the resident set by {} KiB", peak_put - before);
    assert!(
        peak_verify - before_verify < PEAK_LIMIT_KIB,
        "{backend}: verify grew the resident set by {} KiB",
        peak_verify - before_verify
    );
}
