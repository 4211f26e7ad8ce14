//! Tenantry's tenant operator: reconciles each `Tenant` into one ERP server, web client and
//! PostgreSQL per environment, in the namespace `tenant-<name>`.
//!
//! The reconcile is a pipeline (read, validate, build, apply, status) in which only reading and
//! applying talk to the cluster; validation and building are pure and unit-tested.

pub mod admission;
pub mod api;
pub mod apply;
pub mod build;
pub mod children;
pub mod controller;
pub mod error;
pub mod events;
pub mod fit;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod pacing;
pub mod placement;
pub mod profile;
pub mod quantity;
pub mod reconcile;
pub mod retry;
pub mod status;
pub mod telemetry;
pub mod validate;
pub use tenantry_contract::version;
