//! Tenantry's tenant operator: reconciles each `Tenant` into one ERP server, web client and
//! PostgreSQL per environment, in the namespace `tenant-<name>`.
//!
//! The reconcile is a pipeline (read, validate, build, apply, status) in which only reading and
//! applying talk to the cluster; validation and building are pure and unit-tested.

pub mod admission;
pub mod apply;
pub mod backup;
pub mod backup_schedule;
pub mod children;
pub mod controller;
pub mod error;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod pacing;
pub mod reconcile;
pub mod retry;
pub mod status;
pub mod telemetry;
// The contract and the blueprint under the paths the operator's modules name them by.
pub use tenantry_blueprint::{build, fit, model, placement, profile, validate};
pub use tenantry_contract::{api, quantity, version};
