//! helm-python-sdk in a cached virtualenv, and the calls into it.
//!
//! The virtualenv is a [`PinnedVenv`]: `<cache>/helm-python-sdk-<version>/venv`, installed once
//! under a file lock and published only after its engine was checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{HelmError, Release, Rendered};
use crate::error::{Error, IoContext, Result};
use crate::venv::PinnedVenv;

/// The pinned package: its native library is the Helm engine the tests trust.
pub const SDK_REQUIREMENT: &str = "helm-python-sdk==0.2.2";
/// Name of the cache folder and lock of this requirement.
const CACHE_NAME: &str = "helm-python-sdk-0.2.2";
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
        let venv = PinnedVenv { name: CACHE_NAME, requirements: &[SDK_REQUIREMENT] }.ensure(check_engine)?;
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

/// The wheel bundles a native library per platform; one that does not load, or that is not
/// Helm 4, must fail before the virtualenv is published rather than in a test.
fn check_engine(venv: &Path) -> Result<()> {
    let version = run_script(&venv.join("bin/python"), &json!({"op": "versions"}))?;
    let helm = match &version {
        Answer::Ok(versions) => versions["helm"].as_str().unwrap_or_default().to_string(),
        Answer::Refused(message) => message.clone(),
    };
    if helm.starts_with("v4.") {
        Ok(())
    } else {
        Err(Error::Prerequisite(format!("{SDK_REQUIREMENT} loads Helm {helm:?}, not Helm v4")))
    }
}
