//! Installs what the environment runs: Debian packages, and Kubernetes v1.20.2 built from
//! Debian's source package (the recipe in the design notes), cached outside the repository.
//!
//! Every step is idempotent and guarded by a file lock in the cache, so parallel test processes
//! wait for one build instead of racing.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, IoContext, Result};
use crate::paths::cache_dir;
use crate::process::{Spec, run, run_logged};

/// The Kubernetes release the test control plane runs.
pub const KUBERNETES_VERSION: &str = "1.20.2";
/// Debian bookworm's source package carrying that release.
const KUBERNETES_SOURCE_VERSION: &str = "1.20.5+really1.20.2-1.1+deb12u1";
/// Built from that source: the control plane, and the real node's kubelet and kube-proxy.
const KUBERNETES_COMPONENTS: [&str; 5] =
    ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"];
/// The pod sandbox's program, `build/pause/linux/pause.c` of the same source, compiled static.
const PAUSE: &str = "pause";

/// Packages the environment needs at run time. Chromium and its WebDriver come from Debian
/// because browser-driving tools cannot download a browser of their own on a closed network.
pub const RUNTIME_PACKAGES: &[&str] = &[
    "etcd-server",
    "postgresql",
    "redis-server",
    "python3-venv",
    "openssl",
    "util-linux",
    "chromium",
    "chromium-driver",
    // The backup tests check that the reference tools read a backup (disaster recovery).
    "age",
    "zstd",
];
/// Packages of the real node ([`crate::node`]): the container runtime, the CNI plugins, an init
/// that reaps the node's orphans, and what kube-proxy and the node's set-up run.
pub const NODE_PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "tini",
    "iproute2",
    "iptables",
    "conntrack",
    // The cluster DNS (`crate::node::dns`): the program alone, without Debian's service.
    "dnsmasq-base",
    // The one program of the node's test image (`crate::node::image`).
    "busybox-static",
];
/// Packages needed only to build Kubernetes.
const BUILD_PACKAGES: &[&str] =
    &["golang-go", "rsync", "make", "golang-github-modern-go-reflect2-dev", "dpkg-dev", "gcc", "libc6-dev"];

/// Paths of the control-plane programs.
#[derive(Debug, Clone)]
pub struct KubeBinaries {
    pub etcd: PathBuf,
    pub apiserver: PathBuf,
    pub controller_manager: PathBuf,
    pub scheduler: PathBuf,
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
    pub pause: PathBuf,
}

/// Everything installed: packages, Kubernetes binaries, the real node's images. Cheap after the
/// first call.
pub fn ensure_all() -> Result<KubeBinaries> {
    ensure_debian_packages(RUNTIME_PACKAGES)?;
    ensure_debian_packages(NODE_PACKAGES)?;
    ensure_debian_packages(crate::images::IMAGE_PACKAGES)?;
    // The images' builds wait mostly on downloads and the Kubernetes build on the processors:
    // side by side, a fresh machine is ready minutes sooner.
    let images = std::thread::spawn(crate::images::ensure_all);
    let installed = ensure_helm()
        .and_then(|()| ensure_schemathesis())
        .and_then(|()| ensure_s3_server())
        .and_then(|()| ensure_kubernetes());
    let images = images.join().unwrap_or_else(|_| Err(Error::Prerequisite("the image builder panicked".into())));
    let binaries = installed?;
    images?;
    Ok(binaries)
}

/// Helm v4's engine for the chart tests: helm-python-sdk in a cached virtualenv
/// ([`crate::helm::HelmSdk`]).
pub fn ensure_helm() -> Result<()> {
    crate::helm::HelmSdk::ensure().map(drop)
}

/// The API fuzzer of the control plane's OpenAPI conformance test, in a cached virtualenv
/// ([`crate::schemathesis::Schemathesis`]).
pub fn ensure_schemathesis() -> Result<()> {
    crate::schemathesis::Schemathesis::ensure().map(drop)
}

/// The S3-protocol server of the backup tests: moto's server mode in a cached virtualenv
/// ([`crate::s3_server::S3Server`]).
pub fn ensure_s3_server() -> Result<()> {
    crate::s3_server::S3Server::ensure().map(drop)
}

/// A lock file in the cache, held until dropped.
pub(crate) struct CacheLock(File);

