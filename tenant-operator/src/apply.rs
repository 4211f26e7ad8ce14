//! Applying children with server-side apply, without writing when nothing would change.
//!
//! A server-side apply is a write even when it changes nothing, so each child is first read and
//! compared with what we want: every field we set must be present with the same value (the
//! apiserver adds defaults and canonicalises quantities, so equality of whole objects would
//! never hold). Only a child that differs — missing, or edited out of band — is applied.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::build::Child;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::quantity;

/// The one field manager the operator applies with.
pub const FIELD_MANAGER: &str = "tenantry-operator";

pub struct Applier<'a> {
    pub client: &'a Client,
    pub metrics: &'a Metrics,
}

impl Applier<'_> {
    pub fn api(&self, child: &Child) -> Api<DynamicObject> {
        match &child.namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &child.resource),
            None => Api::all_with(self.client.clone(), &child.resource),
        }
    }

    /// Makes `child` exist as wanted; returns the object as the cluster has it now.
    pub async fn ensure(&self, child: &Child) -> Result<DynamicObject> {
        let api = self.api(child);
        let existing = api.get_opt(&child.name).await.map_err(|e| Error::kube(&child.name, e))?;
        match existing {
            Some(existing) if child.create_only || contains(&serde_json::to_value(&existing)?, &child.body) => {
                Ok(existing)
            }
            Some(_) => self.apply(&api, child).await,
            None if child.create_only => {
                let object: DynamicObject = serde_json::from_value(child.body.clone())?;
                let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
                self.metrics.api_write(&child.resource.kind, "create");
                match api.create(&params, &object).await {
                    Ok(created) => Ok(created),
                    // Created meanwhile (another reconcile): the first one wins, never overwritten.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        api.get(&child.name).await.map_err(|e| Error::kube(&child.name, e))
                    }
                    Err(e) => Err(Error::kube(&child.name, e)),
                }
            }
            None => self.apply(&api, child).await,
        }
    }

    async fn apply(&self, api: &Api<DynamicObject>, child: &Child) -> Result<DynamicObject> {
        self.metrics.api_write(&child.resource.kind, "apply");
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = api
            .patch(&child.name, &params, &Patch::Apply(&child.body))
            .await
            .map_err(|e| Error::kube(&child.name, e))?;
        tracing::debug!(kind = %child.resource.kind, name = %applied.name_any(), "applied");
        Ok(applied)
    }
}

/// Whether `actual` holds every field of `desired` with the same value.
///
/// Objects: every key of `desired` must match in `actual`, except empty values (`{}`, `[]`,
/// `null`), which the apiserver may drop. Lists: same length, element by element (the order
/// of what we set is kept). Strings: equal, or the same quantity (`1024Mi` and `1Gi`).
pub fn contains(actual: &Value, desired: &Value) -> bool {
    match (actual, desired) {
        (Value::Object(actual), Value::Object(desired)) => desired.iter().all(|(key, want)| match actual.get(key) {
            Some(have) => contains(have, want),
            None => is_empty(want),
        }),
        (Value::Array(actual), Value::Array(desired)) => {
            actual.len() == desired.len() && actual.iter().zip(desired).all(|(have, want)| contains(have, want))
        }
        (Value::String(have), Value::String(want)) => have == want || quantity::same(have, want),
        (Value::Number(have), Value::Number(want)) => have.as_f64() == want.as_f64(),
        (Value::Null, want) => is_empty(want),
        (have, want) => have == want,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_added_by_the_server_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "erp", "resources": {"limits": {"memory": "1024Mi", "cpu": "1"}}, "volumeMounts": []}
        ]}}}});
        let actual = json!({"spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"spec": {
            "dnsPolicy": "ClusterFirst",
            "containers": [{"name": "erp", "imagePullPolicy": "IfNotPresent",
                            "resources": {"limits": {"memory": "1Gi", "cpu": "1"}}}]
        }}}, "status": {"replicas": 1}});
        assert!(contains(&actual, &desired));
    }

    #[test]
    fn edits_out_of_band_are_drift() {
        let desired = json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "erp"}}}});
        assert!(!contains(&json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "erp"}}}}), &desired));
        assert!(!contains(&json!({"spec": {"replicas": 1}}), &desired));
        assert!(!contains(&json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}}}}), &desired));
        let list = json!({"args": ["-c", "/etc/erp/trytond.conf"]});
        assert!(!contains(&json!({"args": ["-c"]}), &list));
        assert!(!contains(&json!({"args": ["-c", "/etc/other.conf"]}), &list));
        assert!(contains(&json!({"args": ["-c", "/etc/erp/trytond.conf"]}), &list));
    }

    #[test]
    fn empty_values_may_be_dropped_by_the_server() {
        assert!(contains(&json!({"spec": {}}), &json!({"spec": {"podSelector": {}, "emptyDir": {}, "x": null}})));
        assert!(contains(&json!({"podSelector": {}}), &json!({"podSelector": {}})));
        assert!(!contains(&json!({}), &json!({"enabled": false})));
    }
}
