//! `testenv demo --real` end to end, as a person would use it: the command prints the signup URL
//! and a provider-admin token; a signup through the API reaches `ready` through the real operator
//! on the local cluster's real node; the demo announces the tenant's web client, where the ERP
//! answers its admin; no page says the workloads are simulated; Ctrl-C (SIGINT) ends it with
//! status 0 and leaves no process and no directory behind. (The notice itself, with simulated
//! nodes, is the control plane's chart test's.)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::sync::mpsc::Receiver;

/// Building what is missing and starting a cluster take time on a cold machine; the binaries
/// are normally built already and the cluster starts in about 15 s.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(900);
/// A first real Tryton: images pulled, PostgreSQL initialised, `trytond-admin --all`, the server
/// started, on a shared 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// The Tryton series of the control plane's default ERP version.
const SERIES: &str = "7.0";
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the demo printed that the test needs.
struct Banner {
    signup_url: String,
    token: String,
    kubeconfig: PathBuf,
    workdirs: Vec<PathBuf>,
}

/// Kills the demo if the test fails half-way; its work directories' reapers then clean up.
struct DemoProcess(Child);

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads the banner from the demo's stdout: the `sign up` URL, the token line after `provider
/// admin`, the `cluster`'s kubeconfig and the `work directories`; then passes on the lines
/// announcing tenants.
fn read_banner(stdout: ChildStdout) -> (Banner, Receiver<String>) {
    let (sender, receiver) = std::sync::mpsc::channel();
    let (announce, announced) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let (mut signup_url, mut token, mut kubeconfig, mut workdirs) = (None, None, None, None);
        let mut token_next = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            let text = line.trim();
            if let Some(url) = text.strip_prefix("sign up") {
                signup_url = Some(url.trim().to_string());
            } else if text.starts_with("provider admin") {
                token_next = true;
            } else if token_next && !text.is_empty() {
                token = Some(text.to_string());
                token_next = false;
            } else if let Some(rest) = text.strip_prefix("cluster") {
                kubeconfig =
                    rest.split_whitespace().find_map(|word| word.strip_prefix("KUBECONFIG=")).map(PathBuf::from);
            } else if let Some(dirs) = text.strip_prefix("work directories") {
                workdirs =
                    Some(dirs.split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).collect::<Vec<_>>());
            }
            if let (Some(signup_url), Some(token), Some(kubeconfig), Some(workdirs)) =
                (&signup_url, &token, &kubeconfig, &workdirs)
            {
                let _ = sender.send(Banner {
                    signup_url: signup_url.clone(),
                    token: token.clone(),
                    kubeconfig: kubeconfig.clone(),
                    workdirs: workdirs.clone(),
                });
                break;
            }
        }
        // Keep reading what the demo still prints: a closed pipe would make its next print fail.
        for line in lines.map_while(Result::ok) {
            if line.trim_start().starts_with("tenant ") {
                let _ = announce.send(line.trim().to_string());
            }
        }
    });
    let banner = receiver
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("the demo printed its signup URL, token, kubeconfig and work directories (its stderr is above)");
    (banner, announced)
}

/// The PIDs every work directory records for its reaper.
fn recorded_pids(workdirs: &[PathBuf]) -> Vec<u32> {
    workdirs
        .iter()
        .flat_map(|dir| {
            std::fs::read_to_string(dir.join(".pids")).unwrap_or_default().lines().map(String::from).collect::<Vec<_>>()
        })
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
}

