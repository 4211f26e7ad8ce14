//! The operator against the real local control plane (kube-apiserver, controller-manager,
//! scheduler; simulated kubelet). Each test runs its own operator for its own Tenants.

use crate::common;

use std::collections::BTreeMap;

use common::{Operator, TIMEOUT, spec, start, start_with};
use e2e::wait::{until, until_deleted};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tenant_operator::api::{Phase, Tenant, labels, namespace_of};

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), namespace)
}

async fn names<K>(client: &Client, namespace: &str) -> Vec<String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut names: Vec<String> = api::<K>(client, namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    names.sort();
    names
}

fn condition(tenant: &Tenant, type_: &str) -> (String, String) {
    let c = tenant.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.message.clone())
}

/// Resource versions of every child, to prove nothing was written.
async fn versions(client: &Client, namespace: &str) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    macro_rules! collect {
        ($($kind:ty),*) => {$(
            for o in api::<$kind>(client, namespace).list(&ListParams::default()).await.unwrap().items {
                all.insert(format!("{}/{}", stringify!($kind), o.name_any()), o.resource_version().unwrap());
            }
        )*};
    }
    collect!(Deployment, StatefulSet, Service, ConfigMap, Secret, NetworkPolicy, Ingress, Job, ServiceAccount);
    collect!(ResourceQuota, LimitRange, PersistentVolumeClaim);
    all
}

async fn ready_tenant(operator: &Operator, prefix: &str, with_test: bool) -> (String, String) {
    let name = operator.name(prefix);
    operator.create(&name, spec(with_test)).await;
    operator.wait_phase(&name, Phase::Ready).await;
    let namespace = namespace_of(&name);
    (name, namespace)
}

