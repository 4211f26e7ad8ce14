//! What the operator knows of its children between reconciles, so that a reconcile reads
//! nothing back from the cluster when nothing has changed.
//!
//! Two things are kept per child, both small:
//! - **seen**: the child as the watches last reported it — resource version, generation, a
//!   digest of its metadata, and for workloads a readiness summary. The watches run anyway (they
//!   trigger reconciles), so this costs no request.
//! - **recorded**: what this process last wrote or verified — a digest of the body it wanted and
//!   the child's fingerprint right after.
//!
//! A child whose wanted body is unchanged and whose seen fingerprint still matches the recorded
//! one cannot have drifted, so it is neither read nor written. Anything else (a first reconcile
//! after start-up, a child edited or deleted out of band, a watch that has not caught up with
//! our own write) falls back to reading the child and comparing it field by field.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::api::{DynamicObject, ObjectMeta};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::watch;

use crate::api::labels;
use crate::status::Readiness;

/// Kinds whose `metadata.generation` moves with every change of their spec, so that status
/// updates (which change the resource version all the time) need not count as drift.
const GENERATION_TRACKED: [&str; 2] = ["Deployment", "StatefulSet"];

/// Kinds without a generation whose status moves all the time: a ResourceQuota's usage changes
/// with every pod, a claim's with its binding. They are watched in full and known by a digest
/// of their spec, so that only a change of their spec or metadata counts as drift.
const SPEC_TRACKED: [&str; 2] = ["ResourceQuota", "PersistentVolumeClaim"];

/// Annotations that Kubernetes' own controllers set on the children (rollout revision, volume
/// binding and provisioning); the operator sets none of them, so they are no drift.
const FOREIGN_ANNOTATIONS: [&str; 4] =
    ["deployment.kubernetes.io/", "pv.kubernetes.io/", "volume.kubernetes.io/", "volume.beta.kubernetes.io/"];

/// Identifies a child within its namespace (`""` for the Namespace objects themselves).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChildKey {
    pub kind: String,
    pub name: String,
}

impl ChildKey {
    pub fn new(kind: &str, name: &str) -> Self {
        Self { kind: kind.to_string(), name: name.to_string() }
    }

    /// The key of the Namespace `name` (whose own namespace is `""`).
    pub fn namespace(name: &str) -> Self {
        Self::new("Namespace", name)
    }
}

/// The parts of a child's state that change when anyone changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    resource_version: String,
    generation: i64,
    /// Labels, annotations, owner references and whether it is being deleted.
    metadata: u64,
    /// For the [`SPEC_TRACKED`] kinds: a digest of the spec (see [`spec_digest`]).
    spec: Option<u64>,
}

impl Fingerprint {
    pub fn of(meta: &ObjectMeta, spec: Option<u64>) -> Self {
        let mut hasher = DefaultHasher::new();
        meta.labels.hash(&mut hasher);
        for annotation in meta
            .annotations
            .iter()
            .flatten()
            .filter(|(key, _)| !FOREIGN_ANNOTATIONS.iter().any(|prefix| key.starts_with(prefix)))
        {
            annotation.hash(&mut hasher);
        }
        for owner in meta.owner_references.iter().flatten() {
            (&owner.uid, &owner.kind, &owner.name, owner.controller, owner.block_owner_deletion).hash(&mut hasher);
        }
        meta.deletion_timestamp.is_some().hash(&mut hasher);
        Self {
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            generation: meta.generation.unwrap_or_default(),
            metadata: hasher.finish(),
            spec,
        }
    }

    /// Whether the child seen with `self` is, in everything the operator sets, the child that was
    /// `recorded`: the very same version, or — for a kind whose generation follows its spec — the
    /// same generation and metadata, or — for a kind known by its spec's digest — the same spec
    /// and metadata (only its status has moved).
    pub fn unchanged_since(&self, recorded: &Fingerprint, kind: &str) -> bool {
        self.resource_version == recorded.resource_version
            || (GENERATION_TRACKED.contains(&kind)
                && recorded.generation > 0
                && self.generation == recorded.generation
                && self.metadata == recorded.metadata)
            || (SPEC_TRACKED.contains(&kind)
                && recorded.spec.is_some()
                && self.spec == recorded.spec
                && self.metadata == recorded.metadata)
    }
}

