//! When a Tenant's changed status is written. News (see [`Change::Significant`]) is written at
//! once; finer progress within a phase at most once per [`PROGRESS_INTERVAL`] per Tenant, and
//! otherwise with the next write. While a tenant provisions, its workloads report progress many
//! times (each pod, each Job): written each time, that was five status writes per Tenant, a fifth
//! of what the operator sends until the Tenant is Ready.
//!
//! The interval is long on purpose. A provisioning that runs its normal course is told by its
//! news alone (Provisioning, the database ready, Ready); progress matters to a reader only when a
//! wait lasts, and then what it waits for is written within five minutes. With a one-minute
//! interval a slow cluster wrote one progress more per Tenant, so the writes per Tenant depended
//! on the machine's load; with five minutes they do not, unless a provisioning stalls.
//!
//! The times are this process's own (a monotonic clock): after a restart the first change of
//! every Tenant is written at once, which is never wrong, only one write more.
//!
//! It also remembers the status it last wrote, and on which version of the Tenant: a reconcile
//! that starts before the watch has brought that write back sees the Tenant as it was before
//! it, and would write the same status again (a fifth of the status writes in the benchmark).
//! [`StatusPacer::previous`] gives it the status it wrote instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::TenantStatus;
use crate::status::Change;

/// The longest a reader waits to see progress that is not news.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// What to do with a changed status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Write,
    /// Nothing to write.
    Skip,
    /// Write it after this long, unless news comes first.
    Defer(Duration),
}

/// Each Tenant's last status write.
#[derive(Debug, Default)]
pub struct StatusPacer {
    last_write: Mutex<HashMap<String, Written>>,
}

#[derive(Debug, Clone)]
struct Written {
    at: Instant,
    /// The Tenant's `resourceVersion` the status was computed from.
    over: Option<String>,
    status: TenantStatus,
}

impl StatusPacer {
    /// What to do with a status of `tenant` that differs from the cluster's by `change`, at `now`.
    pub fn decide(&self, tenant: &str, change: Change, now: Instant) -> Decision {
        match change {
            Change::None => Decision::Skip,
            Change::Significant => Decision::Write,
            Change::Progress => {
                let last = self.last_write.lock().expect("status pacer poisoned").get(tenant).map(|w| w.at);
                match last.map(|at| now.saturating_duration_since(at)) {
                    Some(since) if since < PROGRESS_INTERVAL => Decision::Defer(PROGRESS_INTERVAL - since),
                    _ => Decision::Write,
                }
            }
        }
    }

    /// Records that `tenant`'s status was written at `now`: `status`, computed from the Tenant at
    /// `resource_version`.
    pub fn written(&self, tenant: &str, resource_version: Option<&str>, status: &TenantStatus, now: Instant) {
        let written = Written { at: now, over: resource_version.map(str::to_string), status: status.clone() };
        self.last_write.lock().expect("status pacer poisoned").insert(tenant.to_string(), written);
    }

    /// The Tenant's current status: the one `seen` on the Tenant at `resource_version`, unless
    /// that is the very version this process last wrote a status over (the watch has not brought
    /// the write back yet): then the status written.
    pub fn previous(&self, tenant: &str, resource_version: Option<&str>, seen: Option<&TenantStatus>) -> TenantStatus {
        let last = self.last_write.lock().expect("status pacer poisoned");
        match last.get(tenant) {
            Some(written) if resource_version.is_some() && written.over.as_deref() == resource_version => {
                written.status.clone()
            }
            _ => seen.cloned().unwrap_or_default(),
        }
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
    fn news_is_written_at_once_and_progress_at_most_once_per_interval() {
        let pacer = StatusPacer::default();
        let start = Instant::now();
        assert_eq!(pacer.decide("a", Change::None, start), Decision::Skip);
        // Nothing written yet by this process: progress too is written.
        assert_eq!(pacer.decide("a", Change::Progress, start), Decision::Write);
        pacer.written("a", Some("1"), &TenantStatus::default(), start);

        let soon = start + Duration::from_secs(20);
        assert_eq!(
            pacer.decide("a", Change::Progress, soon),
            Decision::Defer(PROGRESS_INTERVAL - Duration::from_secs(20))
        );
        assert_eq!(pacer.decide("a", Change::Significant, soon), Decision::Write);
        assert_eq!(pacer.decide("b", Change::Progress, soon), Decision::Write, "each Tenant has its own pace");

        let later = start + PROGRESS_INTERVAL;
        assert_eq!(pacer.decide("a", Change::Progress, later), Decision::Write);

        pacer.written("a", Some("2"), &TenantStatus::default(), later);
        pacer.forget("a");
        assert_eq!(pacer.decide("a", Change::Progress, later), Decision::Write);
    }

    #[test]
    fn a_tenant_seen_before_its_status_came_back_is_given_the_status_written() {
        let pacer = StatusPacer::default();
        let written = TenantStatus { observed_generation: Some(3), ..Default::default() };
        let seen = TenantStatus { observed_generation: Some(2), ..Default::default() };
        assert_eq!(pacer.previous("a", Some("10"), Some(&seen)), seen, "nothing written yet");
        pacer.written("a", Some("10"), &written, Instant::now());
        // The watch still has version 10, which the status was written over: it is stale.
        assert_eq!(pacer.previous("a", Some("10"), Some(&seen)), written);
        // The write came back (or someone else wrote): the Tenant as seen is current.
        assert_eq!(pacer.previous("a", Some("11"), Some(&written)), written);
        assert_eq!(pacer.previous("a", Some("12"), Some(&seen)), seen);
        assert_eq!(pacer.previous("b", Some("10"), None), TenantStatus::default());
    }
}
