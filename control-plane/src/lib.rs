//! Tenantry's control plane. The API, store and provisioning arrive with the control-plane
//! issue; what is here already is the rule every tenant name must follow and the pure domain
//! (money, plans, subscription states, seat usage).

pub mod domain;
pub mod slug;
