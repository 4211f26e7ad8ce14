//! Provisioning: the desired Tenant of every change goes through a durable outbox to the
//! cluster (server-side apply), or to a directory of manifests, or waits for a cluster; a watch
//! mirrors each Tenant's status back into the store.

pub mod decorate;
pub mod desired;
pub mod manifests;
pub mod mirror;
pub mod password;
pub mod provisioner;
pub mod simulated;
pub mod worker;

pub use decorate::Decorations;
pub use mirror::{mirror_tenant, mirrored_status, run_status_mirror};
pub use provisioner::{FIELD_MANAGER, ProvisionError, Provisioner, ProvisionerSetting};
pub use worker::{Wakeup, WorkerMetrics, WorkerSettings, run_worker};