/// What a watch reports of one child beyond its metadata.
#[derive(Debug, Clone, Default)]
pub struct Details {
    /// For Deployments, StatefulSets and Jobs.
    pub readiness: Option<Readiness>,
    /// For the [`SPEC_TRACKED`] kinds.
    pub spec: Option<u64>,
}

/// A digest of the spec of a child of a [`SPEC_TRACKED`] kind (`None` for other kinds).
/// A claim's `volumeName` is left out: the binder sets it, the operator never does.
pub fn spec_digest(kind: &str, data: &Value) -> Option<u64> {
    if !SPEC_TRACKED.contains(&kind) {
        return None;
    }
    let mut spec = data.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(fields) = spec.as_object_mut() {
        fields.remove("volumeName");
    }
    let mut hasher = DefaultHasher::new();
    spec.to_string().hash(&mut hasher);
    Some(hasher.finish())
}

/// A child as the watches last reported it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub fingerprint: Fingerprint,
    /// Value of the `tenantry.dev/tenant` label.
    pub tenant: Option<String>,
    pub retained: bool,
    pub terminating: bool,
    /// For Deployments, StatefulSets and Jobs.
    pub readiness: Option<Readiness>,
    /// The relist this entry was last confirmed by (entries a relist did not confirm are gone).
    epoch: u64,
}

/// What this process last wrote or verified for a child.
#[derive(Debug, Clone)]
struct Recorded {
    /// The child's desired hash.
    body: u64,
    fingerprint: Fingerprint,
}

#[derive(Debug, Default)]
struct Entry {
    seen: Option<Seen>,
    recorded: Option<Recorded>,
}

#[derive(Debug, Default)]
struct State {
    /// Per namespace (`""` for Namespaces themselves), per child.
    namespaces: HashMap<String, HashMap<ChildKey, Entry>>,
    /// Per watched kind: the epoch of its current (re)list and whether one has completed.
    lists: HashMap<String, (u64, bool)>,
    next_epoch: u64,
}

/// What a reconcile may skip for one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Knowledge {
    /// Seen and unchanged since this process wrote or verified it with the same wanted body.
    Unchanged,
    /// The watches have it, but it may differ from what is wanted.
    Exists,
    /// This process wrote it and the watches have not reported it yet.
    Written,
    /// The watches are synced and do not have it, and this process has not written it since.
    Absent,
    /// The watches have not listed everything yet: nothing can be concluded.
    Unknown,
}

/// The children cache, shared by the watches (writers) and the reconciles (readers).
#[derive(Clone, Default)]
pub struct ChildCache {
    state: Arc<Mutex<State>>,
    synced: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for ChildCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildCache").field("synced", &*self.synced.borrow()).finish()
    }
}

