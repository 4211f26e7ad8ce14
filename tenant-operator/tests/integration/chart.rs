//! The Helm chart `charts/tenantry`, through Helm v4's own engine (helm-python-sdk):
//! lint and rendering with several value sets, the operator's ClusterRole against what the
//! code calls, the chart's CRD against the generated one, then against the local cluster: an
//! install whose Deployments become available, and the operator binary running with nothing
//! but the chart's ServiceAccount token.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::TestEnv;
use e2e::helm::{
    Capabilities, HelmError, HelmSdk, PodIdentity, Release, Rendered, ServiceAccountAccess, tenantry_chart,
};
use e2e::process::{Spec, Supervised, WorkDir, free_port};
use e2e::wait::{until, until_deleted};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tenant_operator::api::{Phase, Tenant, labels, namespace_of};

const NAMESPACE: &str = "tenantry-system";

async fn render(values: Value) -> Result<Rendered, HelmError> {
    let helm = HelmSdk::ensure_async().await.expect("helm-python-sdk installs");
    helm.render(&tenantry_chart(), &Release::new("demo", NAMESPACE, values)).await
}

/// A value set that must render: the rendering.
async fn rendered(values: Value) -> Rendered {
    render(values.clone()).await.unwrap_or_else(|e| panic!("values {values} do not render: {e}"))
}

/// How many bytes `text` holds in base64 (panics if it is not base64).
fn base64_len(text: &str) -> usize {
    serde_json::from_value::<k8s_openapi::ByteString>(Value::String(text.into())).expect("base64").0.len()
}

/// The named container's `env` as name → entry.
fn env_of<'a>(object: &'a Value, container: &str) -> BTreeMap<&'a str, &'a Value> {
    let spec = &object["spec"]["template"]["spec"];
    let containers =
        spec["containers"].as_array().unwrap().iter().chain(spec["initContainers"].as_array().into_iter().flatten());
    let found =
        containers.into_iter().find(|c| c["name"] == container).unwrap_or_else(|| panic!("no container {container}"));
    found["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap(), e)).collect()
}

fn secret_ref(entry: &Value) -> (String, String) {
    let reference = &entry["valueFrom"]["secretKeyRef"];
    (reference["name"].as_str().unwrap().to_string(), reference["key"].as_str().unwrap().to_string())
}

/// Every (apiGroup, resource, verb) a Role or ClusterRole grants, with its resourceNames.
fn grants(role: &Value) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut all = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let strings = |field: &str| -> Vec<String> {
            rule[field].as_array().into_iter().flatten().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        let names = strings("resourceNames");
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                for verb in strings("verbs") {
                    all.insert((group.clone(), resource.clone(), verb, names.clone()));
                }
            }
        }
    }
    all
}

#[tokio::test]
async fn chart_lints_clean() {
    let helm = HelmSdk::ensure_async().await.unwrap();
    let (sdk, engine) = helm.versions().await.unwrap();
    assert!(engine.starts_with("v4."), "helm-python-sdk {sdk} runs Helm {engine}");
    for (values, kube) in [(json!({}), None), (json!({}), Some("v1.20.2")), (ha_off(), Some("v1.20.2"))] {
        let report = helm.lint(&tenantry_chart(), &values, kube).await.unwrap();
        assert!(report.problems().is_empty() && report.errors.is_empty(), "lint of {values} for {kube:?}: {report:#?}");
    }
    // Lint checks the values against the schema too.
    let report = helm.lint(&tenantry_chart(), &json!({"operator": {"replicas": "2"}}), None).await.unwrap();
    assert!(report.errors.iter().any(|e| e.contains("/operator/replicas")), "{report:#?}");
}

