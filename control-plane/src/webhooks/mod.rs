//! Outbound webhooks: signed events delivered from the store's durable outbox, with retries.
//!
//! The store writes one delivery row per event and subscribed endpoint in the transaction of
//! the change; [`run_delivery_worker`] claims due rows, POSTs the event signed with the
//! endpoint's secret (see `docs/webhooks.md`), and records success, a retry with backoff, or
//! gives up. Delivery is at least once: receivers deduplicate by `Tenantry-Event-Id`.

mod delivery;
mod destination;
mod endpoint;
mod signature;

pub use delivery::{Notifier, WorkerSettings, run_delivery_worker};
pub use destination::{DestinationPolicy, DestinationResolver, RefusedDestination, is_internal};
pub use endpoint::{EndpointError, MAX_URL_LEN, validate_endpoint_url};
pub use signature::{EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign, verify};
