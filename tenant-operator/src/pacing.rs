//! When a Tenant's changed status is written. News (see [`Change::Significant`]) is written at
//! once; finer progress within a phase at most once per [`PROGRESS_INTERVAL`] per Tenant, and
//! otherwise with the next write. While a tenant provisions, its workloads report progress many
//! times (each pod, each Job): written each time, that was five status writes per Tenant, a fifth
//! of what the operator sends until the Tenant is Ready.
//!
//! The times are this process's own (a monotonic clock): after a restart the first change of
//! every Tenant is written at once, which is never wrong, only one write more.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::status::Change;

/// The longest a reader waits to see progress that is not news.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(60);

/// What to do with a changed status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Write,
    /// Nothing to write.
    Skip,
    /// Write it after this long, unless news comes first.
    Defer(Duration),
}

/// The time of each Tenant's last status write.
#[derive(Debug, Default)]
pub struct StatusPacer {
    last_write: Mutex<HashMap<String, Instant>>,
}

impl StatusPacer {
    /// What to do with a status of `tenant` that differs from the cluster's by `change`, at `now`.
    pub fn decide(&self, tenant: &str, change: Change, now: Instant) -> Decision {
        match change {
            Change::None => Decision::Skip,
            Change::Significant => Decision::Write,
            Change::Progress => {
                let last = self.last_write.lock().expect("status pacer poisoned").get(tenant).copied();
                match last.map(|at| now.saturating_duration_since(at)) {
                    Some(since) if since < PROGRESS_INTERVAL => Decision::Defer(PROGRESS_INTERVAL - since),
                    _ => Decision::Write,
                }
            }
        }
    }

    /// Records that `tenant`'s status was written at `now`.
    pub fn written(&self, tenant: &str, now: Instant) {
        self.last_write.lock().expect("status pacer poisoned").insert(tenant.to_string(), now);
    }

    /// Forgets a deleted Tenant.
    pub fn forget(&self, tenant: &str) {
        self.last_write.lock().expect("status pacer poisoned").remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_is_written_at_once_and_progress_at_most_once_a_minute() {
        let pacer = StatusPacer::default();
        let start = Instant::now();
        assert_eq!(pacer.decide("a", Change::None, start), Decision::Skip);
        // Nothing written yet by this process: progress too is written.
        assert_eq!(pacer.decide("a", Change::Progress, start), Decision::Write);
        pacer.written("a", start);

        let soon = start + Duration::from_secs(20);
        assert_eq!(pacer.decide("a", Change::Progress, soon), Decision::Defer(Duration::from_secs(40)));
        assert_eq!(pacer.decide("a", Change::Significant, soon), Decision::Write);
        assert_eq!(pacer.decide("b", Change::Progress, soon), Decision::Write, "each Tenant has its own pace");

        let later = start + PROGRESS_INTERVAL;
        assert_eq!(pacer.decide("a", Change::Progress, later), Decision::Write);

        pacer.written("a", later);
        pacer.forget("a");
        assert_eq!(pacer.decide("a", Change::Progress, later), Decision::Write);
    }
}
