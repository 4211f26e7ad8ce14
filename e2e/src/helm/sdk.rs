//! helm-python-sdk in a cached virtualenv, and the calls into it.
//!
//! Layout, as for the Tryton virtualenvs: `<cache>/helm-python-sdk-<version>/venv` is a symlink
//! to the finished `venv-<stamp>` directory, published by an atomic rename once the install
//! has been checked, under a file lock so parallel test processes wait for one install.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{HelmError, Release, Rendered};
use crate::error::{Error, IoContext, Result};
use crate::install::{CacheLock, ensure_debian_packages, which};
use crate::paths::cache_dir;
use crate::process::{Spec, run};
use crate::venv::{publish, remove_unused_venvs};

/// The pinned package: its native library is the Helm engine the tests trust.
pub const SDK_REQUIREMENT: &str = "helm-python-sdk==0.2.2";
/// Name of the cache folder and lock of this requirement.
const CACHE_NAME: &str = "helm-python-sdk-0.2.2";
/// Written last into a finished virtualenv: the interpreter and the requirement it was built
/// from. A virtualenv without it, or with another text, is never used.
const MARKER: &str = ".tenantry-requirements";
/// The script every call runs (render, lint, versions).
const SCRIPT: &str = include_str!("render.py");

/// Helm v4, as helm-python-sdk's native library, in a cached virtualenv.
#[derive(Debug, Clone)]
pub struct HelmSdk {
    venv: PathBuf,
}

