//! The control plane's domain, free of HTTP, SQL and Kubernetes client code: money, plans,
//! subscriptions and seat usage. Everything here is pure and unit-tested.

pub mod money;
pub mod plan;
pub mod seats;
pub mod subscription;
pub mod versions;
pub mod whole;