#[tokio::test]
async fn default_values_render_a_highly_available_install() {
    let chart = rendered(json!({})).await;
    let operator = chart.get("Deployment", "demo-tenantry-operator").unwrap();
    assert_eq!(operator["spec"]["replicas"], 2);
    let env = env_of(operator, "operator");
    assert_eq!(env["TENANTRY_LEADER_ELECTION"]["value"], "true");
    assert_eq!(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    chart.get("Role", "demo-tenantry-operator-leader-election").unwrap();

    let control_plane = chart.get("Deployment", "demo-tenantry-control-plane").unwrap();
    assert_eq!(control_plane["spec"]["replicas"], 2);
    let env = env_of(control_plane, "control-plane");
    assert_eq!(secret_ref(env["DATABASE_URL"]), ("tenantry-database".into(), "url".into()));
    assert_eq!(secret_ref(env["REDIS_URL"]), ("tenantry-redis".into(), "url".into()));
    assert_eq!(env["TENANTRY_PROVISIONER"]["value"], "cluster");
    // Helm's default Kubernetes is recent: policy/v1.
    assert_eq!(chart.get("PodDisruptionBudget", "demo-tenantry-control-plane").unwrap()["apiVersion"], "policy/v1");
    assert!(chart.of_kind("HorizontalPodAutoscaler").is_empty() && chart.of_kind("Ingress").is_empty());
    assert!(chart.of_kind("ServiceMonitor").is_empty());

    // No keys given: one JWT key and the sealing key are generated, 32 random bytes each, and
    // every replica reads the same Secret.
    let secret: Secret =
        serde_json::from_value(chart.get("Secret", "demo-tenantry-control-plane").unwrap().clone()).unwrap();
    let data = secret.data.unwrap();
    let text = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
    let jwt = text("jwt-keys");
    let (kid, key) = jwt.split_once(':').unwrap();
    assert_eq!(kid, "generated");
    assert_eq!(base64_len(key), 32);
    assert_eq!(base64_len(&text("secret-key")), 32);
    assert!(!data.contains_key("database-url"), "the database URL is the user's Secret's");
    assert_eq!(secret_ref(env["TENANTRY_JWT_KEYS"]), ("demo-tenantry-control-plane".into(), "jwt-keys".into()));

    assert!(chart.notes.contains("port-forward service/demo-tenantry-control-plane"), "{}", chart.notes);
    assert!(chart.notes.contains("control-plane token issue --role provider-admin"), "{}", chart.notes);
    assert!(chart.notes.contains("create secret generic tenantry-database"), "{}", chart.notes);
}

#[tokio::test]
async fn every_pod_is_restricted_probed_and_has_requests() {
    let with_everything = json!({
        "controlPlane": {"plans": [{"name": "solo"}], "autoscaling": {"enabled": true}},
        "serviceMonitor": {"enabled": true},
    });
    for values in [json!({}), ha_off(), with_everything] {
        let chart = rendered(values.clone()).await;
        for deployment in chart.of_kind("Deployment") {
            let name = deployment["metadata"]["name"].as_str().unwrap();
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{name}");
            let containers = pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(pod["initContainers"].as_array().into_iter().flatten());
            for container in containers {
                let what = format!("{name}/{} with {values}", container["name"]);
                let security = &container["securityContext"];
                assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{what}");
                assert!(container["resources"]["requests"]["cpu"].is_string(), "{what}");
                assert!(container["resources"]["requests"]["memory"].is_string(), "{what}");
                if container["name"] != "import-plans" {
                    assert!(container["readinessProbe"]["httpGet"].is_object(), "{what}");
                    assert!(container["livenessProbe"]["httpGet"].is_object(), "{what}");
                }
            }
        }
    }
}

#[tokio::test]
async fn an_external_database_secret_is_referenced_not_copied() {
    let chart = rendered(json!({"controlPlane": {
        "database": {"existingSecret": {"name": "acme-postgres", "key": "DATABASE_URL"}},
        "redis": {"url": "redis://cache.acme.svc:6379/2"},
        "auth": {"existingSecret": {"name": "acme-jwt", "key": "keys"}, "signingKid": "k2"},
        "secretKey": {"existingSecret": {"name": "acme-sealing", "key": "key"}},
    }}))
    .await;
    let env = env_of(chart.get("Deployment", "demo-tenantry-control-plane").unwrap(), "control-plane");
    assert_eq!(secret_ref(env["DATABASE_URL"]), ("acme-postgres".into(), "DATABASE_URL".into()));
    assert_eq!(secret_ref(env["REDIS_URL"]), ("demo-tenantry-control-plane".into(), "redis-url".into()));
    assert_eq!(secret_ref(env["TENANTRY_JWT_KEYS"]), ("acme-jwt".into(), "keys".into()));
    assert_eq!(secret_ref(env["TENANTRY_SECRET_KEY"]), ("acme-sealing".into(), "key".into()));
    assert_eq!(env["TENANTRY_JWT_SIGNING_KID"]["value"], "k2");
    // The chart's own Secret holds only what was given inline.
    let data = &chart.get("Secret", "demo-tenantry-control-plane").unwrap()["data"];
    let keys: Vec<&String> = data.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["redis-url"]);
}