/// `helm lint`'s findings. Severity: 1 info, 2 warning, 3 error.
#[derive(Debug, Clone, Deserialize)]
pub struct LintReport {
    pub messages: Vec<LintMessage>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LintMessage {
    pub severity: u8,
    pub path: String,
    pub error: String,
}

impl LintReport {
    /// Warnings and errors (what `helm lint --strict` fails on).
    pub fn problems(&self) -> Vec<&LintMessage> {
        self.messages.iter().filter(|message| message.severity >= 2).collect()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Answer {
    Ok(Value),
    Refused(String),
}

impl HelmSdk {
    /// The virtualenv, installing it first when it is missing or unfinished (about 20 s, an
    /// 85 MB wheel; instant once cached).
    pub fn ensure() -> Result<Self> {
        let root = cache_dir().join(CACHE_NAME);
        let link = root.join("venv");
        let python = base_python();
        let marker = format!("# python: {}\n{SDK_REQUIREMENT}\n", python.display());
        if !is_complete(&link, &marker) {
            let _lock = CacheLock::acquire(CACHE_NAME)?;
            // Another process may have finished the install while we waited for the lock.
            if !is_complete(&link, &marker) {
                install(&root, &link, &python, &marker)?;
            }
        }
        let venv = fs::canonicalize(&link).context(|| format!("resolving {}", link.display()))?;
        Ok(Self { venv })
    }

    /// [`HelmSdk::ensure`] off the async runtime's worker threads.
    pub async fn ensure_async() -> Result<Self> {
        tokio::task::spawn_blocking(Self::ensure).await.expect("the Helm SDK installer panicked")
    }

    /// The virtualenv directory (resolved, not the `venv` symlink).
    pub fn venv(&self) -> &Path {
        &self.venv
    }

    /// Renders `chart` for `release` as `helm install` would, without a cluster: the values are
    /// checked against `values.schema.json` and every template runs (`lookup` finds nothing).
    pub async fn render(&self, chart: &Path, release: &Release) -> Result<Rendered, HelmError> {
        let request = json!({
            "op": "render",
            "chart": chart,
            "release": release.name,
            "namespace": release.namespace,
            "values": release.values,
            "capabilities": release.capabilities,
        });
        let answer = self.call(request).await?;
        Rendered::from_sdk(answer, &release.namespace)
    }

    /// `helm lint --strict` of `chart` with `values`, as for a cluster of `kube_version` (e.g.
    /// `v1.20.2`; `None`: Helm's default). Findings are data, not errors.
    pub async fn lint(
        &self,
        chart: &Path,
        values: &Value,
        kube_version: Option<&str>,
    ) -> Result<LintReport, HelmError> {
        let answer =
            self.call(json!({"op": "lint", "chart": chart, "values": values, "kube_version": kube_version})).await?;
        serde_json::from_value(answer)
            .map_err(|e| HelmError::Manifest(format!("a lint report that does not parse: {e}")))
    }

    /// `(helm-python-sdk's version, Helm's version)`, e.g. `("0.2.2", "v4.2.3")`.
    pub async fn versions(&self) -> Result<(String, String), HelmError> {
        let answer = self.call(json!({"op": "versions"})).await?;
        let field = |name: &str| answer[name].as_str().unwrap_or_default().to_string();
        Ok((field("sdk"), field("helm")))
    }

    async fn call(&self, request: Value) -> Result<Value, HelmError> {
        let python = self.venv.join("bin/python");
        let answer = tokio::task::spawn_blocking(move || run_script(&python, &request))
            .await
            .expect("the Helm SDK call panicked")?;
        match answer {
            Answer::Ok(value) => Ok(value),
            Answer::Refused(message) => Err(HelmError::Refused(message)),
        }
    }
}

/// Runs the script with `request` on stdin; its stdout is the answer, its stderr only diagnostics.
fn run_script(python: &Path, request: &Value) -> Result<Answer> {
    let shown = format!("{} -c <e2e/src/helm/render.py>", python.display());
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| format!("starting `{shown}`"))?;
    // The script reads all of stdin before it writes anything, so this cannot deadlock.
    let mut stdin = child.stdin.take().expect("stdin was piped");
    stdin.write_all(request.to_string().as_bytes()).context(|| format!("writing the request to `{shown}`"))?;
    drop(stdin);
    let output = child.wait_with_output().context(|| format!("running `{shown}`"))?;
    let failed = |status: String| Error::CommandFailed {
        command: shown.clone(),
        status,
        tail: last_lines(&String::from_utf8_lossy(&output.stderr), 40),
    };
    if !output.status.success() {
        return Err(failed(output.status.to_string()));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| failed(format!("an answer that is not JSON ({e})")))
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Debian's interpreter when present, so the venv matches what a fresh Debian machine builds
/// (this machine also has a pyenv `python3` first on `PATH`).
fn base_python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.exists() { debian } else { which("python3").unwrap_or(debian) }
}

fn is_complete(link: &Path, marker: &str) -> bool {
    fs::read_to_string(link.join(MARKER)).is_ok_and(|text| text == marker) && link.join("bin/python").exists()
}

/// Builds a new venv next to `link`, checks that it really holds a Helm v4 engine, and
/// publishes it. Called with the lock held.
fn install(root: &Path, link: &Path, python: &Path, marker: &str) -> Result<()> {
    ensure_debian_packages(&["python3-venv"])?;
    fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
    remove_unused_venvs(root, link);
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let name = format!("venv-{stamp}-{}", std::process::id());
    let venv = root.join(&name);
    tracing::info!(venv = %venv.display(), requirement = SDK_REQUIREMENT, "installing the Helm SDK");
    let result = (|| {
        run(&Spec::new("python3 -m venv", python).args(["-m", "venv", &venv.display().to_string()]))?;
        run(&Spec::new("pip", venv.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--no-input", SDK_REQUIREMENT])
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"))?;
        // The wheel bundles a native library per platform; one that does not load, or that is
        // not Helm 4, must fail here rather than in a test.
        let version = run_script(&venv.join("bin/python"), &json!({"op": "versions"}))?;
        let helm = match &version {
            Answer::Ok(versions) => versions["helm"].as_str().unwrap_or_default().to_string(),
            Answer::Refused(message) => message.clone(),
        };
        if !helm.starts_with("v4.") {
            return Err(Error::Prerequisite(format!("{SDK_REQUIREMENT} loads Helm {helm:?}, not Helm v4")));
        }
        fs::write(venv.join(MARKER), marker).context(|| format!("writing {}", venv.join(MARKER).display()))?;
        publish(root, link, &name)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&venv);
    }
    result
}
