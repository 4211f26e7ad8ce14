//! When scheduled backups are due: a five-field cron expression read in UTC (`30 2 * * *` is
//! every day at 02:30 UTC), as the Tenant's `spec.backups.schedule` holds it.
//!
//! The rules the operator and the single-server runtime follow alike:
//! - A backup is **due** for the latest slot at or before now that is later than the slot of the
//!   last scheduled backup taken. Slots missed while nobody was watching (an operator down for a
//!   day) are caught up **once**, by that one latest slot, never once per missed slot.
//! - A tenant's backups are **late** when a slot passed more than the grace period ago without a
//!   successful backup after it (see [`BackupSchedule::late_since`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed schedule; [`fmt::Display`] gives the expression back as written.
#[derive(Clone)]
pub struct BackupSchedule {
    text: String,
    cron: Cron,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule {text:?}: {reason}")]
pub struct ScheduleError {
    text: String,
    reason: String,
}

/// At most this often: a schedule of every minute would run backups back to back.
pub const MIN_INTERVAL: TimeDelta = TimeDelta::minutes(15);

impl BackupSchedule {
    /// Five fields (minute, hour, day of month, month, day of week), no seconds, and slots at
    /// least [`MIN_INTERVAL`] apart.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let error = |reason: String| ScheduleError { text: text.to_string(), reason };
        if text.split_whitespace().count() != 5 {
            return Err(error("five fields are expected: minute hour day-of-month month day-of-week".into()));
        }
        let cron =
            CronParser::builder().seconds(Seconds::Disallowed).build().parse(text).map_err(|e| error(e.to_string()))?;
        let schedule = Self { text: text.to_string(), cron };
        // Consecutive slots closer than the minimum: checked on the first 200 slots from the
        // epoch, which covers every pattern of minutes and hours; a pattern that crowds its
        // slots only on rare days (29 February) is let through, and is harmless.
        let mut at = DateTime::<Utc>::from_timestamp(0, 0).expect("the epoch");
        let mut previous: Option<DateTime<Utc>> = None;
        for _ in 0..200 {
            let Some(next) = schedule.next_after(at) else {
                return Err(error("it never comes".into()));
            };
            if let Some(previous) = previous
                && next - previous < MIN_INTERVAL
            {
                return Err(error(format!(
                    "slots {previous} and {next} are closer than {} minutes",
                    MIN_INTERVAL.num_minutes()
                )));
            }
            previous = Some(next);
            at = next;
        }
        Ok(schedule)
    }

    /// The first slot strictly after `at`.
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&at, false).ok()
    }

    /// The latest slot at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&at, true).ok()
    }

    /// The slot a scheduled backup is due for now, if any: the latest slot at or before `now`,
    /// when it is later than `last_taken` (the slot of the newest scheduled backup already
    /// made). `None` when `last_taken` is that slot already, so missed slots make one backup.
    pub fn due(&self, now: DateTime<Utc>, last_taken: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let slot = self.latest_at_or_before(now)?;
        match last_taken {
            Some(taken) if taken >= slot => None,
            _ => Some(slot),
        }
    }

    /// Since when the backups are late: the first slot after `last_success` (the completion of
    /// the newest successful backup; `since` when there is none, e.g. the tenant's creation)
    /// plus `grace`, when that moment has passed by `now`.
    pub fn late_since(
        &self,
        last_success: DateTime<Utc>,
        grace: TimeDelta,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let missed = self.next_after(last_success)? + grace;
        (missed < now).then_some(missed)
    }

    /// In words, for consoles ("At 02:30 AM").
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

impl fmt::Display for BackupSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Two schedules are the same when written the same.
impl PartialEq for BackupSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for BackupSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupSchedule({:?})", self.text)
    }
}

impl FromStr for BackupSchedule {
    type Err = ScheduleError;
    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_daily_schedule_is_due_once_per_day_in_utc() {
        let daily = BackupSchedule::parse("30 2 * * *").unwrap();
        assert_eq!(daily.next_after(at("2026-12-07T02:30:00Z")), Some(at("2026-12-08T02:30:00Z")));
        assert_eq!(daily.due(at("2026-12-07T02:29:59Z"), Some(at("2026-12-06T02:30:00Z"))), None);
        assert_eq!(
            daily.due(at("2026-12-07T02:30:00Z"), Some(at("2026-12-06T02:30:00Z"))),
            Some(at("2026-12-07T02:30:00Z"))
        );
        assert_eq!(daily.due(at("2026-12-07T09:00:00Z"), Some(at("2026-12-07T02:30:00Z"))), None);
    }

    #[test]
    fn slots_missed_while_down_are_caught_up_once() {
        let hourly = BackupSchedule::parse("0 * * * *").unwrap();
        // Down from 01:00 to 05:10: one backup, for the 05:00 slot, not five.
        let due = hourly.due(at("2026-12-07T05:10:00Z"), Some(at("2026-12-07T00:00:00Z")));
        assert_eq!(due, Some(at("2026-12-07T05:00:00Z")));
        assert_eq!(hourly.due(at("2026-12-07T05:50:00Z"), due), None);
        // Never taken: the latest slot.
        assert_eq!(hourly.due(at("2026-12-07T05:10:00Z"), None), Some(at("2026-12-07T05:00:00Z")));
    }

    #[test]
    fn backups_are_late_once_a_slot_passed_without_one_plus_the_grace() {
        let daily = BackupSchedule::parse("0 3 * * *").unwrap();
        let grace = TimeDelta::hours(2);
        let success = at("2026-12-06T03:20:00Z");
        assert_eq!(daily.late_since(success, grace, at("2026-12-07T04:59:00Z")), None);
        assert_eq!(daily.late_since(success, grace, at("2026-12-07T05:01:00Z")), Some(at("2026-12-07T05:00:00Z")));
    }

    #[test]
    fn what_is_not_a_five_field_schedule_or_runs_too_often_is_refused() {
        for bad in ["", "0 3 * *", "0 0 3 * * *", "61 * * * *", "* * * * *", "*/5 * * * *", "not a schedule"] {
            assert!(BackupSchedule::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["0 3 * * *", "*/15 * * * *", "0 */6 * * *", "15 1 * * SUN", "0 0 1 * *"] {
            assert!(BackupSchedule::parse(good).is_ok(), "{good:?} refused");
        }
        let error = BackupSchedule::parse("*/5 * * * *").unwrap_err().to_string();
        assert!(error.contains("closer than 15 minutes"), "{error}");
    }
}