#[tokio::test]
async fn tenant_reaches_ready() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "ready", true).await;
    let client = &operator.client;
    let tenant = operator.tenants().get(&name).await.unwrap();
    let status = tenant.status.clone().unwrap();
    assert_eq!(status.url, Some(format!("https://{}", common::host_of(&name))));
    for type_ in ["Ready", "Valid", "DatabaseReady", "ServerReady", "WebReady"] {
        assert_eq!(condition(&tenant, type_).0, "True", "{type_}: {:?}", condition(&tenant, type_));
    }
    let environments: Vec<(&str, &str, bool)> =
        status.environments.iter().map(|e| (e.name.as_str(), e.version.as_str(), e.ready)).collect();
    assert_eq!(environments, [("production", "7.0.59", true), ("test", "7.2.3", true)]);

    // The phase gauge follows (it is recounted every 2 s).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !operator.metrics.encode().contains("tenantry_operator_tenants{phase=\"Ready\"} 1\n") {
        assert!(tokio::time::Instant::now() < deadline, "no Ready tenant in\n{}", operator.metrics.encode());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let namespace = Api::<Namespace>::all(client.clone()).get(&ns).await.unwrap();
    assert_eq!(namespace.labels()[labels::TENANT], name);
    assert_eq!(namespace.owner_references()[0].uid, tenant.uid().unwrap());

    assert_eq!(names::<ResourceQuota>(client, &ns).await, ["tenant-quota"]);
    assert_eq!(names::<LimitRange>(client, &ns).await, ["tenant-limits"]);
    assert!(names::<ServiceAccount>(client, &ns).await.contains(&"tenant-erp".to_string()));
    assert!(names::<NetworkPolicy>(client, &ns).await.contains(&"default-deny".to_string()));
    assert_eq!(names::<Secret>(client, &ns).await, ["backup-key", "erp-master-password", "postgres-credentials"]);
    assert_eq!(names::<StatefulSet>(client, &ns).await, ["postgres"]);
    assert_eq!(
        names::<Deployment>(client, &ns).await,
        ["erp-server-production", "erp-server-test", "erp-web-production", "erp-web-test"]
    );
    assert_eq!(
        names::<Service>(client, &ns).await,
        ["erp-server-production", "erp-server-test", "erp-web-production", "erp-web-test", "postgres"]
    );
    assert_eq!(names::<Ingress>(client, &ns).await, ["erp-production", "erp-test"]);
    let claims = names::<PersistentVolumeClaim>(client, &ns).await;
    assert_eq!(claims, ["data-postgres-0", "filestore-production", "filestore-test"]);
    let jobs = names::<Job>(client, &ns).await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    assert!(jobs.iter().any(|j| j.starts_with("db-init-")));
    assert!(jobs.iter().any(|j| j.starts_with("erp-init-production-")));
    assert!(jobs.iter().any(|j| j.starts_with("erp-init-test-")));

    // The test environment runs its own version.
    let test_server = api::<Deployment>(client, &ns).get("erp-server-test").await.unwrap();
    let image = test_server.spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap();
    assert_eq!(image, "tryton/tryton:7.2");
    // Every child carries the tenant's labels and owner reference.
    for deployment in api::<Deployment>(client, &ns).list(&ListParams::default()).await.unwrap() {
        assert_eq!(deployment.labels()[labels::MANAGED_BY], labels::MANAGER);
        assert_eq!(deployment.owner_references()[0].uid, tenant.uid().unwrap());
    }
    // Becoming Ready was announced as an Event on the Tenant; starting to provision, which the
    // creation itself says, was not.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let selector = format!("involvedObject.kind=Tenant,involvedObject.name={name}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        let reasons: Vec<String> = events
            .list(&ListParams::default().fields(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        if reasons.iter().any(|r| r == "Ready") {
            assert!(!reasons.iter().any(|r| r == "Provisioning"), "{reasons:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no Ready event: {reasons:?}");
        tick.tick().await;
    }

    // Nothing secret reached the Tenant or the configuration.
    let secret = api::<Secret>(client, &ns).get("postgres-credentials").await.unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    assert!(password.len() >= 32);
    assert!(!serde_json::to_string(&tenant).unwrap().contains(&password));
    for config in api::<ConfigMap>(client, &ns).list(&ListParams::default()).await.unwrap() {
        assert!(!serde_json::to_string(&config.data).unwrap().contains(&password), "{}", config.name_any());
    }
    operator.stop().await;
}

#[tokio::test]
async fn drift_is_corrected() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "drift", false).await;
    let client = &operator.client;
    let services = api::<Service>(client, &ns);
    let deleted_uid = services.get("erp-server-production").await.unwrap().uid();
    services.delete("erp-server-production", &DeleteParams::default()).await.unwrap();
    let deployments = api::<Deployment>(client, &ns);
    deployments
        .patch("erp-web-production", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 5}})))
        .await
        .unwrap();

    until(&services, "erp-server-production", "recreated", TIMEOUT, move |s: Option<&Service>| {
        s.is_some_and(|s| s.uid() != deleted_uid)
    })
    .await;
    until(&deployments, "erp-web-production", "replicas back to 1", TIMEOUT, |d: Option<&Deployment>| {
        d.and_then(|d| d.spec.as_ref()).is_some_and(|s| s.replicas == Some(1))
    })
    .await;

    // Edits that leave a workload's generation alone, and a kind whose status moves on its own.
    let label = json!({"metadata": {"labels": {labels::TENANT: "someone-else"}}});
    deployments.patch("erp-server-production", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    let quotas = api::<ResourceQuota>(client, &ns);
    let quota = json!({"spec": {"hard": {"pods": "1000"}}});
    quotas.patch("tenant-quota", &PatchParams::default(), &Patch::Merge(&quota)).await.unwrap();
    until(&deployments, "erp-server-production", "label restored", TIMEOUT, move |d: Option<&Deployment>| {
        d.is_some_and(|d| d.labels().get(labels::TENANT) == Some(&name))
    })
    .await;
    until(&quotas, "tenant-quota", "quota restored", TIMEOUT, |q: Option<&ResourceQuota>| {
        let pods = q.and_then(|q| q.spec.as_ref()?.hard.as_ref()?.get("pods").cloned());
        pods.is_some_and(|p| p.0 == "30")
    })
    .await;
    operator.stop().await;
}

