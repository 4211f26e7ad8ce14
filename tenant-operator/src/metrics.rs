//! The operator's Prometheus metrics, served as OpenMetrics text on `/metrics` (see
//! [`crate::http`]).
//!
//! Label values must come from small fixed sets (error reasons, kinds, verbs, phases), never from
//! tenant names or error messages, so the number of series stays bounded.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reconcile duration buckets, in seconds: 1 ms … 30 s.
const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: String,
    verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// The operator's metrics and the registry that encodes them. Cheap to clone; clones share
/// everything.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    reconciles: Counter,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    api_writes: Family<WriteLabels, Counter>,
    leader: Gauge,
    tenants: Family<PhaseLabels, Gauge>,
    /// Phases `tenants` has a series for, so that phases no longer reported drop to zero.
    tenant_phases: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Counter::default();
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        let reconcile_duration = Histogram::new(DURATION_BUCKETS);
        let api_writes = Family::<WriteLabels, Counter>::default();
        let leader = Gauge::default();
        let tenants = Family::<PhaseLabels, Gauge>::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register("tenantry_operator_reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "tenantry_operator_reconcile_errors",
            "Reconciles that failed, by reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "tenantry_operator_reconcile_duration_seconds",
            "How long reconciles took",
            reconcile_duration.clone(),
        );
        registry.register(
            "tenantry_operator_api_writes",
            "Writes to the Kubernetes API, by object kind and verb",
            api_writes.clone(),
        );
        registry.register("tenantry_operator_leader", "1 while this replica holds the leader lease", leader.clone());
        registry.register("tenantry_operator_tenants", "Tenants by status phase", tenants.clone());
        let inner = Inner {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            api_writes,
            leader,
            tenants,
            tenant_phases: Mutex::new(BTreeSet::new()),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Times one reconcile: when the returned guard is dropped, the reconcile is counted and its
    /// duration observed.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer { metrics: self.clone(), started: Instant::now() }
    }

    /// Counts one reconcile that took `duration`.
    pub fn observe_reconcile(&self, duration: Duration) {
        self.inner.reconciles.inc();
        self.inner.reconcile_duration.observe(duration.as_secs_f64());
    }

    /// Counts a failed reconcile; `reason` is a short fixed word (`invalid_spec`, `api`, …).
    pub fn reconcile_error(&self, reason: &str) {
        self.inner.reconcile_errors.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc();
    }

    /// Counts a write to the Kubernetes API, e.g. `("Deployment", "apply")`,
    /// `("Tenant", "patch_status")`.
    pub fn api_write(&self, kind: &str, verb: &str) {
        let labels = WriteLabels { kind: kind.to_string(), verb: verb.to_string() };
        self.inner.api_writes.get_or_create(&labels).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    /// Sets the number of Tenants in one phase.
    pub fn set_tenants(&self, phase: &str, count: i64) {
        self.lock_phases().insert(phase.to_string());
        self.inner.tenants.get_or_create(&PhaseLabels { phase: phase.to_string() }).set(count);
    }

    /// Sets the number of Tenants in every phase at once; phases reported before but missing now
    /// are set to zero.
    pub fn set_tenant_counts<'a>(&self, counts: impl IntoIterator<Item = (&'a str, i64)>) {
        let mut phases = self.lock_phases();
        let mut stale = phases.clone();
        for (phase, count) in counts {
            stale.remove(phase);
            phases.insert(phase.to_string());
            self.inner.tenants.get_or_create(&PhaseLabels { phase: phase.to_string() }).set(count);
        }
        for phase in stale {
            self.inner.tenants.get_or_create(&PhaseLabels { phase }).set(0);
        }
    }

    /// Everything in OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
            .expect("encoding into a String cannot fail");
        text
    }

    fn lock_phases(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.inner.tenant_phases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Returned by [`Metrics::reconcile_timer`]; records the reconcile when dropped.
#[must_use = "the reconcile is recorded when the timer is dropped"]
pub struct ReconcileTimer {
    metrics: Metrics,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics.observe_reconcile(self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix:?} in:\n{text}"))
    }

    #[test]
    fn counts_show_up_in_the_encoded_text() {
        let metrics = Metrics::new();
        let shared = metrics.clone();
        drop(shared.reconcile_timer());
        shared.observe_reconcile(Duration::from_millis(40));
        metrics.reconcile_error("invalid_spec");
        metrics.reconcile_error("invalid_spec");
        metrics.reconcile_error("api");
        metrics.api_write("Deployment", "apply");
        metrics.api_write("Tenant", "patch_status");
        metrics.api_write("Tenant", "patch_status");
        metrics.set_leader(true);
        metrics.set_tenant_counts([("Ready", 3), ("Provisioning", 1)]);
        metrics.set_tenant_counts([("Ready", 4)]);

        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE tenantry_operator_reconciles counter"), "{text}");
        assert_eq!(line(&text, "tenantry_operator_reconciles_total "), "tenantry_operator_reconciles_total 2");
        assert_eq!(
            line(&text, "tenantry_operator_reconcile_errors_total{reason=\"invalid_spec\"}").split(' ').nth(1),
            Some("2")
        );
        assert_eq!(
            line(&text, "tenantry_operator_reconcile_errors_total{reason=\"api\"}").split(' ').nth(1),
            Some("1")
        );
        assert_eq!(
            line(&text, "tenantry_operator_api_writes_total{kind=\"Tenant\",verb=\"patch_status\"}").split(' ').nth(1),
            Some("2")
        );
        assert!(text.contains("# TYPE tenantry_operator_reconcile_duration_seconds histogram"), "{text}");
        assert_eq!(
            line(&text, "tenantry_operator_reconcile_duration_seconds_count"),
            "tenantry_operator_reconcile_duration_seconds_count 2"
        );
        assert!(text.contains("tenantry_operator_reconcile_duration_seconds_bucket{le=\"0.001\"}"), "{text}");
        assert!(text.contains("tenantry_operator_reconcile_duration_seconds_bucket{le=\"30.0\"}"), "{text}");
        assert_eq!(
            line(&text, "tenantry_operator_reconcile_duration_seconds_bucket{le=\"0.05\"}"),
            "tenantry_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 2"
        );
        assert_eq!(line(&text, "tenantry_operator_leader "), "tenantry_operator_leader 1");
        assert_eq!(
            line(&text, "tenantry_operator_tenants{phase=\"Ready\"}"),
            "tenantry_operator_tenants{phase=\"Ready\"} 4"
        );
        assert_eq!(
            line(&text, "tenantry_operator_tenants{phase=\"Provisioning\"}"),
            "tenantry_operator_tenants{phase=\"Provisioning\"} 0"
        );

        metrics.set_leader(false);
        assert_eq!(line(&metrics.encode(), "tenantry_operator_leader "), "tenantry_operator_leader 0");
    }
}
