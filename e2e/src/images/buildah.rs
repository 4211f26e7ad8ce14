//! buildah with a storage of the environment's cache: builds the recipes, commits the base,
//! pushes to the registry.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::process::{Spec, run, run_logged};

/// The machine's trust store. Where the network inspects TLS (as this workplace's does), pip
/// and npm inside a build trust only what the image carries; the build mounts this bundle and
/// points them at it, and the images themselves stay as they are.
const MACHINE_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const BUILD_CA_BUNDLE: &str = "/run/build-trust/ca.crt";

/// One build: the image's tag, its Dockerfile, context and stage, its arguments.
pub(super) struct Build {
    pub tag: String,
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    /// The Dockerfile's stage to build (`--target`); the last one when `None`.
    pub target: Option<String>,
    pub build_args: Vec<(String, String)>,
}

pub(super) struct Buildah {
    root: PathBuf,
    runroot: PathBuf,
    trust: PathBuf,
}

impl Buildah {
    pub(super) fn new(dir: &Path) -> Self {
        Self { root: dir.join("buildah/root"), runroot: dir.join("buildah/run"), trust: dir.join("build-trust") }
    }

    fn command(&self, name: &str) -> Spec {
        Spec::new(name, "buildah").args([
            "--root".to_string(),
            self.root.display().to_string(),
            "--runroot".into(),
            self.runroot.display().to_string(),
            "--storage-driver".into(),
            "overlay".into(),
        ])
    }

    /// The image's ID, or `None` when the storage has no such image.
    pub(super) fn image_id(&self, name: &str) -> Result<Option<String>> {
        let inspect =
            self.command("buildah inspect").args(["inspect", "--type", "image", "--format", "{{.FromImageID}}", name]);
        Ok(run(&inspect).ok().map(|id| id.trim().to_string()).filter(|id| !id.is_empty()))
    }

    /// Commits the root file system in `archive` as image `name`.
    pub(super) fn import_root(&self, archive: &Path, name: &str) -> Result<()> {
        let container = run(&self.command("buildah from").args(["from", "scratch"]))?.trim().to_string();
        let result = (|| {
            run(&self.command("buildah add").arg("add").arg(&container).arg(archive.display().to_string()).arg("/"))?;
            run(&self.command("buildah config").args([
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--cmd",
                "bash",
                &container,
            ]))?;
            run(&self.command("buildah commit").args(["commit", "--quiet", &container, name]))
        })();
        let _ = run(&self.command("buildah rm").args(["rm", &container]));
        result.map(drop)
    }

    /// Builds `build`, logging to `log`. The network is the machine's (pip, npm and apt
    /// fetch from their registries); no base is ever pulled.
    pub(super) fn build(&self, build: &Build, log: &Path) -> Result<()> {
        let mut command = self
            .command(&format!("buildah build {}", build.tag))
            .args(["build", "--layers", "--pull=never", "--network=host", "--tag"])
            .arg(&build.tag)
            .arg("--file")
            .arg(build.dockerfile.display().to_string());
        if let Some(target) = &build.target {
            command = command.arg("--target").arg(target);
        }
        for (key, value) in &build.build_args {
            command = command.arg("--build-arg").arg(format!("{key}={value}"));
        }
        for (source, target) in self.trust_mounts()? {
            command = command.arg("--volume").arg(format!("{}:{target}:ro", source.display()));
        }
        let built = run_logged(&command.arg(build.context.display().to_string()), log);
        // A stage that only names another (`FROM ${PROGRAMS} AS programs`) leaves its working
        // container behind, mounted; nothing else uses this storage while the images' lock is
        // held, so every working container is a leftover.
        let removed = run(&self.command("buildah rm").args(["rm", "--all"])).map(drop);
        built.and(removed)
    }

    /// The machine's CA bundle and the pip and npm settings that use it. The image's own bundle
    /// is never replaced: a stage that installs `ca-certificates` rewrites it.
    fn trust_mounts(&self) -> Result<Vec<(PathBuf, &'static str)>> {
        let bundle = Path::new(MACHINE_CA_BUNDLE);
        if !bundle.exists() {
            return Ok(Vec::new());
        }
        fs::create_dir_all(&self.trust).context(|| format!("creating {}", self.trust.display()))?;
        let pip = self.trust.join("pip.conf");
        let npm = self.trust.join("npmrc");
        fs::write(&pip, format!("[global]\ncert = {BUILD_CA_BUNDLE}\n"))
            .context(|| format!("writing {}", pip.display()))?;
        fs::write(&npm, format!("cafile={BUILD_CA_BUNDLE}\n")).context(|| format!("writing {}", npm.display()))?;
        Ok(vec![(bundle.to_path_buf(), BUILD_CA_BUNDLE), (pip, "/etc/pip.conf"), (npm, "/etc/npmrc")])
    }

    /// Pushes image `name` to `destination` (`host:port/path:tag`, plain HTTP).
    pub(super) fn push(&self, name: &str, destination: &str) -> Result<()> {
        run(&self
            .command("buildah push")
            .args(["push", "--quiet", "--tls-verify=false", name])
            .arg(format!("docker://{destination}")))
        .map(drop)
    }
}
