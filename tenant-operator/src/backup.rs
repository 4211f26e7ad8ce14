//! The `TenantBackup` controller: carries out one backup as a Job running the ERP agent in the
//! tenant's namespace, records the outcome in the object's status, and, when the object is
//! deleted, deletes the stored archive with another Job (unless the backup is held).
//!
//! Every step is written to the status before the next one starts, so an operator restart or a
//! change of leader continues where the last one stopped: the backup's id is chosen and written
//! before its Job exists (the Job, named by the id, is found again; a retried pod continues the
//! same backup), and the outcome is read from the finished pod's termination message, written
//! to the status, and only then is the Job deleted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use serde::Deserialize;
use serde_json::json;

use crate::api::backup::{BackupKind, BackupPhase, TenantBackup};
use crate::api::{Tenant, labels};
use crate::apply::{FIELD_MANAGER, create_if_absent, delete_if_present};
use crate::build::backup::{AgentTask, BackupWork, agent_job};
use crate::build::{BuildContext, child_of};
use crate::error::{Error, Result};
use crate::events::Severity;
use crate::model::TenantModel;
use crate::reconcile::{Context, controller_reference, now, publish};
use tenantry_contract::names::secrets::BACKUP_STORAGE;

pub const FINALIZER: &str = "tenantry.dev/backup-archive";
/// How often a backup waiting for its tenant looks again.
const WAIT: Duration = Duration::from_secs(15);
/// How often a held backup's deletion looks again whether the hold was released.
const HELD_RECHECK: Duration = Duration::from_secs(300);

