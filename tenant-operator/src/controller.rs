//! The controller: which Tenants this operator serves, what wakes a reconcile, how many run at
//! once.
//!
//! Children are watched as metadata only (names, labels, resource versions), except the
//! workloads, whose readiness is needed, and ResourceQuotas and PersistentVolumeClaims, whose
//! spec is told from their ever-moving status by a digest; the watches feed a compact cache of children
//! ([`crate::children`]) and keep no whole objects, so the operator's memory grows with the
//! number of Tenants, not with the size of every Deployment it manages. A child maps to its Tenant through the `tenantry.dev/tenant`
//! label rather than its owner reference, which also covers the Namespace and children whose
//! owner reference was edited away.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::backup::TenantBackup;
use crate::api::{Tenant, labels};
use crate::backup;
use crate::build::managed_kinds;
use crate::children::{self, ChildCache, Details};
use crate::events::EventPublisher;
use crate::http::Readiness;
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::profile::ImageDefaults;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::retry::{FailureBackoff, RetryDelays};

/// How this operator instance runs.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Serve only Tenants matching this label selector (e.g. one shard, or one test's Tenants).
    pub tenant_selector: Option<String>,
    /// Reconciles running at once (each Tenant is reconciled by one at a time regardless).
    pub concurrency: u16,
    /// Trailing-edge debounce of reconcile requests (zero: none).
    pub debounce: std::time::Duration,
    pub images: ImageDefaults,
    /// Labels of the namespace(s) whose ingress controller may reach the web clients.
    pub ingress_controller_namespace: BTreeMap<String, String>,
    /// `reportingController` of the events the operator publishes.
    pub reporter: String,
    /// This instance's name (events' `reportingInstance`).
    pub instance: String,
    /// How long a failing Tenant waits before it is tried again.
    pub retry_delays: RetryDelays,
    /// Node selector and tolerations of every tenant pod.
    pub placement: Placement,
    /// The backup store's TCP ports, which backup pods may reach (see the `backup-store`
    /// NetworkPolicy).
    pub backup_store_ports: Vec<i32>,
    /// The operator's own namespace, where the provider's backup store credentials are.
    pub operator_namespace: String,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            tenant_selector: None,
            concurrency: 16,
            debounce: std::time::Duration::ZERO,
            images: ImageDefaults::default(),
            ingress_controller_namespace: BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "ingress-nginx".to_string(),
            )]),
            reporter: "tenantry-operator".into(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| "tenantry-operator".into()),
            retry_delays: RetryDelays::default(),
            placement: Placement::default(),
            backup_store_ports: vec![443],
            operator_namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "tenantry-system".into()),
        }
    }
}

/// TenantBackup events a slow controller may lag behind before the watch waits for it.
const BACKUP_EVENTS_BUFFERED: usize = 1024;