#[tokio::test]
async fn ingress_with_tls_and_tenant_domains() {
    let chart = rendered(json!({"controlPlane": {
        "ingress": {"enabled": true, "className": "nginx", "host": "erp.example.com",
                    "tls": {"enabled": true, "clusterIssuer": "letsencrypt"}},
        "tenants": {"domain": "erp.example.com", "tlsIssuer": "letsencrypt", "ingressClassName": "nginx",
                    "labels": {"shard": "eu-1"}},
        "trustedProxies": ["10.0.0.10", "10.0.0.11"],
    }}))
    .await;
    let ingress = chart.get("Ingress", "demo-tenantry-control-plane").unwrap();
    assert_eq!(ingress["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "letsencrypt");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ingress["spec"]["tls"],
        json!([{"hosts": ["erp.example.com"], "secretName": "demo-tenantry-control-plane-tls"}])
    );
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "demo-tenantry-control-plane");
    chart.get("Service", "demo-tenantry-control-plane").unwrap();
    let env = env_of(chart.get("Deployment", "demo-tenantry-control-plane").unwrap(), "control-plane");
    assert_eq!(env["TENANTRY_TENANT_DOMAIN"]["value"], "erp.example.com");
    assert_eq!(env["TENANTRY_TENANT_TLS_ISSUER"]["value"], "letsencrypt");
    assert_eq!(env["TENANTRY_TENANT_INGRESS_CLASS"]["value"], "nginx");
    assert_eq!(env["TENANTRY_TENANT_LABELS"]["value"], "shard=eu-1");
    assert_eq!(env["TENANTRY_TRUSTED_PROXIES"]["value"], "10.0.0.10,10.0.0.11");
    assert!(chart.notes.contains("https://erp.example.com/"), "{}", chart.notes);
}

/// One operator without leader election, one control plane on SQLite without Redis.
fn ha_off() -> Value {
    json!({
        "operator": {"replicas": 1, "leaderElection": {"enabled": false}},
        "controlPlane": {"replicas": 1, "database": {"existingSecret": {"name": ""}}, "redis": {"existingSecret": {"name": ""}}},
    })
}

#[tokio::test]
async fn ha_off_runs_single_replicas_without_budgets_or_leases() {
    let chart = rendered(ha_off()).await;
    let operator = chart.get("Deployment", "demo-tenantry-operator").unwrap();
    assert_eq!(operator["spec"]["replicas"], 1);
    assert_eq!(env_of(operator, "operator")["TENANTRY_LEADER_ELECTION"]["value"], "false");
    assert!(chart.find("Role", "demo-tenantry-operator-leader-election").is_none(), "no Lease, no lease rights");
    let control_plane = chart.get("Deployment", "demo-tenantry-control-plane").unwrap();
    assert_eq!(control_plane["spec"]["replicas"], 1);
    let env = env_of(control_plane, "control-plane");
    assert!(!env.contains_key("DATABASE_URL") && !env.contains_key("REDIS_URL"), "SQLite and in-process caches");
    assert!(chart.of_kind("PodDisruptionBudget").is_empty(), "a budget over one pod would block every drain");
    assert!(chart.notes.contains("No database is configured"), "{}", chart.notes);
}

