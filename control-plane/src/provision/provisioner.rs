//! Where a desired Tenant goes: the cluster (server-side apply), a directory of manifests for
//! GitOps, or nowhere yet (no cluster configured: jobs wait in the outbox).

use std::path::PathBuf;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use tenantry_contract::api::Tenant as TenantObject;

use super::manifests;
use crate::slug::{Slug, SlugError};
use crate::store::{ProvisionJob, ProvisionOp};

/// The field manager of every apply: the control plane owns the spec, the operator the status.
pub const FIELD_MANAGER: &str = "tenantry-control-plane";

pub use crate::config::ProvisionerSetting;

pub enum Provisioner {
    /// Server-side apply to the cluster of this client.
    Cluster(kube::Client),
    /// `<dir>/<slug>.yaml` for a GitOps tool to apply.
    Manifests(PathBuf),
    /// No cluster: jobs stay pending and tenants show `waiting`.
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("the outbox row of tenant {tenant:?} holds no valid Tenant: {source}")]
    BadObject { tenant: String, source: serde_json::Error },
    #[error("the outbox row of tenant {tenant:?} holds a Tenant named {found:?}")]
    NameMismatch { tenant: String, found: String },
    #[error("the outbox row names tenant {tenant:?}, which is no valid slug: {source}")]
    BadSlug { tenant: String, source: SlugError },
    #[error("no cluster is configured; provisioning jobs wait until one is")]
    NoTarget,
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The client configuration of the kubeconfig files `paths` (merged in order, as kubectl does).
async fn cluster_config(paths: &str) -> Result<kube::Config, ProvisionError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let mut merged: Option<Kubeconfig> = None;
    for path in paths.split(':').filter(|path| !path.is_empty()) {
        let file = Kubeconfig::read_from(path)?;
        merged = Some(match merged {
            Some(earlier) => earlier.merge(file)?,
            None => file,
        });
    }
    Ok(kube::Config::from_custom_kubeconfig(merged.unwrap_or_default(), &KubeConfigOptions::default()).await?)
}

impl Provisioner {
    /// The provisioner the configuration asks for. A cluster client comes from `kubeconfig` (the
    /// settings' `KUBECONFIG`: one path, or several separated by `:`), else `~/.kube/config` or
    /// the in-cluster service account; a manifests directory is created when missing.
    pub async fn from_setting(setting: &ProvisionerSetting, kubeconfig: Option<&str>) -> Result<Self, ProvisionError> {
        match setting {
            ProvisionerSetting::Cluster => {
                let client = match kubeconfig {
                    Some(paths) => kube::Client::try_from(cluster_config(paths).await?)?,
                    None => kube::Client::try_default().await?,
                };
                Ok(Self::Cluster(client))
            }
            ProvisionerSetting::Manifests(dir) => {
                manifests::prepare_dir(dir).await?;
                Ok(Self::Manifests(dir.clone()))
            }
            ProvisionerSetting::None => Ok(Self::None),
        }
    }

    /// Whether jobs can be carried out at all (`None` leaves them pending).
    pub fn is_active(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// What `/readyz` and logs call this provisioner.
    pub fn describe(&self) -> String {
        match self {
            Self::Cluster(_) => "cluster (server-side apply)".to_string(),
            Self::Manifests(dir) => format!("manifests in {}", dir.display()),
            Self::None => "none (provisioning waits for a cluster)".to_string(),
        }
    }

    /// Carries out one job. Idempotent: applying the same object twice, or deleting what is
    /// already gone, succeeds.
    pub async fn execute(&self, job: &ProvisionJob) -> Result<(), ProvisionError> {
        let slug = Slug::parse(&job.tenant)
            .map_err(|source| ProvisionError::BadSlug { tenant: job.tenant.clone(), source })?;
        match (self, job.op) {
            (Self::None, _) => Err(ProvisionError::NoTarget),
            (Self::Cluster(client), ProvisionOp::Apply) => {
                check_object(job)?;
                let tenants: Api<TenantObject> = Api::all(client.clone());
                let params = PatchParams::apply(FIELD_MANAGER).force();
                tenants.patch(slug.as_str(), &params, &Patch::Apply(&job.object)).await?;
                Ok(())
            }
            (Self::Cluster(client), ProvisionOp::Delete) => {
                let tenants: Api<TenantObject> = Api::all(client.clone());
                match tenants.delete(slug.as_str(), &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            (Self::Manifests(dir), ProvisionOp::Apply) => {
                check_object(job)?;
                manifests::write(dir, &slug, &job.object).await
            }
            (Self::Manifests(dir), ProvisionOp::Delete) => manifests::remove(dir, &slug).await,
        }
    }
}

/// Refuses an object the operator could not read, or one that would land on another Tenant.
fn check_object(job: &ProvisionJob) -> Result<(), ProvisionError> {
    let object: TenantObject = serde_json::from_value(job.object.clone())
        .map_err(|source| ProvisionError::BadObject { tenant: job.tenant.clone(), source })?;
    let name = object.metadata.name.unwrap_or_default();
    if name != job.tenant {
        return Err(ProvisionError::NameMismatch { tenant: job.tenant.clone(), found: name });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(tenant: &str, object: serde_json::Value) -> ProvisionJob {
        ProvisionJob { id: 1, tenant: tenant.into(), op: ProvisionOp::Apply, object, attempts: 0 }
    }

    fn tenant(name: &str) -> serde_json::Value {
        json!({
            "apiVersion": "tenantry.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {"displayName": "Acme", "plan": "business", "erp": {"version": "7.0.1"}}
        })
    }

    #[test]
    fn a_matching_tenant_passes() {
        check_object(&job("acme", tenant("acme"))).unwrap();
    }

    #[test]
    fn an_object_for_another_tenant_is_refused() {
        let error = check_object(&job("acme", tenant("globex"))).unwrap_err();
        assert!(matches!(error, ProvisionError::NameMismatch { ref found, .. } if found == "globex"), "{error}");
    }

    #[test]
    fn an_object_that_is_no_tenant_is_refused() {
        let error = check_object(&job("acme", json!({"metadata": {"name": "acme"}}))).unwrap_err();
        assert!(matches!(error, ProvisionError::BadObject { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_bad_slug_never_reaches_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let provisioner = Provisioner::Manifests(dir.path().to_path_buf());
        let error = provisioner.execute(&job("../etc", tenant("../etc"))).await.unwrap_err();
        assert!(matches!(error, ProvisionError::BadSlug { .. }), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
