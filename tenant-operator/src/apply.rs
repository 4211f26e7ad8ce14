//! Applying children with server-side apply, without writing when nothing would change.
//!
//! A server-side apply is a write even when it changes nothing. A child that the cache of
//! children ([`crate::children`]) shows unchanged since this process wrote it is left alone; a
//! child the cache shows absent is written straight away; any other is first read and compared
//! with what we want: every field we set must be present with the same value (the
//! apiserver adds defaults and canonicalises quantities, so equality of whole objects would
//! never hold). Only a child that differs — missing, or edited out of band — is applied.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::build::Child;
use crate::children::{ChildCache, ChildKey, Knowledge};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::quantity;

/// The one field manager the operator applies with.
pub const FIELD_MANAGER: &str = "tenantry-operator";

pub struct Applier<'a> {
    pub client: &'a Client,
    pub metrics: &'a Metrics,
    pub cache: &'a ChildCache,
}

impl Applier<'_> {
    pub fn api(&self, child: &Child) -> Api<DynamicObject> {
        match &child.namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &child.resource),
            None => Api::all_with(self.client.clone(), &child.resource),
        }
    }

    /// Makes `child` exist as wanted. Returns the object as the cluster has it now when it had to
    /// be read or written, `None` when the cache shows it unchanged since this process last wrote
    /// or verified it (then nothing was sent).
    pub async fn ensure(&self, child: &Child) -> Result<Option<DynamicObject>> {
        let namespace = child.namespace.as_deref().unwrap_or_default();
        let key = ChildKey::new(&child.resource.kind, &child.name);
        let body = child.desired_hash;
        let api = self.api(child);
        let object = match self.cache.knowledge(namespace, &key, body) {
            Knowledge::Unchanged => return Ok(None),
            // Never updated, so existing is all that matters.
            Knowledge::Exists | Knowledge::Written if child.create_only => return Ok(None),
            Knowledge::Absent => match self.create(&api, child).await? {
                Some(created) => created,
                None => self.read_and_update(&api, child).await?,
            },
            Knowledge::Exists | Knowledge::Written | Knowledge::Unknown => self.read_and_update(&api, child).await?,
        };
        self.cache.record(namespace, key, body, &object);
        Ok(Some(object))
    }

    /// Reads the child and updates it if it differs from what is wanted (creates it if missing).
    async fn read_and_update(&self, api: &Api<DynamicObject>, child: &Child) -> Result<DynamicObject> {
        let existing = api.get_opt(&child.name).await.map_err(|e| Error::kube(&child.name, e))?;
        match existing {
            Some(existing) if child.create_only => Ok(existing),
            Some(existing) if contains(&serde_json::to_value(&existing)?, &child.body) => Ok(existing),
            Some(existing) => {
                self.adopt_created_fields(api, child, &existing).await?;
                self.apply(api, child).await
            }
            None => match self.create(api, child).await? {
                Some(created) => Ok(created),
                // Created meanwhile: one more look settles it.
                None => Box::pin(self.read_and_update(api, child)).await,
            },
        }
    }

    /// Creates the child; `None` when it exists already (then it is never overwritten here).
    ///
    /// A create costs the apiserver far less than a server-side apply that creates (which first
    /// reads the object from storage), so children are created with a plain POST under the
    /// operator's field manager and server-side applied only when they later need a change; see
    /// [`Self::adopt_created_fields`].
    async fn create(&self, api: &Api<DynamicObject>, child: &Child) -> Result<Option<DynamicObject>> {
        let object: DynamicObject = serde_json::from_value(child.body.clone())?;
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        self.metrics.api_write(&child.resource.kind, "create");
        match api.create(&params, &object).await {
            Ok(created) => Ok(Some(created)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(Error::kube(&child.name, e)),
        }
    }

    /// Turns the fields the operator's create set into fields it applied, before its first
    /// server-side apply to the child.
    ///
    /// A create records its fields under the operator's manager with operation `Update`, a
    /// server-side apply under operation `Apply`: two owners, as far as the apiserver is
    /// concerned. A field the operator no longer wants would then stay, owned by the create. So
    /// the create's entry becomes an `Apply` entry (what client-go's `csaupgrade` does), guarded
    /// by the resource version so that nothing written meanwhile is lost.
    async fn adopt_created_fields(
        &self,
        api: &Api<DynamicObject>,
        child: &Child,
        existing: &DynamicObject,
    ) -> Result<()> {
        let Some(patch) = ownership_upgrade(existing) else { return Ok(()) };
        self.metrics.api_write(&child.resource.kind, "patch");
        api.patch(&child.name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(|e| Error::kube(&child.name, e))?;
        Ok(())
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

/// The JSON patch that turns the operator's create-time (`Update`) managed-fields entry into an
/// `Apply` entry, if the object has one and no `Apply` entry of the operator yet.
pub fn ownership_upgrade(object: &DynamicObject) -> Option<json_patch::Patch> {
    let entries = object.metadata.managed_fields.as_ref()?;
    let ours = |operation: &str| {
        entries
            .iter()
            .position(|e| e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some(operation))
    };
    if ours("Apply").is_some() {
        return None;
    }
    let index = ours("Update")?;
    let patch = serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version},
        {"op": "test", "path": format!("/metadata/managedFields/{index}/manager"), "value": FIELD_MANAGER},
        {"op": "replace", "path": format!("/metadata/managedFields/{index}/operation"), "value": "Apply"},
    ]);
    serde_json::from_value(patch).ok()
}

