//! Acting as one of the chart's ServiceAccounts: a bound token from the TokenRequest API (what
//! a pod of that account gets), as a kube client and as a kubeconfig file for the project's
//! binaries.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::Kubeconfig;
use serde_json::json;

use super::HelmError;
use crate::cluster::kube_config;
use crate::error::{Error, IoContext};

/// A token's lifetime: the longest test, with room to spare.
const TOKEN_SECONDS: i64 = 3600;

/// The identity of a ServiceAccount, and nothing more: every request made with it is
/// authorised by that account's RBAC.
pub struct ServiceAccountAccess {
    /// A kubeconfig (0600, in a directory of its own) with the cluster of the admin kubeconfig
    /// and the account's token.
    pub kubeconfig: PathBuf,
    pub client: Client,
    /// `system:serviceaccount:<namespace>:<name>`
    pub username: String,
    _dir: tempfile::TempDir,
}

impl ServiceAccountAccess {
    /// Requests a token for `namespace/name` with the `admin` client, for the cluster that the
    /// kubeconfig `admin_kubeconfig` points at.
    pub async fn request(
        admin: &Client,
        admin_kubeconfig: &Path,
        namespace: &str,
        name: &str,
    ) -> Result<Self, HelmError> {
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec { expiration_seconds: Some(TOKEN_SECONDS), ..Default::default() },
            ..Default::default()
        };
        let granted = accounts.create_token_request(name, &PostParams::default(), &request).await?;
        let token = granted.status.map(|status| status.token).filter(|token| !token.is_empty()).ok_or_else(|| {
            HelmError::Apply(format!("the TokenRequest for ServiceAccount {namespace}/{name} returned no token"))
        })?;

        let admin_config = Kubeconfig::read_from(admin_kubeconfig)
            .map_err(|e| Error::KubeConfig(format!("{}: {e}", admin_kubeconfig.display())))?;
        let cluster = admin_config
            .clusters
            .first()
            .and_then(|named| named.cluster.clone())
            .ok_or_else(|| Error::KubeConfig(format!("{} names no cluster", admin_kubeconfig.display())))?;
        let username = format!("system:serviceaccount:{namespace}:{name}");
        // JSON is YAML: every kubeconfig reader takes it.
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": {
                "server": cluster.server,
                "certificate-authority-data": cluster.certificate_authority_data,
            }}],
            "users": [{"name": username, "user": {"token": token}}],
            "contexts": [{"name": "service-account", "context": {"cluster": "cluster", "user": username, "namespace": namespace}}],
            "current-context": "service-account",
        });
        let dir = tempfile::Builder::new()
            .prefix("tenantry-sa-")
            .tempdir()
            .map_err(|e| Error::Io { context: "creating a directory for a kubeconfig".into(), source: e })?;
        let path = dir.path().join("kubeconfig");
        write_private(&path, kubeconfig.to_string().as_bytes())?;
        let client = Client::try_from(kube_config(&path).await?).map_err(HelmError::from)?;
        Ok(Self { kubeconfig: path, client, username, _dir: dir })
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), HelmError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).context(|| format!("writing {}", path.display()))?;
    Ok(())
}
