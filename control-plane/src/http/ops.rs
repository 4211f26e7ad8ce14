//! Health, readiness, metrics and the OpenAPI document.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, web};

use super::AppState;
use super::problem::Problem;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = String, content_type = "text/plain")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The store answers (and whether the cache does).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready (perhaps with the cache degraded)", body = String, content_type = "text/plain"),
        (status = 503, body = Problem, description = "the database does not answer")))]
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
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text")))]
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

/// What no route answers: 405 with `Allow` for a path of the API document asked with another
/// method (`TRACE`, `OPTIONS`…), else 404.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    let allowed = super::openapi::documented_methods(request.path())
        .filter(|methods| !methods.contains(&request.method().as_str()));
    let Some(allowed) = allowed else {
        return Problem::not_found("route_not_found", "no such route; see /openapi.json").error_response();
    };
    let allow = allowed.join(", ");
    let detail = format!("{} is not a method of {}; use {allow}", request.method(), request.path());
    let mut response = Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", detail).error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}
