//! `/v1/webhooks`: the provider's webhook endpoints. The signing secret is generated here,
//! returned once, and stored only sealed.

use actix_web::{HttpResponse, delete, get, post, web};

use super::AppState;
use super::access;
use super::input::{Problems, StrictJson};
use super::problem::Problem;
use super::types::{WebhookRequest, WebhookView};
use crate::auth::Principal;
use crate::store::EVENT_TYPES;

type Response = Result<HttpResponse, Problem>;

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Vec<WebhookView>), (status = 403, body = Problem, description = "the caller's role may not do this")))]
#[get("/webhooks")]
pub async fn list(state: web::Data<AppState>, principal: Principal) -> Response {
    access::provider_admin(&principal)?;
    let endpoints: Vec<WebhookView> = state.store.webhooks().await?.into_iter().map(WebhookView::from).collect();
    Ok(HttpResponse::Ok().json(endpoints))
}

/// Registers an endpoint; the response carries its signing secret, never shown again.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = WebhookRequest,
    responses((status = 201, body = WebhookView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 422, body = Problem)))]
#[post("/webhooks")]
pub async fn create(state: web::Data<AppState>, principal: Principal, body: StrictJson<WebhookRequest>) -> Response {
    access::provider_admin(&principal)?;
    let mut problems = Problems::default();
    let url = crate::webhooks::validate_endpoint_url(&body.url)
        .map_err(|reason| problems.push(format!("url: {reason}")))
        .ok();
    for event in &body.events {
        if !EVENT_TYPES.contains(&event.as_str()) {
            problems.push(format!("events: unknown event type {event:?}; one of {}", EVENT_TYPES.join(", ")));
        }
    }
    problems.into_result()?;
    let url = url.unwrap_or_default();
    // Inside the provider's network (loopback, private, link-local, cluster-internal, or a
    // name resolving there): refused unless `webhook.allowed_networks` allows it.
    let parsed = reqwest::Url::parse(&url).map_err(|_| Problem::internal())?;
    state
        .settings
        .webhook_destinations
        .check_registration(&parsed)
        .await
        .map_err(|refused| Problem::bad_request("webhook_destination_refused", format!("url: {refused}")))?;
    let secret = crate::secrets::generate_secret();
    let sealed = state.sealer.seal(secret.as_bytes());
    let endpoint = state.store.create_webhook(&url, &body.events, &sealed).await?;
    let mut view = WebhookView::from(endpoint);
    view.secret = Some(secret);
    Ok(HttpResponse::Created().insert_header(("Location", format!("/v1/webhooks/{}", view.id))).json(view))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem)))]
#[delete("/webhooks/{id}")]
pub async fn delete(state: web::Data<AppState>, principal: Principal, id: web::Path<String>) -> Response {
    access::provider_admin(&principal)?;
    state.store.delete_webhook(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}
