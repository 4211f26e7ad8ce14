//! Drains the provisioning outbox: claims due jobs under a lease, carries each out, and marks it
//! done or schedules a retry with backoff. Any number of replicas may run it at once: the store's
//! claim hands each job to one of them, and a job whose worker died comes back when its lease
//! runs out.

use super::decorate::Decorations;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rand::Rng;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::provisioner::Provisioner;
use crate::store::{ProvisionJob, Store};

/// Wakes the worker as soon as a change has been committed, instead of at its next poll. The
/// API pokes it after each commit that wrote an outbox row; a poke while the worker is busy is
/// kept, so it claims again straight after.
#[derive(Clone, Debug, Default)]
pub struct Wakeup(Arc<Notify>);

impl Wakeup {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn poke(&self) {
        self.0.notify_one();
    }

    async fn wait(&self) {
        self.0.notified().await;
    }
}

/// Counts of carried out and failed jobs, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct WorkerMetrics {
    pub applied: Counter,
    pub failed: Counter,
}

impl WorkerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "provision_jobs_done",
            "Provisioning jobs carried out (Tenant applied, written or deleted)",
            self.applied.clone(),
        );
        registry.register(
            "provision_jobs_failed",
            "Provisioning job attempts that failed and were scheduled again",
            self.failed.clone(),
        );
    }
}

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Jobs claimed at once.
    pub batch_size: u32,
    /// How long a claimed job is this worker's; after that another replica may take it.
    pub lease: Duration,
    /// Claims again this often when idle: other replicas write jobs this one is not poked for.
    pub poll_interval: Duration,
    /// Backoff of the first retry; it doubles per attempt up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub wakeup: Wakeup,
    pub metrics: WorkerMetrics,
    /// Added to every Tenant before it is applied.
    pub decorations: Decorations,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            batch_size: 16,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            wakeup: Wakeup::new(),
            metrics: WorkerMetrics::default(),
            decorations: Decorations::default(),
        }
    }
}