impl ChildCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares a kind that will be watched; the cache is synced once every declared kind has
    /// been listed.
    pub fn expect_kind(&self, kind: &str) {
        self.lock().lists.insert(kind.to_string(), (0, false));
        self.synced.send_replace(false);
    }

    /// Waits until every declared kind has been listed once.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut receiver = self.synced.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|synced| *synced)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Takes in one watch event of `kind`; `describe` gives what the watch reports beyond the
    /// metadata (a workload's readiness, a spec's digest).
    pub fn observe<K>(&self, kind: &str, event: &watcher::Event<K>, describe: impl Fn(&K) -> Details)
    where
        K: kube::Resource,
    {
        let mut state = self.lock();
        match event {
            watcher::Event::Init => {
                state.next_epoch += 1;
                let epoch = state.next_epoch;
                let synced = state.lists.get(kind).is_some_and(|(_, synced)| *synced);
                state.lists.insert(kind.to_string(), (epoch, synced));
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let epoch = state.lists.get(kind).map(|(epoch, _)| *epoch).unwrap_or_default();
                let meta = object.meta();
                let details = describe(object);
                let seen = Seen {
                    fingerprint: Fingerprint::of(meta, details.spec),
                    tenant: meta.labels.as_ref().and_then(|l| l.get(labels::TENANT)).cloned(),
                    retained: meta.labels.as_ref().is_some_and(|l| l.contains_key(labels::RETAINED)),
                    terminating: meta.deletion_timestamp.is_some(),
                    readiness: details.readiness,
                    epoch,
                };
                let key = ChildKey { kind: kind.to_string(), name: meta.name.clone().unwrap_or_default() };
                state
                    .namespaces
                    .entry(meta.namespace.clone().unwrap_or_default())
                    .or_default()
                    .entry(key)
                    .or_default()
                    .seen = Some(seen);
            }
            watcher::Event::Delete(object) => {
                // Gone, whoever wrote it last: what this process wrote no longer exists either.
                let meta = object.meta();
                let namespace = meta.namespace.clone().unwrap_or_default();
                let key = ChildKey { kind: kind.to_string(), name: meta.name.clone().unwrap_or_default() };
                if let Some(children) = state.namespaces.get_mut(&namespace) {
                    children.remove(&key);
                    if children.is_empty() {
                        state.namespaces.remove(&namespace);
                    }
                }
            }
            watcher::Event::InitDone => {
                let epoch = state.lists.get(kind).map(|(epoch, _)| *epoch).unwrap_or_default();
                // What the relist did not confirm was deleted while the watch was down.
                for children in state.namespaces.values_mut() {
                    children.retain(|key, entry| {
                        key.kind != kind || entry.seen.as_ref().is_none_or(|seen| seen.epoch >= epoch)
                    });
                }
                state.namespaces.retain(|_, children| !children.is_empty());
                state.lists.insert(kind.to_string(), (epoch, true));
                let all_synced = state.lists.values().all(|(_, synced)| *synced);
                drop(state);
                if all_synced {
                    self.synced.send_replace(true);
                }
            }
        }
    }

    /// What can be concluded about a child, wanted with `body`, without reading it.
    pub fn knowledge(&self, namespace: &str, key: &ChildKey, body: u64) -> Knowledge {
        if !self.is_synced() {
            return Knowledge::Unknown;
        }
        let state = self.lock();
        let entry = state.namespaces.get(namespace).and_then(|children| children.get(key));
        match entry {
            None | Some(Entry { seen: None, recorded: None }) => Knowledge::Absent,
            Some(Entry { seen: Some(seen), recorded: Some(recorded) })
                if recorded.body == body && seen.fingerprint.unchanged_since(&recorded.fingerprint, &key.kind) =>
            {
                Knowledge::Unchanged
            }
            Some(Entry { seen: Some(_), .. }) => Knowledge::Exists,
            Some(Entry { seen: None, recorded: Some(_) }) => Knowledge::Written,
        }
    }

    /// Notes that the child is, as of `object` (as written or read), what the operator wants
    /// with `body`.
    pub fn record(&self, namespace: &str, key: ChildKey, body: u64, object: &DynamicObject) {
        let spec = spec_digest(&key.kind, &object.data);
        let recorded = Recorded { body, fingerprint: Fingerprint::of(&object.metadata, spec) };
        self.lock().namespaces.entry(namespace.to_string()).or_default().entry(key).or_default().recorded =
            Some(recorded);
    }

    /// Whether the child exists as far as this process knows: seen, or written and not seen
    /// deleted since.
    pub fn exists(&self, namespace: &str, key: &ChildKey) -> bool {
        self.lock()
            .namespaces
            .get(namespace)
            .and_then(|children| children.get(key))
            .is_some_and(|entry| entry.seen.is_some() || entry.recorded.is_some())
    }

    /// The child as last seen.
    pub fn seen(&self, namespace: &str, key: &ChildKey) -> Option<Seen> {
        self.lock().namespaces.get(namespace)?.get(key)?.seen.clone()
    }

    /// A workload's readiness as last seen, provided the watch has caught up with what this
    /// process last applied to it (an older report describes a spec that is no longer wanted).
    pub fn readiness(&self, namespace: &str, key: &ChildKey) -> Option<Readiness> {
        let state = self.lock();
        let entry = state.namespaces.get(namespace)?.get(key)?;
        let seen = entry.seen.as_ref()?;
        let current = entry.recorded.as_ref().is_none_or(|r| seen.fingerprint.generation >= r.fingerprint.generation);
        if current { seen.readiness.clone() } else { None }
    }

    /// The children seen in `namespace` that carry `tenant`'s label.
    pub fn tenant_children(&self, namespace: &str, tenant: &str) -> Vec<(ChildKey, Seen)> {
        let state = self.lock();
        let Some(children) = state.namespaces.get(namespace) else { return Vec::new() };
        children
            .iter()
            .filter_map(|(key, entry)| Some((key, entry.seen.as_ref()?)))
            .filter(|(_, seen)| seen.tenant.as_deref() == Some(tenant))
            .map(|(key, seen)| (key.clone(), seen.clone()))
            .collect()
    }

    /// Forgets what this process wrote in `namespace` (its Tenant is gone); what the watches
    /// report stays.
    pub fn forget_records(&self, namespace: &str) {
        let mut state = self.lock();
        if let Some(children) = state.namespaces.get_mut(namespace) {
            children.retain(|_, entry| {
                entry.recorded = None;
                entry.seen.is_some()
            });
            if children.is_empty() {
                state.namespaces.remove(namespace);
            }
        }
        if let Some(entry) =
            state.namespaces.get_mut("").and_then(|cluster| cluster.get_mut(&ChildKey::namespace(namespace)))
        {
            entry.recorded = None;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().namespaces.values().map(HashMap::len).sum()
    }
}

