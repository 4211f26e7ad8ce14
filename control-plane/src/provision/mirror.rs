//! Mirrors the status the operator writes on each Tenant (phase, URL, conditions) back into the
//! store, which emits `tenant.ready` whenever a tenant becomes ready (from any other state).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tenantry_contract::api::{Phase, Tenant as TenantObject, TenantStatus};
use tokio::sync::watch;

use super::desired::{MANAGED_BY, MANAGED_BY_LABEL};
use super::worker::stopping;
use crate::store::{MirroredStatus, ProvisioningState, Store, StoreError};

/// How often Tenants whose mirroring failed (store unreachable) are tried again.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// What the store should show for a Tenant's status.
pub fn mirrored_status(status: Option<&TenantStatus>) -> MirroredStatus {
    let provisioning = match status.and_then(|s| s.phase) {
        // In the cluster, and the operator has not (or not yet) said more.
        None | Some(Phase::Pending) => ProvisioningState::Applied,
        Some(Phase::Provisioning) => ProvisioningState::Provisioning,
        Some(Phase::Ready) => ProvisioningState::Ready,
        Some(Phase::Degraded) => ProvisioningState::Degraded,
        Some(Phase::Suspended) => ProvisioningState::Suspended,
        Some(Phase::Invalid) => ProvisioningState::Invalid,
        Some(Phase::Deleting) => ProvisioningState::Deleting,
    };
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    MirroredStatus {
        provisioning,
        url: status.and_then(|s| s.url.clone()),
        conditions: serde_json::to_value(conditions).expect("conditions always serialise"),
        environments: serde_json::to_value(status.map(|s| s.environments.as_slice()).unwrap_or_default())
            .expect("environments always serialise"),
    }
}

/// Mirrors one Tenant; `Ok(true)` when its tenant has just become ready. A Tenant this store does
/// not know (another control plane's, or a test's) is ignored.
pub async fn mirror_tenant(store: &Store, tenant: &TenantObject) -> Result<bool, StoreError> {
    mirror(store, &tenant.name_any(), &mirrored_status(tenant.status.as_ref())).await
}

