//! Who may do what. Every handler asks here before touching the store, so the role matrix lives
//! in one place (and `tests/integration/api/matrix.rs`'s `role_matrix` checks every endpoint against it).

use crate::auth::{Principal, Role};

use super::problem::Problem;

/// Plans, tenant onboarding and deletion, suspension, webhooks.
pub fn provider_admin(principal: &Principal) -> Result<(), Problem> {
    match principal.role {
        Role::ProviderAdmin => Ok(()),
        Role::TenantAdmin | Role::BillingReader => Err(Problem::forbidden("this needs the provider-admin role")),
    }
}

/// A tenant's own resources. A tenant-admin of another tenant gets the same 404 as for a tenant
/// that does not exist; billing readers see only what `billing_read` allows.
pub fn tenant(principal: &Principal, slug: &str, billing_read: bool) -> Result<(), Problem> {
    match principal.role {
        Role::ProviderAdmin => Ok(()),
        Role::TenantAdmin if principal.tenant.as_deref() == Some(slug) => Ok(()),
        Role::TenantAdmin => Err(Problem::tenant_not_found(slug)),
        Role::BillingReader if billing_read => Ok(()),
        Role::BillingReader => Err(Problem::forbidden("billing readers may only read seat counts and usage")),
    }
}

/// The billing endpoints, and reading plans (the prices billing needs).
pub fn billing(principal: &Principal) -> Result<(), Problem> {
    match principal.role {
        Role::ProviderAdmin | Role::BillingReader => Ok(()),
        Role::TenantAdmin => Err(Problem::forbidden("this needs the billing-reader or provider-admin role")),
    }
}
