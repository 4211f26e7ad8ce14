//! The tenant's ERP master password, read from the Secret the operator generated in the
//! tenant's namespace, for the one time it is shown to the tenant's admin. The control plane
//! never stores it; the store only records that it was shown (see
//! `Store::claim_password_reveal`).

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tenantry_contract::names::secrets::{MASTER_PASSWORD as MASTER_PASSWORD_SECRET, PASSWORD as PASSWORD_KEY};
use zeroize::Zeroizing;

use crate::slug::Slug;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the master password Secret of tenant {0} does not exist yet")]
    NotYet(String),
    #[error("the master password Secret of tenant {0} holds no readable password")]
    Unreadable(String),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

pub async fn read_master_password(client: &kube::Client, slug: &Slug) -> Result<Zeroizing<String>, PasswordError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &slug.namespace());
    let secret =
        secrets.get_opt(MASTER_PASSWORD_SECRET).await?.ok_or_else(|| PasswordError::NotYet(slug.to_string()))?;
    let bytes = secret
        .data
        .and_then(|mut data| data.remove(PASSWORD_KEY))
        .ok_or_else(|| PasswordError::Unreadable(slug.to_string()))?;
    let password = String::from_utf8(bytes.0).map_err(|_| PasswordError::Unreadable(slug.to_string()))?;
    if password.is_empty() {
        return Err(PasswordError::Unreadable(slug.to_string()));
    }
    Ok(Zeroizing::new(password))
}
