//! `testenv demo` end to end, as a person would use it: the command prints the signup URL and a
//! provider-admin token; the page shows the form and the simulated-workloads notice; a signup
//! through the API reaches `ready` through the real operator on the local cluster; Ctrl-C
//! (SIGINT) ends it with status 0 and leaves no process and no directory behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Building what is missing and starting a cluster take time on a cold machine; the binaries
/// are normally built already and the cluster starts in about 15 s.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(900);
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const NOTICE_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the demo printed that the test needs.
struct Banner {
    signup_url: String,
    token: String,
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
/// admin`, and the `work directories`.
fn read_banner(stdout: ChildStdout) -> Banner {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let (mut signup_url, mut token, mut workdirs) = (None, None, None);
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
            } else if let Some(dirs) = text.strip_prefix("work directories") {
                workdirs =
                    Some(dirs.split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).collect::<Vec<_>>());
            }
            if let (Some(signup_url), Some(token), Some(workdirs)) = (&signup_url, &token, &workdirs) {
                let _ = sender.send(Banner {
                    signup_url: signup_url.clone(),
                    token: token.clone(),
                    workdirs: workdirs.clone(),
                });
                break;
            }
        }
        // Keep reading what the demo still prints: a closed pipe would make its next print fail.
        lines.for_each(drop);
    });
    receiver
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("the demo printed its signup URL, token and work directories (its stderr is above)")
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

/// The signup page; the simulated-workloads notice appears once the control plane has looked at
/// the cluster's nodes, which it does right after starting.
async fn signup_page_with_notice(http: &reqwest::Client, url: &str) -> String {
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    loop {
        let reply = http.get(url).send().await.unwrap();
        assert_eq!(reply.status(), 200, "GET {url}");
        let page = reply.text().await.unwrap();
        if page.contains("Simulated workloads") {
            return page;
        }
        assert!(Instant::now() < deadline, "{url} shows no simulated-workloads notice: {page}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn demo_signs_up_a_tenant_to_ready_and_stops_cleanly() {
    let port = e2e::process::free_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .args(["demo", "--port", &port.to_string()])
        .env_remove(e2e::env::STATE_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("testenv demo starts");
    let stdout = child.stdout.take().unwrap();
    let mut demo = DemoProcess(child);
    let banner = tokio::task::spawn_blocking(move || read_banner(stdout)).await.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(banner.signup_url, format!("{base}/signup"));
    assert_eq!(banner.workdirs.len(), 2, "the demo's and the environment's: {:?}", banner.workdirs);
    let pids = recorded_pids(&banner.workdirs);
    // etcd, the three kube-*, the real node (its namespaces, image registry, containerd,
    // kubelet, kube-proxy, cluster DNS) and PostgreSQL, Redis, the S3 server; the operator and
    // the control plane.
    assert_eq!(pids.len(), 15, "{pids:?}");

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let page = signup_page_with_notice(&http, &banner.signup_url).await;
    assert!(page.contains("<form") && page.contains("name=\"company_name\""), "the signup form: {page}");

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
