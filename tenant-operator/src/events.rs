//! Kubernetes Events on Tenants, through the core `v1` Events API.
//!
//! kube-rs' recorder writes `events.k8s.io/v1` Events, which an apiserver before v1.22 refuses
//! for a cluster-scoped object unless the Event lives in `kube-system`; a `v1` Event in
//! `default` with an empty `involvedObject.namespace` is accepted by every version and is what
//! `kubectl describe tenant` finds.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;

use crate::api::Tenant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    component: String,
    instance: String,
}

impl EventPublisher {
    pub fn new(client: Client, component: impl Into<String>, instance: impl Into<String>) -> Self {
        Self { client, component: component.into(), instance: instance.into() }
    }

    pub async fn publish(&self, tenant: &Tenant, severity: Severity, reason: &str, message: &str) -> kube::Result<()> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        events.create(&PostParams::default(), &self.event(tenant, severity, reason, message)).await.map(drop)
    }

    fn event(&self, tenant: &Tenant, severity: Severity, reason: &str, message: &str) -> Event {
        let now = Time(Timestamp::now());
        let suffix: u64 = rand::rng().random();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{suffix:016x}", tenant.name_any())),
                namespace: Some("default".into()),
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
