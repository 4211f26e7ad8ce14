//! The namespaces the real node lives in, and its link to this host.
//!
//! `unshare` makes a PID, mount and network namespace; `tini` is their PID 1 (it reaps the
//! orphans containerd's shims leave) and runs the set-up script, which makes `/run`,
//! `/var/lib/cni` and `/var/log` private, turns on forwarding, and then waits. Every node
//! program is started inside with `nsenter`. Stopping the `unshare` process kills PID 1
//! (`--kill-child`), and with it, by the kernel, every process of the namespace; the mount and
//! network namespaces, their overlay mounts, bridges, veths and iptables rules go with the last
//! of them. What outlives them is only the node's cgroup directories, removed on drop and by the
//! work directory's reaper (`.cleanup`).
//!
//! The link is a veth pair, `10.231.<n>.1` on this host and `10.231.<n>.2` in the node, and the
//! node's pods get `10.232.<n>.0/24` and the cluster's Services `10.<240 + n/16>.<n%16 × 16>.0/20`,
//! both routed to the node (where kube-proxy's rules turn a Service's address into a pod's), so
//! this host reaches pods and Services as a node would. `<n>` is the first number no address
//! of this host uses yet, taken under a lock so that two environments never share one.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{Error, IoContext, Result};
use crate::install::CacheLock;
use crate::process::{Spec, Supervised, WorkDir, run};

/// How long the namespaces' set-up may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Mounted inside the node only; created on the host (empty) if missing, so it can be.
const CNI_STATE: &str = "/var/lib/cni";

/// The node's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// This host's end: where the node and its pods reach the apiserver.
    pub host: Ipv4Addr,
    /// The node's own address (its InternalIP).
    pub node: Ipv4Addr,
    /// The node's pod network, a /24.
    pub pods: Ipv4Addr,
    index: u8,
}

impl Link {
    pub fn pod_cidr(&self) -> String {
        format!("{}/24", self.pods)
    }

    /// The cluster's Service addresses: 4094 of them, one /20 of `10.240.0.0/12` per link.
    pub fn service_cidr(&self) -> String {
        format!("10.{}.{}.0/20", 240 + self.index / 16, (self.index % 16) * 16)
    }
}

/// The namespaces, alive as long as this value.
pub struct Sandbox {
    /// Where the node keeps its state, logs and configuration.
    pub dir: PathBuf,
    pub link: Link,
    /// The namespaces' PID 1, as this host sees it: what `nsenter` enters.
    pid1: u32,
    /// `/tenantry-<n>-<pid>` under every cgroup controller.
    cgroup: String,
    holder: Supervised,
}

