//! Tenants on the real node: the operator's objects run for real — PostgreSQL, trytond and the
//! web proxy from the images the repository's Dockerfiles build, pulled from the environment's
//! registry — and the tests speak to the ERP the way its users do, through the web client's
//! Service. Each test has a Tenant of its own, placed on the real node by the operator's
//! placement (the node's label and taint), as a provider places tenants on their own nodes.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Operator;
use e2e::TestEnv;
use e2e::node::{REAL_NODE_LABEL, REAL_NODE_TAINT};
use e2e::tryton::{Session, TrytonClient};
use e2e::wait::{ended_with_log, pod_phase, until};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service, Toleration};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tenant_operator::api::{Phase, TenantSpec, namespace_of};
use tenant_operator::placement::Placement;

/// From nothing to Ready: the images' first pull, PostgreSQL's initialisation, `trytond-admin
/// --all` on each database and the servers' start, on a shared 2-core machine.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// The release the tests run: a long-term series, with its web client on npm.
pub(crate) const VERSION: &str = "8.0.12";
const SERIES: &str = "8.0";

async fn operator_on_the_real_node() -> Operator {
    common::start_with(|config| config.placement = real_node_placement()).await
}

/// Where tenants of these tests run: the real node (its label and taint).
pub(crate) fn real_node_placement() -> Placement {
    Placement {
        node_selector: BTreeMap::from([(REAL_NODE_LABEL.to_string(), "true".to_string())]),
        tolerations: vec![Toleration {
            key: Some(REAL_NODE_TAINT.into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }],
    }
}

/// A small Tryton tenant: figures that fit the node beside everything else the tests run.
pub(crate) fn spec(with_test: bool) -> TenantSpec {
    let environments = if with_test { json!({"production": {}, "test": {}}) } else { json!({"production": {}}) };
    serde_json::from_value(json!({
        "displayName": "Real Corp",
        "plan": "business",
        "seats": 3,
        "erp": {"profile": "tryton", "version": VERSION, "modules": ["party"]},
        "resources": {
            "server": {"cpuRequest": "50m", "memoryRequest": "256Mi", "cpuLimit": "1", "memoryLimit": "1Gi"},
            "web": {"cpuRequest": "20m", "memoryRequest": "32Mi", "cpuLimit": "500m", "memoryLimit": "128Mi"},
            "database": {"cpuRequest": "50m", "memoryRequest": "128Mi", "cpuLimit": "1", "memoryLimit": "1Gi"},
            "databaseStorage": "2Gi",
            "filestoreStorage": "1Gi",
            "quota": {"cpu": "16", "memory": "16Gi", "storage": "20Gi", "pods": 20}
        },
        "environments": environments,
    }))
    .unwrap()
}

/// A Ready tenant of this test on the real node: its name and namespace.
async fn ready_tenant(operator: &Operator, prefix: &str, with_test: bool) -> (String, String) {
    let name = operator.name(prefix);
    operator.create(&name, spec(with_test)).await;
    operator.wait_phase_within(&name, Phase::Ready, READY_TIMEOUT).await;
    let namespace = namespace_of(&name);
    (name, namespace)
}

/// The ERP of `environment`, through its web client's Service (the proxy in front of trytond).
async fn web_client(client: &Client, namespace: &str, environment: &str) -> TrytonClient {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = services.get(&format!("erp-web-{environment}")).await.unwrap();
    let address = service.spec.and_then(|s| s.cluster_ip).expect("the web Service has an address");
    TrytonClient::for_series(format!("http://{address}"), SERIES).unwrap()
}

/// The tenant's admin password: the ERP's admin was created with the master password.
async fn admin_password(client: &Client, namespace: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get("erp-master-password").await.unwrap();
    String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap()
}

/// Whether a failed call met the web proxy or the Service, not the ERP: no server behind them
/// yet (a Service's rules trail its pods' readiness by a moment).
fn is_gateway(error: &str) -> bool {
    ["HTTP 502", "HTTP 503", "HTTP 504", "error sending request"].iter().any(|sign| error.contains(sign))
}

/// Logs in as the admin, retrying only what [`is_gateway`] says is not the ERP's answer yet.
async fn try_login(client: &Client, namespace: &str, environment: &str) -> Result<Session, String> {
    let erp = web_client(client, namespace, environment).await;
    let password = admin_password(client, namespace).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match erp.login(environment, "admin", &password).await.map_err(|e| e.to_string()) {
            Err(e) if is_gateway(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            outcome => return outcome,
        }
    }
}

pub(crate) async fn login(client: &Client, namespace: &str, environment: &str) -> Session {
    try_login(client, namespace, environment).await.unwrap_or_else(|e| panic!("login to {environment}: {e}"))
}

/// Logs in, retrying whatever fails while the ERP comes back (a restarted database or server).
async fn login_when_back(client: &Client, namespace: &str, environment: &str) -> Session {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        match try_login(client, namespace, environment).await {
            Ok(session) => return session,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "the ERP is not back yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the ERP of {environment} did not come back: {e}"),
        }
    }
}

