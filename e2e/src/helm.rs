//! The Helm chart `charts/tenantry` in tests, through Helm's own engine.
//!
//! There is no `helm` binary to download on this network; the PyPI package `helm-python-sdk`
//! ships Helm v4 as a native library instead. [`HelmSdk`] keeps it in a cached virtualenv and
//! renders or lints the chart with it, offline. What it renders ([`Rendered`]) can be searched,
//! applied to the local cluster (server-side apply, CRDs first, in Helm's install order), and
//! mined for a container's environment, so a test can run the project's binaries exactly as the
//! chart configures them. [`ServiceAccountAccess`] gives a test the identity of one of the
//! chart's ServiceAccounts (a bound token from the TokenRequest API), to prove what its RBAC
//! allows and refuses.
//!
//! ```no_run
//! # async fn example(client: kube::Client) -> Result<(), e2e::helm::HelmError> {
//! use e2e::helm::{Capabilities, HelmSdk, Release, tenantry_chart};
//! let helm = HelmSdk::ensure_async().await?;
//! let capabilities = Capabilities::of_cluster(&client).await?;
//! let release = Release::new("demo", "tenantry-system", serde_json::json!({"operator": {"replicas": 1}}));
//! let rendered = helm.render(&tenantry_chart(), &release.with_capabilities(capabilities)).await?;
//! rendered.apply(&client).await?;
//! # Ok(()) }
//! ```

mod access;
mod rendered;
mod sdk;

use std::path::PathBuf;

use kube::Client;
use kube::discovery::Discovery;
use serde::Serialize;
use serde_json::Value;

pub use access::ServiceAccountAccess;
pub use rendered::{Manifest, PodIdentity, Rendered};
pub use sdk::{HelmSdk, LintMessage, LintReport, SDK_REQUIREMENT};

/// `charts/tenantry` of this repository.
pub fn tenantry_chart() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/tenantry"))
}

#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// Helm itself said no: a schema violation, a template's `fail`, a malformed chart.
    #[error("Helm refused: {0}")]
    Refused(String),
    /// The rendered chart lacks something the caller needs (an object, a key).
    #[error("the rendered chart: {0}")]
    Manifest(String),
    /// The cluster refused an object, or does not serve its kind.
    #[error("applying the rendered chart: {0}")]
    Apply(String),
    /// Installing or running the SDK, or talking to the cluster, failed.
    #[error(transparent)]
    Environment(#[from] crate::Error),
}

impl From<kube::Error> for HelmError {
    fn from(error: kube::Error) -> Self {
        Self::Environment(crate::Error::Kube(error))
    }
}

/// What Helm's templates see as `.Capabilities`: the cluster's version and the API versions it
/// serves, both as `group/version` and `group/version/Kind` (what `helm install` discovers).
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    pub kube_version: String,
    pub api_versions: Vec<String>,
}

impl Capabilities {
    /// Discovers them from the cluster, as `helm install` does.
    pub async fn of_cluster(client: &Client) -> Result<Self, HelmError> {
        let version = client.apiserver_version().await?;
        let discovery = Discovery::new(client.clone()).run().await?;
        let mut api_versions = Vec::new();
        for group in discovery.groups() {
            for version in group.versions() {
                let resources = group.versioned_resources(version);
                let Some((first, _)) = resources.first() else { continue };
                api_versions.push(first.api_version.clone());
                api_versions.extend(
                    resources.iter().map(|(resource, _)| format!("{}/{}", resource.api_version, resource.kind)),
                );
            }
        }
        api_versions.sort();
        api_versions.dedup();
        Ok(Self { kube_version: version.git_version, api_versions })
    }

    /// Whether the cluster serves `api_version` (`policy/v1`) or `api_version/Kind`.
    pub fn has(&self, api_version: &str) -> bool {
        self.api_versions.iter().any(|served| served == api_version)
    }
}

/// One rendering of the chart: release name, namespace, values and, optionally, the cluster's
/// capabilities (without them Helm assumes its own defaults, as `helm template` does).
#[derive(Debug, Clone)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub values: Value,
    pub capabilities: Option<Capabilities>,
}

impl Release {
    pub fn new(name: &str, namespace: &str, values: Value) -> Self {
        Self { name: name.to_string(), namespace: namespace.to_string(), values, capabilities: None }
    }

    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = Some(capabilities);
        self
    }
}