/// Whether `actual` holds every field of `desired` with the same value.
///
/// Objects: every key of `desired` must match in `actual`, except empty values (`{}`, `[]`,
/// `null`), which the apiserver may drop. Lists: same length, element by element (the order
/// of what we set is kept). Strings: equal; where the field is a resource quantity (see
/// [`is_quantity_field`]), also the same amount written differently (`1024Mi` and `1Gi`), since
/// the apiserver stores quantities in canonical form. Anywhere else (an environment variable, an
/// argument) `"10"` and `"1e1"` are different strings, and an edit from one to the other is drift.
pub fn contains(actual: &Value, desired: &Value) -> bool {
    contains_at(actual, desired, &mut Vec::new())
}

/// [`contains`] at `path`: the keys leading to `desired` (`[]` for a list element).
fn contains_at<'a>(actual: &Value, desired: &'a Value, path: &mut Vec<&'a str>) -> bool {
    match (actual, desired) {
        (Value::Object(actual), Value::Object(desired)) => desired.iter().all(|(key, want)| match actual.get(key) {
            Some(have) => {
                path.push(key);
                let same = contains_at(have, want, path);
                path.pop();
                same
            }
            None => is_empty(want),
        }),
        (Value::Array(actual), Value::Array(desired)) => {
            actual.len() == desired.len()
                && actual.iter().zip(desired).all(|(have, want)| {
                    path.push("[]");
                    let same = contains_at(have, want, path);
                    path.pop();
                    same
                })
        }
        (Value::String(have), Value::String(want)) => {
            have == want || (is_quantity_field(path) && quantity::same(have, want))
        }
        (Value::Number(have), Value::Number(want)) => have.as_f64() == want.as_f64(),
        (Value::Null, want) => is_empty(want),
        (have, want) => have == want,
    }
}

