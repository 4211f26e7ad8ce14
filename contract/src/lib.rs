//! What Tenantry's parts agree on, in one crate they all depend on: the control plane, the
//! operator and the ERP agent read ERP versions by the same rules and name a tenant's namespace,
//! Secrets and labels alike. Free of Kubernetes and HTTP types, so the agent and the
//! single-server runtime can use it without them.

pub mod names;
pub mod version;
