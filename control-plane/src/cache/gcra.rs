//! The generic cell rate algorithm (GCRA), the token bucket expressed as one timestamp per
//! client: the theoretical arrival time (TAT) of the next request at the sustained rate. The
//! Redis backend runs the same arithmetic in a Lua script (see `redis_backend`).

use std::time::{Duration, Instant};

use super::RateLimit;

/// `Ok(new_tat)` when a request arriving at `now` is allowed (store `new_tat`), or
/// `Err(retry_after)` when it is refused (store nothing).
pub(super) fn decide(tat: Option<Instant>, now: Instant, limit: RateLimit) -> Result<Instant, Duration> {
    let tat = tat.map_or(now, |tat| tat.max(now));
    let allowed_from = tat.checked_sub(limit.tolerance()).unwrap_or(now);
    if now < allowed_from {
        return Err(allowed_from - now);
    }
    Ok(tat + limit.interval())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval() {
        let limit = RateLimit { per_minute: 60, burst: 3 };
        let start = Instant::now();
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(decide(tat, start, limit).expect("within the burst"));
        }
        let retry = decide(tat, start, limit).expect_err("burst used up");
        assert_eq!(retry, Duration::from_secs(1));
        assert_eq!(decide(tat, start + Duration::from_millis(999), limit), Err(Duration::from_millis(1)));
        let later = start + retry;
        tat = Some(decide(tat, later, limit).expect("refilled"));
        assert!(decide(tat, later, limit).is_err(), "one token per interval");
        // A long pause refills the whole burst, never more.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            tat = Some(decide(tat, much_later, limit).expect("burst again"));
        }
        assert!(decide(tat, much_later, limit).is_err());
    }
}