pub(crate) async fn create_party(session: &Session, name: &str) {
    session.create("party.party", vec![json!({"name": name})]).await.unwrap();
}

async fn parties_named(session: &Session, name: &str) -> i64 {
    session.search_count("party.party", json!([["name", "=", name]])).await.unwrap()
}

/// Waits until the Deployment runs its latest template on every replica.
async fn rolled_out(deployments: &Api<Deployment>, name: &str) {
    let done = |deployment: Option<&Deployment>| {
        deployment.is_some_and(|d| {
            let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            status.observed_generation >= d.metadata.generation
                && status.updated_replicas == Some(wanted)
                && status.ready_replicas == Some(wanted)
                && status.replicas == Some(wanted)
        })
    };
    until(deployments, name, "rolled out", READY_TIMEOUT, done).await;
}

#[tokio::test]
async fn tenant_serves_a_real_erp() {
    let operator = operator_on_the_real_node().await;
    let (_, namespace) = ready_tenant(&operator, "real-erp", true).await;
    let client = operator.client.clone();
    let node = TestEnv::shared().await.real_node().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    for pod in pods.list(&Default::default()).await.unwrap() {
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()), "every pod of the tenant runs for real");
    }

    for environment in ["production", "test"] {
        // JSON-RPC through the web proxy, as the tenant's admin.
        let session = login(&client, &namespace, environment).await;
        let token = format!("{environment}-{}", rand::random::<u32>());
        create_party(&session, &token).await;
        assert_eq!(parties_named(&session, &token).await, 1);
        // The web client itself: its page and a file the page loads.
        let erp = web_client(&client, &namespace, environment).await;
        let page = reqwest::get(format!("{}/", erp.url())).await.unwrap().text().await.unwrap();
        assert!(page.contains("tryton-sao"), "not sao's page: {page:.300}");
        let script = reqwest::get(format!("{}/dist/tryton-sao.js", erp.url())).await.unwrap();
        assert!(script.status().is_success(), "sao's script: {}", script.status());
    }
    // The environments are two databases: what one holds, the other does not.
    let production = login(&client, &namespace, "production").await;
    let test = login(&client, &namespace, "test").await;
    let token = format!("only-production-{}", rand::random::<u32>());
    create_party(&production, &token).await;
    assert_eq!(parties_named(&test, &token).await, 0);

    // Mutation check: the same checks fail when the server's database address is wrong. The
    // operator is stopped first, or it would put its own Deployment back.
    operator.stop().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let server = deployments.get("erp-server-production").await.unwrap();
    let mut env = server.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    let uri = env.iter_mut().find(|e| e.name == "TRYTOND_DATABASE__URI").unwrap();
    uri.value = uri.value.as_ref().map(|v| v.replace("@postgres:", "@postgres-missing:"));
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "server", "env": env}]}}}});
    deployments.patch("erp-server-production", &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();
    rolled_out(&deployments, "erp-server-production").await;
    // The old server answers for a moment while it stops; then the refusal must come.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match try_login(&client, &namespace, "production").await {
            Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(_) => panic!("a server without its database still logs in"),
            // The ERP's own refusal, not a proxy's.
            Err(e) => break assert!(!is_gateway(&e), "{e}"),
        }
    }
}

