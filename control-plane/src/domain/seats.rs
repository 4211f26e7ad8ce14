//! Seat usage from the seat ledger: how many seats were held at an instant, at most over a
//! period, and for how long in total (seat-days, what proration needs).
//!
//! A seat assignment holds from `assigned_at` (inclusive) until `removed_at` (exclusive), or is
//! still held when `removed_at` is `None`. Everything is computed from the ledger rows, so a
//! count "at a time T" is the same whenever it is asked.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;

/// One row of the seat ledger, as far as counting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub assigned_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

impl Holding {
    fn held_at(&self, at: DateTime<Utc>) -> bool {
        self.assigned_at <= at && self.removed_at.is_none_or(|removed| at < removed)
    }
}

/// Seat usage over `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Seats held at `to` (or now, for a period that has not ended).
    pub current: u32,
    /// The most seats held at any instant of the period.
    pub peak: u32,
    /// Seat-seconds: exact, for billing systems that prorate by the second.
    pub seat_seconds: i64,
    /// Seat-seconds ÷ 86 400.
    pub seat_days: f64,
}

const SECONDS_PER_DAY: f64 = 86_400.0;

/// `1 seat`, `3 seats`: a count of seats in words, for messages and pages alike.
pub fn seats_phrase(count: u32) -> String {
    format!("{count} {}", if count == 1 { "seat" } else { "seats" })
}

/// Emails in natural order, ignoring case: `user2` before `user10`, as a person reads them.
pub fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    alphanumeric_sort::compare_str(a.to_lowercase(), b.to_lowercase()).then_with(|| a.cmp(b))
}

/// Seats held at the instant `at`.
pub fn count_at(holdings: &[Holding], at: DateTime<Utc>) -> u32 {
    holdings.iter().filter(|h| h.held_at(at)).count().try_into().unwrap_or(u32::MAX)
}

/// Usage over `[from, to)`. `current` is the count just before `to`; an empty period (`to <=
/// from`) has no peak and no seat-days, only a current count.
pub fn usage(holdings: &[Holding], from: DateTime<Utc>, to: DateTime<Utc>) -> Usage {
    let current = if to > from { count_at(holdings, to - TimeDelta::nanoseconds(1)) } else { count_at(holdings, from) };
    if to <= from {
        return Usage { current, peak: 0, seat_seconds: 0, seat_days: 0.0 };
    }
    // Sweep: +1 where a holding starts inside the period (or before it), -1 where it ends.
    let mut edges: Vec<(DateTime<Utc>, i64)> = Vec::with_capacity(holdings.len() * 2);
    let mut micros: i128 = 0;
    for holding in holdings {
        let start = holding.assigned_at.max(from);
        let end = holding.removed_at.map_or(to, |removed| removed.min(to));
        if start >= end {
            continue;
        }
        micros += i128::from((end - start).num_microseconds().unwrap_or(i64::MAX));
        edges.push((start, 1));
        edges.push((end, -1));
    }
    // Ends before starts at the same instant: a seat removed and another assigned at the same
    // moment never overlap.
    edges.sort_by_key(|(at, delta)| (*at, *delta));
    let (mut held, mut peak) = (0_i64, 0_i64);
    for (_, delta) in edges {
        held += delta;
        peak = peak.max(held);
    }
    let seat_seconds = i64::try_from(micros / 1_000_000).unwrap_or(i64::MAX);
    Usage {
        current,
        peak: peak.try_into().unwrap_or(u32::MAX),
        seat_seconds,
        seat_days: micros as f64 / 1_000_000.0 / SECONDS_PER_DAY,
    }
}

/// The most seats held on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyPeak {
    pub day: NaiveDate,
    pub peak: u32,
}

