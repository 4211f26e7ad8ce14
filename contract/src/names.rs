//! The names every part relies on: a tenant's namespace, the Secrets the operator generates in
//! it and their keys, and the labels on what the operator makes. The operator writes them; the
//! control plane and the tenants' Jobs read them.

/// Every tenant's objects live in the namespace `tenant-<name>`.
pub const NAMESPACE_PREFIX: &str = "tenant-";

/// The longest tenant name whose namespace is still a DNS label (63 characters).
pub const MAX_TENANT_NAME_LEN: usize = 63 - NAMESPACE_PREFIX.len();

/// The namespace of the tenant `name`.
pub fn namespace_of(tenant: &str) -> String {
    format!("{NAMESPACE_PREFIX}{tenant}")
}

/// The Secrets the operator generates once in a tenant's namespace, and their keys.
pub mod secrets {
    /// PostgreSQL's user: [`USERNAME`] and [`PASSWORD`].
    pub const DATABASE: &str = "postgres-credentials";
    /// The ERP's master password: [`PASSWORD`] in clear (shown once to the tenant's admin) and
    /// [`PASSWORD_HASH`].
    pub const MASTER_PASSWORD: &str = "erp-master-password";

    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
    /// SHA-512 crypt of the master password: what trytond's `[session] super_pwd` expects.
    pub const PASSWORD_HASH: &str = "password-hash";
}

/// Labels on the objects the operator makes, and on the Tenants the control plane owns.
pub mod labels {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// [`MANAGED_BY`] on what the operator makes.
    pub const MANAGER: &str = "tenantry";
    pub const TENANT: &str = "tenantry.dev/tenant";
    pub const ENVIRONMENT: &str = "tenantry.dev/environment";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// On a namespace kept after its Tenant was deleted with `deletionPolicy: Retain`.
    pub const RETAINED: &str = "tenantry.dev/retained";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_name_makes_a_namespace_that_is_a_dns_label() {
        let longest = "a".repeat(MAX_TENANT_NAME_LEN);
        assert_eq!(namespace_of(&longest).len(), 63);
        assert_eq!(namespace_of("acme"), "tenant-acme");
    }
}