/// A ready production-only tenant with a party created through its ERP: its name, namespace and
/// the party's name.
async fn tenant_with_a_party(operator: &Operator, prefix: &str) -> (String, String, String) {
    let (name, namespace) = ready_tenant(operator, prefix, false).await;
    let session = login(&operator.client, &namespace, "production").await;
    let token = format!("{prefix}-{}", rand::random::<u32>());
    create_party(&session, &token).await;
    (name, namespace, token)
}

/// The ERP agent's image, built from the workspace's `Dockerfile` (its `erp-agent` stage).
const AGENT_IMAGE: &str = concat!("tenantry/erp-agent:", env!("CARGO_PKG_VERSION"));

/// Runs the agent's image as a pod of the tenant's namespace on the real node, the way a backup
/// Job runs it: as the ERP's user (so it reads the file store the server wrote), the database
/// URL made from the tenant's generated Secret, the backup key from a Secret volume. Returns the
/// JSON document it printed.
async fn run_agent(client: &Client, namespace: &str, tenant: &str, pod_name: &str, args: &[&str]) -> serde_json::Value {
    let secret = |name: &str, key: &str| json!({"secretKeyRef": {"name": name, "key": key}});
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod_name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "runAsNonRoot": true},
            "containers": [{
                "name": "agent",
                "image": AGENT_IMAGE,
                "args": args,
                "env": [
                    {"name": "DB_USER", "valueFrom": secret("postgres-credentials", "username")},
                    {"name": "DB_PASSWORD", "valueFrom": secret("postgres-credentials", "password")},
                    {"name": "TENANTRY_AGENT_DATABASE_URL", "value": "postgres://$(DB_USER):$(DB_PASSWORD)@postgres:5432/"},
                    {"name": "TENANTRY_AGENT_TENANT", "value": tenant},
                    {"name": "TENANTRY_AGENT_DATABASE", "value": "production"},
                    {"name": "TENANTRY_AGENT_ERP_VERSION", "value": VERSION},
                    {"name": "TENANTRY_AGENT_FILESTORE", "value": "/var/lib/trytond/db"},
                    {"name": "TENANTRY_AGENT_STORE", "value": "file:///backups"},
                    {"name": "TENANTRY_AGENT_RECIPIENT", "valueFrom": secret("backup-key", "recipient")},
                    {"name": "TENANTRY_AGENT_KEY_FILE", "value": "/etc/backup-key/key"},
                    {"name": "TENANTRY_AGENT_JOURNAL", "value": "/work/journal.json"},
                    // Standard output is the JSON document alone.
                    {"name": "TENANTRY_AGENT_LOG", "value": "off"},
                ],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"cpu": "1", "memory": "512Mi"},
                },
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [
                    {"name": "filestore", "mountPath": "/var/lib/trytond/db", "readOnly": true},
                    {"name": "backups", "mountPath": "/backups"},
                    {"name": "key", "mountPath": "/etc/backup-key", "readOnly": true},
                    {"name": "work", "mountPath": "/work"},
                ],
            }],
            "volumes": [
                {"name": "filestore", "persistentVolumeClaim": {"claimName": "filestore-production", "readOnly": true}},
                {"name": "backups", "persistentVolumeClaim": {"claimName": "agent-backups"}},
                // Root's file, readable by the pod's group alone: what the agent accepts of a Secret.
                {"name": "key", "secret": {"secretName": "backup-key", "items": [{"key": "key", "path": "key"}], "defaultMode": 0o440}},
                {"name": "work", "emptyDir": {}},
            ],
        },
    }))
    .unwrap();
    e2e::node::place_on_real_node(pod.spec.as_mut().unwrap());
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let (pod, log) = ended_with_log(&pods, pod_name, READY_TIMEOUT).await;
    assert_eq!(pod_phase(&pod), "Succeeded", "tenantry-agent {args:?}: {log}");
    serde_json::from_str(&log)
        .unwrap_or_else(|e| panic!("tenantry-agent {args:?} printed no JSON document ({e}): {log}"))
}