/// The peak of each of the `days` UTC days up to and including `until`'s day (that day only up
/// to `until`), oldest first: what the console's usage chart draws.
pub fn daily_peaks(holdings: &[Holding], until: DateTime<Utc>, days: u32) -> Vec<DailyPeak> {
    let last = until.date_naive();
    (0..days)
        .rev()
        .filter_map(|back| last.checked_sub_days(Days::new(u64::from(back))))
        .map(|day| {
            let start = day.and_time(NaiveTime::MIN).and_utc();
            let end = (start + TimeDelta::days(1)).min(until);
            // At the instant `until` itself, a period would be empty: count the seats held then.
            let peak = if end > start { usage(holdings, start, end).peak } else { count_at(holdings, start) };
            DailyPeak { day, peak }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> DateTime<Utc> {
        format!("2026-03-{d:02}T00:00:00Z").parse().unwrap()
    }

    fn held(from: u32, until: Option<u32>) -> Holding {
        Holding { assigned_at: day(from), removed_at: until.map(day) }
    }

    #[test]
    fn seat_counts_are_worded_in_the_singular_for_one() {
        assert_eq!(seats_phrase(0), "0 seats");
        assert_eq!(seats_phrase(1), "1 seat");
        assert_eq!(seats_phrase(11), "11 seats");
    }

    #[test]
    fn emails_sort_naturally() {
        let mut emails = vec!["user10@x.example", "User2@x.example", "user1@x.example", "ada@x.example"];
        emails.sort_by(|a, b| natural_order(a, b));
        assert_eq!(emails, ["ada@x.example", "user1@x.example", "User2@x.example", "user10@x.example"]);
    }

    #[test]
    fn counts_at_an_instant_include_the_start_and_exclude_the_end() {
        let ledger = [held(2, Some(5)), held(3, None)];
        assert_eq!(count_at(&ledger, day(1)), 0);
        assert_eq!(count_at(&ledger, day(2)), 1);
        assert_eq!(count_at(&ledger, day(4)), 2);
        assert_eq!(count_at(&ledger, day(5)), 1);
        assert_eq!(count_at(&ledger, day(30)), 1);
    }

    #[test]
    fn seat_days_across_additions_and_removals() {
        // March 1–11: one seat all along, one for days 3–5, one from day 8 on.
        let ledger = [held(1, None), held(3, Some(5)), held(8, None)];
        let usage = usage(&ledger, day(1), day(11));
        assert_eq!(usage.seat_seconds, (10 + 2 + 3) * 86_400);
        assert!((usage.seat_days - 15.0).abs() < 1e-9);
        assert_eq!(usage.peak, 2);
        assert_eq!(usage.current, 2);
    }

    #[test]
    fn holdings_are_clipped_to_the_period() {
        let ledger = [held(1, Some(20)), held(9, Some(10))];
        let usage = usage(&ledger, day(5), day(10));
        assert_eq!(usage.seat_seconds, (5 + 1) * 86_400);
        assert_eq!(usage.peak, 2);
        assert_eq!(usage.current, 2, "both are held on the last instant before day 10");
        assert_eq!(super::usage(&ledger, day(10), day(12)).current, 1);
    }

    #[test]
    fn a_seat_handed_over_at_the_same_instant_never_counts_twice() {
        let ledger = [held(1, Some(4)), held(4, None)];
        let usage = usage(&ledger, day(1), day(8));
        assert_eq!(usage.peak, 1);
        assert_eq!(usage.seat_seconds, 7 * 86_400);
    }

    #[test]
    fn an_empty_period_has_no_usage() {
        let ledger = [held(1, None)];
        let usage = usage(&ledger, day(5), day(5));
        assert_eq!((usage.peak, usage.seat_seconds, usage.current), (0, 0, 1));
        assert_eq!(super::usage(&[], day(1), day(9)).peak, 0);
    }

    #[test]
    fn daily_peaks_cover_each_day_up_to_now() {
        // One seat from March 2, a second for a few hours of March 4, a third from noon of March 5.
        let ledger = [
            held(2, None),
            Holding { assigned_at: day(4) + TimeDelta::hours(9), removed_at: Some(day(4) + TimeDelta::hours(11)) },
            Holding { assigned_at: day(5) + TimeDelta::hours(12), removed_at: None },
        ];
        let now = day(5) + TimeDelta::hours(15);
        let peaks = daily_peaks(&ledger, now, 5);
        let days: Vec<u32> = peaks.iter().map(|p| chrono::Datelike::day(&p.day)).collect();
        assert_eq!(days, [1, 2, 3, 4, 5]);
        assert_eq!(peaks.iter().map(|p| p.peak).collect::<Vec<_>>(), [0, 1, 1, 2, 2]);
        // Before the third seat was taken, today's peak is still 1.
        assert_eq!(daily_peaks(&ledger, day(5) + TimeDelta::hours(11), 1)[0].peak, 1);
        // At midnight exactly, today has no time yet: the seats held at that instant.
        assert_eq!(daily_peaks(&ledger, day(3), 1)[0].peak, 1);
        assert!(daily_peaks(&ledger, now, 0).is_empty());
    }

    #[test]
    fn partial_days_are_exact() {
        let from = day(1);
        let ledger =
            [Holding { assigned_at: from + TimeDelta::hours(6), removed_at: Some(from + TimeDelta::hours(18)) }];
        let usage = usage(&ledger, from, day(2));
        assert_eq!(usage.seat_seconds, 12 * 3600);
        assert!((usage.seat_days - 0.5).abs() < 1e-12);
    }
}