impl Sandbox {
    pub fn create(workdir: &Arc<WorkDir>) -> Result<Self> {
        let dir = workdir.join("node");
        fs::create_dir_all(dir.join("var-log")).context(|| format!("creating {}", dir.display()))?;
        fs::create_dir_all(CNI_STATE).context(|| format!("creating {CNI_STATE}"))?;
        let ready = dir.join("ready");
        let init = dir.join("init.sh");
        fs::write(&init, init_script(&dir, &ready)).context(|| format!("writing {}", init.display()))?;
        let holder = Supervised::spawn(
            workdir,
            Spec::new("node-namespaces", "unshare")
                .args(["--pid", "--fork", "--mount", "--net", "--kill-child", "--mount-proc"])
                .args(["--propagation", "private", "tini", "-s", "--", "sh"])
                .arg(init.display().to_string())
                // `unshare` waits out a polite signal; ending it is meant to end everything.
                .stop_signal(Signal::SIGKILL),
        )?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        while !ready.exists() {
            holder.check_alive()?;
            if Instant::now() > deadline {
                return Err(Error::Prerequisite(format!(
                    "the real node's namespaces were not set up in {SETUP_TIMEOUT:?}; see {}",
                    holder.log_path().display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let children = format!("/proc/{0}/task/{0}/children", holder.pid());
        let pid1: u32 = fs::read_to_string(&children)
            .context(|| format!("reading {children}"))?
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| Error::Prerequisite("the node's namespaces have no PID 1".into()))?;
        let link = connect(pid1)?;
        let cgroup = format!("/tenantry-{}-{}", link.index, std::process::id());
        for controller in cgroup_controllers() {
            let path = controller.join(cgroup.trim_start_matches('/'));
            fs::create_dir_all(&path).context(|| format!("creating {}", path.display()))?;
        }
        // If this process dies, the reaper stops the namespaces and then runs this.
        let cleanup = workdir.join(".cleanup");
        fs::write(&cleanup, cleanup_script(&cgroup)).context(|| format!("writing {}", cleanup.display()))?;
        Ok(Self { dir, link, pid1, cgroup, holder })
    }

    /// `nsenter` into the node's namespaces, then `program`.
    pub fn spec(&self, name: &str, program: impl AsRef<Path>) -> Spec {
        Spec::new(name, "nsenter")
            .args(["-t", &self.pid1.to_string(), "--pid", "--mount", "--net", "--"])
            .arg(program.as_ref().display().to_string())
    }

    /// The cgroup every pod of the node goes under (the kubelet's `--cgroup-root`).
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup
    }

    pub fn check_alive(&self) -> Result<()> {
        self.holder.check_alive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.holder.stop(Duration::from_secs(5));
        // The kernel empties the namespaces on its own time; the cgroups go once it has.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !remove_cgroups(&self.cgroup) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn init_script(dir: &Path, ready: &Path) -> String {
    format!(
        "set -e\n\
         mount -t tmpfs -o mode=755 tmpfs /run\n\
         mount -t tmpfs -o mode=755 tmpfs {CNI_STATE}\n\
         mount --bind '{log}' /var/log\n\
         ip link set lo up\n\
         echo 1 > /proc/sys/net/ipv4/ip_forward\n\
         echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || true\n\
         : > '{ready}'\n\
         exec sleep infinity\n",
        log = dir.join("var-log").display(),
        ready = ready.display(),
    )
}

fn cleanup_script(cgroup: &str) -> String {
    let name = cgroup.trim_start_matches('/');
    format!(
        "i=0\nwhile [ $i -lt 100 ]; do\n  left=0\n  for d in /sys/fs/cgroup/*/{name}; do\n    [ -d \"$d\" ] || continue\n    \
         find \"$d\" -depth -type d -exec rmdir {{}} \\; 2>/dev/null || left=1\n  done\n  [ $left = 0 ] && break\n  \
         sleep 0.1; i=$((i+1))\ndone\n"
    )
}

/// The veth pair and the routes, under a lock: the first free `<n>`.
fn connect(pid1: u32) -> Result<Link> {
    let _lock = CacheLock::acquire("node-link")?;
    let used = run(&Spec::new("ip", "ip").args(["-o", "-4", "addr", "show"]))?;
    let index = (0..=250u8)
        .find(|n| !used.contains(&format!(" 10.231.{n}.1/")))
        .ok_or_else(|| Error::Prerequisite("no free link address 10.231.<n>.1 for a real node".into()))?;
    let link = Link {
        host: Ipv4Addr::new(10, 231, index, 1),
        node: Ipv4Addr::new(10, 231, index, 2),
        pods: Ipv4Addr::new(10, 232, index, 0),
        index,
    };
    let (outside, inside) = (format!("tnt{index}h"), format!("tnt{index}n"));
    let ip = |args: &[&str]| run(&Spec::new("ip", "ip").args(args.iter().copied()));
    let node_ip = |args: &[&str]| {
        run(&Spec::new("ip", "nsenter").args(["-t", &pid1.to_string(), "--net", "ip"]).args(args.iter().copied()))
    };
    ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside, "netns", &pid1.to_string()])?;
    ip(&["addr", "add", &format!("{}/30", link.host), "dev", &outside])?;
    ip(&["link", "set", &outside, "up"])?;
    node_ip(&["addr", "add", &format!("{}/30", link.node), "dev", &inside])?;
    node_ip(&["link", "set", &inside, "up"])?;
    node_ip(&["route", "add", "default", "via", &link.host.to_string()])?;
    // A Service address kube-proxy has no rule for (yet) is refused at once, as in a cluster:
    // without this, the node would send it to this host, which routes it back to the node,
    // and the connection's first packet, remembered by conntrack without a translation, would
    // keep looping after the rule came (a client then waits out its whole connect timeout).
    node_ip(&["route", "add", "unreachable", &link.service_cidr()])?;
    // Gone with the veth when the node's namespace goes.
    ip(&["route", "add", &link.pod_cidr(), "via", &link.node.to_string()])?;
    ip(&["route", "add", &link.service_cidr(), "via", &link.node.to_string()])?;
    Ok(link)
}

/// Every cgroup hierarchy: each v1 controller's and, on a hybrid host, the v2 one (`unified`),
/// where runc makes each container's cgroup too.
fn cgroup_controllers() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else { return Vec::new() };
    entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

/// Removes the node's cgroup directories, deepest first; whether none is left.
fn remove_cgroups(cgroup: &str) -> bool {
    let mut all_gone = true;
    for controller in cgroup_controllers() {
        let root = controller.join(cgroup.trim_start_matches('/'));
        if !root.exists() {
            continue;
        }
        let mut directories = Vec::new();
        collect_directories(&root, &mut directories);
        for directory in directories.iter().rev() {
            if fs::remove_dir(directory).is_err() {
                all_gone = false;
            }
        }
    }
    all_gone
}

fn collect_directories(directory: &Path, into: &mut Vec<PathBuf>) {
    into.push(directory.to_path_buf());
    if let Ok(entries) = fs::read_dir(directory) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_directories(&entry.path(), into);
            }
        }
    }
}
