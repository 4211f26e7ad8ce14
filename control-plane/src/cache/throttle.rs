//! Keeps a Redis outage from flooding the logs or slowing every request: warnings at most once
//! per interval, and a short pause during which reads skip Redis instead of each waiting for a
//! reconnect attempt to fail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one warning per this interval; the rest are counted and reported with the next one.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// After a failure, reads go straight to the store for this long.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub(super) struct Throttle {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last warning, plus one (0: never warned).
    last_warning: AtomicU64,
    suppressed: AtomicU64,
    /// Milliseconds since `epoch` until which reads skip Redis.
    paused_until: AtomicU64,
}

impl Throttle {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_warning: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            paused_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether reads should skip Redis right now.
    pub(super) fn paused(&self) -> bool {
        self.now_ms() < self.paused_until.load(Ordering::Relaxed)
    }

    /// Records a failure of `operation`: pauses reads and logs, at most once per interval.
    pub(super) fn failed(&self, operation: &'static str, error: &dyn std::fmt::Display) {
        let now = self.now_ms();
        self.paused_until.fetch_max(now.saturating_add(duration_ms(PAUSE_AFTER_FAILURE)), Ordering::Relaxed);
        let last = self.last_warning.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last - 1) >= duration_ms(WARN_EVERY);
        if due && self.last_warning.compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(
                operation,
                %error,
                suppressed_since_last_warning = suppressed,
                "redis cache unavailable; serving without it"
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Redis answered: reads may use it again.
    pub(super) fn recovered(&self) {
        if self.paused_until.load(Ordering::Relaxed) != 0 {
            self.paused_until.store(0, Ordering::Relaxed);
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_pauses_reads_until_recovery() {
        let throttle = Throttle::new();
        assert!(!throttle.paused());
        throttle.failed("test", &"connection refused");
        assert!(throttle.paused());
        throttle.failed("test", &"connection refused");
        assert_eq!(throttle.suppressed.load(Ordering::Relaxed), 1, "second warning within the interval is held back");
        throttle.recovered();
        assert!(!throttle.paused());
    }
}
