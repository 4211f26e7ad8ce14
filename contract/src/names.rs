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

/// A backup's id in the store: its time, then 8 random hex digits (`20261207T030000Z-0a1b2c3d`),
/// so ids sort by time and two backups of one second differ. Chosen by whoever starts the
/// backup (the operator, before its Job exists; the agent, when run by hand).
pub fn backup_id(at: chrono::DateTime<chrono::Utc>, random: u32) -> String {
    format!("{}-{random:08x}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The Secrets the operator generates once in a tenant's namespace, and their keys.
pub mod secrets {
    /// PostgreSQL's user: [`USERNAME`] and [`PASSWORD`].
    pub const DATABASE: &str = "postgres-credentials";
    /// The ERP's master password: [`PASSWORD`] in clear (shown once to the tenant's admin) and
    /// [`PASSWORD_HASH`].
    pub const MASTER_PASSWORD: &str = "erp-master-password";

    /// The tenant's backup key, an age X25519 identity: [`KEY`] (the identity, which reads
    /// backups) and [`RECIPIENT`] (its public half, which writes them). Generated once and never
    /// replaced: a backup without its key is lost data.
    pub const BACKUP_KEY: &str = "backup-key";
    /// The backup store's credentials, copied from the Secret the provider names, as the
    /// environment variables the store's own tools read (`AWS_ACCESS_KEY_ID`, …).
    pub const BACKUP_STORAGE: &str = "backup-storage";

    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
    /// SHA-512 crypt of the master password: what trytond's `[session] super_pwd` expects.
    pub const PASSWORD_HASH: &str = "password-hash";
    pub const KEY: &str = "key";
    pub const RECIPIENT: &str = "recipient";
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
    /// On a backup's Jobs and pods: the `TenantBackup`'s name.
    pub const BACKUP: &str = "tenantry.dev/backup";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_sort_by_time() {
        let at = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&chrono::Utc);
        assert_eq!(backup_id(at("2026-12-07T03:00:00Z"), 0x0a1b2c3d), "20261207T030000Z-0a1b2c3d");
        assert!(backup_id(at("2026-12-07T03:00:00Z"), u32::MAX) < backup_id(at("2026-12-07T03:00:01Z"), 0));
    }

    #[test]
    fn the_longest_name_makes_a_namespace_that_is_a_dns_label() {
        let longest = "a".repeat(MAX_TENANT_NAME_LEN);
        assert_eq!(namespace_of(&longest).len(), 63);
        assert_eq!(namespace_of("acme"), "tenant-acme");
    }
}
