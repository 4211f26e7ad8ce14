use std::collections::BTreeSet;

use chrono::{NaiveDate, TimeZone};
use proptest::prelude::*;

use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn scheduled(id: &str, created_at: DateTime<Utc>) -> BackupEntry {
    BackupEntry { id: id.to_string(), created_at, kind: BackupKind::Scheduled, held: false }
}

/// One scheduled backup a day at 02:00 UTC, named by its date, from `first` to `last` inclusive.
fn daily_backups(first: &str, last: &str) -> Vec<BackupEntry> {
    let first: NaiveDate = first.parse().unwrap();
    let last: NaiveDate = last.parse().unwrap();
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| scheduled(&d.to_string(), Utc.from_utc_datetime(&d.and_hms_opt(2, 0, 0).unwrap())))
        .collect()
}

fn kept_ids(decision: &RetentionDecision) -> BTreeSet<String> {
    decision.keep.iter().map(|k| k.backup.id.clone()).collect()
}

fn deleted_ids(decision: &RetentionDecision) -> BTreeSet<String> {
    decision.delete.iter().map(|b| b.id.clone()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn reasons_of<'a>(decision: &'a RetentionDecision, id: &str) -> &'a [KeepReason] {
    &decision.keep.iter().find(|k| k.backup.id == id).unwrap_or_else(|| panic!("{id} not kept")).reasons
}

#[test]
fn retention_keeps_daily_weekly_monthly() {
    // 2026-12-06 is a Sunday: ISO week 2026-W49 runs from Monday 11-30 to that Sunday.
    let backups = daily_backups("2025-10-01", "2026-12-06");
    let policy = RetentionPolicy { daily: 7, weekly: 4, monthly: 12, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, at("2026-12-06T12:00:00Z")).unwrap();

    let daily = ["2026-12-06", "2026-12-05", "2026-12-04", "2026-12-03", "2026-12-02", "2026-12-01", "2026-11-30"];
    let weekly = ["2026-12-06", "2026-11-29", "2026-11-22", "2026-11-15"];
    let monthly = [
        "2026-12-06",
        "2026-11-30",
        "2026-10-31",
        "2026-09-30",
        "2026-08-31",
        "2026-07-31",
        "2026-06-30",
        "2026-05-31",
        "2026-04-30",
        "2026-03-31",
        "2026-02-28",
        "2026-01-31",
    ];
    let expected: BTreeSet<String> = daily.iter().chain(&weekly).chain(&monthly).map(|s| s.to_string()).collect();
    assert_eq!(kept_ids(&decision), expected);
    assert_eq!(decision.keep.len() + decision.delete.len(), backups.len());

    let today = reasons_of(&decision, "2026-12-06");
    assert!(today.contains(&KeepReason::Newest));
    assert!(today.contains(&KeepReason::Daily { day: "2026-12-06".parse().unwrap(), rank: 1 }));
    assert!(today.contains(&KeepReason::Weekly { iso_year: 2026, week: 49, rank: 1 }));
    assert!(today.contains(&KeepReason::Monthly { year: 2026, month: 12, rank: 1 }));
    assert_eq!(
        reasons_of(&decision, "2026-01-31"),
        [KeepReason::Monthly { year: 2026, month: 1, rank: 12 }],
        "the 12th month back is kept for that reason alone"
    );
    assert!(deleted_ids(&decision).contains("2025-12-31"), "a 13th month is not kept");
}