/// An out-of-band edit of a plain string to another spelling of the same number (an
/// environment variable, an argument) is drift and is put back; a resource quantity the
/// apiserver stores in another form than the spec wrote (`2048Mi` as `2Gi`) is not drift.
#[tokio::test]
async fn drift_in_a_plain_string_is_seen() {
    let operator = start().await;
    let name = operator.name("plain");
    let mut tenant = spec(false);
    tenant.erp.profile = "custom".into();
    tenant.erp.custom = Some(
        serde_json::from_value(json!({
            "server": {"image": "registry.example.com/erp-server", "args": ["--workers", "10"], "port": 8000,
                       "readinessPath": "/healthz"},
            "web": {"image": "registry.example.com/erp-web", "port": 8080, "readinessPath": "/"},
            "updateAllCommand": ["erp-admin", "--database", "{database}", "--update-all"],
        }))
        .unwrap(),
    );
    tenant.resources.server.memory_limit = Some("2048Mi".into());
    operator.create(&name, tenant).await;
    operator.wait_phase(&name, Phase::Ready).await;
    let ns = namespace_of(&name);
    let deployments = api::<Deployment>(&operator.client, &ns);
    let server = "erp-server-production";
    let container = |d: &Deployment| d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].clone();
    let port = |d: &Deployment| {
        container(d).env.unwrap_or_default().into_iter().find(|e| e.name == "PGPORT").and_then(|e| e.value)
    };
    let stored = deployments.get(server).await.unwrap();
    assert_eq!(container(&stored).resources.unwrap().limits.unwrap()["memory"].0, "2Gi");
    assert_eq!(container(&stored).args.unwrap(), ["--workers", "10"]);
    assert_eq!(port(&stored).as_deref(), Some("5432"));

    // An unrelated annotation makes the operator read the Deployment and compare it with what it
    // wants (memory `2048Mi`): the same amount, so it does not write the Deployment.
    operator.poke(&name, "settled").await;
    let deployment_writes = || {
        ["apply", "patch"]
            .map(|verb| {
                operator.metric(&format!("tenantry_operator_api_writes_total{{kind=\"Deployment\",verb=\"{verb}\"}}"))
            })
            .iter()
            .sum::<f64>()
    };
    let before_writes = deployment_writes();
    let reconciles = operator.metric("tenantry_operator_reconciles_total");
    let touch = json!({"metadata": {"annotations": {"test.tenantry.dev/touched": "yes"}}});
    deployments.patch(server, &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while operator.metric("tenantry_operator_reconciles_total") <= reconciles {
        assert!(tokio::time::Instant::now() < deadline, "the edit of the Deployment woke no reconcile");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    operator.poke(&name, "touched").await;
    assert_eq!(deployment_writes(), before_writes, "an equal quantity in another form counted as drift");

    // The port and the worker count edited to `5.432e3` and `1e1`: the same as quantities, but
    // different strings, so both are put back.
    let env = container(&stored).env.unwrap();
    let index = env.iter().position(|e| e.name == "PGPORT").unwrap();
    let edit: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": format!("/spec/template/spec/containers/0/env/{index}/value"), "value": "5.432e3"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/args/1", "value": "1e1"},
    ]))
    .unwrap();
    deployments.patch(server, &PatchParams::default(), &Patch::<()>::Json(edit)).await.unwrap();
    until(&deployments, server, "port and workers put back", TIMEOUT, move |d: Option<&Deployment>| {
        d.is_some_and(|d| port(d).as_deref() == Some("5432") && container(d).args.unwrap() == ["--workers", "10"])
    })
    .await;
    operator.stop().await;
}