/// Whether the field at `path` holds a resource quantity, which the apiserver canonicalises:
/// a container's (or a claim's) `resources.requests` / `resources.limits`, a ResourceQuota's
/// `hard`, a LimitRange item's `default`, `defaultRequest`, `min`, `max` and
/// `maxLimitRequestRatio`, an emptyDir's `sizeLimit`.
fn is_quantity_field(path: &[&str]) -> bool {
    matches!(
        path,
        [.., "resources", "requests" | "limits", _]
            | [.., "spec", "hard", _]
            | [.., "limits", "[]", "default" | "defaultRequest" | "min" | "max" | "maxLimitRequestRatio", _]
            | [.., "sizeLimit"]
    )
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Creates `object` as the operator; one that already exists (made by an earlier run, or
/// another replica, for the same work) is as good. Whether this call created it.
pub async fn create_if_absent<K>(api: &Api<K>, object: &K) -> Result<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    match api.create(&params, object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(Error::kube(object.name_any(), e)),
    }
}

/// Deletes `name`, its dependents in the background; one already gone is as good.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(name, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_create_entry_of_the_operator_becomes_an_apply_entry_once() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let entry = |manager: &str, operation: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            ..Default::default()
        };
        let mut object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "42"}
        }))
        .unwrap();
        assert!(ownership_upgrade(&object).is_none());
        object.metadata.managed_fields =
            Some(vec![entry("kube-controller-manager", "Update"), entry(FIELD_MANAGER, "Update")]);
        let patch = serde_json::to_value(ownership_upgrade(&object).unwrap()).unwrap();
        assert_eq!(patch[0], json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"}));
        assert_eq!(patch[2], json!({"op": "replace", "path": "/metadata/managedFields/1/operation", "value": "Apply"}));
        object.metadata.managed_fields.as_mut().unwrap().push(entry(FIELD_MANAGER, "Apply"));
        assert!(ownership_upgrade(&object).is_none());
    }

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
    fn drift_in_a_plain_string_is_seen() {
        let container = |port: &str, arg: &str, memory: &str| {
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "erp",
                "args": ["--workers", arg],
                "env": [{"name": "PGPORT", "value": port}],
                "resources": {"limits": {"memory": memory}, "requests": {"memory": memory}}
            }]}}}})
        };
        let desired = container("10", "10", "1Gi");
        // Strings that would be the same quantity but are not quantity fields: drift.
        for edited in ["1e1", "10.0", "10000m", "+10"] {
            assert!(!contains(&container(edited, "10", "1Gi"), &desired), "env var edited to {edited}");
            assert!(!contains(&container("10", edited, "1Gi"), &desired), "argument edited to {edited}");
        }
        // Resource quantities written differently but equal: not drift; a different amount is.
        assert!(contains(&container("10", "10", "1024Mi"), &desired));
        assert!(contains(&container("10", "10", "1073741824"), &desired));
        assert!(!contains(&container("10", "10", "1G"), &desired));

        // The other quantity fields: quota, LimitRange defaults, a claim's storage, sizeLimit.
        let quota = json!({"spec": {"hard": {"limits.memory": "16Gi", "pods": "30"}}});
        assert!(contains(&json!({"spec": {"hard": {"limits.memory": "16384Mi", "pods": "3e1"}}}), &quota));
        let limit_range = json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "1"},
                                                       "defaultRequest": {"cpu": "100m"}}]}});
        let canonical = json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "1000m"},
                                                     "defaultRequest": {"cpu": "0.1"}}]}});
        assert!(contains(&canonical, &limit_range));
        let claim = json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}});
        assert!(contains(&json!({"spec": {"resources": {"requests": {"storage": "20480Mi"}}}}), &claim));
        let volume = json!({"volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]});
        assert!(contains(&json!({"volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1024Mi"}}]}), &volume));
        // A ConfigMap key that happens to be named like a quantity field is still a plain string.
        let config = json!({"data": {"hard": "10", "limits": "10"}});
        assert!(!contains(&json!({"data": {"hard": "1e1", "limits": "10.0"}}), &config));
    }

    #[test]
    fn empty_values_may_be_dropped_by_the_server() {
        assert!(contains(&json!({"spec": {}}), &json!({"spec": {"podSelector": {}, "emptyDir": {}, "x": null}})));
        assert!(contains(&json!({"podSelector": {}}), &json!({"podSelector": {}})));
        assert!(!contains(&json!({}), &json!({"enabled": false})));
    }
}