/// A Deployment or StatefulSet: ready when its controller has seen the current spec and every
/// wanted replica is ready.
pub fn workload_readiness(kind: &str, object: &DynamicObject) -> Readiness {
    let number = |value: &Value| value.as_i64().unwrap_or(0);
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let wanted = number(&object.data["spec"]["replicas"]);
    let status = &object.data["status"];
    let seen = number(&status["observedGeneration"]) >= object.metadata.generation.unwrap_or(0);
    let ready = number(&status["readyReplicas"]);
    let available = if kind == "Deployment" { number(&status["availableReplicas"]) } else { ready };
    if wanted == 0 {
        Readiness::Suspended
    } else if seen && ready >= wanted && available >= wanted {
        Readiness::Ready
    } else {
        Readiness::Waiting(format!("{name} {ready}/{wanted} ready"))
    }
}

/// A Job: ready once it has succeeded.
pub fn job_readiness(object: &DynamicObject) -> Readiness {
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let status = &object.data["status"];
    if status["succeeded"].as_i64().unwrap_or(0) > 0 {
        return Readiness::Ready;
    }
    let failed = status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Failed" && c["status"] == "True"));
    match failed {
        Some(condition) => Readiness::Waiting(format!(
            "job {name} failed: {}",
            condition["message"].as_str().or(condition["reason"].as_str()).unwrap_or("no reason given")
        )),
        None => Readiness::Waiting(format!("job {name} has not completed")),
    }
}

/// The readiness summary of a watched object of `kind`, for the kinds that have one.
pub fn summarize(kind: &str, object: &DynamicObject) -> Option<Readiness> {
    match kind {
        "Deployment" | "StatefulSet" => Some(workload_readiness(kind, object)),
        "Job" => Some(job_readiness(object)),
        _ => None,
    }
}

/// What a watch in full reports of an object of `kind`: readiness and spec digest, for the
/// kinds that have them.
pub fn describe(kind: &str, object: &DynamicObject) -> Details {
    Details { readiness: summarize(kind, object), spec: spec_digest(kind, &object.data) }
}