/// Children are created with a plain POST; a later change must still remove what the spec no
/// longer asks for, field by field (not only set what it does ask for).
#[tokio::test]
async fn fields_no_longer_wanted_are_removed() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "fields", false).await;
    let client = &operator.client;
    let ingresses = api::<Ingress>(client, &ns);
    let issuer = "cert-manager.io/cluster-issuer";
    assert_eq!(ingresses.get("erp-production").await.unwrap().annotations().get(issuer).unwrap(), "letsencrypt");

    operator
        .patch_spec(
            &name,
            json!({"ingress": {"tlsIssuer": null, "tlsSecretName": "acme-certificate"},
                   "resources": {"quota": {"pods": null}}}),
        )
        .await;
    operator.wait_phase(&name, Phase::Ready).await;
    until(&ingresses, "erp-production", "issuer annotation removed", TIMEOUT, |i: Option<&Ingress>| {
        i.is_some_and(|i| !i.annotations().contains_key(issuer))
    })
    .await;
    let ingress = ingresses.get("erp-production").await.unwrap();
    let tls = ingress.spec.unwrap().tls.unwrap();
    assert_eq!(tls[0].secret_name.as_deref(), Some("acme-certificate"));
    let quota = api::<ResourceQuota>(client, &ns).get("tenant-quota").await.unwrap();
    let hard = quota.spec.unwrap().hard.unwrap();
    assert!(!hard.contains_key("pods"), "{hard:?}");
    assert!(hard.contains_key("limits.cpu"), "{hard:?}");
    operator.stop().await;
}

#[tokio::test]
async fn test_environment_removed_is_cleaned_up() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "cleanup", true).await;
    let client = &operator.client;
    operator.patch_spec(&name, json!({"environments": {"test": null}})).await;
    operator.wait_phase(&name, Phase::Ready).await;

    for (kind, gone) in [
        ("Deployment", vec!["erp-server-test", "erp-web-test"]),
        ("Service", vec!["erp-server-test", "erp-web-test"]),
        ("Ingress", vec!["erp-test"]),
        ("PersistentVolumeClaim", vec!["filestore-test"]),
    ] {
        for object in gone {
            match kind {
                "Deployment" => until_deleted(&api::<Deployment>(client, &ns), object, TIMEOUT).await,
                "Service" => until_deleted(&api::<Service>(client, &ns), object, TIMEOUT).await,
                "Ingress" => until_deleted(&api::<Ingress>(client, &ns), object, TIMEOUT).await,
                _ => until_deleted(&api::<PersistentVolumeClaim>(client, &ns), object, TIMEOUT).await,
            }
        }
    }
    let remaining = |names: Vec<String>| names.into_iter().filter(|n| n.contains("test")).collect::<Vec<_>>();
    assert!(remaining(names::<ConfigMap>(client, &ns).await).is_empty());
    assert!(remaining(names::<Job>(client, &ns).await).is_empty());
    assert_eq!(names::<Deployment>(client, &ns).await, ["erp-server-production", "erp-web-production"]);
    let tenant = operator.tenants().get(&name).await.unwrap();
    assert_eq!(tenant.status.unwrap().environments.len(), 1);
    operator.stop().await;
}

#[tokio::test]
async fn invalid_spec_applies_nothing() {
    let operator = start().await;
    let client = &operator.client;

    // A new Tenant with a bad spec: reported, and nothing is created.
    let name = operator.name("invalid");
    let mut bad = spec(false);
    bad.erp.version = "7.x".into();
    bad.ingress.as_mut().unwrap().host = "not a host".into();
    bad.resources.database_storage = Some("-1Gi".into());
    operator.create(&name, bad).await;
    let tenant = operator.wait_phase(&name, Phase::Invalid).await;
    let (valid, message) = condition(&tenant, "Valid");
    assert_eq!(valid, "False");
    assert!(message.contains("spec.erp.version: version `7.x` is not of the form A.B.C"), "{message}");
    assert!(message.contains("spec.resources.databaseStorage must not be negative (got -1Gi)"), "{message}");
    assert!(message.contains("spec.ingress.host: `not a host` is not a DNS name"), "{message}");
    assert!(Api::<Namespace>::all(client.clone()).get_opt(&namespace_of(&name)).await.unwrap().is_none());

    // A Ready Tenant whose spec turns invalid: reported, and nothing is changed.
    let (name, ns) = ready_tenant(&operator, "turns-invalid", false).await;
    let before = versions(client, &ns).await;
    operator.patch_spec(&name, json!({"erp": {"profile": "sap"}, "suspended": true})).await;
    let tenant = operator.wait_phase(&name, Phase::Invalid).await;
    assert!(condition(&tenant, "Valid").1.contains("spec.erp.profile `sap` is unknown"));
    assert_eq!(versions(client, &ns).await, before, "an invalid spec changed children");
    operator.stop().await;
}

