//! The HTTP API (`/v1`, JSON, problem+json errors), health and metrics endpoints, and the
//! OpenAPI document generated from the handlers.

// `Problem` is large, but it is only ever built on the way out of a failed request.
#![allow(clippy::result_large_err)]

pub mod access;
pub mod billing;
pub mod input;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod plans;
pub mod problem;
pub mod seats;
pub mod signup;
pub mod tenants;
pub mod types;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use crate::auth::Keys;
use crate::cache::{Cache, RateLimit};
use crate::secrets::Sealer;
use crate::store::Store;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub cache: Cache,
    pub keys: web::Data<Keys>,
    pub sealer: Sealer,
    pub settings: ApiSettings,
    /// Poked after a commit that wrote provisioning outbox rows, so the worker does not wait for
    /// its next poll.
    pub provisioning: crate::provision::Wakeup,
    /// Poked after a commit that wrote events.
    pub webhooks: crate::webhooks::Notifier,
    pub metrics: Arc<metrics::Metrics>,
    /// The cluster the tenants run in, when there is one (to read what the operator generated).
    pub cluster: Option<kube::Client>,
    /// Whether that cluster only simulates its workloads (the pages then say so).
    pub simulated_workloads: crate::provision::simulated::SimulatedWorkloads,
}

impl AppState {
    /// After a change that wrote outbox rows and events.
    pub fn changed(&self) {
        self.provisioning.poke();
        self.webhooks.notify_one();
    }

    /// Offers the tenant's current seat count to the cache, read after the write's commit: its
    /// version is the newest, so the cache never keeps an older count after a write.
    pub async fn refresh_seat_count(&self, slug: &str) {
        match self.store.seat_count(slug).await {
            Ok(count) => self.cache.offer_seat_count(slug, count).await,
            // The cache holds the older count only until it expires: make sure it is gone.
            Err(error) => {
                tracing::warn!(tenant = slug, %error, "seat count not refreshed after a change");
                self.cache.forget_seat_count(slug).await;
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub signup_rate: RateLimit,
    /// Proxies (networks) whose `X-Forwarded-For` is believed for the signup rate limits.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where webhook endpoints may point.
    pub webhook_destinations: crate::webhooks::DestinationPolicy,
    pub default_erp_version: String,
    /// The only ERP versions tenants may be given.
    pub erp_versions: crate::domain::versions::VersionCatalogue,
    /// Where tenants are served: generated hosts, and whether a host given by hand gets TLS.
    pub tenant_hosts: crate::provision::Decorations,
    pub signup_token_ttl: Duration,
    pub max_body_bytes: usize,
}

/// Every route, with the extractor settings that make bad input a problem+json 4xx.
pub fn configure(config: &mut web::ServiceConfig, max_body_bytes: usize) {
    config
        .app_data(input::json_config(max_body_bytes))
        .app_data(input::query_config())
        .app_data(input::path_config())
        .app_data(web::PayloadConfig::new(max_body_bytes))
        .service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics)
        .service(ops::openapi_json)
        .service(
            // Seat reads are the hottest path (billing systems poll them): matched first.
            web::scope("/v1")
                .service(seats::list)
                .service(seats::usage)
                .service(signup::signup)
                .service(plans::list)
                .service(plans::create)
                .service(plans::get)
                .service(plans::update)
                .service(plans::retire)
                .service(tenants::list)
                .service(tenants::create)
                .service(tenants::get)
                .service(tenants::update)
                .service(tenants::delete)
                .service(tenants::suspend)
                .service(tenants::resume)
                .service(tenants::plan_history)
                .service(seats::add)
                .service(seats::remove)
                .service(billing::seats)
                .service(billing::usage)
                .service(webhooks::list)
                .service(webhooks::create)
                .service(webhooks::delete),
        )
        .configure(crate::web::configure)
        .default_service(web::to(ops::not_found));
}
