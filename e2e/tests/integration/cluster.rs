//! Smoke tests of the local Kubernetes control plane: each proves that one real part (the
//! controller-manager's controllers, the scheduler, the apiserver's server-side apply) works
//! together with the simulated kubelet. Each test has a namespace of its own.

use std::collections::BTreeMap;

use e2e::TestEnv;
use e2e::kubelet::FAIL_ANNOTATION;
use e2e::wait::{DEFAULT_TIMEOUT, until, until_deleted};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::conditions;
use kube::{Client, ResourceExt};
use serde_json::json;

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(name)},
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }))
    .unwrap()
}

fn job(name: &str, fail: bool) -> Job {
    let annotations =
        if fail { BTreeMap::from([(FAIL_ANNOTATION.to_string(), "true".to_string())]) } else { BTreeMap::new() };
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "task", "image": "registry.invalid/task:1"}],
                },
            },
        },
    }))
    .unwrap()
}

async fn setup(prefix: &str) -> (Client, String) {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let namespace = env.namespace(&client, prefix).await;
    (client, namespace)
}

#[tokio::test]
async fn deployment_becomes_available() {
    let (client, ns) = setup("deploy").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment("web", 2)).await.unwrap();

    let available = until(&deployments, "web", "2/2 available", DEFAULT_TIMEOUT, |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.available_replicas == Some(2) && s.ready_replicas == Some(2))
    })
    .await;
    assert_eq!(available.status.unwrap().replicas, Some(2));

    // The pods were placed by the scheduler on simulated nodes and reported Running.
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pods = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(pods.items.len(), 2);
    for pod in pods.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).expect("scheduled");
        assert!(node.starts_with("sim-node-"), "{node}");
        let status = pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_some());
    }
}

#[tokio::test]
async fn job_success_and_failure() {
    let (client, ns) = setup("jobs").await;
    let jobs: Api<Job> = Api::namespaced(client, &ns);
    jobs.create(&PostParams::default(), &job("succeeds", false)).await.unwrap();
    jobs.create(&PostParams::default(), &job("fails", true)).await.unwrap();

    let done = until(&jobs, "succeeds", "Complete", DEFAULT_TIMEOUT, conditions::is_job_completed()).await;
    let status = done.status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert!(status.conditions.unwrap().iter().any(|c| c.type_ == "Complete" && c.status == "True"));

    let is_failed = |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
    };
    let failed = until(&jobs, "fails", "Failed", DEFAULT_TIMEOUT, is_failed).await;
    let status = failed.status.unwrap();
    assert_eq!(status.failed, Some(1));
    assert_eq!(status.succeeded.unwrap_or(0), 0);
    let reason = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Failed").unwrap().reason;
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
}

#[tokio::test]
async fn statefulset_binds_its_volume_and_becomes_ready() {
    let (client, ns) = setup("sts").await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": labels("db")},
            "template": {
                "metadata": {"labels": labels("db")},
                "spec": {"containers": [{"name": "postgres", "image": "registry.invalid/postgres:15"}]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
            }],
        },
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();
    until(&sets, "db", "1 ready replica", DEFAULT_TIMEOUT, |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref()).is_some_and(|s| s.ready_replicas == Some(1))
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, &ns);
    let claim = claims.get("data-db-0").await.unwrap();
    let status = claim.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Bound"));
    assert_eq!(status.capacity.unwrap()["storage"].0, "2Gi");
}

#[tokio::test]
async fn namespace_deletion_is_finalized() {
    let (client, ns) = setup("nsdel").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment("web", 2)).await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let config_map: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"k": "v"}})).unwrap();
    config_maps.create(&PostParams::default(), &config_map).await.unwrap();
    // Running pods make it a real test: each needs its (simulated) kubelet to confirm deletion.
    until(&deployments, "web", "2/2 available", DEFAULT_TIMEOUT, |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).is_some_and(|s| s.available_replicas == Some(2))
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    until_deleted(&namespaces, &ns, DEFAULT_TIMEOUT).await;

    let pods: Api<Pod> = Api::namespaced(client, &ns);
    assert!(pods.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn crd_server_side_apply() {
    let (client, ns) = setup("crd").await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.smoke.tenantry.dev"},
        "spec": {
            "group": "smoke.tenantry.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "minimum": 0},
                            "color": {"type": "string"},
                        }},
                        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                    },
                }},
            }],
        },
    }))
    .unwrap();
    // Applying the CRD is idempotent, so a re-run against a kept cluster passes too.
    let apply = PatchParams::apply("tenantry-smoke").force();
    crds.patch("widgets.smoke.tenantry.dev", &apply, &Patch::Apply(&crd)).await.unwrap();
    until(&crds, "widgets.smoke.tenantry.dev", "Established", DEFAULT_TIMEOUT, conditions::is_crd_established()).await;

    let gvk = GroupVersionKind::gvk("smoke.tenantry.dev", "v1", "Widget");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &ns, &resource);
    let widget = |size: i64| {
        json!({"apiVersion": "smoke.tenantry.dev/v1", "kind": "Widget", "metadata": {"name": "w"},
               "spec": {"size": size, "color": "blue"}})
    };
    let apply = PatchParams::apply("tenantry-smoke");
    let created = widgets.patch("w", &apply, &Patch::Apply(&widget(1))).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 1);
    let managers: Vec<String> = created.managed_fields().iter().filter_map(|m| m.manager.clone()).collect();
    assert_eq!(managers, ["tenantry-smoke"]);

    let changed = widgets.patch("w", &apply, &Patch::Apply(&widget(3))).await.unwrap();
    assert_eq!(changed.data["spec"]["size"], 3);
    assert!(changed.resource_version() != created.resource_version());
    // The schema is enforced by the real apiserver.
    let invalid = widgets.patch("w", &apply, &Patch::Apply(&widget(-1))).await.unwrap_err();
    assert!(matches!(invalid, kube::Error::Api(ref s) if s.code == 422), "{invalid:?}");

    let status = json!({"apiVersion": "smoke.tenantry.dev/v1", "kind": "Widget", "status": {"phase": "Ready"}});
    let with_status =
        widgets.patch_status("w", &PatchParams::apply("tenantry-smoke-status"), &Patch::Apply(&status)).await.unwrap();
    assert_eq!(with_status.data["status"]["phase"], "Ready");
    // The status subresource is separate: a status patch leaves the spec alone, and a spec
    // apply leaves the status alone.
    assert_eq!(with_status.data["spec"]["size"], 3);
    let reapplied = widgets.patch("w", &apply, &Patch::Apply(&widget(4))).await.unwrap();
    assert_eq!(reapplied.data["status"]["phase"], "Ready");
    assert_eq!(reapplied.data["spec"]["size"], 4);
}
