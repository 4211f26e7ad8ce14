//! How long a failing Tenant waits before its next reconcile: exponentially longer after each
//! failure in a row, per Tenant, and back to the shortest wait after a success.
//!
//! A fixed delay would retry a Tenant that fails for good (a child it may not change, an
//! apiserver refusing a field) as often forever. The delays come from `backon`, the backoff
//! kube's own watchers use, with its jitter (each delay stretched by a random 0–100 %), so that
//! Tenants failing together (the apiserver down) do not all come back at once.
//!
//! The wait holds even when a watch wakes the Tenant early: a failing Tenant's other children
//! keep changing while they start, and each change would otherwise retry it at once (ten
//! failures in a second were seen). Only a new spec (another generation) or a deletion is acted
//! on before the wait is over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The bounds of the retry delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelays {
    /// The wait after a first failure (before jitter).
    pub first: Duration,
    /// The longest wait (before jitter), reached by doubling.
    pub max: Duration,
}

impl Default for RetryDelays {
    fn default() -> Self {
        Self { first: Duration::from_secs(5), max: Duration::from_secs(300) }
    }
}

/// The retry delays of every Tenant that has failed since its last success.
pub struct FailureBackoff {
    builder: ExponentialBuilder,
    failing: Mutex<HashMap<String, Failing>>,
}

struct Failing {
    delays: ExponentialBackoff,
    /// When the next attempt is due, and for which generation of the Tenant's spec.
    due: Instant,
    generation: Option<i64>,
}

impl FailureBackoff {
    pub fn new(delays: RetryDelays) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(delays.first)
            .with_max_delay(delays.max.max(delays.first))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self { builder, failing: Mutex::new(HashMap::new()) }
    }

    /// The wait before the next attempt at `tenant` (at spec `generation`), which has just failed
    /// once more.
    pub fn next_delay(&self, tenant: &str, generation: Option<i64>) -> Duration {
        let mut failing = self.failing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = failing.entry(tenant.to_string()).or_insert_with(|| Failing {
            delays: self.builder.build(),
            due: Instant::now(),
            generation,
        });
        // Without a limit on attempts the iterator never ends; the fallback only keeps this total.
        let delay = entry.delays.next().unwrap_or(Duration::from_secs(300));
        entry.due = Instant::now() + delay;
        entry.generation = generation;
        delay
    }

    /// How much longer `tenant`, woken at spec `generation`, must wait before it is tried again;
    /// `None` when it may be tried now (not failing, the wait is over, or its spec changed).
    pub fn hold(&self, tenant: &str, generation: Option<i64>) -> Option<Duration> {
        let failing = self.failing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = failing.get(tenant)?;
        if entry.generation != generation {
            return None;
        }
        let left = entry.due.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// `tenant` succeeded (or is gone): its next failure waits the shortest delay again.
    pub fn reset(&self, tenant: &str) {
        self.failing.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_tenant_requeue_backs_off() {
        let secs = Duration::from_secs;
        let backoff = FailureBackoff::new(RetryDelays { first: secs(5), max: secs(60) });
        // Before jitter: 5, 10, 20, 40, then 60 for good; jitter adds less than as much again.
        let unjittered = [5, 10, 20, 40, 60, 60, 60, 60];
        let delays: Vec<Duration> = unjittered.iter().map(|_| backoff.next_delay("acme", Some(1))).collect();
        for (delay, base) in delays.iter().zip(unjittered) {
            assert!(*delay >= secs(base) && *delay < secs(2 * base), "{delays:?}");
        }
        // Up to the cap every delay is longer than the last whatever the jitter (their ranges do
        // not overlap); from 40 to the cap of 60 jitter may make the later one shorter.
        assert!(delays.windows(2).take(3).all(|pair| pair[1] > pair[0]), "the delays grow: {delays:?}");

        // Another Tenant's failures are counted on their own.
        assert!(backoff.next_delay("other", Some(1)) < secs(10));

        // A success starts over.
        backoff.reset("acme");
        let after_success = backoff.next_delay("acme", Some(1));
        assert!(after_success >= secs(5) && after_success < secs(10), "{after_success:?}");
        assert!(backoff.next_delay("acme", Some(1)) >= secs(10));
    }

    #[test]
    fn a_failing_tenant_woken_early_waits_out_its_delay_unless_its_spec_changed() {
        let backoff = FailureBackoff::new(RetryDelays { first: Duration::from_secs(5), max: Duration::from_secs(60) });
        assert_eq!(backoff.hold("acme", Some(1)), None, "not failing");
        let delay = backoff.next_delay("acme", Some(1));
        let left = backoff.hold("acme", Some(1)).expect("woken early, it waits");
        assert!(left <= delay && left > delay - Duration::from_secs(1), "{left:?} of {delay:?}");
        assert_eq!(backoff.hold("acme", Some(2)), None, "a new spec is tried at once");
        assert_eq!(backoff.hold("other", Some(1)), None);
        backoff.reset("acme");
        assert_eq!(backoff.hold("acme", Some(1)), None, "a success ends the wait");

        let quick = FailureBackoff::new(RetryDelays { first: Duration::from_millis(1), max: Duration::from_millis(1) });
        quick.next_delay("acme", Some(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(quick.hold("acme", Some(1)), None, "the wait is over");
    }
}