/// The control plane's view of a tenant, polled: its status mirror has no event to wait on.
async fn until_ready(http: &reqwest::Client, base: &str, slug: &str, token: &str) -> Value {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let reply = http.get(format!("{base}/v1/tenants/{slug}")).bearer_auth(token).send().await.unwrap();
        assert_eq!(reply.status(), 200, "GET /v1/tenants/{slug}");
        let tenant: Value = reply.json().await.unwrap();
        if tenant["provisioning"] == "ready" {
            return tenant;
        }
        assert!(Instant::now() < deadline, "{slug} not ready within {READY_TIMEOUT:?}; last seen: {tenant}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The web client's address the demo announces for `slug`: `tenant <slug> ready: web client at
/// <url>`.
fn announced_web_client(announced: &Receiver<String>, slug: &str) -> String {
    loop {
        let line = announced.recv_timeout(Duration::from_secs(60)).expect("the demo announces the ready tenant");
        let mut words = line.split_whitespace();
        if words.nth(1) == Some(slug) {
            return words.last().expect("an address").to_string();
        }
    }
}

/// The ERP's master password, from the tenant's Secret: what its admin reads on the tenant's
/// page, once.
async fn master_password(kubeconfig: &Path, slug: &str) -> String {
    let config = e2e::cluster::kube_config(kubeconfig).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(kube::Client::try_from(config).unwrap(), &format!("tenant-{slug}"));
    let secret = secrets.get("erp-master-password").await.unwrap();
    String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap()
}

async fn page(http: &reqwest::Client, url: &str) -> String {
    let reply = http.get(url).send().await.unwrap();
    assert_eq!(reply.status(), 200, "GET {url}");
    reply.text().await.unwrap()
}

#[tokio::test]
async fn demo_runs_a_signed_up_tenants_erp_for_real_and_stops_cleanly() {
    let port = e2e::process::free_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .args(["demo", "--real", "--port", &port.to_string()])
        .env_remove(e2e::env::STATE_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("testenv demo starts");
    let stdout = child.stdout.take().unwrap();
    let mut demo = DemoProcess(child);
    let (banner, announced) = tokio::task::spawn_blocking(move || read_banner(stdout)).await.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(banner.signup_url, format!("{base}/signup"));
    assert_eq!(banner.workdirs.len(), 2, "the demo's and the environment's: {:?}", banner.workdirs);
    let pids = recorded_pids(&banner.workdirs);
    // etcd, the three kube-*, the real node (its namespaces, image registry, containerd,
    // kubelet, kube-proxy, cluster DNS) and PostgreSQL, Redis, the S3 server; the operator and
    // the control plane.
    assert_eq!(pids.len(), 15, "{pids:?}");

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let signup_page = page(&http, &banner.signup_url).await;
    assert!(
        signup_page.contains("<form") && signup_page.contains("name=\"company_name\""),
        "the signup form: {signup_page}"
    );

    // The printed token is the provider admin's.
    let listed = http.get(format!("{base}/v1/tenants")).bearer_auth(&banner.token).send().await.unwrap();
    assert_eq!(listed.status(), 200, "the printed token lists tenants");

    let signup = json!({"company_name": "Demo Test Corp", "admin_email": "ada@demo-test.example", "plan": "starter", "seats": 2});
    let reply = http.post(format!("{base}/v1/signup")).json(&signup).send().await.unwrap();
    assert_eq!(reply.status(), 202);
    let created: Value = reply.json().await.unwrap();
    let slug = created["tenant"]["slug"].as_str().expect("a slug").to_string();
    let tenant_token = created["token"].as_str().expect("a tenant-admin token").to_string();
    let tenant = until_ready(&http, &base, &slug, &tenant_token).await;
    assert_eq!(tenant["url"], format!("https://{slug}.erp.example.com"), "{tenant}");

    // The ERP really answers at the announced address, through the web client's proxy.
    let wanted = slug.clone();
    let web_client = tokio::task::spawn_blocking(move || announced_web_client(&announced, &wanted)).await.unwrap();
    let index = page(&http, &web_client).await;
    assert!(index.contains("<html") || index.contains("<!DOCTYPE"), "the web client's page: {index}");
    let erp = e2e::tryton::TrytonClient::for_series(web_client.trim_end_matches('/'), SERIES).unwrap();
    let password = master_password(&banner.kubeconfig, &slug).await;
    let session = erp.login("production", "admin", &password).await.expect("the tenant's admin logs in to the ERP");
    assert!(session.search_count("res.user", json!([])).await.unwrap() >= 1);
    // Minutes after the control plane first looked at the nodes: every simulated one is
    // cordoned, so no page says the workloads are simulated.
    for url in [banner.signup_url.clone(), format!("{base}/login")] {
        let shown = page(&http, &url).await;
        assert!(!shown.contains("Simulated workloads"), "{url} says the workloads are simulated");
    }

    kill(Pid::from_raw(demo.0.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop within {STOP_TIMEOUT:?} of SIGINT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(0), "the demo's exit status");
    // A clean stop is complete when the command exits: no reaper needed.
    let left: Vec<u32> = pids.iter().copied().filter(|pid| running(*pid)).collect();
    assert!(left.is_empty(), "still running after the demo exited: {left:?}");
    for dir in &banner.workdirs {
        assert!(!Path::new(dir).exists(), "{} was not removed", dir.display());
    }
}
