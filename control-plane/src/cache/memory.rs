//! The in-process backend: the same behaviour as Redis for a single replica (the embedded
//! default). Every map is bounded so a flood of distinct keys cannot exhaust memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use super::{Begin, IDEMPOTENCY_TTL, IN_FLIGHT_TTL, IdempotencyRecord, RateLimit, RetryAfter, SEAT_COUNT_TTL, gcra};
use crate::store::SeatCount;

/// Entries per map. Beyond it, expired entries go first, then those closest to expiry.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Default)]
pub(super) struct MemoryCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    seats: RwLock<HashMap<Box<str>, SeatEntry>>,
    /// Client key → theoretical arrival time (see `gcra`).
    rates: Mutex<HashMap<Box<str>, Instant>>,
    /// `<scope>:<key>` → state.
    idempotency: Mutex<HashMap<Box<str>, IdempotencyEntry>>,
}

#[derive(Clone, Copy)]
struct SeatEntry {
    /// `None`: the tenant was deleted (a tombstone; its version is `i64::MAX`).
    count: Option<SeatCount>,
    version: i64,
    expires: Instant,
}

struct IdempotencyEntry {
    state: IdempotencyState,
    expires: Instant,
}

enum IdempotencyState {
    InFlight { fingerprint: String },
    Done(IdempotencyRecord),
}

trait Expiring {
    fn expires(&self) -> Instant;
}

impl Expiring for SeatEntry {
    fn expires(&self) -> Instant {
        self.expires
    }
}

impl Expiring for IdempotencyEntry {
    fn expires(&self) -> Instant {
        self.expires
    }
}

impl Expiring for Instant {
    /// A rate-limit entry is worthless once its TAT has passed: a fresh bucket is identical.
    fn expires(&self) -> Instant {
        *self
    }
}

impl MemoryCache {
    pub(super) fn seat_count(&self, slug: &str) -> Option<SeatCount> {
        let seats = self.inner.seats.read().unwrap_or_else(PoisonError::into_inner);
        let entry = seats.get(slug)?;
        if entry.expires <= Instant::now() {
            return None;
        }
        entry.count
    }

    pub(super) fn offer_seat_count(&self, slug: &str, count: SeatCount) {
        self.put_seat_entry(slug, Some(count), count.version);
    }

    pub(super) fn forget_seat_count(&self, slug: &str) {
        self.put_seat_entry(slug, None, i64::MAX);
    }

    fn put_seat_entry(&self, slug: &str, count: Option<SeatCount>, version: i64) {
        let now = Instant::now();
        let mut seats = self.inner.seats.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = seats.get_mut(slug) {
            if current.expires > now && current.version >= version {
                return;
            }
            *current = SeatEntry { count, version, expires: now + SEAT_COUNT_TTL };
            return;
        }
        make_room(&mut seats, now);
        seats.insert(slug.into(), SeatEntry { count, version, expires: now + SEAT_COUNT_TTL });
    }

    pub(super) fn check_rate(&self, key: &str, limit: RateLimit) -> Result<(), RetryAfter> {
        let now = Instant::now();
        let mut rates = self.inner.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let tat = rates.get(key).copied();
        let new_tat = gcra::decide(tat, now, limit).map_err(RetryAfter)?;
        match rates.get_mut(key) {
            Some(slot) => *slot = new_tat,
            None => {
                make_room(&mut rates, now);
                rates.insert(key.into(), new_tat);
            }
        }
        Ok(())
    }

    pub(super) fn idempotency_begin(&self, scope: &str, key: &str, fingerprint: &str) -> Begin {
        let now = Instant::now();
        let name = entry_name(scope, key);
        let mut records = self.inner.idempotency.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = records.get(name.as_str()).filter(|entry| entry.expires > now) {
            return match &entry.state {
                IdempotencyState::InFlight { fingerprint: theirs } if theirs == fingerprint => Begin::InFlight,
                IdempotencyState::Done(record) if record.fingerprint == fingerprint => Begin::Done(record.clone()),
                _ => Begin::Mismatch,
            };
        }
        make_room(&mut records, now);
        let state = IdempotencyState::InFlight { fingerprint: fingerprint.to_owned() };
        records.insert(name.into(), IdempotencyEntry { state, expires: now + IN_FLIGHT_TTL });
        Begin::Started
    }

    pub(super) fn idempotency_finish(&self, scope: &str, key: &str, record: &IdempotencyRecord) {
        let now = Instant::now();
        let name = entry_name(scope, key);
        let mut records = self.inner.idempotency.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = IdempotencyEntry { state: IdempotencyState::Done(record.clone()), expires: now + IDEMPOTENCY_TTL };
        if !records.contains_key(name.as_str()) {
            make_room(&mut records, now);
        }
        records.insert(name.into(), entry);
    }

    pub(super) fn idempotency_abandon(&self, scope: &str, key: &str) {
        let name = entry_name(scope, key);
        let mut records = self.inner.idempotency.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(records.get(name.as_str()), Some(IdempotencyEntry { state: IdempotencyState::InFlight { .. }, .. }))
        {
            records.remove(name.as_str());
        }
    }
}

fn entry_name(scope: &str, key: &str) -> String {
    format!("{scope}:{key}")
}

/// Called before inserting a new key: drops expired entries when the map is full, and if it is
/// still full, the half closest to expiry. Each purge frees at least half the map, so the cost
/// is amortised over as many inserts.
fn make_room<V: Expiring>(map: &mut HashMap<Box<str>, V>, now: Instant) {
    make_room_within(map, now, MAX_ENTRIES);
}

fn make_room_within<V: Expiring>(map: &mut HashMap<Box<str>, V>, now: Instant, capacity: usize) {
    if map.len() < capacity {
        return;
    }
    map.retain(|_, value| value.expires() > now);
    if map.len() * 2 <= capacity {
        return;
    }
    let mut expiries: Vec<Instant> = map.values().map(Expiring::expires).collect();
    let middle = (expiries.len() - 1) / 2;
    let (_, median, _) = expiries.select_nth_unstable(middle);
    let median = *median;
    // Everything at or before the median goes: at least half the map, ties included.
    map.retain(|_, value| value.expires() > median);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn full_maps_drop_expired_then_soonest_expiring() {
        let now = Instant::now();
        let mut map: HashMap<Box<str>, Instant> = HashMap::new();
        for i in 0..10u64 {
            let expiry = if i < 6 { now - Duration::from_secs(1) } else { now + Duration::from_secs(i) };
            map.insert(format!("k{i}").into(), expiry);
        }
        make_room_within(&mut map, now, 10);
        let mut left: Vec<&str> = map.keys().map(AsRef::as_ref).collect();
        left.sort_unstable();
        assert_eq!(left, ["k6", "k7", "k8", "k9"], "only the expired go when that frees half");
        make_room_within(&mut map, now, 4);
        let mut left: Vec<&str> = map.keys().map(AsRef::as_ref).collect();
        left.sort_unstable();
        assert_eq!(left, ["k8", "k9"], "then the half closest to expiry");
    }

    #[test]
    fn the_bound_holds_when_every_entry_expires_together() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut map: HashMap<Box<str>, Instant> = (0..100).map(|i| (format!("k{i}").into(), later)).collect();
        make_room_within(&mut map, now, 100);
        assert!(map.len() <= 50, "{}", map.len());
    }
}
