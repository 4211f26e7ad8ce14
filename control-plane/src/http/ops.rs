//! Health, readiness, metrics and the OpenAPI document.

use actix_web::{HttpResponse, get, web};

use super::AppState;
use super::problem::Problem;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The store answers (and whether the cache does).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, body = Problem)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    if let Err(error) = state.store.ping().await {
        tracing::warn!(%error, "not ready: store");
        return Err(Problem::unavailable("the database does not answer"));
    }
    // Without the cache requests still work (reads fall back to the store), so a Redis outage
    // must not take every replica out of service: it is reported, not failed.
    if let Err(error) = state.cache.ping().await {
        tracing::warn!(%error, "cache degraded");
        return Ok(HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready (cache degraded: reads go to the database)"));
    }
    Ok(HttpResponse::Ok().content_type("text/plain").body("ready"))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "OpenMetrics text")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Ok(pending) = state.store.pending_provision_jobs().await {
        state.metrics.provisioning_pending.set(pending);
    }
    HttpResponse::Ok().content_type(super::metrics::CONTENT_TYPE).body(state.metrics.encode())
}

/// This API's OpenAPI 3.1 document.
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(super::openapi::document())
}

pub async fn not_found() -> Result<HttpResponse, Problem> {
    Err(Problem::not_found("route_not_found", "no such route; see /openapi.json"))
}
