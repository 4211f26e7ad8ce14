//! One reconcile of one Tenant, as a pipeline: validate (pure) → build (pure) → apply → collect
//! garbage → observe → status. Only apply, garbage collection and the status write talk to the
//! cluster, and each writes only what differs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::admission::{self, Admission};
use crate::api::backup::TenantBackup;
use crate::api::{DeletionPolicy, Phase, Tenant, TenantStatus, condition, labels, namespace_of};
use crate::apply::{Applier, FIELD_MANAGER, create_if_absent, delete_if_present};
use crate::backup_schedule;
use crate::build::{self, BuildContext, Child, GeneratedSecrets};
use crate::children::{self, ChildCache, ChildKey};
use crate::error::{Error, Result};
use crate::events::{EventPublisher, Severity};
use crate::metrics::Metrics;
use crate::model::TenantModel;
use crate::pacing::{Decision, StatusPacer};
use crate::placement::Placement;
use crate::profile::ImageDefaults;
use crate::retry::FailureBackoff;
use crate::status::{self, Change, EnvironmentObserved, Observed, Readiness};

pub const FINALIZER: &str = "tenantry.dev/cleanup";
/// Even with nothing changing, look again this often (watches can miss what happens while the
/// operator is down).
const RESYNC: Duration = Duration::from_secs(600);
/// How often a Tenant refused for a host another Tenant holds looks again.
const HOST_RECHECK: Duration = Duration::from_secs(60);
/// How long a reconcile waits for the children's watches to list everything once.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub metrics: Metrics,
    pub events: EventPublisher,
    pub images: ImageDefaults,
    pub ingress_controller_namespace: BTreeMap<String, String>,
    pub placement: Placement,
    pub backup_store_ports: Vec<i32>,
    /// The label selector of the Tenants served (a shard's, a test's), if not all.
    pub tenant_selector: Option<String>,
    /// Where the provider's Secrets (the backup store's credentials) are.
    pub operator_namespace: String,
    /// Every `TenantBackup`, as its watch reports them.
    pub backups: reflector::Store<crate::api::backup::TenantBackup>,
    /// The children as the watches report them, and what this process wrote.
    pub children: ChildCache,
    /// Every Tenant this operator serves, as its watch reports them (hosts are checked against
    /// the others').
    pub tenants: reflector::Store<Tenant>,
    /// When each failing Tenant is tried again.
    pub retries: FailureBackoff,
    /// When each Tenant's status progress is written.
    pub status_pacer: StatusPacer,
}

pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    let name = tenant.name_any();
    // A failing Tenant woken early (a child changed) waits out its retry delay; a new spec or a
    // deletion is acted on at once (see [`crate::retry`]).
    if tenant.metadata.deletion_timestamp.is_none()
        && let Some(wait) = ctx.retries.hold(&name, tenant.metadata.generation)
    {
        return Ok(Action::requeue(wait));
    }
    let _timer = ctx.metrics.reconcile_timer();
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    let action = finalizer(&tenants, FINALIZER, tenant, |event| async {
        match event {
            Finalizer::Apply(tenant) => apply(&tenant, &ctx).await,
            Finalizer::Cleanup(tenant) => cleanup(&tenant, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.retries.reset(&name);
    Ok(action)
}

/// What the controller does after a failed reconcile: report it (the same failure again only
/// counts the Event it already published, see [`crate::events`]), then retry after a delay that
/// grows with every failure in a row ([`crate::retry`]).
pub fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(error.reason());
    let delay = ctx.retries.next_delay(&tenant.name_any(), tenant.metadata.generation);
    tracing::warn!(tenant = %tenant.name_any(), reason = error.reason(), error = %error, retry_in = ?delay,
        "reconcile failed");
    let note = error.to_string();
    let reason = error.reason();
    tokio::spawn(async move {
        publish(&ctx, &tenant, Severity::Warning, reason, &note).await;
    });
    Action::requeue(delay)
}

async fn apply(tenant: &Tenant, ctx: &Context) -> Result<Action> {
    tenant.metadata.name.as_ref().ok_or(Error::Unnamed)?;
    let generation = tenant.metadata.generation.unwrap_or_default();
    let previous = ctx.status_pacer.previous(
        &tenant.name_any(),
        tenant.metadata.resource_version.as_deref(),
        tenant.status.as_ref(),
    );
    let now = now();

    // 1. Validate, then check against the other Tenants and the tenant's own past: an invalid
    // spec is reported and nothing else is touched.
    let others = ctx.tenants.state();
    let (model, quota_problems) = match admission::admit(tenant, others.iter().map(AsRef::as_ref), &ctx.images) {
        Admission::Admitted { model, quota_problems } => (*model, quota_problems),
        Admission::Refused { invalid, host_taken } => {
            let status = status::invalid(&invalid.to_string(), &previous, generation, &now);
            write_status(tenant, &previous, status, false, ctx).await?;
            // A host is freed by another Tenant's change, which does not wake this one.
            return Ok(if host_taken { Action::requeue(HOST_RECHECK) } else { Action::await_change() });
        }
    };

    // Children are compared with what the watches report, so these must have listed them once.
    if !ctx.children.wait_synced(CACHE_SYNC_TIMEOUT).await {
        return Err(Error::CacheNotSynced);
    }

    // A namespace left terminating by an earlier Tenant of this name must finish first.
    if ctx.children.seen("", &ChildKey::namespace(&model.namespace)).is_some_and(|seen| seen.terminating) {
        let message = format!("waiting for namespace {} to finish terminating", model.namespace);
        let status = status::with_phase(Phase::Pending, &message, &previous, generation, &now);
        write_status(tenant, &previous, status, false, ctx).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }

    // 2. Build (pure).
    let owner = owner_reference(tenant);
    let build_ctx = BuildContext {
        model: &model,
        owner,
        images: &ctx.images,
        ingress_controller_namespace: &ctx.ingress_controller_namespace,
        placement: &ctx.placement,
        backup_store_ports: &ctx.backup_store_ports,
    };
    let desired = build::desired(&build_ctx);

    // 3. Apply what differs; generated secrets only when missing.
    let applier = Applier { client: &ctx.client, metrics: &ctx.metrics, cache: &ctx.children };
    let mut applied = Vec::with_capacity(desired.len() + 2);
    let mut apply_error = None;
    for child in &desired {
        match applier.ensure(child).await {
            Ok(object) => applied.push((child, object)),
            Err(e) => {
                apply_error = Some(e);
                break;
            }
        }
        if child.namespace.is_none() {
            // The namespace exists now: the secrets can be made before anything reads them.
            if let Err(e) = ensure_secrets(&applier, &build_ctx).await {
                apply_error = Some(e);
                break;
            }
        }
    }
    readopt_retained_namespace(&model, &applied, ctx).await?;

    // 4. Collect orphans, found by label among the children the watches report.
    if apply_error.is_none() {
        collect_orphans(&model, &desired, ctx).await?;
    }

    // 5. Observe and write the status.
    let mut observed = observe(&model, &applied, &ctx.children);
    if let Some(e) = &apply_error {
        observed.apply_error = Some(e.to_string());
    }
    let mut status = status::for_model(&model, &observed, &previous, generation, &now);
    let (fits, reason, message) = match quota_problems.is_empty() {
        true => ("True", "Fits", "the tenant's whole stack fits its quota".to_string()),
        false => ("False", "QuotaTooSmall", quota_problems.join("; ")),
    };
    status::set_condition(&mut status.conditions, condition::QUOTA_FITS, fits, reason, &message, generation, &now);
    let backups_wake = tend_backups(tenant, &model, &mut status, generation, &now, ctx).await?;
    // A failure to apply is news, even when the message is all that changed.
    let deferred = write_status(tenant, &previous, status, apply_error.is_some(), ctx).await?;
    match apply_error {
        Some(e) => Err(e),
        None => {
            let wake = [Some(RESYNC), deferred, backups_wake].into_iter().flatten().min().unwrap_or(RESYNC);
            Ok(Action::requeue(wake))
        }
    }
}

/// The schedule's part (see [`backup_schedule`]): creates the due scheduled backup, and writes
/// the backups' status and condition into `status`. Returns when the schedule wants to look
/// again.
async fn tend_backups(
    tenant: &Tenant,
    model: &TenantModel,
    status: &mut TenantStatus,
    generation: i64,
    now: &str,
    ctx: &Context,
) -> Result<Option<Duration>> {
    if model.backups.is_none() {
        status.backups = None;
        status.conditions.retain(|c| c.type_ != condition::BACKUPS_CURRENT);
        return Ok(None);
    }
    // Decided from every backup of the tenant: the watch must have listed them once.
    if tokio::time::timeout(CACHE_SYNC_TIMEOUT, ctx.backups.wait_until_ready()).await.is_err() {
        return Err(Error::CacheNotSynced);
    }
    let all = ctx.backups.state();
    let mine: Vec<&TenantBackup> = all.iter().map(AsRef::as_ref).filter(|b| b.spec.tenant == model.name).collect();
    let ready = status.environments.iter().any(|e| e.name == "production" && e.ready);
    let since = tenant
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0))
        .unwrap_or_else(chrono::Utc::now);
    let decision = backup_schedule::decide(model, &mine, ready, since, chrono::Utc::now());
    if let Some(backup) = &decision.create {
        ctx.metrics.api_write("TenantBackup", "create");
        // Already there when an earlier run made it for the same slot.
        if create_if_absent(&Api::<TenantBackup>::all(ctx.client.clone()), backup).await? {
            tracing::info!(tenant = %model.name, backup = %backup.name_any(), "scheduled backup due");
        }
    }
    for name in backup_schedule::expired(model, &mine, chrono::Utc::now()) {
        // Deleting the object deletes its archive (the backup's finalizer).
        tracing::info!(tenant = %model.name, backup = %name, "retention deletes the backup");
        ctx.metrics.api_write("TenantBackup", "delete");
        delete_if_present(&Api::<TenantBackup>::all(ctx.client.clone()), &name).await?;
    }
    status.backups = decision.status;
    if let Some((current, reason, message)) = &decision.current {
        status::set_condition(
            &mut status.conditions,
            condition::BACKUPS_CURRENT,
            current,
            reason,
            message,
            generation,
            now,
        );
    }
    Ok(decision.wake)
}