/// Runs the controller until `shutdown` resolves. `readiness` turns ready once the Tenant cache
/// is synced (what `/readyz` reports).
pub async fn run(
    client: Client,
    config: OperatorConfig,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    readiness.set_not_ready("syncing the Tenant cache");
    // One shutdown for both controllers.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let tenants: Api<Tenant> = Api::all(client.clone());
    let mut tenant_watch = watcher::Config::default().any_semantic();
    if let Some(selector) = &config.tenant_selector {
        tenant_watch = tenant_watch.labels(selector);
    }
    // The Tenant cache keeps every Tenant; their managed fields (which the operator never reads)
    // would take more memory than their spec and status together.
    let (reader, writer) = reflector::store();
    let tenant_stream = watcher(tenants, tenant_watch)
        .default_backoff()
        .modify(|tenant: &mut Tenant| tenant.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    let mut controller = Controller::for_stream(tenant_stream, reader)
        .with_config(ControllerConfig::default().concurrency(config.concurrency).debounce(config.debounce))
        .graceful_shutdown_on(shutdown.clone());

    // Backups: one watch, whose cache both controllers read, feeds their own controller and
    // wakes a backup's Tenant (its status tells the last backup and whether backups are
    // current); sharing it means a Tenant woken by a backup's change reads that change.
    let (backup_store, backup_writer) = reflector::store_shared::<TenantBackup>(BACKUP_EVENTS_BUFFERED);
    let backup_events = backup_writer.subscribe().expect("a shared store has subscribers");
    let backup_tenant_events = backup_writer.subscribe().expect("a shared store has subscribers");
    let backup_watch = watcher(Api::<TenantBackup>::all(client.clone()), watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|backup: &mut TenantBackup| backup.managed_fields_mut().clear())
        .reflect_shared(backup_writer)
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::debug!(error = %e, "the TenantBackup watch");
            }
        });
    let backup_jobs: Api<Job> = Api::all(client.clone());
    let backup_controller = Controller::for_shared_stream(backup_events, backup_store.clone())
        .with_config(ControllerConfig::default().concurrency(config.concurrency))
        .watches(backup_jobs, watcher::Config::default().labels(labels::BACKUP).any_semantic(), |job: Job| {
            job.owner_references()
                .iter()
                .find(|owner| owner.kind == "TenantBackup")
                .map(|owner| ObjectRef::<TenantBackup>::new(&owner.name))
        })
        .graceful_shutdown_on(shutdown.clone());
    controller = controller.watches_shared_stream(backup_tenant_events, |backup: Arc<TenantBackup>| {
        Some(ObjectRef::<Tenant>::new(&backup.spec.tenant))
    });

    // Workloads are watched in full for their readiness, ResourceQuotas and claims for their
    // spec (their status moves all the time); everything else as metadata only.
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
    let cache = ChildCache::new();
    let mut kinds = managed_kinds();
    kinds.push(ApiResource::erase::<Namespace>(&()));
    for resource in kinds.into_iter().filter(|resource| children::watched(&resource.kind)) {
        controller = if children::watched_in_full(&resource.kind) {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            watch_children(controller, api, &resource, &managed, &cache, children::describe)
        } else {
            let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &resource);
            watch_children(controller, api, &resource, &managed, &cache, |_, _| Details::default())
        };
    }

    let reader = controller.store();
    let tenant_store = reader.clone();
    let synced = {
        let readiness = readiness.clone();
        let reader = reader.clone();
        async move {
            if reader.wait_until_ready().await.is_ok() {
                readiness.set_ready();
            }
        }
    };
    // The count loops forever: it stops when the reconciles do (a shutdown signal ends them).
    let (reconciles_ended, stop_counting) = tokio::sync::oneshot::channel::<()>();
    let counted = {
        let metrics = metrics.clone();
        async move {
            tokio::select! {
                () = count_phases(reader, metrics) => {}
                _ = stop_counting => {}
            }
        }
    };

    let events = EventPublisher::new(client.clone(), config.reporter.clone(), config.instance.clone());
    let context = Arc::new(Context {
        client,
        metrics,
        events,
        images: config.images.clone(),
        ingress_controller_namespace: config.ingress_controller_namespace.clone(),
        placement: config.placement.clone(),
        backup_store_ports: config.backup_store_ports.clone(),
        tenant_selector: config.tenant_selector.clone(),
        operator_namespace: config.operator_namespace.clone(),
        backups: backup_store,
        children: cache,
        tenants: tenant_store,
        retries: FailureBackoff::new(config.retry_delays),
        status_pacer: Default::default(),
    });
    let backup_reconciles =
        backup_controller.run(backup::reconcile, backup::error_policy, context.clone()).for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "backup controller event");
            }
        });
    let reconciles = controller.run(reconcile, error_policy, context).for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "controller event");
        }
    });
    let reconciles = async move {
        reconciles.await;
        let _ = reconciles_ended.send(());
    };
    // Joined rather than spawned, so that dropping this future (a lost lease) stops it all.
    // The watch runs until the reconciles are done (it never ends by itself).
    let backup_watch = async move {
        tokio::select! {
            () = backup_watch => {}
            _ = shutdown => {}
        }
    };
    futures::join!(synced, reconciles, backup_reconciles, backup_watch, counted);
    readiness.set_not_ready("the controller has stopped");
}

/// Keeps `tenantry_operator_tenants{phase}` up to date from the Tenant cache.
async fn count_phases(reader: reflector::Store<Tenant>, metrics: Metrics) {
    if reader.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for tenant in reader.state() {
            let phase = tenant.status.as_ref().and_then(|s| s.phase).map_or("Pending".to_string(), |p| p.to_string());
            *counts.entry(phase).or_default() += 1;
        }
        metrics.set_tenant_counts(counts.iter().map(|(phase, count)| (phase.as_str(), *count)));
    }
}

/// Watches one kind of child: every event updates the cache of children, and a touched child
/// wakes its Tenant's reconcile.
fn watch_children<K>(
    controller: Controller<Tenant>,
    api: Api<K>,
    resource: &ApiResource,
    selector: &str,
    cache: &ChildCache,
    describe: fn(&str, &K) -> Details,
) -> Controller<Tenant>
where
    K: Resource<DynamicType = ApiResource> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    cache.expect_kind(&resource.kind);
    let cache = cache.clone();
    let kind = resource.kind.clone();
    let stream = watcher(api, watcher::Config::default().labels(selector).any_semantic())
        .default_backoff()
        .inspect_ok(move |event| cache.observe(&kind, event, |object| describe(&kind, object)))
        .touched_objects();
    controller.watches_stream_with(
        stream,
        |child: K| {
            child.meta().labels.as_ref().and_then(|l| l.get(labels::TENANT)).map(|name| ObjectRef::<Tenant>::new(name))
        },
        resource.clone(),
    )
}

/// The custom resources the operator serves, with the file each has in the chart's `crds/`.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    use kube::CustomResourceExt;
    vec![("tenants.tenantry.dev.yaml", Tenant::crd()), ("tenantbackups.tenantry.dev.yaml", TenantBackup::crd())]
}

/// One CRD as the chart ships it, generated from the Rust types.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    let yaml = serde_yaml::to_string(crd).expect("the CRD serialises");
    format!("# Generated by `tenant-operator crd` from the Rust types in contract/src/api*; do not edit.\n{yaml}")
}
