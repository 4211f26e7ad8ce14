//! Kubernetes Events on Tenants, through the core `v1` Events API.
//!
//! kube-rs' recorder writes `events.k8s.io/v1` Events, which an apiserver before v1.22 refuses
//! for a cluster-scoped object unless the Event lives in `kube-system`; a `v1` Event in
//! `default` with an empty `involvedObject.namespace` is accepted by every version and is what
//! `kubectl describe tenant` finds.
//!
//! The same Event again (same Tenant, type, reason and message) is not a new Event: as
//! client-go's recorder does, the existing one gets its `count` raised and its `lastTimestamp`
//! moved, so a Tenant failing the same way for hours shows one Event counted many times, not
//! thousands of Events. The publisher remembers the last [`REMEMBERED`] series; an Event the
//! apiserver has meanwhile expired (after its event TTL, an hour by default) is created anew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use serde_json::json;
use tokio::time::Instant;

use crate::api::Tenant;

/// How many series of Events the publisher remembers (client-go's recorder keeps 4096).
pub const REMEMBERED: usize = 4096;

/// The namespace of the Events.
const NAMESPACE: &str = "default";

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// What a publish wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// A new Event.
    Created,
    /// The count of the existing Event of the same series.
    Counted,
}

impl Published {
    /// The verb of the write, for the API write metrics.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Created => "create",
            Self::Counted => "patch",
        }
    }
}

/// What makes two Events the same: the object (by uid) and everything said about it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SeriesKey {
    object: String,
    severity: Severity,
    reason: String,
    message: String,
}

/// The Event published for one series, and how often.
struct Series {
    name: String,
    count: i32,
}

/// A remembered series: its Event (locked while written, so that concurrent publishes of one
/// series count one after the other) and when it was last used (the least recent is forgotten
/// first).
struct Slot {
    series: Arc<tokio::sync::Mutex<Option<Series>>>,
    used: Instant,
}

#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    component: String,
    instance: String,
    series: Arc<Mutex<HashMap<SeriesKey, Slot>>>,
}

impl EventPublisher {
    pub fn new(client: Client, component: impl Into<String>, instance: impl Into<String>) -> Self {
        Self { client, component: component.into(), instance: instance.into(), series: Arc::default() }
    }

    /// Publishes an Event on `tenant`, or counts it once more if the last one of the same series
    /// is still there.
    pub async fn publish(
        &self,
        tenant: &Tenant,
        severity: Severity,
        reason: &str,
        message: &str,
    ) -> kube::Result<Published> {
        let event = self.event(tenant, severity, reason, message);
        let key = SeriesKey {
            object: tenant.uid().unwrap_or_else(|| tenant.name_any()),
            severity,
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
        };
        let slot = self.slot(key);
        let mut series = slot.lock().await;
        let events: Api<Event> = Api::namespaced(self.client.clone(), NAMESPACE);
        if let Some(counted) = series.as_mut() {
            let count = counted.count.saturating_add(1);
            let patch = json!({"count": count, "lastTimestamp": event.last_timestamp});
            match events.patch(&counted.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    counted.count = count;
                    return Ok(Published::Counted);
                }
                // Expired (or deleted): the series starts over with a new Event.
                Err(kube::Error::Api(status)) if status.code == 404 => *series = None,
                Err(e) => return Err(e),
            }
        }
        let created = events.create(&PostParams::default(), &event).await?;
        *series = Some(Series { name: created.name_any(), count: created.count.unwrap_or(1) });
        Ok(Published::Created)
    }

    /// The series of `key`, remembered from now on if it was not; the least recently used one is
    /// forgotten when there are more than [`REMEMBERED`].
    fn slot(&self, key: SeriesKey) -> Arc<tokio::sync::Mutex<Option<Series>>> {
        let mut remembered = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let series = match remembered.get_mut(&key) {
            Some(slot) => {
                slot.used = now;
                return slot.series.clone();
            }
            None => Arc::new(tokio::sync::Mutex::new(None)),
        };
        if remembered.len() >= REMEMBERED
            && let Some(oldest) = remembered.iter().min_by_key(|(_, slot)| slot.used).map(|(key, _)| key.clone())
        {
            remembered.remove(&oldest);
        }
        remembered.insert(key, Slot { series: series.clone(), used: now });
        series
    }

    fn event(&self, tenant: &Tenant, severity: Severity, reason: &str, message: &str) -> Event {
        let now = Time(Timestamp::now());
        let suffix: u64 = rand::rng().random();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{suffix:016x}", tenant.name_any())),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(Tenant::api_version(&()).into_owned()),
                kind: Some(Tenant::kind(&()).into_owned()),
                name: Some(tenant.name_any()),
                uid: tenant.uid(),
                resource_version: tenant.resource_version(),
                ..Default::default()
            },
            type_: Some(format!("{severity:?}")),
            reason: Some(reason.chars().take(128).collect()),
            message: Some(message.chars().take(1000).collect()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}