#[tokio::test]
async fn development_version_refused_in_production() {
    let operator = start().await;
    let name = operator.name("devprod");
    let mut dev = spec(false);
    dev.erp.version = "7.1.0".into();
    operator.create(&name, dev).await;
    let tenant = operator.wait_phase(&name, Phase::Invalid).await;
    assert_eq!(
        condition(&tenant, "Valid").1,
        "spec.erp.version: 7.1.0 is a development release (odd minor version 1) and is never allowed in production; \
         run it in the test environment"
    );
    assert!(Api::<Namespace>::all(operator.client.clone()).get_opt(&namespace_of(&name)).await.unwrap().is_none());

    // The same development version is accepted for the test environment.
    let name = operator.name("devtest");
    let mut dev_in_test = spec(true);
    dev_in_test.environments.test.as_mut().unwrap().version = Some("7.1.0".into());
    operator.create(&name, dev_in_test).await;
    let tenant = operator.wait_phase(&name, Phase::Ready).await;
    assert_eq!(tenant.status.unwrap().environments[1].version, "7.1.0");
    operator.stop().await;
}

#[tokio::test]
async fn colliding_host_is_refused() {
    let operator = start().await;
    let (holder, _) = ready_tenant(&operator, "holder", true).await;
    let holder_host = common::host_of(&holder);
    // The test environment's host of the holder, given by hand to another Tenant as its
    // production host, and the holder's own production host given to a third.
    let test_host = tenant_operator::api::test_host(&holder_host);
    assert_eq!(test_host, format!("{holder}.test.example.com"));
    for (prefix, host, expected) in [
        (
            "taker-test",
            test_host.clone(),
            format!(
                "spec.ingress.host: `{test_host}` has `test` as its second label, which is reserved for test environments"
            ),
        ),
        (
            "taker-prod",
            holder_host.clone(),
            format!(
                "spec.ingress.host: the production environment's host {holder_host} is already used by another tenant"
            ),
        ),
    ] {
        let name = operator.name(prefix);
        let mut taker = spec(false);
        taker.ingress.as_mut().unwrap().host = host;
        operator.create(&name, taker).await;
        let tenant = operator.wait_phase(&name, Phase::Invalid).await;
        let message = condition(&tenant, "Valid").1;
        assert_eq!(message, expected);
        assert!(!message.contains(&format!("{holder} ")), "the holder is not named: {message}");
        assert!(Api::<Namespace>::all(operator.client.clone()).get_opt(&namespace_of(&name)).await.unwrap().is_none());
    }
    // The holder kept both its hosts and is still Ready.
    let client = &operator.client;
    let holder_ns = namespace_of(&holder);
    let hosts: Vec<String> = api::<Ingress>(client, &holder_ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|ingress| ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0].host.clone().unwrap())
        .collect();
    assert_eq!(hosts, [holder_host.clone(), test_host]);
    assert_eq!(operator.tenants().get(&holder).await.unwrap().status.unwrap().phase, Some(Phase::Ready));
    operator.stop().await;
}