async fn mirror(store: &Store, slug: &str, status: &MirroredStatus) -> Result<bool, StoreError> {
    match store.mirror_status(slug, status).await {
        Ok(ready) => {
            if ready {
                tracing::info!(tenant = %slug, url = ?status.url, "tenant is ready");
            }
            Ok(ready)
        }
        Err(StoreError::NotFound { .. }) => {
            tracing::debug!(tenant = %slug, "a managed Tenant this store does not know; ignored");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// A Tenant is gone from the cluster. Only a deleted tenant becomes `deleted`: a tenant that
/// still exists keeps its state, and the next outbox apply for it (any change) recreates its
/// Tenant — removing a Tenant by hand does not cancel a subscription.
pub async fn mirror_removal(store: &Store, slug: &str) -> Result<(), StoreError> {
    let tenant = match store.tenant(slug).await {
        Ok(tenant) => tenant,
        Err(StoreError::NotFound { .. }) => {
            tracing::debug!(tenant = %slug, "a managed Tenant this store does not know was removed; ignored");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if tenant.deleted_at.is_none() {
        tracing::warn!(tenant = %slug, "the Tenant was removed from the cluster but the tenant exists; \
            its next change applies it again");
        return Ok(());
    }
    let gone = MirroredStatus {
        provisioning: ProvisioningState::Deleted,
        url: None,
        conditions: serde_json::Value::Array(Vec::new()),
        environments: serde_json::Value::Array(Vec::new()),
    };
    mirror(store, slug, &gone).await.map(|_| ())
}

/// Watches the Tenants this control plane manages and mirrors each change until `shutdown`.
/// Watch errors back off (the watcher's default policy) and the watch resumes; store errors are
/// retried every few seconds with the Tenant's latest state.
pub async fn run_status_mirror(store: Store, client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let tenants: Api<TenantObject> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let mut events = watcher::watcher(tenants, config).default_backoff().boxed();
    let mut mirror = Mirror::new(store);
    let mut retry = tokio::time::interval(RETRY_INTERVAL);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!("Tenant status mirror started");
    while !stopping(&shutdown) {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => mirror.handle(event).await,
                Some(Err(e)) => tracing::warn!(error = %e, "watching Tenants failed; backing off"),
                None => break,
            },
            _ = retry.tick() => mirror.retry().await,
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!("Tenant status mirror stopped");
}

/// The watch's memory: which Tenants exist (to notice removals a re-list reveals) and what still
/// has to be written. Every event is written, even one whose status looks unchanged: the store
/// ignores writes that change nothing, and skipping here could miss a write that failed before.
struct Mirror {
    store: Store,
    known: HashSet<String>,
    relisted: HashSet<String>,
    pending: HashMap<String, Pending>,
}

enum Pending {
    Status(MirroredStatus),
    Removal,
}

impl Mirror {
    fn new(store: Store) -> Self {
        Self { store, known: HashSet::new(), relisted: HashSet::new(), pending: HashMap::new() }
    }

    async fn handle(&mut self, event: Event<TenantObject>) {
        match event {
            Event::Init => self.relisted.clear(),
            Event::InitApply(tenant) => {
                self.relisted.insert(tenant.name_any());
                self.applied(&tenant).await;
            }
            Event::InitDone => {
                // Removed while the watch was down: a re-list simply no longer shows them.
                let removed: Vec<String> = self.known.difference(&self.relisted).cloned().collect();
                self.known = std::mem::take(&mut self.relisted);
                for slug in removed {
                    self.removed(&slug).await;
                }
            }
            Event::Apply(tenant) => self.applied(&tenant).await,
            Event::Delete(tenant) => self.removed(&tenant.name_any()).await,
        }
    }

    async fn applied(&mut self, tenant: &TenantObject) {
        let slug = tenant.name_any();
        self.known.insert(slug.clone());
        self.write(slug, Pending::Status(mirrored_status(tenant.status.as_ref()))).await;
    }

    async fn removed(&mut self, slug: &str) {
        self.known.remove(slug);
        self.write(slug.to_string(), Pending::Removal).await;
    }

    async fn retry(&mut self) {
        for (slug, what) in std::mem::take(&mut self.pending) {
            // A newer event may have queued the same Tenant again while this one waited.
            self.write(slug, what).await;
        }
    }

    async fn write(&mut self, slug: String, what: Pending) {
        let result = match &what {
            Pending::Status(status) => mirror(&self.store, &slug, status).await.map(|_| ()),
            Pending::Removal => mirror_removal(&self.store, &slug).await,
        };
        match result {
            Ok(()) => {
                self.pending.remove(&slug);
            }
            Err(e) => {
                tracing::warn!(tenant = %slug, error = %e, "mirroring a Tenant's status failed; will retry");
                self.pending.insert(slug, what);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tenantry_contract::api::{Condition, EnvironmentStatus};

    use super::*;

    #[test]
    fn no_status_yet_means_applied() {
        let status = mirrored_status(None);
        assert_eq!(status.provisioning, ProvisioningState::Applied);
        assert_eq!(status.url, None);
        assert_eq!(status.conditions, serde_json::json!([]));
    }

    #[test]
    fn each_phase_has_its_state() {
        let cases = [
            (Phase::Pending, ProvisioningState::Applied),
            (Phase::Provisioning, ProvisioningState::Provisioning),
            (Phase::Ready, ProvisioningState::Ready),
            (Phase::Degraded, ProvisioningState::Degraded),
            (Phase::Suspended, ProvisioningState::Suspended),
            (Phase::Invalid, ProvisioningState::Invalid),
            (Phase::Deleting, ProvisioningState::Deleting),
        ];
        for (phase, state) in cases {
            let status = TenantStatus { phase: Some(phase), ..TenantStatus::default() };
            assert_eq!(mirrored_status(Some(&status)).provisioning, state, "{phase}");
        }
    }

    #[test]
    fn url_conditions_and_environments_are_carried_over() {
        let status = TenantStatus {
            phase: Some(Phase::Ready),
            url: Some("https://acme.example.com".into()),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "AllReady".into(),
                message: "every environment serves".into(),
                last_transition_time: "2025-01-02T03:04:05Z".into(),
                observed_generation: Some(3),
            }],
            environments: vec![EnvironmentStatus {
                name: "production".into(),
                version: "7.0.59".into(),
                ready: true,
                url: Some("https://acme.example.com".into()),
            }],
            ..TenantStatus::default()
        };
        let mirrored = mirrored_status(Some(&status));
        assert_eq!(
            mirrored.environments,
            serde_json::json!([{"name": "production", "version": "7.0.59", "ready": true, "url": "https://acme.example.com"}])
        );
        assert_eq!(mirrored.url.as_deref(), Some("https://acme.example.com"));
        assert_eq!(mirrored.conditions[0]["type"], "Ready");
        assert_eq!(mirrored.conditions[0]["lastTransitionTime"], "2025-01-02T03:04:05Z");
        assert_eq!(mirrored.conditions.as_array().unwrap().len(), 1);
    }
}