/// Whether the operator watches children of `kind` at all. Not Secrets: a watch (or list) of
/// Secrets cannot be narrowed by RBAC to the operator's own, and would let it read every Secret
/// of the cluster. Its Secrets are created once and never changed, so knowing that it created
/// (or found) them is enough; it reads and patches them by name only.
pub fn watched(kind: &str) -> bool {
    kind != "Secret"
}

/// Kinds watched in full (for their readiness or their spec's digest) rather than as metadata
/// only.
pub fn watched_in_full(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "Job") || SPEC_TRACKED.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ApiResource;
    use serde_json::json;

    fn object(kind: &str, name: &str, resource_version: &str, generation: i64, extra: Value) -> DynamicObject {
        let resource =
            ApiResource { kind: kind.into(), ..ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()) };
        let mut object = DynamicObject::new(name, &resource).within("tenant-a");
        object.metadata.resource_version = Some(resource_version.into());
        object.metadata.generation = Some(generation);
        object.metadata.labels = Some([(labels::TENANT.to_string(), "a".to_string())].into());
        object.data = extra;
        object
    }

    fn listed(cache: &ChildCache, kind: &str, objects: &[DynamicObject]) {
        cache.observe(kind, &watcher::Event::Init, |_: &DynamicObject| Details::default());
        for o in objects {
            cache.observe(kind, &watcher::Event::InitApply(o.clone()), |o| describe(kind, o));
        }
        cache.observe(kind, &watcher::Event::InitDone, |_: &DynamicObject| Details::default());
    }

    fn key(kind: &str, name: &str) -> ChildKey {
        ChildKey { kind: kind.into(), name: name.into() }
    }

    #[test]
    fn nothing_is_concluded_before_every_kind_is_listed() {
        let cache = ChildCache::new();
        cache.expect_kind("Deployment");
        cache.expect_kind("Service");
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "web"), 1), Knowledge::Unknown);
        listed(&cache, "Deployment", &[]);
        assert!(!cache.is_synced());
        listed(&cache, "Service", &[]);
        assert!(cache.is_synced());
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "web"), 1), Knowledge::Absent);
    }

    #[test]
    fn a_child_written_and_seen_again_is_unchanged_until_someone_else_writes() {
        let cache = ChildCache::new();
        cache.expect_kind("Service");
        listed(&cache, "Service", &[]);
        let written = object("Service", "web", "10", 0, json!({}));
        cache.record("tenant-a", key("Service", "web"), 7, &written);
        // Our write, not seen yet.
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "web"), 7), Knowledge::Written);
        assert!(cache.exists("tenant-a", &key("Service", "web")));
        cache.observe("Service", &watcher::Event::Apply(written.clone()), |_| Details::default());
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "web"), 7), Knowledge::Unchanged);
        // A different wanted body must be compared.
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "web"), 8), Knowledge::Exists);
        // Anyone else's write moves the resource version.
        let edited = object("Service", "web", "11", 0, json!({}));
        cache.observe("Service", &watcher::Event::Apply(edited.clone()), |_| Details::default());
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "web"), 7), Knowledge::Exists);
        // Deleted out of band: what we wrote is gone too.
        cache.observe("Service", &watcher::Event::Delete(edited), |_| Details::default());
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "web"), 7), Knowledge::Absent);
        assert!(!cache.exists("tenant-a", &key("Service", "web")));
    }

    #[test]
    fn status_updates_of_a_workload_are_not_drift_but_spec_and_label_edits_are() {
        let cache = ChildCache::new();
        cache.expect_kind("Deployment");
        let applied = object("Deployment", "erp", "10", 2, json!({"spec": {"replicas": 1}}));
        listed(&cache, "Deployment", std::slice::from_ref(&applied));
        cache.record("tenant-a", key("Deployment", "erp"), 7, &applied);
        let status_moved = object("Deployment", "erp", "12", 2, json!({"spec": {"replicas": 1}, "status": {}}));
        cache.observe("Deployment", &watcher::Event::Apply(status_moved), |o| describe("Deployment", o));
        assert_eq!(cache.knowledge("tenant-a", &key("Deployment", "erp"), 7), Knowledge::Unchanged);

        let spec_edited = object("Deployment", "erp", "13", 3, json!({"spec": {"replicas": 5}}));
        cache.observe("Deployment", &watcher::Event::Apply(spec_edited), |o| describe("Deployment", o));
        assert_eq!(cache.knowledge("tenant-a", &key("Deployment", "erp"), 7), Knowledge::Exists);

        let mut revised = object("Deployment", "erp", "14", 2, json!({"spec": {"replicas": 1}}));
        revised.metadata.annotations = Some([("deployment.kubernetes.io/revision".into(), "1".into())].into());
        cache.observe("Deployment", &watcher::Event::Apply(revised.clone()), |o| describe("Deployment", o));
        assert_eq!(cache.knowledge("tenant-a", &key("Deployment", "erp"), 7), Knowledge::Unchanged);

        let mut relabelled = revised.clone();
        relabelled.metadata.labels.as_mut().unwrap().insert("app".into(), "other".into());
        cache.observe("Deployment", &watcher::Event::Apply(relabelled), |o| describe("Deployment", o));
        assert_eq!(cache.knowledge("tenant-a", &key("Deployment", "erp"), 7), Knowledge::Exists);

        let mut annotated = revised;
        annotated.metadata.annotations.as_mut().unwrap().insert("note".into(), "x".into());
        cache.observe("Deployment", &watcher::Event::Apply(annotated), |o| describe("Deployment", o));
        assert_eq!(cache.knowledge("tenant-a", &key("Deployment", "erp"), 7), Knowledge::Exists);
    }

    #[test]
    fn a_quota_or_claim_whose_status_moves_is_unchanged_until_its_spec_or_metadata_is_edited() {
        let cache = ChildCache::new();
        cache.expect_kind("ResourceQuota");
        cache.expect_kind("PersistentVolumeClaim");
        let hard = json!({"spec": {"hard": {"limits.cpu": "8", "pods": "30"}}});
        let quota = object("ResourceQuota", "quota", "10", 0, hard.clone());
        listed(&cache, "ResourceQuota", std::slice::from_ref(&quota));
        let claim_spec =
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}});
        let claim = object("PersistentVolumeClaim", "data", "20", 0, claim_spec.clone());
        listed(&cache, "PersistentVolumeClaim", std::slice::from_ref(&claim));
        cache.record("tenant-a", key("ResourceQuota", "quota"), 7, &quota);
        cache.record("tenant-a", key("PersistentVolumeClaim", "data"), 8, &claim);
        let seen = |kind: &str, object: DynamicObject| {
            cache.observe(kind, &watcher::Event::Apply(object), |o| describe(kind, o));
        };

        // The quota's usage moves with every pod: no generation, a new version each time.
        let mut used = hard.clone();
        used["status"] = json!({"used": {"limits.cpu": "2", "pods": "3"}});
        seen("ResourceQuota", object("ResourceQuota", "quota", "11", 0, used.clone()));
        assert_eq!(cache.knowledge("tenant-a", &key("ResourceQuota", "quota"), 7), Knowledge::Unchanged);
        // Bound: the binder sets the volume's name, its annotations and the status.
        let mut bound = claim_spec.clone();
        bound["spec"]["volumeName"] = json!("pv-1");
        bound["status"] = json!({"phase": "Bound"});
        let mut bound = object("PersistentVolumeClaim", "data", "21", 0, bound);
        bound.metadata.annotations = Some([("pv.kubernetes.io/bind-completed".into(), "yes".into())].into());
        seen("PersistentVolumeClaim", bound.clone());
        assert_eq!(cache.knowledge("tenant-a", &key("PersistentVolumeClaim", "data"), 8), Knowledge::Unchanged);

        // Edits of the spec or of our metadata are drift.
        let mut edited = used;
        edited["spec"]["hard"]["pods"] = json!("100");
        seen("ResourceQuota", object("ResourceQuota", "quota", "12", 0, edited));
        assert_eq!(cache.knowledge("tenant-a", &key("ResourceQuota", "quota"), 7), Knowledge::Exists);
        bound.metadata.resource_version = Some("22".into());
        bound.metadata.labels.as_mut().unwrap().insert("app".into(), "other".into());
        seen("PersistentVolumeClaim", bound);
        assert_eq!(cache.knowledge("tenant-a", &key("PersistentVolumeClaim", "data"), 8), Knowledge::Exists);
    }

    #[test]
    fn a_relist_forgets_what_was_deleted_while_the_watch_was_down() {
        let cache = ChildCache::new();
        cache.expect_kind("Service");
        listed(
            &cache,
            "Service",
            &[object("Service", "web", "1", 0, json!({})), object("Service", "erp", "2", 0, json!({}))],
        );
        assert_eq!(cache.tenant_children("tenant-a", "a").len(), 2);
        listed(&cache, "Service", &[object("Service", "erp", "2", 0, json!({}))]);
        let left: Vec<String> = cache.tenant_children("tenant-a", "a").into_iter().map(|(k, _)| k.name).collect();
        assert_eq!(left, ["erp"]);
        assert!(cache.tenant_children("tenant-b", "a").is_empty());
    }

    #[test]
    fn readiness_older_than_our_last_write_is_not_used() {
        let cache = ChildCache::new();
        cache.expect_kind("Deployment");
        let ready = json!({"spec": {"replicas": 1}, "status": {"observedGeneration": 1, "readyReplicas": 1, "availableReplicas": 1}});
        listed(&cache, "Deployment", &[object("Deployment", "erp", "5", 1, ready)]);
        assert_eq!(cache.readiness("tenant-a", &key("Deployment", "erp")), Some(Readiness::Ready));
        cache.record("tenant-a", key("Deployment", "erp"), 7, &object("Deployment", "erp", "6", 2, json!({})));
        assert_eq!(cache.readiness("tenant-a", &key("Deployment", "erp")), None);
    }

    #[test]
    fn forgetting_a_tenant_keeps_what_the_watches_report() {
        let cache = ChildCache::new();
        cache.expect_kind("Service");
        let service = object("Service", "web", "1", 0, json!({}));
        listed(&cache, "Service", std::slice::from_ref(&service));
        cache.record("tenant-a", key("Service", "web"), 7, &service);
        cache.record("tenant-a", key("Service", "gone"), 7, &service);
        cache.forget_records("tenant-a");
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "web"), 7), Knowledge::Exists);
        assert_eq!(cache.knowledge("tenant-a", &key("Service", "gone"), 7), Knowledge::Absent);
    }

    #[test]
    fn workload_and_job_readiness() {
        let deployment = |status: Value, replicas: i64| {
            object("Deployment", "erp", "1", 2, json!({"spec": {"replicas": replicas}, "status": status}))
        };
        let ready = json!({"observedGeneration": 2, "readyReplicas": 1, "availableReplicas": 1});
        assert_eq!(workload_readiness("Deployment", &deployment(ready.clone(), 1)), Readiness::Ready);
        let stale = json!({"observedGeneration": 1, "readyReplicas": 1, "availableReplicas": 1});
        assert!(matches!(workload_readiness("Deployment", &deployment(stale, 1)), Readiness::Waiting(_)));
        assert_eq!(workload_readiness("Deployment", &deployment(ready, 0)), Readiness::Suspended);
        let unavailable = json!({"observedGeneration": 2, "readyReplicas": 1});
        assert!(matches!(workload_readiness("Deployment", &deployment(unavailable.clone(), 1)), Readiness::Waiting(_)));
        assert_eq!(workload_readiness("StatefulSet", &deployment(unavailable, 1)), Readiness::Ready);

        let job = |status: Value| object("Job", "init", "1", 1, json!({"status": status}));
        assert_eq!(job_readiness(&job(json!({"succeeded": 1}))), Readiness::Ready);
        let failed =
            job(json!({"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}));
        assert_eq!(job_readiness(&failed), Readiness::Waiting("job init failed: BackoffLimitExceeded".into()));
        assert_eq!(job_readiness(&job(json!({}))), Readiness::Waiting("job init has not completed".into()));
    }
}
