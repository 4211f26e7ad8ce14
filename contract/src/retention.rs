//! Which backups to keep and which to delete: a pure function of the list of backups, the time
//! now and the plan's retention policy. It never touches storage; the caller deletes what the
//! decision names, and shows the reasons to a person.
//!
//! # The rules
//! A backup is kept when at least one of these holds (a kept backup lists every rule that holds,
//! so a report says *why* each one is still there):
//! - **held**: a person marked it as held (legal hold, a customer's request). Never deleted.
//! - **newest**: the newest backup of the list. Never deleted, whatever the policy says, so a
//!   policy that would delete everything still leaves one backup to restore.
//! - **young**: younger than `keep_all_days` (age = now − created_at, strictly less).
//! - **before-operation**: a backup taken before an operation, younger than
//!   `before_operation_days`.
//! - **daily / weekly / monthly**: the newest backup of each of the last `daily` calendar days,
//!   `weekly` ISO weeks and `monthly` calendar months *that have a backup* (see below).
//! - **clock-behind**: some backup is dated after `now`. Then the clock that gives `now` went
//!   backwards (or another machine's runs ahead), ages cannot be trusted, and **nothing is deleted
//!   in this run**; the next run, with a sane clock, decides.
//!
//! Everything else is deleted. The input is expected to list complete backups only (the archive
//! lists a backup once it is written and verified): retention never judges a partial upload.
//!
//! # Days, weeks and months
//! A backup's calendar day is its creation time read in the policy's **fixed UTC offset**
//! (`calendar_offset`, UTC by default); its week is that day's ISO 8601 week (Monday to Sunday,
//! numbered by ISO year, so 2020-12-31 and 2021-01-03 are both in 2020-W53, and 2025-12-29 is in
//! 2026-W01); its month is that day's calendar month. For each unit the list is read from the
//! newest backup back, and the newest backup of each of the first N distinct units found is kept.
//!
//! Why "units that have a backup" and not "the last N units before now": when backups stopped
//! for a while (an outage, a suspended tenant), counting back from now would find empty days and
//! then delete the old backups that are now the only ones; counting the units that have a backup
//! keeps N restore points whatever the gap (the rule of restic's and borg's `prune`). Why a fixed
//! offset and not a named time zone: a tenant wants "yesterday's backup" to mean their
//! yesterday, and an offset gives that; daylight saving moves the boundary by an hour twice a
//! year, which at most moves a backup taken near midnight into the neighbouring day — harmless —
//! while a named zone would make the decision depend on the version of the time-zone database.
//! All backup kinds (scheduled, manual, before-operation) count for these slots: a restore point
//! is a restore point.
//!
//! # What a customer can be promised
//! [`RetentionPolicy::guaranteed_minimum_age`] is the age every backup reaches before any run of
//! this policy may delete it: `keep_all_days`. The calendar slots do not add to it: a later
//! backup the same day takes the day's slot from an earlier one, and a slot only moves on when
//! new backups are taken, so they promise restore points, not an age per backup. (The newest
//! backup of a day reaches an age of at least `daily − 1` days before the daily rule lets it go,
//! and longer when backups were missed.) A plan page that says "backups kept N days" must show `guaranteed_minimum_age`.
//!
//! # Properties (checked by a property test)
//! Keep and delete partition the input; held and newest backups are never deleted; a backup
//! younger than the guaranteed age is never deleted; nothing is deleted when a backup is in the
//! future; and applying the policy to what it kept deletes nothing more (idempotent).

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Two backups share an id: a deletion by id would also remove the one that is to be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backup id `{0}` is listed twice; refusing to decide deletions")]
pub struct DuplicateId(pub String);

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    Scheduled,
    Manual,
    BeforeOperation,
}

/// What retention needs to know of one stored, complete backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEntry {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub kind: BackupKind,
    /// Marked by a person as never to be deleted by retention.
    pub held: bool,
}

/// How long backups are kept; from the tenant's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest backup of each of the last `daily` calendar days that have a backup.
    pub daily: u32,
    /// … of each of the last `weekly` ISO weeks that have a backup.
    pub weekly: u32,
    /// … of each of the last `monthly` calendar months that have a backup.
    pub monthly: u32,
    /// Keep every backup younger than this many days.
    pub keep_all_days: u32,
    /// Keep before-operation backups younger than this many days.
    pub before_operation_days: u32,
    /// The offset in which calendar days begin (the tenant's usual offset, or UTC).
    pub calendar_offset: FixedOffset,
}

impl Default for RetentionPolicy {
    /// Keeps only what the safety rules keep (held and newest); calendar days in UTC.
    fn default() -> Self {
        Self {
            daily: 0,
            weekly: 0,
            monthly: 0,
            keep_all_days: 0,
            before_operation_days: 0,
            calendar_offset: FixedOffset::east_opt(0).expect("zero is a valid offset"),
        }
    }
}