#[tokio::test]
async fn a_running_tenant_whose_quota_is_too_small_is_still_reconciled() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "small-quota", false).await;
    let tenant = operator.tenants().get(&name).await.unwrap();
    assert_eq!(condition(&tenant, "QuotaFits").0, "True");

    // As a plan version from before the quota check would have it.
    operator.patch_spec(&name, json!({"resources": {"quota": {"cpu": "1"}}})).await;
    let client = &operator.client;
    until(&operator.tenants(), &name, "QuotaFits False", TIMEOUT, |t: Option<&Tenant>| {
        t.and_then(|t| t.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "QuotaFits" && c.status == "False"))
    })
    .await;
    let tenant = operator.tenants().get(&name).await.unwrap();
    assert_eq!(tenant.status.as_ref().unwrap().phase, Some(Phase::Ready), "still reconciled, not Invalid");
    assert!(
        condition(&tenant, "QuotaFits").1.starts_with("spec.resources.quota.cpu: "),
        "{:?}",
        condition(&tenant, "QuotaFits")
    );
    // Still reconciled: a deleted child comes back.
    api::<Service>(client, &ns).delete("erp-web-production", &DeleteParams::default()).await.unwrap();
    until(&api::<Service>(client, &ns), "erp-web-production", "recreated", TIMEOUT, |s: Option<&Service>| s.is_some())
        .await;

    // A new Tenant with that quota never starts: Invalid.
    let fresh = operator.name("small-new");
    let mut small = spec(false);
    small.resources.quota.cpu = Some("1".into());
    operator.create(&fresh, small).await;
    let tenant = operator.wait_phase(&fresh, Phase::Invalid).await;
    assert!(
        condition(&tenant, "Valid").1.starts_with("spec.resources.quota.cpu: "),
        "{:?}",
        condition(&tenant, "Valid")
    );
    operator.stop().await;
}

#[tokio::test]
async fn lower_production_version_is_refused() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "downgrade", false).await;
    operator.patch_spec(&name, json!({"erp": {"version": "7.2.1"}})).await;
    let tenant = operator.wait_phase(&name, Phase::Ready).await;
    assert_eq!(tenant.status.unwrap().environments[0].version, "7.2.1");
    // The server's spec as the operator last wrote it (its status keeps changing while the
    // rollout finishes, so resource versions would not do).
    let server = || async {
        let deployment = api::<Deployment>(&operator.client, &ns).get("erp-server-production").await.unwrap();
        (deployment.metadata.generation, serde_json::to_value(&deployment.spec).unwrap())
    };
    let before = server().await;

    operator.patch_spec(&name, json!({"erp": {"version": "7.0.59"}})).await;
    let tenant = operator.wait_phase(&name, Phase::Invalid).await;
    assert_eq!(
        condition(&tenant, "Valid").1,
        "spec.erp.version: 7.0.59 is older than 7.2.1, which production runs; an older ERP on a database that a \
         newer one has migrated would corrupt it, so production versions only go up"
    );
    // Production keeps running the newer version, untouched.
    assert_eq!(tenant.status.unwrap().environments[0].version, "7.2.1");
    assert_eq!(server().await, before);

    // Going forward again is fine.
    operator.patch_spec(&name, json!({"erp": {"version": "7.2.1"}})).await;
    operator.wait_phase(&name, Phase::Ready).await;
    operator.stop().await;
}

#[tokio::test]
async fn suspend_and_resume() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "suspend", true).await;
    let client = &operator.client;
    let replicas = || async {
        let mut all: Vec<(String, i32)> = api::<Deployment>(client, &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|d| (d.name_any(), d.spec.unwrap().replicas.unwrap()))
            .collect();
        let set = api::<StatefulSet>(client, &ns).get("postgres").await.unwrap();
        all.push(("postgres".into(), set.spec.unwrap().replicas.unwrap()));
        all
    };
    let claims_before = names::<PersistentVolumeClaim>(client, &ns).await;

    operator.patch_spec(&name, json!({"suspended": true})).await;
    operator.wait_phase(&name, Phase::Suspended).await;
    assert!(replicas().await.iter().all(|(_, n)| *n == 0), "{:?}", replicas().await);
    // Nothing is running, and no data is gone.
    until(&api::<StatefulSet>(client, &ns), "postgres", "no ready replica", TIMEOUT, |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref()).is_some_and(|s| s.ready_replicas.unwrap_or(0) == 0)
    })
    .await;
    assert_eq!(names::<PersistentVolumeClaim>(client, &ns).await, claims_before);
    assert_eq!(names::<Secret>(client, &ns).await.len(), 3);

    operator.patch_spec(&name, json!({"suspended": false})).await;
    operator.wait_phase(&name, Phase::Ready).await;
    assert!(replicas().await.iter().all(|(_, n)| *n == 1), "{:?}", replicas().await);
    operator.stop().await;
}

