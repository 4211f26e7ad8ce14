//! The real node runs what the cluster asks of it: containers under a real kubelet, containerd
//! and runc, on the bridge network, with Services through kube-proxy. Each test has a namespace
//! of its own.

use std::net::Ipv4Addr;

use e2e::TestEnv;
use e2e::images::RECIPES;
use e2e::node::image::BUSYBOX_IMAGE;
use e2e::node::place_on_real_node;
use e2e::wait::{DEFAULT_TIMEOUT, ended_with_log, pod_phase, until};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

fn pod(name: &str, labels: serde_json::Value, restart: &str, script: &str) -> Pod {
    pod_running(name, labels, restart, BUSYBOX_IMAGE, "Never", &["/bin/sh", "-c", script])
}

/// A pod on the real node running `command` in `image`.
fn pod_running(name: &str, labels: serde_json::Value, restart: &str, image: &str, pull: &str, command: &[&str]) -> Pod {
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": restart,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": pull, "command": command}],
        },
    }))
    .unwrap();
    place_on_real_node(pod.spec.as_mut().unwrap());
    pod
}

#[tokio::test]
async fn real_node_runs_a_pod() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let namespace = env.namespace(&client, "real-pod").await;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let token = format!("ran-{}", rand::random::<u32>());
    let script = format!("echo {token}; echo \"address $(hostname -i)\"");
    pods.create(&PostParams::default(), &pod("hello", json!({}), "Never", &script)).await.unwrap();

    let (pod, log) = ended_with_log(&pods, "hello", DEFAULT_TIMEOUT).await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}\n{pod:#?}");
    let spec = pod.spec.as_ref().unwrap();
    let node = env.real_node().await;
    assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()));
    // The container printed it: the command really ran, on the node's pod network.
    assert!(log.contains(&token), "{log}");
    let address: Ipv4Addr = pod.status.as_ref().unwrap().pod_ip.as_deref().unwrap().parse().unwrap();
    let network: Ipv4Addr = node.pod_cidr.trim_end_matches("/24").parse().unwrap();
    assert_eq!(address.octets()[..3], network.octets()[..3], "pod address {address} outside {}", node.pod_cidr);
    assert!(log.contains(&format!("address {address}")), "{log}");
}

/// A web server pod serving a page with a token of its own, behind Service `web`; returns the
/// token and the Service's cluster address once the server runs.
async fn serve_page(pods: &Api<Pod>, services: &Api<Service>) -> (String, String) {
    let token = format!("served-{}", rand::random::<u32>());
    let serve = format!("mkdir -p /www && echo {token} > /www/index.html && exec httpd -f -p 8080 -h /www");
    pods.create(&PostParams::default(), &pod("web", json!({"app": "web"}), "Always", &serve)).await.unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap();
    let service = services.create(&PostParams::default(), &service).await.unwrap();
    let running = |pod: Option<&Pod>| pod.is_some_and(|p| pod_phase(p) == "Running");
    until(pods, "web", "running", DEFAULT_TIMEOUT, running).await;
    (token, service.spec.unwrap().cluster_ip.unwrap())
}

/// A client pod fetching `url`, retried while the Service's rules, its name and the server come
/// up (busybox's `wget -T` crashes in its static build: the pod's own timeout bounds the wait);
/// asserts it got the page with `token`.
async fn fetch_page(pods: &Api<Pod>, url: &str, token: &str) {
    let fetch = format!("for i in $(seq 60); do wget -q -O - {url} && exit 0; sleep 0.5; done; exit 1");
    pods.create(&PostParams::default(), &pod("client", json!({}), "Never", &fetch)).await.unwrap();
    let (pod, log) = ended_with_log(pods, "client", DEFAULT_TIMEOUT).await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert!(log.contains(token), "{log}");
}

async fn web_namespace(prefix: &str) -> (Api<Pod>, Api<Service>) {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let namespace = env.namespace(&client, prefix).await;
    (Api::namespaced(client.clone(), &namespace), Api::namespaced(client, &namespace))
}

#[tokio::test]
async fn pods_reach_services_through_kube_proxy() {
    let (pods, services) = web_namespace("real-svc").await;
    let (token, cluster_ip) = serve_page(&pods, &services).await;
    // The Service's address exists only in kube-proxy's rules on the node.
    fetch_page(&pods, &format!("http://{cluster_ip}/"), &token).await;
}

#[tokio::test]
async fn pods_reach_services_by_name() {
    let (pods, services) = web_namespace("real-dns").await;
    let (token, _) = serve_page(&pods, &services).await;
    // The bare name: the pod's search path adds `<namespace>.svc.cluster.local`.
    fetch_page(&pods, "http://web/", &token).await;
}

/// Every image built here from the repository's Dockerfiles, pulled from the environment's
/// registry under the name pods use (with `Always`, as the operator renders the ERP's), runs.
#[tokio::test]
async fn images_built_here_run_on_the_real_node() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let namespace = env.namespace(&client, "real-images").await;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    for (index, recipe) in RECIPES.iter().enumerate() {
        let (command, _) = recipe.check;
        let pod = pod_running(&format!("image-{index}"), json!({}), "Never", recipe.name, "Always", command);
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    for (index, recipe) in RECIPES.iter().enumerate() {
        let (pod, log) = ended_with_log(&pods, &format!("image-{index}"), DEFAULT_TIMEOUT).await;
        assert_eq!(pod_phase(&pod), "Succeeded", "{}: {log}\n{:#?}", recipe.name, pod.status);
        assert!(log.contains(recipe.check.1), "{}: {log}", recipe.name);
    }
}