pub async fn reconcile(backup: Arc<TenantBackup>, ctx: Arc<Context>) -> Result<Action> {
    // A sharded operator (or a test's) carries out only its own tenants' backups.
    if ctx.tenant_selector.is_some()
        && ctx.tenants.get(&kube::runtime::reflector::ObjectRef::new(&backup.spec.tenant)).is_none()
    {
        return Ok(Action::await_change());
    }
    let api: Api<TenantBackup> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, backup, |event| async {
        match event {
            Finalizer::Apply(backup) => apply(&backup, &ctx).await,
            Finalizer::Cleanup(backup) => cleanup(&backup, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

pub fn error_policy(backup: Arc<TenantBackup>, error: &Error, ctx: Arc<Context>) -> Action {
    match error.reason() {
        "Held" => Action::requeue(HELD_RECHECK),
        // The Job's end wakes it; the delay only covers a missed event.
        "Waiting" => Action::requeue(WAIT),
        reason => {
            ctx.metrics.reconcile_error(reason);
            tracing::warn!(backup = %backup.name_any(), reason, error = %error, "backup reconcile failed");
            Action::requeue(Duration::from_secs(30))
        }
    }
}

/// What the backup's tenant is, when it can be backed up.
struct Target {
    tenant: Arc<Tenant>,
    model: TenantModel,
}

/// The tenant and its model, or why the backup cannot be taken (`Err(message)`).
fn target(backup: &TenantBackup, ctx: &Context) -> std::result::Result<Target, String> {
    let name = &backup.spec.tenant;
    let tenant = ctx
        .tenants
        .get(&kube::runtime::reflector::ObjectRef::new(name))
        .ok_or_else(|| format!("tenant {name} does not exist"))?;
    let model = crate::validate::validate(name, &tenant.spec, &ctx.images)
        .map_err(|invalid| format!("tenant {name} is invalid: {invalid}"))?;
    if model.backups.is_none() {
        return Err(format!("tenant {name} has no backup store (spec.backups)"));
    }
    if !model.environments.iter().any(|e| e.name() == backup.spec.environment) {
        return Err(format!("tenant {name} has no {} environment", backup.spec.environment));
    }
    Ok(Target { tenant, model })
}

async fn apply(backup: &TenantBackup, ctx: &Context) -> Result<Action> {
    let status = backup.status.clone().unwrap_or_default();
    if let Some(BackupPhase::Completed | BackupPhase::Failed) = status.phase {
        // The outcome is on record: only the Job may be left (a restart between the two).
        if let (Some(id), Ok(target)) = (&status.backup_id, target(backup, ctx)) {
            delete_job(ctx, &target.model.namespace, &AgentTask::Backup.job_name(id)).await?;
        }
        return Ok(Action::await_change());
    }
    let target = match target(backup, ctx) {
        Ok(target) => target,
        Err(message) => return fail(backup, ctx, None, &message).await,
    };
    if target.model.suspended {
        return fail(backup, ctx, Some(&target.tenant), "the tenant is suspended: its database is not running").await;
    }
    let ready = target
        .tenant
        .status
        .as_ref()
        .is_some_and(|s| s.environments.iter().any(|e| e.name == backup.spec.environment && e.ready));
    let Some(id) = status.backup_id.clone() else {
        // 1. The id first, on record before anything exists that carries it.
        let id = tenantry_contract::names::backup_id(chrono::Utc::now(), rand::random());
        let backups = target.model.backups.as_ref().expect("checked by target()");
        let location =
            format!("{}/{}/{}/{id}", backups.store.trim_end_matches('/'), target.model.name, backup.spec.environment);
        write_status(ctx, backup, json!({"phase": "Pending", "backupId": id, "location": location})).await?;
        return Ok(Action::requeue(Duration::ZERO));
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &target.model.namespace);
    let job_name = AgentTask::Backup.job_name(&id);
    let job = jobs.get_opt(&job_name).await.map_err(|e| Error::kube(&job_name, e))?;
    let Some(job) = job else {
        if !ready {
            let message = format!("waiting for the {} environment to be ready", backup.spec.environment);
            if status.message.as_deref() != Some(message.as_str()) {
                write_status(ctx, backup, json!({"phase": "Pending", "message": message})).await?;
            }
            return Ok(Action::requeue(WAIT));
        }
        // 2. The store's credentials, then the Job.
        copy_store_credentials(ctx, &target).await?;
        let job = build_job(ctx, backup, &target, &id, AgentTask::Backup);
        create(&jobs, &job).await?;
        write_status(ctx, backup, json!({"phase": "Running", "startedAt": now(), "message": null})).await?;
        return Ok(Action::await_change());
    };
    // 3. The Job's outcome, once it has one.
    match finished(&job) {
        None => {
            if status.phase != Some(BackupPhase::Running) {
                write_status(ctx, backup, json!({"phase": "Running", "startedAt": now()})).await?;
            }
            Ok(Action::await_change())
        }
        Some(succeeded) => {
            let result = termination_message(ctx, &target.model.namespace, &job_name).await?;
            let outcome = if succeeded { completed(&result, &id) } else { Err(failure_message(&result)) };
            match outcome {
                Ok(summary) => {
                    write_status(ctx, backup, summary).await?;
                    let note = format!("backup {id} of {} stored", backup.spec.environment);
                    publish(ctx, &target.tenant, Severity::Normal, "BackupCompleted", &note).await;
                    ctx.metrics.backup_finished("completed");
                }
                Err(message) => {
                    fail(backup, ctx, Some(&target.tenant), &message).await?;
                }
            }
            delete_job(ctx, &target.model.namespace, &job_name).await?;
            Ok(Action::await_change())
        }
    }
}

/// Deleting the object deletes the archive, unless held; a backup that never completed has
/// none.
async fn cleanup(backup: &TenantBackup, ctx: &Context) -> Result<Action> {
    let status = backup.status.clone().unwrap_or_default();
    let target = target(backup, ctx);
    let (Some(id), Ok(target)) = (&status.backup_id, target) else {
        if status.phase == Some(BackupPhase::Completed) {
            // No tenant to run the deletion in: the archive stays in the store, where the
            // store's own listing finds it.
            tracing::warn!(backup = %backup.name_any(), "the tenant is gone; the archive stays in the store");
        }
        return Ok(Action::await_change());
    };
    // A running backup's Job goes first: its partial upload is never listed (the summary is
    // written last) and the store's lifecycle rules remove abandoned uploads.
    delete_job(ctx, &target.model.namespace, &AgentTask::Backup.job_name(id)).await?;
    if status.phase != Some(BackupPhase::Completed) {
        return Ok(Action::await_change());
    }
    if backup.spec.hold {
        let message = "held: the archive is kept until the hold is released (spec.hold: false)";
        if status.message.as_deref() != Some(message) {
            write_status(ctx, backup, json!({"message": message})).await?;
        }
        return Err(Error::Held(backup.name_any()));
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &target.model.namespace);
    let job_name = AgentTask::Delete.job_name(id);
    let Some(job) = jobs.get_opt(&job_name).await.map_err(|e| Error::kube(&job_name, e))? else {
        copy_store_credentials(ctx, &target).await?;
        create(&jobs, &build_job(ctx, backup, &target, id, AgentTask::Delete)).await?;
        return Err(Error::Waiting(format!("deleting the archive of {}", backup.name_any())));
    };
    match finished(&job) {
        None => Err(Error::Waiting(format!("deleting the archive of {}", backup.name_any()))),
        Some(succeeded) => {
            let result = termination_message(ctx, &target.model.namespace, &job_name).await?;
            // Already gone is gone.
            let missing = result.error.as_ref().is_some_and(|e| e.kind == "missing");
            delete_job(ctx, &target.model.namespace, &job_name).await?;
            if succeeded || missing {
                Ok(Action::await_change())
            } else {
                Err(Error::Waiting(format!(
                    "the archive of {} was not deleted: {}",
                    backup.name_any(),
                    failure_message(&result)
                )))
            }
        }
    }
}

/// The backup's Job (or its archive's deletion), owned by the backup.
fn build_job(ctx: &Context, backup: &TenantBackup, target: &Target, id: &str, task: AgentTask) -> Job {
    let environment =
        target.model.environments.iter().find(|e| e.name() == backup.spec.environment).expect("checked by target()");
    let owner = controller_reference(backup);
    let work = BackupWork {
        backup_id: id,
        environment,
        kind: backup.spec.kind,
        operation: backup.spec.operation.as_deref().filter(|_| backup.spec.kind == BackupKind::BeforeOperation),
        owner: owner.clone(),
    };
    let build_ctx = BuildContext {
        model: &target.model,
        owner,
        images: &ctx.images,
        ingress_controller_namespace: &ctx.ingress_controller_namespace,
        placement: &ctx.placement,
        backup_store_ports: &ctx.backup_store_ports,
    };
    let backups = target.model.backups.as_ref().expect("checked by target()");
    agent_job(&build_ctx, backups, &work, task, &ctx.images.agent)
}

async fn create(jobs: &Api<Job>, job: &Job) -> Result<()> {
    create_if_absent(jobs, job).await.map(drop)
}

async fn delete_job(ctx: &Context, namespace: &str, name: &str) -> Result<()> {
    delete_if_present(&Api::<Job>::namespaced(ctx.client.clone(), namespace), name).await
}

/// `Some(true)` once succeeded, `Some(false)` once failed for good, `None` while running.
fn finished(job: &Job) -> Option<bool> {
    let status = job.status.as_ref()?;
    if status.succeeded.unwrap_or(0) > 0 {
        return Some(true);
    }
    let failed = status.conditions.iter().flatten().any(|c| c.type_ == "Failed" && c.status == "True");
    failed.then_some(false)
}

/// The provider's credentials for the store, copied into the tenant's namespace (a Job's pod
/// reads Secrets of its own namespace only); copied again before each Job, so rotated
/// credentials reach the next one.
async fn copy_store_credentials(ctx: &Context, target: &Target) -> Result<()> {
    let Some(source) = target.model.backups.as_ref().and_then(|b| b.credentials_secret.clone()) else {
        return Ok(());
    };
    let provider: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.operator_namespace);
    let found = provider
        .get(&source)
        .await
        .map_err(|e| Error::kube(format!("Secret {}/{source}", ctx.operator_namespace), e))?;
    let mut copy = Secret {
        metadata: Default::default(),
        data: found.data.clone(),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    copy.metadata.name = Some(BACKUP_STORAGE.into());
    copy.metadata.namespace = Some(target.model.namespace.clone());
    copy.metadata.labels = Some(
        [
            (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
            (labels::TENANT.to_string(), target.model.name.clone()),
        ]
        .into(),
    );
    let child = child_of(&copy);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &target.model.namespace);
    ctx.metrics.api_write("Secret", "apply");
    secrets
        .patch(BACKUP_STORAGE, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&child.body))
        .await
        .map_err(|e| Error::kube(BACKUP_STORAGE, e))?;
    Ok(())
}

/// What the agent wrote to its termination message: a summary, a report or an error.
#[derive(Debug, Default, Deserialize)]
struct AgentResult {
    backup_id: Option<String>,
    data_bytes: Option<u64>,
    archive: Option<Digest>,
    erp: Option<Erp>,
    key_fingerprint: Option<String>,
    fingerprint: Option<Totals>,
    error: Option<AgentError>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct Digest {
    bytes: u64,
    sha256: String,
}

#[derive(Debug, Deserialize)]
struct Erp {
    version: String,
}

#[derive(Debug, Deserialize)]
struct Totals {
    tables: u64,
    rows: u64,
}

#[derive(Debug, Deserialize)]
struct AgentError {
    kind: String,
    message: String,
}

/// The agent's document from the Job's newest finished pod (an empty one when no pod says
/// anything: a pod lost with its node).
async fn termination_message(ctx: &Context, namespace: &str, job: &str) -> Result<AgentResult> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list =
        pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await.map_err(|e| Error::kube(job, e))?;
    let mut messages: Vec<(Option<String>, String)> = list
        .items
        .iter()
        .filter_map(|pod| {
            let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
            let terminated = statuses.iter().find(|s| s.name == "agent")?.state.as_ref()?.terminated.as_ref()?;
            Some((terminated.finished_at.as_ref().map(|t| t.0.to_string()), terminated.message.clone()?))
        })
        .collect();
    messages.sort();
    let Some((_, message)) = messages.pop() else { return Ok(AgentResult::default()) };
    // With `FallbackToLogsOnError`, a pod that died before writing has its log's tail instead.
    Ok(serde_json::from_str(message.trim()).unwrap_or_else(|_| AgentResult {
        error: Some(AgentError { kind: "log".into(), message: last_line(&message) }),
        ..Default::default()
    }))
}

fn last_line(text: &str) -> String {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().chars().take(500).collect()
}

/// The status of a completed backup, from the agent's summary.
fn completed(result: &AgentResult, id: &str) -> std::result::Result<serde_json::Value, String> {
    if result.backup_id.as_deref() != Some(id) {
        return Err(format!("the agent reported backup {:?}, not {id}", result.backup_id));
    }
    let archive = result.archive.as_ref().ok_or("the agent reported success without the archive's digest")?;
    Ok(json!({
        "phase": "Completed",
        "completedAt": now(),
        "archiveBytes": archive.bytes,
        "sha256": archive.sha256,
        "dataBytes": result.data_bytes,
        "erpVersion": result.erp.as_ref().map(|e| e.version.clone()),
        "tables": result.fingerprint.as_ref().map(|f| f.tables),
        "rows": result.fingerprint.as_ref().map(|f| f.rows),
        "keyFingerprint": result.key_fingerprint,
        "message": null,
    }))
}

fn failure_message(result: &AgentResult) -> String {
    match (&result.error, result.truncated) {
        (Some(error), _) => format!("{}: {}", error.kind, error.message),
        (None, true) => "the agent failed (its report was too long for the termination message)".into(),
        (None, false) => "the Job failed without a word from the agent (its pod was lost or killed)".into(),
    }
}

async fn fail(backup: &TenantBackup, ctx: &Context, tenant: Option<&Tenant>, message: &str) -> Result<Action> {
    write_status(ctx, backup, json!({"phase": "Failed", "completedAt": now(), "message": message})).await?;
    if let Some(tenant) = tenant {
        let note = format!("backup {} failed: {message}", backup.name_any());
        publish(ctx, tenant, Severity::Warning, "BackupFailed", &note).await;
    }
    ctx.metrics.backup_finished("failed");
    Ok(Action::await_change())
}

async fn write_status(ctx: &Context, backup: &TenantBackup, status: serde_json::Value) -> Result<()> {
    let api: Api<TenantBackup> = Api::all(ctx.client.clone());
    let name = backup.name_any();
    ctx.metrics.api_write("TenantBackup", "patch_status");
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
        .await
        .map_err(|e| Error::kube(&name, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_becomes_a_completed_status() {
        let result: AgentResult = serde_json::from_value(json!({
            "format": 1, "backup_id": "20261207T030000Z-0a1b2c3d", "tenant": "acme", "environment": "production",
            "kind": "scheduled", "created_at": "2026-12-07T03:00:00Z", "erp": {"profile": "tryton", "version": "7.0.59"},
            "data_bytes": 1000, "archive": {"bytes": 400, "sha256": "ab"}, "key_fingerprint": "k", "held": false,
            "fingerprint": {"tables": 300, "rows": 12000},
        }))
        .unwrap();
        let status = completed(&result, "20261207T030000Z-0a1b2c3d").unwrap();
        assert!(completed(&result, "20261207T030000Z-ffffffff").is_err(), "another backup's summary is no success");
        assert_eq!(status["phase"], "Completed");
        assert_eq!(status["archiveBytes"], 400);
        assert_eq!(status["erpVersion"], "7.0.59");
        assert_eq!(status["rows"], 12000);
        let typed: crate::api::backup::TenantBackupStatus = serde_json::from_value(status).unwrap();
        assert_eq!(typed.phase, Some(BackupPhase::Completed));
    }

    #[test]
    fn a_failure_says_what_the_agent_said_or_that_it_said_nothing() {
        let result: AgentResult =
            serde_json::from_value(json!({"error": {"kind": "database", "message": "connection refused"}})).unwrap();
        assert_eq!(failure_message(&result), "database: connection refused");
        assert!(completed(&result, "x").is_err());
        assert!(failure_message(&AgentResult::default()).contains("without a word"));
        assert_eq!(last_line("a\nb: boom\n\n"), "b: boom");
    }
}
