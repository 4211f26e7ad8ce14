//! Two replicas of the real operator binary: one leads and reconciles; when it is killed, the
//! other takes over within 30 seconds and reconciles in its place.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TIMEOUT, spec};
use e2e::TestEnv;
use e2e::wait::until;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use rand::Rng;
use std::collections::BTreeMap;
use tenant_operator::api::{Phase, Tenant};

const SELECTOR_LABEL: &str = "tenantry.dev/replica-test";

/// A replica process, killed when dropped (also when the test fails).
struct Replica {
    identity: String,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_replica(identity: &str, kubeconfig: &std::path::Path, lease_namespace: &str, run: &str) -> Replica {
    let child = Command::new(env!("CARGO_BIN_EXE_tenant-operator"))
        .args(["run", "--log-format", "text", "--lease-name", "tenantry-operator-test"])
        .args(["--lease-namespace", lease_namespace])
        .args(["--tenant-selector", &format!("{SELECTOR_LABEL}={run}")])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", identity)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("the operator binary starts");
    Replica { identity: identity.to_string(), child }
}

async fn create_tenant(tenants: &Api<Tenant>, run: &str, prefix: &str) -> String {
    let name = format!("{prefix}-{:06x}", rand::rng().random_range(0..0xff_ffffu32));
    let mut tenant = Tenant::new(&name, spec(false));
    // A host of its own: the operator refuses a second Tenant with a host another one has.
    tenant.spec.ingress.as_mut().unwrap().host = common::host_of(&name);
    tenant.metadata.labels = Some(BTreeMap::from([(SELECTOR_LABEL.to_string(), run.to_string())]));
    tenants.create(&PostParams::default(), &tenant).await.unwrap();
    name
}

async fn wait_ready(tenants: &Api<Tenant>, name: &str) {
    until(tenants, name, "Ready", TIMEOUT, |t: Option<&Tenant>| {
        t.and_then(|t| t.status.as_ref()).is_some_and(|s| s.phase == Some(Phase::Ready))
    })
    .await;
}

#[tokio::test]
async fn operator_replicas_fail_over() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    common::install_crd(&client).await;
    let kubeconfig = env.kubeconfig_path().await;
    let namespace = env.namespace(&client, "operator-lease").await;
    let run = format!("{:08x}", rand::rng().random::<u32>());
    let mut replicas = vec![
        start_replica("replica-a", &kubeconfig, &namespace, &run),
        start_replica("replica-b", &kubeconfig, &namespace, &run),
    ];

    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let holder = |lease: &Lease| lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
    let lease =
        until(&leases, "tenantry-operator-test", "a leader", TIMEOUT, |l: Option<&Lease>| l.and_then(holder).is_some())
            .await;
    let leader = holder(&lease).unwrap();

    let tenants: Api<Tenant> = Api::all(client.clone());
    let first = create_tenant(&tenants, &run, "replicas-before").await;
    wait_ready(&tenants, &first).await;

    // Kill the leader outright: no chance to hand the lease over.
    let index = replicas.iter().position(|r| r.identity == leader).expect("the leader is one of ours");
    let killed_at = Instant::now();
    drop(replicas.remove(index));
    let survivor = replicas[0].identity.clone();
    let expected = survivor.clone();
    until(&leases, "tenantry-operator-test", "the other replica leads", TIMEOUT, move |l: Option<&Lease>| {
        l.and_then(holder).is_some_and(|h| h == expected)
    })
    .await;
    let takeover = killed_at.elapsed();
    eprintln!("leader {leader} killed; {survivor} took over after {takeover:.1?}");
    assert!(takeover < Duration::from_secs(30), "takeover took {takeover:?}");

    // The new leader reconciles: a Tenant created after the failover becomes Ready.
    let second = create_tenant(&tenants, &run, "replicas-after").await;
    wait_ready(&tenants, &second).await;
}