#[tokio::test]
async fn delete_with_retain_keeps_data() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "retain", false).await;
    let client = &operator.client;
    let secrets = api::<Secret>(client, &ns);
    let password_before = secrets.get("postgres-credentials").await.unwrap().data.unwrap()["password"].clone();

    operator.tenants().delete(&name, &DeleteParams::default()).await.unwrap();
    until_deleted(&operator.tenants(), &name, TIMEOUT).await;

    // The workloads go (garbage collector), the data stays, out of any owner chain.
    until_deleted(&api::<Deployment>(client, &ns), "erp-server-production", TIMEOUT).await;
    let namespace = Api::<Namespace>::all(client.clone()).get(&ns).await.unwrap();
    assert!(namespace.metadata.deletion_timestamp.is_none());
    assert_eq!(namespace.labels()[labels::RETAINED], "true");
    assert!(namespace.owner_references().is_empty());
    for secret in ["postgres-credentials", "erp-master-password"] {
        assert!(secrets.get(secret).await.unwrap().owner_references().is_empty(), "{secret}");
    }
    let claims = api::<PersistentVolumeClaim>(client, &ns);
    for claim in ["data-postgres-0", "filestore-production"] {
        let claim = claims.get(claim).await.unwrap();
        assert!(claim.owner_references().is_empty() && claim.metadata.deletion_timestamp.is_none());
    }

    // A Tenant of the same name takes the data back: the same credentials, no new secret.
    operator.create(&name, spec(false)).await;
    operator.wait_phase(&name, Phase::Ready).await;
    let password_after = secrets.get("postgres-credentials").await.unwrap().data.unwrap()["password"].clone();
    assert_eq!(password_before, password_after);
    let namespace = Api::<Namespace>::all(client.clone()).get(&ns).await.unwrap();
    assert!(!namespace.labels().contains_key(labels::RETAINED));
    operator.stop().await;
}

#[tokio::test]
async fn delete_with_delete_removes_namespace() {
    let operator = start().await;
    let name = operator.name("delete");
    let mut spec = spec(false);
    spec.deletion_policy = tenant_operator::api::DeletionPolicy::Delete;
    operator.create(&name, spec).await;
    operator.wait_phase(&name, Phase::Ready).await;
    operator.tenants().delete(&name, &DeleteParams::default()).await.unwrap();
    until_deleted(&operator.tenants(), &name, TIMEOUT).await;
    until_deleted(&Api::<Namespace>::all(operator.client.clone()), &namespace_of(&name), TIMEOUT).await;
    operator.stop().await;
}

#[tokio::test]
async fn malformed_tenant_does_not_block_others() {
    let operator = start().await;
    // Everything wrong at once, and a name that is a valid object name but not a DNS label.
    let bad_name = format!("{}.bad", operator.name("malformed"));
    let mut malformed = spec(true);
    malformed.erp.profile = "nonsense".into();
    malformed.erp.version = "latest".into();
    malformed.seats = -1;
    malformed.environments.test.as_mut().unwrap().version = Some("x.y.z".into());
    malformed.erp.config.insert("=".into(), "\n".into());
    operator.create(&bad_name, malformed).await;
    let good = operator.name("wellformed");
    operator.create(&good, spec(false)).await;

    operator.wait_phase(&good, Phase::Ready).await;
    let bad = operator.wait_phase(&bad_name, Phase::Invalid).await;
    let message = condition(&bad, "Valid").1;
    assert!(message.starts_with(&format!("metadata.name: `{bad_name}` is not a DNS label")), "{message}");
    assert!(message.contains("spec.erp.profile `nonsense` is unknown"), "{message}");
    operator.stop().await;
}

