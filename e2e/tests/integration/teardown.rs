//! The environment leaves nothing behind: not when it is stopped politely, and not when the
//! process owning it is killed outright (the reaper's job).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Starts `testenv up` and reads its exports: the work directory and the PIDs of its children.
fn start_testenv() -> (Child, PathBuf, Vec<u32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .arg("up")
        .env_remove(e2e::env::STATE_VAR)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("testenv starts");
    let stdout = child.stdout.take().unwrap();
    let mut workdir = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("testenv output");
        if let Some(state) = line.strip_prefix(&format!("export {}=", e2e::env::STATE_VAR)) {
            workdir = Path::new(state).parent().map(Path::to_path_buf);
            break;
        }
    }
    // Keep reading what testenv still prints: a closed pipe would make its next print fail.
    std::thread::spawn(move || lines.for_each(drop));
    let workdir = workdir.expect("testenv printed its exports (see its stderr above)");
    let pids: Vec<u32> =
        std::fs::read_to_string(workdir.join(".pids")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    // etcd, apiserver, controller-manager, scheduler, the real node's namespaces, image registry,
    // containerd, kubelet, kube-proxy and cluster DNS, PostgreSQL, Redis, the S3 server.
    assert_eq!(pids.len(), 13, "{pids:?}");
    for pid in &pids {
        assert!(running(*pid), "child {pid} is not running");
    }
    (child, workdir, pids)
}

/// A container running on the real node (its shim, its mounts, its cgroups, its network), so
/// that stopping the environment has all of those to clean up.
fn run_a_container(workdir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = e2e::cluster::kube_config(&workdir.join("kubeconfig")).await.unwrap();
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
        let mut pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "left-running"},
            "spec": {"containers": [{
                "name": "main",
                "image": e2e::node::image::BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }]},
        }))
        .unwrap();
        e2e::node::place_on_real_node(pod.spec.as_mut().unwrap());
        pods.create(&Default::default(), &pod).await.unwrap();
        let running = |pod: Option<&k8s_openapi::api::core::v1::Pod>| {
            pod.and_then(|p| p.status.as_ref()).and_then(|s| s.phase.as_deref()) == Some("Running")
        };
        e2e::wait::until(&pods, "left-running", "running", e2e::wait::DEFAULT_TIMEOUT, running).await;
    });
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
}

/// What the real node of the environment in `workdir`, owned by process `owner`, could leave:
/// processes started from its files (containerd's shims, containers), its cgroups, its link.
fn node_leftovers(workdir: &Path, owner: u32, host_address: &str) -> Vec<String> {
    let mut left = Vec::new();
    let marker = workdir.join("node").display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&marker) && running(pid) {
            left.push(format!("process {pid}: {cmdline}"));
        }
    }
    for controller in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for cgroup in std::fs::read_dir(controller.path()).into_iter().flatten().flatten() {
            let name = cgroup.file_name().to_string_lossy().to_string();
            if name.starts_with("tenantry-") && name.ends_with(&format!("-{owner}")) {
                left.push(format!("cgroup {}", cgroup.path().display()));
            }
        }
    }
    let addresses = Command::new("ip").args(["-o", "-4", "addr", "show"]).output().unwrap();
    if String::from_utf8_lossy(&addresses.stdout).contains(&format!(" {host_address}/")) {
        left.push(format!("the link's address {host_address}"));
    }
    left
}

fn host_address(workdir: &Path) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workdir.join("env.json")).unwrap()).unwrap();
    info["real_node"]["host_address"].as_str().unwrap().to_string()
}

/// Polls the process table: there is no event to wait on for another process's orphans.
fn assert_all_gone(pids: &[u32], workdir: &Path, owner: u32, host_address: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| running(*p)).collect();
        let node = node_leftovers(workdir, owner, host_address);
        if left.is_empty() && !workdir.exists() && node.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {left:?}, directory {} exists: {}, of the real node: {node:?}",
            workdir.display(),
            workdir.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stopping_testenv_leaves_nothing_behind() {
    let (mut child, workdir, pids) = start_testenv();
    let (owner, host_address) = (child.id(), host_address(&workdir));
    run_a_container(&workdir);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "testenv exited with {status}");
    // A polite stop is complete by the time the command exits, but for the kernel's ending of
    // the node's namespaces.
    let left: Vec<u32> = pids.iter().copied().filter(|p| running(*p)).collect();
    assert!(left.is_empty(), "still running after testenv exited: {left:?}");
    assert!(!workdir.exists(), "{} was not removed", workdir.display());
    assert_all_gone(&pids, &workdir, owner, &host_address);
}

#[test]
fn killing_testenv_leaves_nothing_behind() {
    let (mut child, workdir, pids) = start_testenv();
    let (owner, host_address) = (child.id(), host_address(&workdir));
    run_a_container(&workdir);
    // SIGKILL: no destructor runs; only the reaper can clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_all_gone(&pids, &workdir, owner, &host_address);
}