/// The agent's image backs the tenant's database up from a pod beside it, reaching PostgreSQL
/// through the tenant's Service with the tenant's credentials, and a second pod reads the
/// backup back in full: its manifest counts as many parties as the ERP shows.
async fn agent_image_backs_up(client: &Client, namespace: &str, tenant: &str, parties: i64) {
    // The key the operator generated for the tenant: a pair, as age makes them.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let data = secrets.get("backup-key").await.unwrap().data.unwrap();
    let key: age::x25519::Identity = String::from_utf8(data["key"].0.clone()).unwrap().trim().parse().unwrap();
    assert_eq!(key.to_public().to_string(), String::from_utf8(data["recipient"].0.clone()).unwrap());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claim = json!({
        "metadata": {"name": "agent-backups"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    });
    claims.create(&PostParams::default(), &serde_json::from_value(claim).unwrap()).await.unwrap();

    let summary = run_agent(client, namespace, tenant, "agent-backup", &["backup", "--kind", "manual"]).await;
    let id = summary["backup_id"].as_str().unwrap_or_else(|| panic!("no backup id: {summary}"));
    assert!(summary["data_bytes"].as_u64().unwrap_or(0) > 0, "{summary}");
    let verified = run_agent(client, namespace, tenant, "agent-verify", &["verify", "--backup", id]).await;
    assert_eq!(verified["verified"], true, "{verified}");
    let manifest = &verified["manifest"];
    assert!(manifest["modules"]["party"].is_string(), "the party module is in the backup: {manifest}");
    assert_eq!(manifest["fingerprint"]["party_party"].as_i64(), Some(parties), "{manifest}");
    assert!(manifest["tools"]["pg_dump"].as_str().is_some_and(|v| v.contains("PostgreSQL) 15.")), "{manifest}");
}

#[tokio::test]
async fn database_survives_its_pod() {
    let operator = operator_on_the_real_node().await;
    let (name, namespace, token) = tenant_with_a_party(&operator, "real-db").await;
    let client = operator.client.clone();
    // The ERP agent's image, run beside the database (one tenant for both: each real tenant
    // costs the run an ERP's initialisation).
    let session = login(&client, &namespace, "production").await;
    let parties = session.search_count("party.party", json!([])).await.unwrap();
    assert!(parties >= 1);
    agent_image_backs_up(&client, &namespace, &name, parties).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let before = pods.get("postgres-0").await.unwrap().metadata.uid;
    pods.delete("postgres-0", &DeleteParams::default()).await.unwrap();
    let replaced = |pod: Option<&Pod>| {
        pod.is_some_and(|p| {
            p.metadata.uid != before
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    };
    until(&pods, "postgres-0", "replaced and ready", READY_TIMEOUT, replaced).await;

    let session = login_when_back(&client, &namespace, "production").await;
    assert_eq!(parties_named(&session, &token).await, 1, "the record outlived the database's pod");
}

#[tokio::test]
async fn suspend_and_resume_keep_real_data() {
    let operator = operator_on_the_real_node().await;
    let (name, namespace, token) = tenant_with_a_party(&operator, "real-suspend").await;
    let client = operator.client.clone();

    operator.patch_spec(&name, json!({"suspended": true})).await;
    operator.wait_phase_within(&name, Phase::Suspended, READY_TIMEOUT).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    // Finished Jobs' pods may stay; nothing else.
    let running =
        |pod: &Pod| !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    while pods.list(&Default::default()).await.unwrap().items.iter().any(running) {
        assert!(tokio::time::Instant::now() < deadline, "a suspended tenant still runs pods");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let database: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    assert_eq!(database.get("postgres").await.unwrap().spec.unwrap().replicas, Some(0));

    operator.patch_spec(&name, json!({"suspended": false})).await;
    operator.wait_phase_within(&name, Phase::Ready, READY_TIMEOUT).await;
    let session = login_when_back(&client, &namespace, "production").await;
    assert_eq!(parties_named(&session, &token).await, 1, "the record outlived the suspension");
}