impl CacheLock {
    pub(crate) fn acquire(name: &str) -> Result<Self> {
        let dir = cache_dir();
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.lock"));
        let file = File::create(&path).context(|| format!("creating {}", path.display()))?;
        file.lock().context(|| format!("locking {}", path.display()))?;
        Ok(Self(file))
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn package_installed(package: &str) -> bool {
    run(&Spec::new("dpkg-query", "dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}

/// Installs the missing ones of `packages` with apt-get (as root, or through `sudo -n`).
pub fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !package_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let _lock = CacheLock::acquire("apt")?;
    let missing: Vec<&str> = missing.into_iter().filter(|p| !package_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    tracing::info!(?missing, "installing Debian packages");
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    Ok(())
}

fn apt(args: &[&str]) -> Result<String> {
    let spec = if is_root() {
        Spec::new("apt-get", "apt-get").args(args.iter().copied())
    } else if run(&Spec::new("sudo", "sudo").args(["-n", "true"])).is_ok() {
        Spec::new("apt-get", "sudo").arg("-n").arg("apt-get").args(args.iter().copied())
    } else {
        return Err(Error::Prerequisite(format!(
            "`apt-get {}` needs root; run it as root or give this user password-less sudo",
            args.join(" ")
        )));
    };
    run(&spec.env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Where the three binaries of `KUBERNETES_VERSION` are cached.
pub fn kubernetes_cache_dir() -> PathBuf {
    cache_dir().join(format!("kube-v{KUBERNETES_VERSION}"))
}

/// Returns the cached Kubernetes binaries, building them first if they are not there yet
/// (6.5 minutes on 2 cores for the five programs and `pause`, measured on a quiet machine).
pub fn ensure_kubernetes() -> Result<KubeBinaries> {
    static DONE: OnceLock<KubeBinaries> = OnceLock::new();
    if let Some(done) = DONE.get() {
        return Ok(done.clone());
    }
    let bin = kubernetes_cache_dir().join("bin");
    let binaries = KubeBinaries {
        etcd: which("etcd").unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")),
        apiserver: bin.join("kube-apiserver"),
        controller_manager: bin.join("kube-controller-manager"),
        scheduler: bin.join("kube-scheduler"),
        kubelet: bin.join("kubelet"),
        kube_proxy: bin.join("kube-proxy"),
        pause: bin.join(PAUSE),
    };
    let built = |bin: &Path| KUBERNETES_COMPONENTS.iter().chain([&PAUSE]).all(|c| bin.join(c).exists());
    if !(binaries.etcd.exists() && built(&bin)) {
        ensure_debian_packages(&["etcd-server"])?;
        let _lock = CacheLock::acquire(&format!("kube-v{KUBERNETES_VERSION}"))?;
        if !built(&bin) {
            build_kubernetes(&bin)?;
        }
    }
    let complete = |b: &KubeBinaries| b.etcd.exists() && built(&bin);
    let binaries = KubeBinaries { etcd: which("etcd").unwrap_or(binaries.etcd), ..binaries };
    if !complete(&binaries) {
        return Err(Error::Prerequisite(format!("Kubernetes binaries missing after install: {binaries:?}")));
    }
    Ok(DONE.get_or_init(|| binaries).clone())
}

fn build_kubernetes(bin: &Path) -> Result<()> {
    tracing::info!("building Kubernetes v{KUBERNETES_VERSION} from Debian's source package (first run only)");
    ensure_debian_packages(BUILD_PACKAGES)?;
    let cache = cache_dir();
    let downloads = cache.join("downloads");
    fs::create_dir_all(&downloads).context(|| format!("creating {}", downloads.display()))?;
    let tarball = downloads.join(format!(
        "kubernetes_{}.orig.tar.gz",
        KUBERNETES_SOURCE_VERSION.split('-').next().unwrap_or(KUBERNETES_SOURCE_VERSION)
    ));
    if !tarball.exists() {
        download_kubernetes_source(&downloads)?;
    }

    let build_root = cache.join(format!("kube-v{KUBERNETES_VERSION}.build"));
    let _ = fs::remove_dir_all(&build_root);
    fs::create_dir_all(&build_root).context(|| format!("creating {}", build_root.display()))?;
    let build_log = cache.join(format!("kube-v{KUBERNETES_VERSION}.build.log"));
    let _ = fs::remove_file(&build_log);
    let result = (|| {
        run(&Spec::new("tar", "tar")
            .arg("xzf")
            .arg(tarball.display().to_string())
            .arg("-C")
            .arg(build_root.display().to_string()))?;
        let tree = build_root.join(format!("kubernetes-{KUBERNETES_VERSION}"));
        // Go >= 1.18 crashes the v1.20 apiserver (SIGSEGV in reflect2 map iteration) with the
        // vendored modern-go/reflect2 v1.0.1; Debian's v1.0.2 fixes it.
        let vendored = tree.join("vendor/github.com/modern-go/reflect2");
        fs::remove_dir_all(&vendored).context(|| format!("removing {}", vendored.display()))?;
        run(&Spec::new("cp", "cp")
            .arg("-r")
            .arg("/usr/share/gocode/src/github.com/modern-go/reflect2")
            .arg(vendored.display().to_string()))?;
        // Kubernetes 1.20 builds in GOPATH mode.
        let gopath = tree.join(".go");
        fs::create_dir_all(gopath.join("src/k8s.io")).context(|| "creating the GOPATH".into())?;
        std::os::unix::fs::symlink("../../..", gopath.join("src/k8s.io/kubernetes"))
            .context(|| "linking the GOPATH".into())?;
        let home = build_root.join("home");
        fs::create_dir_all(&home).context(|| "creating the build HOME".into())?;
        let in_tree = |spec: Spec| {
            spec.current_dir(&tree).env("GOPATH", gopath.display().to_string()).env("HOME", home.display().to_string())
        };
        // `make WHAT=…` first builds all six code generators and runs them; of what they make,
        // the source package lacks only the apiserver's OpenAPI definitions. So only that
        // generator is built and run, then the programs (minutes less on a fresh machine).
        run_logged(&in_tree(Spec::new("make gen_openapi", "make").arg("gen_openapi")), &build_log)?;
        run_logged(
            &in_tree(
                Spec::new("hack/make-rules/build.sh", tree.join("hack/make-rules/build.sh"))
                    .args(KUBERNETES_COMPONENTS.map(|c| format!("cmd/{c}"))),
            ),
            &build_log,
        )?;
        let staging = bin.with_extension("staging");
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).context(|| format!("creating {}", staging.display()))?;
        for component in KUBERNETES_COMPONENTS {
            let from = tree.join("_output/bin").join(component);
            fs::copy(&from, staging.join(component)).context(|| format!("copying {}", from.display()))?;
        }
        run(&Spec::new("gcc", "gcc")
            .args(["-Os", "-static", "-o"])
            .arg(staging.join(PAUSE).display().to_string())
            .arg(tree.join("build/pause/linux/pause.c").display().to_string()))?;
        // Publish them all at once: a half-filled bin/ must never look complete (a cache of an
        // earlier version, without the node's programs, is replaced whole).
        let _ = fs::remove_dir_all(bin);
        fs::rename(&staging, bin).context(|| format!("publishing {}", bin.display()))?;
        Ok(())
    })();
    // The tree, Go's caches and objects take gigabytes; only the binaries are kept.
    let _ = run(&Spec::new("chmod", "chmod").arg("-R").arg("u+w").arg(build_root.display().to_string()));
    let _ = fs::remove_dir_all(&build_root);
    result
}

/// `apt-get source --download-only`, adding a `deb-src` entry mirroring the system's own
/// Debian entry when there is none.
fn download_kubernetes_source(into: &Path) -> Result<()> {
    let fetch = || {
        let spec = Spec::new("apt-get", "apt-get")
            .args(["source", "--download-only", &format!("kubernetes={KUBERNETES_SOURCE_VERSION}")])
            .current_dir(into);
        run(&spec)
    };
    if fetch().is_ok() {
        return Ok(());
    }
    add_deb_src_entry()?;
    apt(&["update", "-q"])?;
    fetch()?;
    Ok(())
}

const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/tenantry-deb-src.sources";

fn add_deb_src_entry() -> Result<()> {
    let codename = os_release_codename().unwrap_or_else(|| "bookworm".into());
    let stanza = fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|text| deb_src_stanza(&text, &codename))
        .unwrap_or_else(|| {
            format!(
                "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: {codename}\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            )
        });
    tracing::info!(file = DEB_SRC_FILE, "adding a deb-src entry for Debian's kubernetes source package");
    if is_root() {
        fs::write(DEB_SRC_FILE, stanza).context(|| format!("writing {DEB_SRC_FILE}"))
    } else {
        Err(Error::Prerequisite(format!("apt has no deb-src entry; add one to {DEB_SRC_FILE}:\n{stanza}")))
    }
}

fn os_release_codename() -> Option<String> {
    let text = fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|line| line.strip_prefix("VERSION_CODENAME=")).map(|v| v.trim_matches('"').to_string())
}

/// From a deb822 sources file, the `deb` stanza serving `codename`, turned into a `deb-src` one.
fn deb_src_stanza(sources: &str, codename: &str) -> Option<String> {
    sources.split("\n\n").find_map(|stanza| {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).map(str::trim);
        let serves = field("Types")?.split_whitespace().any(|t| t == "deb")
            && field("Suites")?.split_whitespace().any(|s| s == codename);
        serves.then(|| {
            let mut out = format!("Types: deb-src\nURIs: {}\nSuites: {codename}\n", field("URIs")?);
            out.push_str(&format!("Components: {}\n", field("Components").unwrap_or("main")));
            if let Some(key) = field("Signed-By") {
                out.push_str(&format!("Signed-By: {key}\n"));
            }
            Some(out)
        })?
    })
}

/// The first `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_src_mirrors_the_main_debian_entry() {
        let sources = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                       Components: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                       Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let stanza = deb_src_stanza(sources, "bookworm").unwrap();
        assert_eq!(
            stanza,
            "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main contrib\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        assert_eq!(deb_src_stanza(sources, "trixie"), None);
    }
}