/// Runs until `shutdown` turns true (or its sender is dropped).
pub async fn run_worker(
    store: Store,
    provisioner: Provisioner,
    settings: WorkerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    if !provisioner.is_active() {
        // Claiming would only push every job's retry time back; leaving them untouched keeps
        // them pending until a replica with a cluster takes them.
        tracing::info!("no cluster configured: provisioning jobs wait in the outbox");
        // An error means the sender is gone, which is a shutdown too.
        let _ = shutdown.wait_for(|stop| *stop).await;
        return;
    }
    tracing::info!(provisioner = %provisioner.describe(), "provisioning worker started");
    let mut store_errors: u32 = 0;
    while !stopping(&shutdown) {
        let claimed_at = Instant::now();
        let jobs = match store.claim_provision_jobs(settings.batch_size, settings.lease).await {
            Ok(jobs) => {
                store_errors = 0;
                jobs
            }
            Err(e) => {
                store_errors = store_errors.saturating_add(1);
                let pause = backoff(&settings, store_errors - 1);
                tracing::warn!(error = %e, retry_in = ?pause, "claiming provisioning jobs failed");
                sleep_or_shutdown(pause, &mut shutdown).await;
                continue;
            }
        };
        if !jobs.is_empty() {
            // The window a crash between commit and apply leaves (`outbox_survives_crash`).
            crate::failpoint::hit(crate::failpoint::AFTER_CLAIM, "with claimed jobs");
        }
        let full_batch = jobs.len() as u32 >= settings.batch_size;
        run_batch(&store, &provisioner, &settings, jobs, claimed_at, &shutdown).await;
        if full_batch {
            continue;
        }
        tokio::select! {
            () = settings.wakeup.wait() => {}
            () = tokio::time::sleep(settings.poll_interval) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!("provisioning worker stopped");
}

/// Carries out the jobs while their lease safely holds; the ones left (lease nearly out, or
/// shutting down) are handed back at once so no replica waits for the lease to run out.
async fn run_batch(
    store: &Store,
    provisioner: &Provisioner,
    settings: &WorkerSettings,
    jobs: Vec<ProvisionJob>,
    claimed_at: Instant,
    shutdown: &watch::Receiver<bool>,
) {
    // A quarter of the lease is kept spare for marking the job done: past the lease another
    // replica may already be applying the same job.
    let deadline = claimed_at + settings.lease.mul_f64(0.75);
    let mut jobs = jobs.into_iter();
    while let Some(mut job) = jobs.next() {
        if stopping(shutdown) || Instant::now() >= deadline {
            let reason = if stopping(shutdown) { "worker shut down" } else { "lease ran out" };
            for job in std::iter::once(job).chain(jobs) {
                if let Err(e) = store.retry_provision_job(job.id, reason, Duration::ZERO).await {
                    tracing::warn!(job = job.id, error = %e, "handing back a provisioning job failed");
                }
            }
            return;
        }
        settings.decorations.apply(&job.tenant, &mut job.object);
        let outcome = match tokio::time::timeout_at(deadline, provisioner.execute(&job)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("timed out before the lease ran out".to_string()),
        };
        match outcome {
            Ok(()) => {
                settings.metrics.applied.inc();
                tracing::info!(job = job.id, tenant = %job.tenant, op = ?job.op, "provisioning job done");
                if let Err(e) = store.finish_provision_job(job.id).await {
                    // Applied but not marked: the job comes back after its lease and is applied
                    // again, which is harmless.
                    tracing::warn!(job = job.id, tenant = %job.tenant, error = %e, "marking a provisioning job done failed");
                }
            }
            Err(error) => {
                settings.metrics.failed.inc();
                // `attempts` counts this one: the first failure waits `min_backoff`.
                let after = backoff(settings, u32::try_from(job.attempts.saturating_sub(1)).unwrap_or(0));
                // The error only: the object holds nothing secret today, but it is the tenant's
                // whole configuration and does not belong in logs.
                tracing::warn!(job = job.id, tenant = %job.tenant, op = ?job.op, attempts = job.attempts,
                    retry_in = ?after, %error, "provisioning job failed");
                if let Err(e) = store.retry_provision_job(job.id, &error, after).await {
                    tracing::warn!(job = job.id, error = %e, "scheduling a provisioning retry failed");
                }
            }
        }
    }
}

/// Exponential from `min_backoff`, capped at `max_backoff`, with jitter over its upper half so
/// replicas that failed together do not retry together.
fn backoff(settings: &WorkerSettings, attempts: u32) -> Duration {
    let exponential = settings.min_backoff.saturating_mul(2u32.saturating_pow(attempts.min(31)));
    let ceiling = exponential.min(settings.max_backoff).max(settings.min_backoff);
    let floor = (ceiling / 2).max(settings.min_backoff);
    floor + (ceiling - floor).mul_f64(rand::rng().random_range(0.0..=1.0))
}

/// Asked to stop, or nobody left to ask (the sender was dropped).
pub(crate) fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

pub(crate) async fn sleep_or_shutdown(pause: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(pause) => {}
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_within_bounds() {
        let settings = WorkerSettings::default();
        for attempts in 0..100 {
            let ceiling = (Duration::from_secs(1) * 2u32.pow(attempts.min(20))).min(Duration::from_secs(300));
            let pause = backoff(&settings, attempts);
            let floor = (ceiling / 2).max(Duration::from_secs(1));
            assert!(pause >= floor && pause <= ceiling, "attempt {attempts}: {pause:?}");
        }
        assert_eq!(backoff(&settings, 0), Duration::from_secs(1));
        assert!(backoff(&settings, u32::MAX) <= Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_poke_while_busy_is_kept() {
        let wakeup = Wakeup::new();
        wakeup.clone().poke();
        tokio::time::timeout(Duration::from_secs(1), wakeup.wait()).await.expect("the poke was kept");
    }
}