impl RetentionPolicy {
    /// The age every backup reaches before this policy may delete it: the true figure for
    /// "backups kept N days". See the module documentation for why the calendar slots do not
    /// count.
    pub fn guaranteed_minimum_age(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.keep_all_days))
    }

    /// Decides what to keep and what to delete. Fails only when two backups share an id: a
    /// deletion by id would then also remove the one that is to be kept.
    pub fn apply(&self, backups: &[BackupEntry], now: DateTime<Utc>) -> Result<RetentionDecision, DuplicateId> {
        let mut seen = HashSet::new();
        if let Some(twice) = backups.iter().find(|b| !seen.insert(b.id.as_str())) {
            return Err(DuplicateId(twice.id.clone()));
        }

        let mut newest_first: Vec<&BackupEntry> = backups.iter().collect();
        newest_first.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let mut reasons: Vec<Vec<KeepReason>> = vec![Vec::new(); newest_first.len()];

        for (index, backup) in newest_first.iter().enumerate() {
            let age = now - backup.created_at;
            let why = &mut reasons[index];
            if backup.held {
                why.push(KeepReason::Held);
            }
            if index == 0 {
                why.push(KeepReason::Newest);
            }
            // A backup from the future has no age: it is kept as such, not as young.
            if age < TimeDelta::zero() {
                why.push(KeepReason::InTheFuture);
            } else {
                if age < TimeDelta::days(i64::from(self.keep_all_days)) {
                    why.push(KeepReason::Young { days: self.keep_all_days });
                }
                if backup.kind == BackupKind::BeforeOperation
                    && age < TimeDelta::days(i64::from(self.before_operation_days))
                {
                    why.push(KeepReason::BeforeOperation { days: self.before_operation_days });
                }
            }
        }

        let local_day = |b: &BackupEntry| b.created_at.with_timezone(&self.calendar_offset).date_naive();
        let days: Vec<NaiveDate> = newest_first.iter().map(|b| local_day(b)).collect();
        for (index, rank) in newest_of_each_unit(&days, self.daily, |d| d) {
            reasons[index].push(KeepReason::Daily { day: days[index], rank });
        }
        for (index, rank) in newest_of_each_unit(&days, self.weekly, |d| (d.iso_week().year(), d.iso_week().week())) {
            let week = days[index].iso_week();
            reasons[index].push(KeepReason::Weekly { iso_year: week.year(), week: week.week(), rank });
        }
        for (index, rank) in newest_of_each_unit(&days, self.monthly, |d| (d.year(), d.month())) {
            reasons[index].push(KeepReason::Monthly { year: days[index].year(), month: days[index].month(), rank });
        }

        let clock_behind = newest_first.iter().any(|b| b.created_at > now);
        let mut decision = RetentionDecision::default();
        for (backup, mut why) in newest_first.into_iter().zip(reasons) {
            if why.is_empty() && clock_behind {
                why.push(KeepReason::ClockBehind);
            }
            if why.is_empty() {
                decision.delete.push(backup.clone());
            } else {
                decision.keep.push(KeptBackup { backup: backup.clone(), reasons: why });
            }
        }
        Ok(decision)
    }
}

/// Indices (into `dates`, sorted newest first) of the newest entry of each of the first `limit`
/// distinct units, with the unit's rank (1 = the newest unit). Units are contiguous because the
/// dates are sorted and every unit key is monotonic in the date.
fn newest_of_each_unit<K: PartialEq>(
    dates: &[NaiveDate],
    limit: u32,
    unit: impl Fn(NaiveDate) -> K,
) -> Vec<(usize, u32)> {
    let mut chosen = Vec::new();
    let mut previous: Option<K> = None;
    for (index, &date) in dates.iter().enumerate() {
        if chosen.len() as u32 >= limit {
            break;
        }
        let key = unit(date);
        if previous.as_ref() != Some(&key) {
            chosen.push((index, chosen.len() as u32 + 1));
            previous = Some(key);
        }
    }
    chosen
}

/// One rule that keeps a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum KeepReason {
    Held,
    Newest,
    InTheFuture,
    ClockBehind,
    Young { days: u32 },
    BeforeOperation { days: u32 },
    Daily { day: NaiveDate, rank: u32 },
    Weekly { iso_year: i32, week: u32, rank: u32 },
    Monthly { year: i32, month: u32, rank: u32 },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Held => write!(f, "held"),
            Self::Newest => write!(f, "the newest backup (always kept)"),
            Self::InTheFuture => write!(f, "dated in the future"),
            Self::ClockBehind => write!(f, "a backup is dated in the future, so the clock is not trusted to delete"),
            Self::Young { days } => write!(f, "younger than {days} days"),
            Self::BeforeOperation { days } => write!(f, "taken before an operation, younger than {days} days"),
            Self::Daily { day, rank } => write!(f, "newest of day {day} (daily #{rank})"),
            Self::Weekly { iso_year, week, rank } => write!(f, "newest of week {iso_year}-W{week:02} (weekly #{rank})"),
            Self::Monthly { year, month, rank } => write!(f, "newest of month {year}-{month:02} (monthly #{rank})"),
        }
    }
}

/// A kept backup and every rule that keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptBackup {
    pub backup: BackupEntry,
    pub reasons: Vec<KeepReason>,
}

/// The outcome, both lists newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionDecision {
    pub keep: Vec<KeptBackup>,
    pub delete: Vec<BackupEntry>,
}

impl fmt::Display for RetentionDecision {
    /// One line per backup, for a person reading a report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kept in &self.keep {
            let reasons: Vec<String> = kept.reasons.iter().map(ToString::to_string).collect();
            writeln!(f, "keep   {} ({}): {}", kept.backup.id, kept.backup.created_at, reasons.join("; "))?;
        }
        for gone in &self.delete {
            writeln!(f, "delete {} ({}): no rule keeps it", gone.id, gone.created_at)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