/// The tenants' placement reaches the operator in the form its flags read, and means there
/// what the values say.
#[tokio::test]
async fn tenant_pods_placement_reaches_the_operator() {
    let values = json!({"operator": {"tenantPods": {
        "nodeSelector": {"pool": "tenants", "zone": "a"},
        "tolerations": [{"key": "dedicated", "value": "tenants", "effect": "NoSchedule"}, {"key": "spot"}],
    }}});
    let chart = rendered(values).await;
    let env = env_of(chart.get("Deployment", "demo-tenantry-operator").unwrap(), "operator");
    let selector = env["TENANTRY_NODE_SELECTOR"]["value"].as_str().unwrap();
    let tolerations = env["TENANTRY_TOLERATIONS"]["value"].as_str().unwrap();
    assert_eq!(
        tenant_operator::placement::parse_node_selector(selector).unwrap(),
        BTreeMap::from([("pool".to_string(), "tenants".to_string()), ("zone".to_string(), "a".to_string())])
    );
    let tolerations = tenant_operator::placement::parse_tolerations(tolerations).unwrap();
    let read: Vec<_> = tolerations
        .iter()
        .map(|t| (t.key.as_deref(), t.operator.as_deref(), t.value.as_deref(), t.effect.as_deref()))
        .collect();
    assert_eq!(
        read,
        [
            (Some("dedicated"), Some("Equal"), Some("tenants"), Some("NoSchedule")),
            (Some("spot"), Some("Exists"), None, None)
        ]
    );
    // None set, none passed: the operator's defaults (anywhere) hold.
    let plain = rendered(json!({})).await;
    let env = env_of(plain.get("Deployment", "demo-tenantry-operator").unwrap(), "operator");
    assert!(!env.contains_key("TENANTRY_NODE_SELECTOR") && !env.contains_key("TENANTRY_TOLERATIONS"));
    assert!(
        render(json!({"operator": {"tenantPods": {"tolerations": [{"key": "a", "effect": "Sometimes"}]}}}))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn budget_and_autoscaler_follow_the_cluster_api_versions() {
    let values = json!({"controlPlane": {"autoscaling": {"enabled": true, "minReplicas": 3}}});
    let helm = HelmSdk::ensure_async().await.unwrap();
    let versions = |release: Release| {
        let helm = helm.clone();
        async move {
            let chart = helm.render(&tenantry_chart(), &release).await.unwrap();
            let of = |kind: &str| chart.of_kind(kind)[0]["apiVersion"].as_str().unwrap().to_string();
            (of("PodDisruptionBudget"), of("HorizontalPodAutoscaler"))
        }
    };
    // What `helm install` discovers on a v1.20 cluster, and on a current one.
    let old = Capabilities {
        kube_version: "v1.20.2".into(),
        api_versions: vec![
            "policy/v1beta1/PodDisruptionBudget".into(),
            "autoscaling/v2beta2/HorizontalPodAutoscaler".into(),
        ],
    };
    let current = Capabilities {
        kube_version: "v1.30.1".into(),
        api_versions: vec!["policy/v1/PodDisruptionBudget".into(), "autoscaling/v2/HorizontalPodAutoscaler".into()],
    };
    let release = Release::new("demo", NAMESPACE, values);
    assert_eq!(
        versions(release.clone().with_capabilities(old)).await,
        ("policy/v1beta1".into(), "autoscaling/v2beta2".into())
    );
    assert_eq!(
        versions(release.clone().with_capabilities(current)).await,
        ("policy/v1".into(), "autoscaling/v2".into())
    );
    // `helm template --kube-version 1.20.2` without discovery: the version decides.
    let by_version = Capabilities { kube_version: "v1.20.2".into(), api_versions: Vec::new() };
    assert_eq!(
        versions(release.with_capabilities(by_version)).await,
        ("policy/v1beta1".into(), "autoscaling/v2beta2".into())
    );
}

#[tokio::test]
async fn the_schema_refuses_wrong_types_and_unknown_keys() {
    let refusals = [
        (json!({"operator": {"replicas": "2"}}), "/operator/replicas"),
        (json!({"controlPlane": {"replica": 3}}), "'replica' not allowed"),
        (json!({"image": "x"}), "'image' not allowed"),
        (json!({"controlPlane": {"ingress": {"enabled": "yes"}}}), "/controlPlane/ingress/enabled"),
        (json!({"controlPlane": {"database": {"url": "mysql://db/x"}}}), "/controlPlane/database/url"),
        (json!({"controlPlane": {"auth": {"tokenTtl": "1 hour"}}}), "/controlPlane/auth/tokenTtl"),
        (json!({"operator": {"logFormat": "xml"}}), "/operator/logFormat"),
        (json!({"controlPlane": {"resources": {"requests": {"cpu": true}}}}), "/controlPlane/resources/requests/cpu"),
    ];
    for (values, expected) in refusals {
        match render(values.clone()).await {
            Err(HelmError::Refused(message)) => assert!(message.contains(expected), "{values}: {message}"),
            other => panic!("{values} was not refused by the schema: {other:?}"),
        }
    }
}

#[tokio::test]
async fn unsafe_combinations_are_refused_with_the_reason() {
    let refusals = [
        (json!({"operator": {"leaderElection": {"enabled": false}}}), "needs operator.leaderElection.enabled"),
        (json!({"controlPlane": {"redis": {"existingSecret": {"name": ""}}}}), "needs Redis"),
        (
            json!({"controlPlane": {"replicas": 1, "autoscaling": {"enabled": true}, "database": {"existingSecret": {"name": ""}}}}),
            "needs PostgreSQL",
        ),
        (json!({"controlPlane": {"tenants": {"domain": "erp.example.com"}}}), "needs controlPlane.tenants.tlsIssuer"),
        (json!({"controlPlane": {"ingress": {"enabled": true}}}), "needs controlPlane.ingress.host"),
        (
            json!({"controlPlane": {"auth": {"keys": [{"kid": "k1", "secret": "a".repeat(44)}], "existingSecret": {"name": "x"}}}}),
            "not both",
        ),
    ];
    for (values, expected) in refusals {
        match render(values.clone()).await {
            Err(HelmError::Refused(message)) => assert!(message.contains(expected), "{values}: {message}"),
            other => panic!("{values} was not refused: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_chart_ships_the_generated_crd() {
    let chart = rendered(json!({})).await;
    let generated: Vec<serde_json::Value> =
        tenant_operator::controller::crds().iter().map(|(_, crd)| serde_json::to_value(crd).unwrap()).collect();
    assert_eq!(chart.crds.len(), generated.len(), "the chart's crds/ holds the generated CRDs and nothing else");
    for crd in &generated {
        assert!(
            chart.crds.contains(crd),
            "charts/tenantry/crds/ differs from the types as Helm loads them ({}); regenerate them with\n  \
             cargo run -p tenant-operator -- crd --dir charts/tenantry/crds",
            crd["metadata"]["name"]
        );
    }
}

/// The operator's ClusterRole holds exactly the grants its code needs: derived here from the
/// kinds it manages (`build::managed_kinds`) and the calls of `reconcile.rs`, `apply.rs` and
/// the finalizer, so a new managed kind without its grant, or any wider grant, fails.
#[tokio::test]
async fn the_operator_cluster_role_grants_exactly_what_the_code_uses() {
    let chart = rendered(json!({})).await;
    let role = chart.get("ClusterRole", "tenantry-system-demo-tenantry-operator").unwrap();
    let mut expected = BTreeSet::new();
    let mut grant = |group: &str, resource: &str, verbs: &[&str], names: &[&str]| {
        for verb in verbs {
            let names = names.iter().map(|name| name.to_string()).collect();
            expected.insert((group.to_string(), resource.to_string(), verb.to_string(), names));
        }
    };
    // The controller lists and watches Tenants; the finalizer is a JSON patch; the status is
    // server-side applied to the status subresource; blockOwnerDeletion needs finalizers.
    grant("tenantry.dev", "tenants", &["list", "watch", "patch"], &[]);
    grant("tenantry.dev", "tenants/status", &["patch"], &[]);
    grant("tenantry.dev", "tenants/finalizers", &["update"], &[]);
    // Backups: the same for their controller; their Jobs' pods are listed for the agent's
    // termination message.
    grant("tenantry.dev", "tenantbackups", &["list", "watch", "patch"], &[]);
    grant("tenantry.dev", "tenantbackups/status", &["patch"], &[]);
    grant("tenantry.dev", "tenantbackups/finalizers", &["update"], &[]);
    grant("", "pods", &["list"], &[]);
    let mut kinds = tenant_operator::build::managed_kinds();
    kinds.push(kube::api::ApiResource::erase::<Namespace>(&()));
    for kind in kinds {
        // Watched, read when the cache cannot vouch, created, patched (apply, ownership upgrade,
        // release on Retain), deleted as orphans. Jobs are never patched. Secrets are not
        // watched: created, then read and patched by the names the operator generates.
        if kind.kind == "Secret" {
            grant("", "secrets", &["create"], &[]);
            use tenantry_contract::names::secrets::{BACKUP_STORAGE, DATABASE, MASTER_PASSWORD};
            let generated = [DATABASE, MASTER_PASSWORD, tenant_operator::build::BACKUP_KEY, BACKUP_STORAGE];
            grant("", "secrets", &["get", "patch"], &generated);
            continue;
        }
        let mut verbs = vec!["get", "list", "watch", "create"];
        if kind.kind != "Job" {
            verbs.push("patch");
        }
        verbs.push("delete");
        grant(&kind.group, &kind.plural, &verbs, &[]);
    }
    assert_eq!(grants(role), expected);

    let leader = chart.get("Role", "demo-tenantry-operator-leader-election").unwrap();
    let lease = |verb: &str, names: &[&str]| {
        (
            "coordination.k8s.io".to_string(),
            "leases".to_string(),
            verb.to_string(),
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        grants(leader),
        BTreeSet::from([
            lease("create", &[]),
            lease("get", &["tenantry-operator"]),
            lease("update", &["tenantry-operator"])
        ])
    );
    let events = chart.get("Role", "tenantry-system-demo-tenantry-operator-events").unwrap();
    assert_eq!(events["metadata"]["namespace"], "default", "the operator's Events go to `default`");
    let event = |verb: &str| ("".to_string(), "events".to_string(), verb.to_string(), Vec::<String>::new());
    assert_eq!(grants(events), BTreeSet::from([event("create"), event("patch")]));
}

#[tokio::test]
async fn no_role_of_the_chart_uses_wildcards() {
    for values in [json!({}), json!({"controlPlane": {"detectSimulatedNodes": true}})] {
        let chart = rendered(values).await;
        let roles = chart.of_kind("ClusterRole").into_iter().chain(chart.of_kind("Role"));
        for role in roles {
            for grant in grants(role) {
                assert!(
                    !grant.0.contains('*') && !grant.1.contains('*') && grant.2 != "*",
                    "{} grants {grant:?}",
                    role["metadata"]["name"]
                );
                assert!(!["escalate", "bind", "impersonate"].contains(&grant.2.as_str()), "{grant:?}");
            }
        }
        // The control plane reads one Secret name, nothing else of Secrets.
        let control_plane = chart.get("ClusterRole", "tenantry-system-demo-tenantry-control-plane").unwrap();
        for grant in grants(control_plane).into_iter().filter(|g| g.1 == "secrets") {
            assert_eq!((grant.2.as_str(), grant.3.as_slice()), ("get", ["erp-master-password".to_string()].as_slice()));
        }
    }
}

/// Waits until the Deployment's wanted replicas are all available.
async fn until_available(client: &Client, namespace: &str, name: &str) -> Deployment {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    until(&deployments, name, "all replicas available", common::TIMEOUT, |d: Option<&Deployment>| {
        d.and_then(|d| Some((d.spec.as_ref()?.replicas?, d.status.as_ref()?, d.metadata.generation?))).is_some_and(
            |(wanted, status, generation)| {
                status.observed_generation == Some(generation)
                    && status.available_replicas == Some(wanted)
                    && status.conditions.iter().flatten().any(|c| c.type_ == "Available" && c.status == "True")
            },
        )
    })
    .await
}

async fn create_secret(client: &Client, namespace: &str, name: &str, key: &str, value: &str) {
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        string_data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap();
}

/// The chart as a provider installs it, on the real node: the control plane's and the
/// operator's images built from the repository's Dockerfiles, pulled and run for real, with
/// PostgreSQL and Redis as pods beside them. A customer signs up through the control plane's
/// Service; the chart's operator, in its pod with its ServiceAccount's token, takes the Tenant to
/// Ready, and the control plane reports it ready.
#[tokio::test]
async fn chart_installs_on_local_cluster() {
    let env = TestEnv::shared().await;
    let admin = env.client().await;
    let namespace = env.namespace(&admin, "chart-install").await;
    // The default values read the database and Redis URLs from Secrets made beforehand.
    let password = format!("{:032x}", rand::random::<u128>());
    // The official images' contracts: PostgreSQL's superuser password from the environment,
    // Redis's from its arguments.
    let postgres = json!({
        "env": [{"name": "POSTGRES_PASSWORD", "value": password}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "postgres", "-h", "127.0.0.1"]}, "periodSeconds": 1},
    });
    let redis = json!({
        "args": ["redis-server", "--protected-mode", "no", "--requirepass", password],
        "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
    });
    tokio::join!(
        backing_service(&admin, &namespace, "tenantry-postgres", "postgres:15", 5432, postgres),
        backing_service(&admin, &namespace, "tenantry-redis", "redis:7", 6379, redis),
    );
    let database_url = format!("postgres://postgres:{password}@tenantry-postgres:5432/postgres");
    create_secret(&admin, &namespace, "tenantry-database", "url", &database_url).await;
    create_secret(&admin, &namespace, "tenantry-redis", "url", &format!("redis://:{password}@tenantry-redis:6379/0"))
        .await;

    let capabilities = Capabilities::of_cluster(&admin).await.unwrap();
    assert!(capabilities.kube_version.starts_with("v1.20."), "{}", capabilities.kube_version);
    assert!(
        !capabilities.has("policy/v1/PodDisruptionBudget") && capabilities.has("policy/v1beta1/PodDisruptionBudget")
    );
    // Both programs on the real node; the operator serves only this test's Tenants (the
    // control plane labels them), whose own pods stay on the simulated nodes.
    let run_id = format!("{:08x}", rand::random::<u32>());
    let on_real_node = json!({
        "nodeSelector": {e2e::node::REAL_NODE_LABEL: "true"},
        "tolerations": [{"key": e2e::node::REAL_NODE_TAINT, "operator": "Exists"}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
    });
    let mut values = json!({
        "operator": {"tenantSelector": format!("tenantry.dev/test-run={run_id}")},
        "controlPlane": {"tenants": {"labels": {"tenantry.dev/test-run": run_id}}},
    });
    for component in ["operator", "controlPlane"] {
        for (key, value) in on_real_node.as_object().unwrap() {
            values[component][key] = value.clone();
        }
    }
    let helm = HelmSdk::ensure_async().await.unwrap();
    let release = Release::new("install", &namespace, values).with_capabilities(capabilities);
    let chart = helm.render(&tenantry_chart(), &release).await.unwrap();
    // policy/v1 would not even be accepted by this apiserver: the budget follows discovery.
    assert_eq!(
        chart.get("PodDisruptionBudget", "install-tenantry-control-plane").unwrap()["apiVersion"],
        "policy/v1beta1"
    );

    chart.apply(&admin).await.unwrap();
    // Available means ready: the real programs answer their readiness probes (the control
    // plane once its database is migrated, the operator once it serves).
    let operator = until_available(&admin, &namespace, "install-tenantry-operator").await;
    assert_eq!(operator.status.unwrap().available_replicas, Some(2));
    let control_plane = until_available(&admin, &namespace, "install-tenantry-control-plane").await;
    assert_eq!(control_plane.status.unwrap().available_replicas, Some(2));
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    for pod in pods.list(&ListParams::default().labels("app.kubernetes.io/instance=install")).await.unwrap() {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        assert_eq!(node.as_deref(), Some(e2e::cluster::REAL_NODE_NAME), "{:?}", pod.metadata.name);
    }

    // A signup through the control plane's Service (its cluster address is routed to the node).
    let service =
        Api::<Service>::namespaced(admin.clone(), &namespace).get("install-tenantry-control-plane").await.unwrap();
    let address = service.spec.unwrap().cluster_ip.unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let slug = format!("chart-{run_id}");
    let signup = json!({"company_name": "Chart Install", "slug": slug, "admin_email": "ada@chart.test", "plan": "starter", "seats": 1});
    let response = http.post(format!("http://{address}/v1/signup")).json(&signup).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    // The chart's operator makes it Ready; the control plane's mirror reports it.
    let tenants: Api<Tenant> = Api::all(admin.clone());
    wait_phase(&tenants, &slug, Phase::Ready).await;
    let tenant = tenants.get(&slug).await.unwrap();
    let managers: Vec<_> = tenant.metadata.managed_fields.iter().flatten().filter_map(|f| f.manager.clone()).collect();
    assert!(managers.iter().any(|m| m.contains("control-plane")), "applied by the control plane: {managers:?}");
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    loop {
        let view: Value = http
            .get(format!("http://{address}/v1/tenants/{slug}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["provisioning"] == "ready" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the control plane never reported the tenant ready: {view}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A second apply (an upgrade with the same values) changes nothing that breaks them.
    chart.apply(&admin).await.unwrap();
    until_available(&admin, &namespace, "install-tenantry-control-plane").await;

    // The chart's operator removes its finalizer before it goes.
    tenants.delete(&slug, &DeleteParams::default()).await.unwrap();
    until_deleted(&tenants, &slug, common::TIMEOUT).await;
    let _ = Api::<Namespace>::all(admin.clone()).delete(&namespace_of(&slug), &DeleteParams::default()).await;
    chart.uninstall(&admin).await.unwrap();
    let cluster_roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
    until_deleted(&cluster_roles, &format!("{namespace}-install-tenantry-operator"), common::TIMEOUT).await;
}

/// A server the control plane needs, as a pod of the real node behind a Service of that name:
/// `container` gives what differs between servers (environment, arguments, readiness probe).
async fn backing_service(client: &Client, namespace: &str, name: &str, image: &str, port: u16, container: Value) {
    let mut server = json!({"name": "server", "image": image, "imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": port}]});
    for (key, value) in container.as_object().unwrap() {
        server[key] = value.clone();
    }
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [server]},
    }))
    .unwrap();
    e2e::node::place_on_real_node(pod.spec.as_mut().unwrap());
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), namespace).create(&PostParams::default(), &service).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    until(&pods, name, "ready", common::TIMEOUT, |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref()?.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
}

/// An API call the account must be refused.
#[track_caller]
fn assert_forbidden<T: std::fmt::Debug>(result: kube::Result<T>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

async fn wait_phase(tenants: &Api<Tenant>, name: &str, phase: Phase) {
    until(tenants, name, &format!("phase {phase}"), common::TIMEOUT, move |t: Option<&Tenant>| {
        t.and_then(|t| Some((t.status.as_ref()?, t.metadata.generation)))
            .is_some_and(|(status, generation)| status.phase == Some(phase) && status.observed_generation >= generation)
    })
    .await;
}

#[tokio::test]
async fn operator_rbac_is_sufficient_and_least() {
    let env = TestEnv::shared().await;
    let admin = env.client().await;
    common::install_crd(&admin).await;
    let namespace = env.namespace(&admin, "chart-operator").await;
    let helm = HelmSdk::ensure_async().await.unwrap();
    let chart = helm.render(&tenantry_chart(), &Release::new("rbac", &namespace, json!({}))).await.unwrap();
    chart
        .only(&["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"])
        .apply(&admin)
        .await
        .unwrap();
    let account = "rbac-tenantry-operator";
    let access =
        ServiceAccountAccess::request(&admin, &env.kubeconfig_path().await, &namespace, account).await.unwrap();

    // The operator binary as the chart's container runs it, leader election included, with the
    // account's token; it serves only this test's Tenants.
    let run_id = format!("{:08x}", rand::random::<u32>());
    let pod = PodIdentity { name: format!("{account}-0"), namespace: namespace.clone() };
    let workdir = WorkDir::create("chart-operator").unwrap();
    let deployment = chart.get("Deployment", account).unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap();
    let mut spec = Spec::new("tenant-operator", env!("CARGO_BIN_EXE_tenant-operator"))
        .args(args.iter().map(|a| a.as_str().unwrap().to_string()));
    for (name, value) in chart.container_env(account, "operator", &pod).unwrap() {
        spec = spec.env(name, value);
    }
    let spec = spec
        .env("KUBECONFIG", access.kubeconfig.display().to_string())
        .env("TENANTRY_LISTEN", format!("127.0.0.1:{}", free_port().unwrap()))
        .env("TENANTRY_TENANT_SELECTOR", format!("tenantry.dev/test-run={run_id}"))
        .env("TENANTRY_LOG_FORMAT", "text");
    let operator = Supervised::spawn(&workdir, spec).unwrap();
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &namespace);
    operator
        .wait_ready("the operator holding its Lease", common::TIMEOUT, || {
            let leases = leases.clone();
            let identity = pod.name.clone();
            async move {
                let lease = leases.get_opt("tenantry-operator").await.map_err(|e| e.to_string())?;
                let holder = lease.and_then(|l| l.spec?.holder_identity);
                if holder.as_deref() == Some(identity.as_str()) { Ok(()) } else { Err(format!("held by {holder:?}")) }
            }
        })
        .await
        .unwrap();

    // Sufficient: a Tenant reconciled to Ready, suspended, then deleted through the finalizer.
    let tenants: Api<Tenant> = Api::all(admin.clone());
    let name = format!("chart-{run_id}");
    let mut tenant = Tenant::new(&name, common::spec(false));
    tenant.metadata.labels = Some(BTreeMap::from([("tenantry.dev/test-run".to_string(), run_id.clone())]));
    tenants.create(&PostParams::default(), &tenant).await.unwrap();
    wait_phase(&tenants, &name, Phase::Ready).await;
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    let about = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await.unwrap();
    assert!(
        about
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Ready")
                && e.reporting_component.as_deref() == Some("tenantry-operator")),
        "the operator published its phase change: {:?}",
        about.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    tenants.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"suspended": true}}))).await.unwrap();
    wait_phase(&tenants, &name, Phase::Suspended).await;
    tenants.delete(&name, &DeleteParams::default()).await.unwrap();
    until_deleted(&tenants, &name, common::TIMEOUT).await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let kept = namespaces.get(&namespace_of(&name)).await.unwrap();
    assert_eq!(kept.metadata.labels.unwrap().get(labels::RETAINED).map(String::as_str), Some("true"));
    operator.check_alive().unwrap();

    // Least: what the operator never does is refused to its account.
    let client = &access.client;
    assert_forbidden(
        Api::<Secret>::namespaced(client.clone(), "kube-system").delete("any", &DeleteParams::default()).await,
        "deleting a Secret",
    );
    let kube_system: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    assert_forbidden(kube_system.get("any").await, "reading a Secret in kube-system");
    assert_forbidden(kube_system.list(&ListParams::default()).await, "listing the Secrets of kube-system");
    assert_forbidden(Api::<Secret>::all(client.clone()).list(&ListParams::default()).await, "listing every Secret");
    // Even in its own tenant's namespace: only the Secrets it generates, by name.
    let own_namespace: Api<Secret> = Api::namespaced(client.clone(), &namespace_of(&name));
    assert_forbidden(own_namespace.list(&ListParams::default()).await, "listing a tenant's Secrets");
    // Pods are listed (a backup Job's termination message), never read one by one, watched,
    // changed, or their logs read.
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace_of(&name));
    assert_forbidden(pods.get("postgres-0").await, "reading a Pod");
    assert_forbidden(pods.logs("postgres-0", &Default::default()).await, "reading a Pod's log");
    assert_forbidden(pods.delete("postgres-0", &Default::default()).await, "deleting a Pod");
    assert_forbidden(Api::<Node>::all(client.clone()).list(&ListParams::default()).await, "listing Nodes");
    let job_patch = Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
    assert_forbidden(
        Api::<Job>::namespaced(client.clone(), &namespace).patch("any", &PatchParams::default(), &job_patch).await,
        "patching a Job",
    );
    let event =
        Event { metadata: ObjectMeta { generate_name: Some("x-".into()), ..Default::default() }, ..Default::default() };
    assert_forbidden(
        Api::<Event>::namespaced(client.clone(), "kube-system").create(&PostParams::default(), &event).await,
        "an Event outside `default`",
    );
    assert_forbidden(Api::<Lease>::namespaced(client.clone(), &namespace).get("another-lease").await, "another Lease");
    assert_forbidden(
        Api::<Tenant>::all(client.clone()).get(&name).await.map(drop),
        "getting a Tenant (it only lists and watches)",
    );
    let escalation = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(format!("{namespace}-escalation")), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.into(),
            namespace: Some(namespace.clone()),
            ..Default::default()
        }]),
    };
    assert_forbidden(
        Api::<ClusterRoleBinding>::all(client.clone()).create(&PostParams::default(), &escalation).await,
        "binding itself to cluster-admin",
    );

    drop(operator);
    let _ = namespaces.delete(&namespace_of(&name), &DeleteParams::default()).await;
    chart.uninstall(&admin).await.unwrap();
}
