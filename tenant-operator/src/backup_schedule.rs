//! Scheduled backups and what the Tenant's status says of its backups, from the Tenant's
//! reconcile: the schedule's due slot becomes a `TenantBackup` (named by the slot, so a second
//! operator or a restart creates it once), and the status tells the last completed backup, the
//! next slot, and whether backups are current.
//!
//! No CronJob (v1.20 has no `batch/v1` CronJob, and a CronJob would run once per missed slot
//! after a long outage): the reconcile wakes at the next slot, and a slot missed while the
//! operator was down is caught up once (see [`tenantry_contract::schedule`]).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kube::ResourceExt;

use crate::api::BackupsStatus;
use crate::api::backup::{BackupKind, BackupPhase, TenantBackup, TenantBackupSpec};
use crate::model::TenantModel;
use tenantry_contract::retention::{BackupEntry, BackupKind as RetentionKind, RetentionPolicy};

/// How long after a slot a completed backup may still arrive before backups are late.
pub const GRACE: TimeDelta = TimeDelta::hours(2);

/// What the schedule asks now, decided from the tenant's backups as the watch reports them.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// A scheduled backup to create.
    pub create: Option<TenantBackup>,
    pub status: Option<BackupsStatus>,
    /// `BackupsCurrent`: status, reason, message; `None` without a schedule.
    pub current: Option<(&'static str, &'static str, String)>,
    /// When to look again (the next slot, or when backups become late).
    pub wake: Option<Duration>,
}

/// The schedule's decision for `model` (pure). `ready`: production serves, so a backup can run;
/// `since`: when the tenant was created (backups are late from its first slot on).
pub fn decide(
    model: &TenantModel,
    backups: &[&TenantBackup],
    ready: bool,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    let Some(config) = &model.backups else { return Decision::default() };
    let schedule = &config.schedule;
    let production = |b: &&&TenantBackup| b.spec.environment == "production";
    // A slot is taken by its scheduled backup, or by any backup of production started after it
    // (retention may delete a slot's backup once a newer one exists; the newest it never
    // deletes).
    let last_taken = backups
        .iter()
        .filter(production)
        .filter_map(|b| match &b.spec.slot {
            Some(slot) => parse_time(slot),
            None => created(b),
        })
        .max();
    let last_success = backups
        .iter()
        .filter(production)
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            (status.phase == Some(BackupPhase::Completed)).then_some(())?;
            Some((parse_time(status.completed_at.as_deref()?)?, b.name_any()))
        })
        .max();
    let create = (ready && !model.suspended)
        .then(|| schedule.due(now, last_taken))
        .flatten()
        .map(|slot| scheduled_backup(&model.name, slot));
    let next = schedule.next_after(now);
    let reference = last_success.as_ref().map_or(since, |(at, _)| *at);
    let current = Some(match schedule.late_since(reference, GRACE, now) {
        Some(late_since) => (
            "False",
            "BackupsLate",
            match &last_success {
                Some((at, name)) => format!(
                    "the last completed backup ({name}, {at}) is older than the schedule allows since {late_since}"
                ),
                None => format!("no backup has completed; one was due by {late_since}"),
            },
        ),
        None => ("True", "BackupsCurrent", "the last completed backup is as recent as the schedule asks".to_string()),
    });
    // Wake at the next slot, and when backups would become late if none completes.
    let due_by = schedule.next_after(reference).map(|slot| slot + GRACE).filter(|at| *at > now);
    let wake = [next, due_by].into_iter().flatten().min().map(|at| (at - now).to_std().unwrap_or_default());
    let status = BackupsStatus {
        last_successful: last_success.as_ref().map(|(_, name)| name.clone()),
        last_successful_at: last_success.as_ref().map(|(at, _)| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        next_scheduled_at: next.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    };
    Decision { create, status: Some(status), current, wake }
}

/// Failed backups' records kept per tenant and environment (they hold no archive): the newest
/// few, enough to see a pattern.
pub const FAILED_KEPT: usize = 5;