#[test]
fn month_ends_and_leap_day_are_the_last_backup_of_their_month() {
    let backups = daily_backups("2023-12-15", "2024-04-02");
    let policy = RetentionPolicy { monthly: 5, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, at("2024-04-02T12:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["2024-04-02", "2024-03-31", "2024-02-29", "2024-01-31", "2023-12-31"]));

    // Not a leap year: February's last backup is on the 28th.
    let backups = daily_backups("2023-01-15", "2023-03-02");
    let decision = policy.apply(&backups, at("2023-03-02T12:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["2023-03-02", "2023-02-28", "2023-01-31"]));
}

#[test]
fn leap_day_is_a_day_of_its_own() {
    let backups = daily_backups("2024-02-27", "2024-03-01");
    let policy = RetentionPolicy { daily: 3, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, at("2024-03-01T12:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["2024-03-01", "2024-02-29", "2024-02-28"]));
    assert_eq!(deleted_ids(&decision), set(&["2024-02-27"]));
}

#[test]
fn iso_week_53_spans_the_new_year() {
    // 2020 has 53 ISO weeks: 2020-W53 runs from Monday 2020-12-28 to Sunday 2021-01-03.
    let backups = vec![
        scheduled("thu-2020-12-31", at("2020-12-31T02:00:00Z")),
        scheduled("sat-2021-01-02", at("2021-01-02T02:00:00Z")),
        scheduled("tue-2021-01-05", at("2021-01-05T02:00:00Z")),
    ];
    let policy = RetentionPolicy { weekly: 2, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, at("2021-01-06T12:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["tue-2021-01-05", "sat-2021-01-02"]));
    assert_eq!(deleted_ids(&decision), set(&["thu-2020-12-31"]));
    assert!(reasons_of(&decision, "sat-2021-01-02").contains(&KeepReason::Weekly {
        iso_year: 2020,
        week: 53,
        rank: 2
    }));

    // And the other way round: Monday 2025-12-29 already belongs to 2026-W01.
    let backups = vec![
        scheduled("sun-2025-12-28", at("2025-12-28T02:00:00Z")),
        scheduled("mon-2025-12-29", at("2025-12-29T02:00:00Z")),
        scheduled("fri-2026-01-02", at("2026-01-02T02:00:00Z")),
    ];
    let policy = RetentionPolicy { weekly: 1, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, at("2026-01-03T00:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["fri-2026-01-02"]));
    assert_eq!(reasons_of(&decision, "fri-2026-01-02")[1], KeepReason::Weekly { iso_year: 2026, week: 1, rank: 1 });
}

#[test]
fn missed_days_do_not_shorten_what_is_kept() {
    // Backups stopped for two weeks: the last 4 days *with a backup* are kept, not the last 4
    // days on the calendar (which would keep only the newest).
    let mut backups = daily_backups("2026-03-01", "2026-03-03");
    backups.extend(daily_backups("2026-03-20", "2026-03-21"));
    let policy = RetentionPolicy { daily: 4, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, at("2026-03-21T12:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["2026-03-21", "2026-03-20", "2026-03-03", "2026-03-02"]));
    assert_eq!(deleted_ids(&decision), set(&["2026-03-01"]));
}

#[test]
fn several_backups_a_day_keep_the_days_newest() {
    let backups = vec![
        scheduled("d1-night", at("2026-05-01T02:00:00Z")),
        BackupEntry { kind: BackupKind::Manual, ..scheduled("d1-noon", at("2026-05-01T12:00:00Z")) },
        scheduled("d1-evening", at("2026-05-01T20:00:00Z")),
        scheduled("d2-night", at("2026-05-02T02:00:00Z")),
        BackupEntry { kind: BackupKind::Manual, ..scheduled("d2-noon", at("2026-05-02T12:00:00Z")) },
    ];
    let policy = RetentionPolicy { daily: 2, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, at("2026-05-02T13:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["d2-noon", "d1-evening"]));
}

#[test]
fn the_calendar_offset_moves_day_boundaries() {
    // 23:30 UTC on May 1 is already May 2 at UTC+02:00.
    let backups = vec![scheduled("late", at("2026-05-01T23:30:00Z")), scheduled("next", at("2026-05-02T10:00:00Z"))];
    let now = at("2026-05-02T12:00:00Z");
    let utc = RetentionPolicy { daily: 2, ..RetentionPolicy::default() };
    assert_eq!(kept_ids(&utc.apply(&backups, now).unwrap()), set(&["late", "next"]));
    let paris_summer = RetentionPolicy { calendar_offset: FixedOffset::east_opt(2 * 3600).unwrap(), ..utc };
    let decision = paris_summer.apply(&backups, now).unwrap();
    assert_eq!(kept_ids(&decision), set(&["next"]));
    assert_eq!(reasons_of(&decision, "next")[1], KeepReason::Daily { day: "2026-05-02".parse().unwrap(), rank: 1 });
}

#[test]
fn held_backups_are_never_deleted() {
    let mut backups = daily_backups("2020-01-01", "2020-01-10");
    backups[0].held = true;
    let decision = RetentionPolicy::default().apply(&backups, at("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["2020-01-01", "2020-01-10"]));
    assert_eq!(reasons_of(&decision, "2020-01-01"), [KeepReason::Held]);
    assert_eq!(reasons_of(&decision, "2020-01-10"), [KeepReason::Newest]);
}

#[test]
fn before_operation_backups_expire_after_their_period() {
    let before = |id: &str, created_at| BackupEntry { kind: BackupKind::BeforeOperation, ..scheduled(id, created_at) };
    let now = at("2026-06-10T12:00:00Z");
    let backups = vec![
        before("two-days", now - TimeDelta::days(2)),
        before("exactly-three-days", now - TimeDelta::days(3)),
        before("four-days", now - TimeDelta::days(4)),
        scheduled("scheduled-two-days", now - TimeDelta::days(2) + TimeDelta::hours(1)),
        scheduled("newest", now - TimeDelta::hours(1)),
    ];
    let policy = RetentionPolicy { before_operation_days: 3, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, now).unwrap();
    assert_eq!(kept_ids(&decision), set(&["newest", "two-days"]));
    assert_eq!(reasons_of(&decision, "two-days"), [KeepReason::BeforeOperation { days: 3 }]);
    assert_eq!(deleted_ids(&decision), set(&["exactly-three-days", "four-days", "scheduled-two-days"]));
}

#[test]
fn young_backups_are_all_kept() {
    let now = at("2026-06-10T12:00:00Z");
    let backups: Vec<_> = (0..10).map(|h| scheduled(&format!("h{h}"), now - TimeDelta::hours(h * 12))).collect();
    let policy = RetentionPolicy { keep_all_days: 2, ..RetentionPolicy::default() };
    let decision = policy.apply(&backups, now).unwrap();
    assert_eq!(kept_ids(&decision), set(&["h0", "h1", "h2", "h3"]), "48 h old is not younger than 2 days");
    assert_eq!(policy.guaranteed_minimum_age(), TimeDelta::days(2));
}

#[test]
fn a_policy_keeping_nothing_still_keeps_the_newest() {
    let backups = daily_backups("2026-01-01", "2026-01-31");
    let decision = RetentionPolicy::default().apply(&backups, at("2027-01-01T00:00:00Z")).unwrap();
    assert_eq!(kept_ids(&decision), set(&["2026-01-31"]));
    assert_eq!(decision.delete.len(), 30);
}

#[test]
fn a_clock_behind_the_backups_deletes_nothing() {
    let backups = daily_backups("2026-01-01", "2026-01-31");
    // `now` went back to before the newest backups.
    let decision = RetentionPolicy::default().apply(&backups, at("2026-01-20T00:00:00Z")).unwrap();
    assert!(decision.delete.is_empty(), "{decision}");
    assert_eq!(reasons_of(&decision, "2026-01-25"), [KeepReason::InTheFuture]);
    assert_eq!(reasons_of(&decision, "2026-01-02"), [KeepReason::ClockBehind]);
}

#[test]
fn duplicate_ids_are_refused() {
    let backups = vec![scheduled("same", at("2026-01-01T00:00:00Z")), scheduled("same", at("2026-01-02T00:00:00Z"))];
    let error = RetentionPolicy::default().apply(&backups, at("2026-02-01T00:00:00Z")).unwrap_err();
    assert!(error.to_string().contains("`same` is listed twice"), "{error}");
}

#[test]
fn the_report_names_every_backup_with_its_reasons() {
    let backups = daily_backups("2026-01-01", "2026-01-03");
    let policy = RetentionPolicy { daily: 2, ..RetentionPolicy::default() };
    let report = policy.apply(&backups, at("2026-01-03T12:00:00Z")).unwrap().to_string();
    assert!(
        report.contains("keep   2026-01-02 (2026-01-02 02:00:00 UTC): newest of day 2026-01-02 (daily #2)"),
        "{report}"
    );
    assert!(report.contains("delete 2026-01-01"), "{report}");
}

fn arbitrary_backups() -> impl Strategy<Value = Vec<BackupEntry>> {
    let kind = prop_oneof![Just(BackupKind::Scheduled), Just(BackupKind::Manual), Just(BackupKind::BeforeOperation)];
    // Up to two years of minutes around a fixed origin: enough for months and years to turn.
    prop::collection::vec((0i64..2 * 366 * 24 * 60, kind, prop::bool::weighted(0.05)), 0..60).prop_map(|raw| {
        let origin = at("2023-06-01T00:00:00Z");
        raw.into_iter()
            .enumerate()
            .map(|(i, (minutes, kind, held))| BackupEntry {
                id: format!("b{i}"),
                created_at: origin + TimeDelta::minutes(minutes),
                kind,
                held,
            })
            .collect()
    })
}

fn arbitrary_policy() -> impl Strategy<Value = RetentionPolicy> {
    (0u32..10, 0u32..6, 0u32..14, 0u32..40, 0u32..40, -48i32..=56).prop_map(
        |(daily, weekly, monthly, keep_all_days, before_operation_days, quarter_hours)| RetentionPolicy {
            daily,
            weekly,
            monthly,
            keep_all_days,
            before_operation_days,
            calendar_offset: FixedOffset::east_opt(quarter_hours * 15 * 60).unwrap(),
        },
    )
}

proptest! {
    #[test]
    fn retention_invariants(backups in arbitrary_backups(), policy in arbitrary_policy(), now_minutes in 0i64..3 * 366 * 24 * 60) {
        let now = at("2023-06-01T00:00:00Z") + TimeDelta::minutes(now_minutes);
        let decision = policy.apply(&backups, now).unwrap();
        let kept = kept_ids(&decision);
        let deleted = deleted_ids(&decision);
        let input: BTreeSet<String> = backups.iter().map(|b| b.id.clone()).collect();

        prop_assert!(kept.is_disjoint(&deleted));
        prop_assert_eq!(kept.union(&deleted).cloned().collect::<BTreeSet<_>>(), input);
        prop_assert_eq!(decision.keep.len() + decision.delete.len(), backups.len());
        prop_assert!(decision.keep.iter().all(|k| !k.reasons.is_empty()));
        prop_assert!(decision.delete.iter().all(|b| !b.held), "a held backup was deleted");
        if let Some(newest) = backups.iter().max_by_key(|b| (b.created_at, b.id.clone())) {
            prop_assert!(kept.contains(&newest.id), "the newest backup was deleted");
        }
        for gone in &decision.delete {
            prop_assert!(now - gone.created_at >= policy.guaranteed_minimum_age(), "{} deleted too young", gone.id);
            if gone.kind == BackupKind::BeforeOperation {
                prop_assert!(now - gone.created_at >= TimeDelta::days(policy.before_operation_days.into()));
            }
        }
        if backups.iter().any(|b| b.created_at > now) {
            prop_assert!(decision.delete.is_empty(), "deleted with the clock behind a backup");
        }

        let survivors: Vec<BackupEntry> = decision.keep.iter().map(|k| k.backup.clone()).collect();
        let again = policy.apply(&survivors, now).unwrap();
        prop_assert!(again.delete.is_empty(), "not idempotent: {:?}", deleted_ids(&again));
        prop_assert_eq!(again.keep, decision.keep, "the second run keeps for other reasons");
    }
}
