//! What a `Tenant` becomes, as pure functions shared by the operator and the control plane: its
//! spec validated into a model ([`validate`], [`model`], [`profile`]), the objects built from
//! the model ([`build`], [`placement`]) and whether they fit the tenant's own quota ([`fit`]).
//! Nothing here talks to a cluster: the operator reads and applies around these steps; the
//! control plane judges a plan by the same validation the operator applies to its tenants.

pub mod build;
pub mod fit;
pub mod model;
pub mod placement;
pub mod profile;
pub mod validate;

// The contract's modules under the paths the builders name them by.
use tenantry_contract::{api, quantity, version};