/// The tenant's backups retention deletes now (pure): completed ones no rule of the tenant's
/// retention keeps (see [`tenantry_contract::retention`]; held and newest ones always stay),
/// and failed records beyond the newest [`FAILED_KEPT`]. Running and pending ones are left
/// alone.
pub fn expired(model: &TenantModel, backups: &[&TenantBackup], now: DateTime<Utc>) -> Vec<String> {
    let Some(config) = &model.backups else { return Vec::new() };
    let retention = &config.retention;
    // Validation keeps them within 0..=3650.
    let count = |value: i64| u32::try_from(value).unwrap_or(0);
    let policy = RetentionPolicy {
        daily: count(retention.daily),
        weekly: count(retention.weekly),
        monthly: count(retention.monthly),
        keep_all_days: count(retention.keep_all_days),
        before_operation_days: count(retention.before_operation_days),
        ..RetentionPolicy::default()
    };
    let mut delete = Vec::new();
    for environment in ["production", "test"] {
        let of_environment = || {
            backups.iter().filter(move |b| b.spec.environment == environment && b.metadata.deletion_timestamp.is_none())
        };
        let phase = |b: &&&TenantBackup| b.status.as_ref().and_then(|s| s.phase);
        let entries: Vec<BackupEntry> = of_environment()
            .filter(|b| phase(b) == Some(BackupPhase::Completed))
            .filter_map(|b| {
                Some(BackupEntry {
                    id: b.name_any(),
                    created_at: created(b)?,
                    kind: match b.spec.kind {
                        BackupKind::Scheduled => RetentionKind::Scheduled,
                        BackupKind::Manual => RetentionKind::Manual,
                        BackupKind::BeforeOperation => RetentionKind::BeforeOperation,
                    },
                    held: b.spec.hold,
                })
            })
            .collect();
        // Names are unique, so the policy cannot refuse them.
        if let Ok(decision) = policy.apply(&entries, now) {
            delete.extend(decision.delete.into_iter().map(|entry| entry.id));
        }
        let mut failed: Vec<(DateTime<Utc>, String)> = of_environment()
            .filter(|b| phase(b) == Some(BackupPhase::Failed))
            .filter_map(|b| Some((created(b)?, b.name_any())))
            .collect();
        failed.sort();
        let excess = failed.len().saturating_sub(FAILED_KEPT);
        delete.extend(failed.into_iter().take(excess).map(|(_, name)| name));
    }
    delete
}

/// When a backup was started: its object's creation (a scheduled one's slot when the object
/// carries no time, as in fixtures).
fn created(backup: &TenantBackup) -> Option<DateTime<Utc>> {
    match &backup.metadata.creation_timestamp {
        Some(time) => DateTime::from_timestamp(time.0.as_second(), 0),
        None => backup.spec.slot.as_deref().and_then(parse_time),
    }
}

