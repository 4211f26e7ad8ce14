//! The validated tenant: what the builders turn into Kubernetes objects. Every value here has
//! been checked by [`crate::validate`], so the builders never fail; nothing here is a Kubernetes
//! type.

use std::collections::BTreeMap;

use tenantry_contract::schedule::BackupSchedule;

use crate::api::{DeletionPolicy, RetentionSpec};
use crate::profile::Profile;
use crate::version::ErpVersion;

#[derive(Debug, Clone, PartialEq)]
pub struct TenantModel {
    /// The Tenant's name (a DNS label).
    pub name: String,
    /// `tenant-<name>`.
    pub namespace: String,
    pub display_name: String,
    pub plan: String,
    pub seats: u32,
    pub profile: Profile,
    /// Modules to activate on top of the profile's base, sorted and unique.
    pub modules: Vec<String>,
    /// Extra server options: section → option → value.
    pub config: BTreeMap<String, BTreeMap<String, String>>,
    /// `production` first, then `test` when asked for.
    pub environments: Vec<Environment>,
    pub suspended: bool,
    pub resources: Resources,
    pub ingress: Option<Ingress>,
    pub deletion_policy: DeletionPolicy,
    pub backups: Option<Backups>,
}

/// Scheduled backups of production and where every backup of the tenant is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Backups {
    pub schedule: BackupSchedule,
    pub retention: RetentionSpec,
    /// `s3://…`, `gs://…` or `az://…`, without credentials.
    pub store: String,
    /// The provider's Secret (in the operator's namespace) with the store's credentials.
    pub credentials_secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnvironmentKind {
    Production,
    Test,
}

impl EnvironmentKind {
    /// Also the environment's database name and its label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Test => "test",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub kind: EnvironmentKind,
    pub version: ErpVersion,
    /// As asked for in the spec; suspension is applied by the builders, not here.
    pub server_replicas: i32,
    /// The public host, when the tenant has an ingress.
    pub host: Option<String>,
}

impl Environment {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The PostgreSQL database this environment uses.
    pub fn database(&self) -> &'static str {
        self.kind.name()
    }
}

/// Kubernetes quantities, checked to be well-formed and not negative.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compute {
    pub cpu_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub server: Compute,
    pub web: Compute,
    pub database: Compute,
    pub database_storage: String,
    pub filestore_storage: String,
    pub quota: Quota,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub storage: Option<String>,
    pub pods: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ingress {
    pub class_name: Option<String>,
    pub tls: Tls,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tls {
    /// cert-manager issues `<environment>-tls` through this ClusterIssuer.
    Issuer(String),
    /// An existing Secret (the same for every environment's host).
    Secret(String),
    /// The ingress controller's default certificate: the provider's wildcard certificate.
    ControllerDefault,
}

pub const DEFAULT_DATABASE_STORAGE: &str = "10Gi";
pub const DEFAULT_FILESTORE_STORAGE: &str = "5Gi";
