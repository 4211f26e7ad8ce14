//! What Tenantry's parts agree on, in one crate they all depend on: the control plane, the
//! operator and the ERP agent read ERP versions and quantities by the same rules and name a
//! tenant's namespace, Secrets and labels alike. The custom resources' types ([`api`]) are
//! behind the `kubernetes` feature, so the agent and the single-server runtime use the rest
//! without compiling Kubernetes types.

#[cfg(feature = "kubernetes")]
pub mod api;
pub mod names;
pub mod quantity;
pub mod retention;
pub mod schedule;
pub mod version;