/// The `TenantBackup` of one slot, named by it. No owner reference: a backup outlives its
/// Tenant (`deletionPolicy: Retain` keeps the key that reads it).
pub fn scheduled_backup(tenant: &str, slot: DateTime<Utc>) -> TenantBackup {
    let name = format!("{tenant}-scheduled-{}", slot.format("%Y%m%dt%H%Mz"));
    let mut backup = TenantBackup::new(
        &name,
        TenantBackupSpec {
            tenant: tenant.to_string(),
            environment: "production".into(),
            kind: BackupKind::Scheduled,
            operation: None,
            slot: Some(slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            hold: false,
        },
    );
    backup.metadata.labels = Some([(crate::api::labels::TENANT.to_string(), tenant.to_string())].into());
    backup
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::TenantBackupStatus;
    use crate::build::fixture::fixture;
    use crate::model::Backups;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn model() -> TenantModel {
        let mut model = fixture();
        model.backups = Some(Backups {
            schedule: "0 3 * * *".parse().unwrap(),
            retention: Default::default(),
            store: "s3://b/p".into(),
            credentials_secret: None,
        });
        model
    }

    fn completed(mut backup: TenantBackup, completed_at: &str) -> TenantBackup {
        backup.status = Some(TenantBackupStatus {
            phase: Some(BackupPhase::Completed),
            completed_at: Some(completed_at.into()),
            ..Default::default()
        });
        backup
    }

    #[test]
    fn a_new_tenant_gets_its_first_backup_at_once_then_one_per_slot() {
        let model = model();
        let created = at("2026-12-07T10:00:00Z");
        let first = decide(&model, &[], true, created, at("2026-12-07T10:00:05Z"));
        let backup = first.create.expect("a first backup");
        assert_eq!(backup.name_any(), "acme-scheduled-20261207t0300z");
        assert_eq!(backup.spec.slot.as_deref(), Some("2026-12-07T03:00:00Z"));
        assert_eq!(first.status.unwrap().next_scheduled_at.as_deref(), Some("2026-12-08T03:00:00Z"));
        // Taken: nothing more until the next slot, which the reconcile wakes for.
        let taken = completed(backup, "2026-12-07T10:03:00Z");
        let later = decide(&model, &[&taken], true, created, at("2026-12-07T18:00:00Z"));
        assert!(later.create.is_none());
        assert_eq!(later.wake, Some(Duration::from_secs(9 * 3600)));
        let next_day = decide(&model, &[&taken], true, created, at("2026-12-08T03:00:00Z"));
        assert_eq!(next_day.create.unwrap().name_any(), "acme-scheduled-20261208t0300z");
    }

    #[test]
    fn nothing_is_scheduled_for_a_tenant_that_cannot_be_backed_up() {
        let mut model = model();
        assert!(decide(&model, &[], false, at("2026-12-07T10:00:00Z"), at("2026-12-07T10:00:05Z")).create.is_none());
        model.suspended = true;
        assert!(decide(&model, &[], true, at("2026-12-07T10:00:00Z"), at("2026-12-07T10:00:05Z")).create.is_none());
        model.backups = None;
        assert_eq!(
            decide(&model, &[], true, at("2026-12-07T10:00:00Z"), at("2026-12-07T10:00:05Z")),
            Decision::default()
        );
    }

    #[test]
    fn backups_turn_late_when_a_slot_passes_without_one() {
        let model = model();
        let created = at("2026-12-01T00:00:00Z");
        let taken = completed(scheduled_backup("acme", at("2026-12-06T03:00:00Z")), "2026-12-06T03:10:00Z");
        let on_time = decide(&model, &[&taken], true, created, at("2026-12-07T04:59:00Z"));
        assert_eq!(on_time.current.as_ref().unwrap().0, "True");
        let late = decide(&model, &[&taken], true, created, at("2026-12-07T05:01:00Z"));
        let (status, reason, message) = late.current.unwrap();
        assert_eq!((status, reason), ("False", "BackupsLate"));
        assert!(message.contains("acme-scheduled-20261206t0300z"), "{message}");
        assert_eq!(late.status.unwrap().last_successful.as_deref(), Some("acme-scheduled-20261206t0300z"));
        // A failed or running backup is no backup.
        let mut failed = scheduled_backup("acme", at("2026-12-07T03:00:00Z"));
        failed.status = Some(TenantBackupStatus { phase: Some(BackupPhase::Failed), ..Default::default() });
        let still_late = decide(&model, &[&taken, &failed], true, created, at("2026-12-07T05:01:00Z"));
        assert_eq!(still_late.current.unwrap().0, "False");
        assert!(still_late.create.is_none(), "the slot was taken, even if it failed");
    }

    #[test]
    fn retention_deletes_what_no_rule_keeps_and_bounds_failed_records() {
        let mut model = model();
        model.backups.as_mut().unwrap().retention.daily = 2;
        let days = ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"];
        let mut backups: Vec<TenantBackup> = days
            .iter()
            .map(|day| {
                completed(scheduled_backup("acme", at(&format!("{day}T03:00:00Z"))), &format!("{day}T03:10:00Z"))
            })
            .collect();
        backups[0].spec.hold = true;
        for hour in 0..7 {
            let mut failed = scheduled_backup("acme", at(&format!("2026-12-05T0{hour}:00:00Z")));
            failed.status = Some(TenantBackupStatus { phase: Some(BackupPhase::Failed), ..Default::default() });
            backups.push(failed);
        }
        let refs: Vec<&TenantBackup> = backups.iter().collect();
        let mut deleted = expired(&model, &refs, at("2026-12-05T12:00:00Z"));
        deleted.sort();
        assert_eq!(
            deleted,
            [
                // The two oldest failed records; the 2nd of December's backup (two daily slots:
                // the 3rd and 4th); the 1st is held.
                "acme-scheduled-20261202t0300z",
                "acme-scheduled-20261205t0000z",
                "acme-scheduled-20261205t0100z",
            ]
        );
    }

    #[test]
    fn a_backup_started_after_the_slot_takes_it() {
        let model = model();
        let mut manual = TenantBackup::new(
            "acme-manual",
            TenantBackupSpec {
                tenant: "acme".into(),
                environment: "production".into(),
                kind: BackupKind::Manual,
                operation: None,
                slot: None,
                hold: false,
            },
        );
        manual.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-12-07T09:00:00Z".parse().unwrap()));
        let decision = decide(&model, &[&manual], true, at("2026-12-01T00:00:00Z"), at("2026-12-07T10:00:00Z"));
        assert!(decision.create.is_none());
    }
}
