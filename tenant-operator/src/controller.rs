//! The controller: which Tenants this operator serves, what wakes a reconcile, how many run at
//! once.
//!
//! Children are watched as metadata only (names, labels, resource versions), which is all a
//! trigger needs, so the operator's memory grows with the number of Tenants, not with the size
//! of every Deployment it manages. A child maps to its Tenant through the `tenantry.dev/tenant`
//! label rather than its owner reference, which also covers the Namespace and children whose
//! owner reference was edited away.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};

use crate::api::{Tenant, labels};
use crate::build::managed_kinds;
use crate::events::EventPublisher;
use crate::http::Readiness;
use crate::metrics::Metrics;
use crate::profile::ImageDefaults;
use crate::reconcile::{Context, error_policy, reconcile};

/// How this operator instance runs.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Serve only Tenants matching this label selector (e.g. one shard, or one test's Tenants).
    pub tenant_selector: Option<String>,
    /// Reconciles running at once (each Tenant is reconciled by one at a time regardless).
    pub concurrency: u16,
    pub images: ImageDefaults,
    /// Labels of the namespace(s) whose ingress controller may reach the web clients.
    pub ingress_controller_namespace: BTreeMap<String, String>,
    /// `reportingController` of the events the operator publishes.
    pub reporter: String,
    /// This instance's name (events' `reportingInstance`).
    pub instance: String,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            tenant_selector: None,
            concurrency: 16,
            images: ImageDefaults::default(),
            ingress_controller_namespace: BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "ingress-nginx".to_string(),
            )]),
            reporter: "tenantry-operator".into(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| "tenantry-operator".into()),
        }
    }
}

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
    let tenants: Api<Tenant> = Api::all(client.clone());
    let mut tenant_watch = watcher::Config::default().any_semantic();
    if let Some(selector) = &config.tenant_selector {
        tenant_watch = tenant_watch.labels(selector);
    }
    let mut controller = Controller::new(tenants, tenant_watch)
        .with_config(ControllerConfig::default().concurrency(config.concurrency))
        .graceful_shutdown_on(shutdown);

    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
    for resource in managed_kinds() {
        controller = watch_children(controller, &client, &resource, &managed);
    }
    let namespace = ApiResource::erase::<Namespace>(&());
    controller = watch_children(controller, &client, &namespace, &managed);

    let reader = controller.store();
    let synced = {
        let readiness = readiness.clone();
        async move {
            if reader.wait_until_ready().await.is_ok() {
                readiness.set_ready();
            }
        }
    };

    let events = EventPublisher::new(client.clone(), config.reporter.clone(), config.instance.clone());
    let context = Arc::new(Context::new(
        client,
        metrics,
        events,
        config.images.clone(),
        config.ingress_controller_namespace.clone(),
    ));
    let reconciles = controller.run(reconcile, error_policy, context).for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "controller event");
        }
    });
    // Joined rather than spawned, so that dropping this future (a lost lease) stops it all.
    futures::join!(synced, reconciles);
    readiness.set_not_ready("the controller has stopped");
}

fn watch_children(
    controller: Controller<Tenant>,
    client: &Client,
    resource: &ApiResource,
    selector: &str,
) -> Controller<Tenant> {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), resource);
    let stream =
        watcher(api, watcher::Config::default().labels(selector).any_semantic()).default_backoff().touched_objects();
    controller.watches_stream_with(
        stream,
        |child: PartialObjectMeta<DynamicObject>| {
            child
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::TENANT))
                .map(|name| ObjectRef::<Tenant>::new(name))
        },
        resource.clone(),
    )
}

/// The Tenant CRD as YAML, generated from the Rust types.
pub fn crd_yaml() -> String {
    let crd = <Tenant as kube::CustomResourceExt>::crd();
    let yaml = serde_yaml::to_string(&crd).expect("the CRD serialises");
    format!(
        "# Generated by `tenant-operator crd` from the Rust types in tenant-operator/src/api.rs; do not edit.\n{yaml}"
    )
}