async fn ensure_secrets(applier: &Applier<'_>, build_ctx: &BuildContext<'_>) -> Result<()> {
    // Values are generated only when a secret is missing, so nothing secret is made (or could
    // leak) needlessly, and an existing secret is never overwritten.
    // One the watches have not reported yet is created anyway: if it exists, the create is
    // refused and the new values are dropped.
    let namespace = &build_ctx.model.namespace;
    let missing: Vec<&str> = [build::DATABASE_SECRET, build::MASTER_PASSWORD_SECRET, build::BACKUP_KEY]
        .into_iter()
        .filter(|name| !applier.cache.exists(namespace, &ChildKey::new("Secret", name)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let values = GeneratedSecrets::generate();
    for child in build::secrets(build_ctx, &values).into_iter().filter(|c| missing.contains(&c.name.as_str())) {
        applier.ensure(&child).await?;
    }
    Ok(())
}

/// A namespace kept by `deletionPolicy: Retain` is adopted by the new Tenant of that name: its
/// data (database volume, secrets) is what a restore needs, so only the marker goes.
async fn readopt_retained_namespace(model: &TenantModel, applied: &[Applied<'_>], ctx: &Context) -> Result<()> {
    let fresh = applied.iter().find(|(child, _)| child.namespace.is_none()).and_then(|(_, object)| object.as_ref());
    let retained = match fresh {
        Some(namespace) => namespace.labels().contains_key(labels::RETAINED),
        None => ctx.children.seen("", &ChildKey::namespace(&model.namespace)).is_some_and(|seen| seen.retained),
    };
    if !retained {
        return Ok(());
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let patch = json!({"metadata": {"labels": {labels::RETAINED: null}}});
    ctx.metrics.api_write("Namespace", "patch");
    namespaces
        .patch(&model.namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube(&model.namespace, e))?;
    Ok(())
}

/// A wanted child, with the object as read or written by this reconcile (`None`: unchanged,
/// known from the cache).
type Applied<'a> = (&'a Child, Option<DynamicObject>);

/// Deletes the tenant's children that the spec no longer asks for, found by label among those
/// the watches report. Generated secrets and the database volume are never collected: they are
/// data, not configuration.
async fn collect_orphans(model: &TenantModel, desired: &[Child], ctx: &Context) -> Result<()> {
    let wanted: HashSet<(&str, &str)> = desired.iter().map(|c| (c.resource.kind.as_str(), c.name.as_str())).collect();
    let kinds = build::managed_kinds();
    for (key, seen) in ctx.children.tenant_children(&model.namespace, &model.name) {
        let Some(resource) = kinds.iter().find(|r| r.kind == key.kind) else { continue };
        // While suspended no Job is built, but a finished one is kept: deleting it would
        // rerun its work (e.g. updating every module) on resume.
        let keep = wanted.contains(&(key.kind.as_str(), key.name.as_str()))
            || key.kind == "Secret"
            || (key.kind == "PersistentVolumeClaim" && !key.name.starts_with("filestore-"))
            || (key.kind == "Job" && model.suspended);
        if keep || seen.terminating {
            continue;
        }
        delete_orphan(model, resource, &key.name, ctx).await?;
    }
    Ok(())
}

async fn delete_orphan(model: &TenantModel, resource: &ApiResource, name: &str, ctx: &Context) -> Result<()> {
    tracing::info!(tenant = %model.name, kind = %resource.kind, %name, "deleting what the spec no longer asks for");
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &model.namespace, resource);
    ctx.metrics.api_write(&resource.kind, "delete");
    delete_if_present(&api, name).await
}

/// Readiness from the objects as this reconcile read or wrote them, else as the watches last
/// reported them.
fn observe(model: &TenantModel, applied: &[Applied<'_>], cache: &ChildCache) -> Observed {
    let find = |kind: &str, name_is: &dyn Fn(&str) -> bool| -> Option<Readiness> {
        let (child, object) = applied.iter().find(|(child, _)| child.resource.kind == kind && name_is(&child.name))?;
        let readiness = match object {
            Some(object) => children::summarize(kind, object),
            None => cache.readiness(child.namespace.as_deref().unwrap_or_default(), &ChildKey::new(kind, &child.name)),
        };
        Some(
            readiness
                .unwrap_or_else(|| Readiness::Waiting(format!("{} is not reported by the cluster yet", child.name))),
        )
    };
    let database = if model.suspended {
        Readiness::Suspended
    } else {
        let set = find("StatefulSet", &|n| n == "postgres");
        let init = find("Job", &|n| n.starts_with("db-init-"));
        match (set, init) {
            (Some(Readiness::Ready), Some(Readiness::Ready)) => Readiness::Ready,
            (Some(Readiness::Ready), Some(waiting)) => waiting,
            (Some(waiting), _) => waiting,
            (None, _) => Readiness::Waiting("the PostgreSQL StatefulSet is not applied yet".into()),
        }
    };
    let environments = model
        .environments
        .iter()
        .map(|env| {
            let server_name = format!("erp-server-{}", env.name());
            let web_name = format!("erp-web-{}", env.name());
            let init_prefix = format!("erp-init-{}-", env.name());
            let server =
                match (find("Deployment", &|n| n == server_name), find("Job", &|n| n.starts_with(&init_prefix))) {
                    _ if model.suspended => Readiness::Suspended,
                    (Some(Readiness::Ready), Some(Readiness::Ready)) => Readiness::Ready,
                    (Some(Readiness::Ready), Some(waiting)) => waiting,
                    (Some(waiting), _) => waiting,
                    (None, _) => Readiness::Waiting(format!("{server_name} is not applied yet")),
                };
            let web = match find("Deployment", &|n| n == web_name) {
                _ if model.suspended => Readiness::Suspended,
                Some(readiness) => readiness,
                None => Readiness::Waiting(format!("{web_name} is not applied yet")),
            };
            EnvironmentObserved { server, web }
        })
        .collect();
    Observed { database, environments, apply_error: None }
}

/// Deletion: `Delete` removes the namespace and so everything; `Retain` keeps the namespace,
/// marked retained, with the database volume and the secrets taken out of the owner chain, while
/// Kubernetes' garbage collector removes the workloads, which stay owned by the Tenant.
async fn cleanup(tenant: &Tenant, ctx: &Context) -> Result<Action> {
    let name = tenant.metadata.name.clone().ok_or(Error::Unnamed)?;
    let namespace = namespace_of(&name);
    let previous = tenant.status.clone().unwrap_or_default();
    let generation = tenant.metadata.generation.unwrap_or_default();
    let message = format!("deleting (deletionPolicy {:?})", tenant.spec.deletion_policy);
    let status = status::with_phase(Phase::Deleting, &message, &previous, generation, &now());
    write_status(tenant, &previous, status, false, ctx).await?;
    ctx.status_pacer.forget(&name);

    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    match tenant.spec.deletion_policy {
        DeletionPolicy::Delete => {
            // The backups go first, archives included: their deletion runs in the namespace
            // (with the store's credentials there), and without the namespace's key they could
            // never be read again. A held one keeps the Tenant until its hold is released.
            if let Some(waiting) = delete_backups(&name, ctx).await? {
                let status = status::with_phase(Phase::Deleting, &waiting, &previous, generation, &now());
                write_status(tenant, &previous, status, false, ctx).await?;
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            ctx.children.forget_records(&namespace);
            ctx.metrics.api_write("Namespace", "delete");
            match namespaces.delete(&namespace, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(Error::kube(&namespace, e)),
            }
        }
        DeletionPolicy::Retain => {
            ctx.children.forget_records(&namespace);
            let uid = tenant.uid().unwrap_or_default();
            let release = |object: &kube::api::ObjectMeta| -> Option<Value> {
                let refs = object.owner_references.as_ref()?;
                let kept: Vec<&OwnerReference> = refs.iter().filter(|r| r.uid != uid).collect();
                (kept.len() != refs.len()).then(|| json!({"metadata": {"ownerReferences": kept}}))
            };
            if let Some(ns) = namespaces.get_opt(&namespace).await.map_err(|e| Error::kube(&namespace, e))? {
                let mut patch = release(&ns.metadata).unwrap_or_else(|| json!({"metadata": {}}));
                patch["metadata"]["labels"] = json!({labels::RETAINED: "true"});
                ctx.metrics.api_write("Namespace", "patch");
                namespaces
                    .patch(&namespace, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::kube(&namespace, e))?;
                // The data kept: the volumes, found by label, and the generated Secrets, by name
                // (the operator may not list Secrets; see `children::watched`).
                let volumes: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
                let selector = format!("{}={}", labels::TENANT, name);
                let claims = volumes
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await
                    .map_err(|e| Error::kube(&namespace, e))?;
                for claim in claims {
                    if let Some(patch) = release(&claim.metadata) {
                        ctx.metrics.api_write("PersistentVolumeClaim", "patch");
                        volumes
                            .patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .map_err(|e| Error::kube(claim.name_any(), e))?;
                    }
                }
                let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
                for secret in [build::DATABASE_SECRET, build::MASTER_PASSWORD_SECRET, build::BACKUP_KEY] {
                    let Some(found) = secrets.get_metadata_opt(secret).await.map_err(|e| Error::kube(secret, e))?
                    else {
                        continue;
                    };
                    if let Some(patch) = release(&found.metadata) {
                        ctx.metrics.api_write("Secret", "patch");
                        secrets
                            .patch(secret, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .map_err(|e| Error::kube(secret, e))?;
                    }
                }
            }
        }
    }
    publish(ctx, tenant, Severity::Normal, "Deleted", &message).await;
    Ok(Action::await_change())
}

/// Deletes the tenant's backups (their finalizers delete the archives); what is still being
/// deleted, if anything, as a message.
async fn delete_backups(tenant: &str, ctx: &Context) -> Result<Option<String>> {
    if tokio::time::timeout(CACHE_SYNC_TIMEOUT, ctx.backups.wait_until_ready()).await.is_err() {
        return Err(Error::CacheNotSynced);
    }
    let mine: Vec<_> = ctx.backups.state().into_iter().filter(|b| b.spec.tenant == tenant).collect();
    if mine.is_empty() {
        return Ok(None);
    }
    let api: Api<TenantBackup> = Api::all(ctx.client.clone());
    for backup in mine.iter().filter(|b| b.metadata.deletion_timestamp.is_none()) {
        ctx.metrics.api_write("TenantBackup", "delete");
        delete_if_present(&api, &backup.name_any()).await?;
    }
    let held = mine.iter().filter(|b| b.spec.hold).count();
    Ok(Some(match held {
        0 => format!("deleting its {} backups first", mine.len()),
        held => format!("deleting its {} backups first; {held} held, kept until released", mine.len()),
    }))
}

/// Writes the status when it differs from what is there, news at once and progress at the
/// status pacer's pace ([`crate::pacing`]), with an event per phase change. Returns when to
/// look again for progress left unwritten.
async fn write_status(
    tenant: &Tenant,
    previous: &TenantStatus,
    status: TenantStatus,
    news: bool,
    ctx: &Context,
) -> Result<Option<Duration>> {
    let name = tenant.name_any();
    let change = match status::change(previous, &status) {
        Change::Progress if news => Change::Significant,
        change => change,
    };
    let now = std::time::Instant::now();
    match ctx.status_pacer.decide(&name, change, now) {
        Decision::Skip => return Ok(None),
        Decision::Defer(after) => return Ok(Some(after)),
        Decision::Write => {}
    }
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({"apiVersion": "tenantry.dev/v1alpha1", "kind": "Tenant", "status": status});
    tracing::debug!(tenant = %name, ?change, phase = ?status.phase, conditions = %condition_summary(&status), "writing the status");
    ctx.metrics.api_write("Tenant", "patch_status");
    tenants
        .patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|e| Error::kube(&name, e))?;
    ctx.status_pacer.written(&name, tenant.metadata.resource_version.as_deref(), &status, now);
    // A new Tenant starting to provision is no news: its creation is on record and its status
    // says so. Every later phase change, and a new Tenant found invalid, is announced.
    let first_steps = previous.phase.is_none() && matches!(status.phase, Some(Phase::Pending | Phase::Provisioning));
    if previous.phase != status.phase
        && !first_steps
        && let Some(phase) = status.phase
    {
        let message = status
            .conditions
            .iter()
            .find(|c| c.type_ == if phase == Phase::Invalid { "Valid" } else { "Ready" })
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let severity =
            if matches!(phase, Phase::Invalid | Phase::Degraded) { Severity::Warning } else { Severity::Normal };
        publish(ctx, tenant, severity, &phase.to_string(), &message).await;
    }
    Ok(None)
}

/// `Type=Status` of every condition, for the debug log of a status write.
fn condition_summary(status: &TenantStatus) -> String {
    status.conditions.iter().map(|c| format!("{}={}", c.type_, c.status)).collect::<Vec<_>>().join(",")
}

/// Publishes an Event about `tenant`; a failure is logged (an Event is never worth a retry).
pub(crate) async fn publish(ctx: &Context, tenant: &Tenant, severity: Severity, reason: &str, note: &str) {
    match ctx.events.publish(tenant, severity, reason, note).await {
        Ok(published) => ctx.metrics.api_write("Event", published.verb()),
        Err(e) => tracing::warn!(tenant = %tenant.name_any(), error = %e, "could not publish an event"),
    }
}

fn owner_reference(tenant: &Tenant) -> OwnerReference {
    controller_reference(tenant)
}

/// `object` as the controller of what it owns (blocking its deletion until they are gone).
pub(crate) fn controller_reference<K: Resource<DynamicType = ()>>(object: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: object.name_any(),
        uid: object.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// RFC 3339, to the second.
pub(crate) fn now() -> String {
    Timestamp::now().round(k8s_openapi::jiff::Unit::Second).unwrap_or_else(|_| Timestamp::now()).to_string()
}