#[tokio::test]
async fn noop_reconcile_writes_nothing() {
    let operator = start().await;
    let (name, ns) = ready_tenant(&operator, "noop", true).await;
    let client = &operator.client;
    let writes = "tenantry_operator_api_writes_total";
    // Reconciles of one Tenant never overlap: once a reconcile that started after this poke has
    // finished, so has the one that made it Ready (and published its event).
    operator.poke(&name, "1").await;
    let before_versions = versions(client, &ns).await;
    let before_writes = operator.metric(writes);
    operator.poke(&name, "2").await;
    assert_eq!(operator.metric(writes), before_writes, "a no-op reconcile wrote to the API");
    assert_eq!(versions(client, &ns).await, before_versions);
    operator.stop().await;
}

/// A Tenant that fails the same way again and again (a Deployment of its name already exists with
/// a selector the operator would have to change, which the apiserver refuses: the selector is
/// immutable) gets one Warning Event counted up, not one Event per failure, and is retried after
/// growing delays.
#[tokio::test]
async fn repeated_failures_give_one_event_with_a_count() {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::PostParams;
    use std::time::Duration;
    use tenant_operator::retry::RetryDelays;

    let delays = RetryDelays { first: Duration::from_millis(100), max: Duration::from_millis(800) };
    let operator = start_with(|config| config.retry_delays = delays).await;
    let client = &operator.client;
    let name = operator.name("failing");
    let ns = namespace_of(&name);
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let squatter: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "erp-web-production"},
        "spec": {
            "selector": {"matchLabels": {"app": "squatter"}},
            "template": {"metadata": {"labels": {"app": "squatter"}},
                         "spec": {"containers": [{"name": "squatter", "image": "registry.example.com/squatter"}]}}
        }
    }))
    .unwrap();
    api::<Deployment>(client, &ns).create(&PostParams::default(), &squatter).await.unwrap();
    operator.create(&name, spec(false)).await;

    // Failures are counted in the metrics, reason `Rejected` (the apiserver's 422).
    let failures = || operator.metric("tenantry_operator_reconcile_errors_total");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let selector = format!("involvedObject.kind=Tenant,involvedObject.name={name}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut first_failure = None;
    let counted = loop {
        if first_failure.is_none() && failures() >= 1.0 {
            first_failure = Some(tokio::time::Instant::now());
        }
        let rejected: Vec<Event> = events
            .list(&ListParams::default().fields(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Rejected"))
            .collect();
        assert!(
            rejected.len() <= 1,
            "one Event per failure: {:?}",
            rejected.iter().map(|e| e.count).collect::<Vec<_>>()
        );
        if let Some(event) = rejected.first()
            && event.count.unwrap_or(0) >= 10
        {
            break event.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no Event counted 10 failures; {} failures", failures());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = first_failure.expect("a failure was counted").elapsed();
    let count = counted.count.unwrap();
    eprintln!("{count} failures counted on one Event in {elapsed:?}; {} failures in the metrics", failures());
    assert_eq!(counted.type_.as_deref(), Some("Warning"));
    assert!(counted.message.as_deref().is_some_and(|m| m.contains("erp-web-production")), "{counted:?}");
    assert!(counted.last_timestamp.as_ref().unwrap().0 > counted.first_timestamp.as_ref().unwrap().0);
    assert!(failures() >= f64::from(count));
    // The ten failures waited at least 0.1 + 0.2 + 0.4 + 0.8 s and then the 0.8 s cap (minus one
    // early retry, woken by the Tenant's own status write): not at once, nor 15 s apart. Measured
    // by the operator's own clock (the Event's first and last time, whole seconds): this test's
    // polling, slowed by a loaded machine, may notice the first failure late.
    let between =
        counted.last_timestamp.as_ref().unwrap().0.duration_since(counted.first_timestamp.as_ref().unwrap().0);
    assert!(
        between >= k8s_openapi::jiff::SignedDuration::from_secs(3),
        "ten failures within {between:?} by the operator's clock ({elapsed:?} as seen here): the retries did not back off"
    );
    operator.stop().await;
}
