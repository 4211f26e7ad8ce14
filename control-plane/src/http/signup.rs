//! `POST /v1/signup`: a customer's self-service start. Public, rate-limited per client address,
//! and idempotent under an `Idempotency-Key` header.

use std::net::IpAddr;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::Utc;

use super::AppState;
use super::input::Problems;
use super::problem::Problem;
use super::tenants::{open_plan, unknown_plan_is_invalid};
use super::types::{SignupRequest, SignupResponse, TenantView};
use crate::auth::Role;
use crate::cache::{Begin, IdempotencyRecord, RateLimit};
use crate::slug::Slug;
use crate::store::{NewTenant, StoreError};

const IDEMPOTENCY_SCOPE: &str = "signup";
/// A name made from the company name that is taken gets a number; so many are tried.
const SLUG_ATTEMPTS: u32 = 5;

/// Creates the tenant (trialing when its plan has trial days), seats the admin, and returns a
/// tenant-admin token. The ERP is provisioned in the background: follow `tenant.provisioning`.
#[utoipa::path(post, path = "/v1/signup", tag = "signup", request_body = SignupRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes a retried signup return the first result")),
    responses((status = 202, body = SignupResponse), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, headers(("Retry-After" = String, description = "seconds to wait"))),
        (status = 503, body = Problem, description = "the store, or the idempotency records, are unavailable")))]
#[post("/signup")]
pub async fn signup(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<SignupRequest>,
) -> Result<HttpResponse, Problem> {
    check_rate(&state, &request).await?;
    let body = body.into_inner();
    let key = idempotency_key(&request)?;
    let fingerprint = fingerprint(&body);
    if let Some(key) = &key {
        match state.cache.idempotency_begin(IDEMPOTENCY_SCOPE, key, &fingerprint).await {
            Ok(Begin::Started) => {}
            Ok(Begin::InFlight) => {
                return Err(Problem::conflict(
                    "idempotency_in_flight",
                    "a signup with this Idempotency-Key is in progress",
                ));
            }
            Ok(Begin::Mismatch) => {
                return Err(Problem::unprocessable(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different signup",
                ));
            }
            Ok(Begin::Done(record)) => {
                let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::ACCEPTED);
                return Ok(HttpResponse::build(status)
                    .insert_header(("Idempotent-Replayed", "true"))
                    .json(record.body));
            }
            Err(error) => {
                tracing::warn!(%error, "idempotency records unavailable");
                return Err(Problem::unavailable("idempotency records are unavailable; retry shortly"));
            }
        }
    }
    let result = create(&state, body).await;
    if let Some(key) = &key {
        match &result {
            Ok(response) => {
                // The record keeps the tenant but never the token: a secret is returned once.
                let record = IdempotencyRecord {
                    fingerprint,
                    status: StatusCode::ACCEPTED.as_u16(),
                    body: serde_json::json!({"tenant": response.tenant, "token": null, "token_expires_at": null}),
                };
                if let Err(error) = state.cache.idempotency_finish(IDEMPOTENCY_SCOPE, key, &record).await {
                    tracing::warn!(%error, "signup done but its idempotency record was not kept");
                }
            }
            Err(_) => {
                if let Err(error) = state.cache.idempotency_abandon(IDEMPOTENCY_SCOPE, key).await {
                    tracing::warn!(%error, "a failed signup's idempotency key stays in flight until it expires");
                }
            }
        }
    }
    let response = result?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/v1/tenants/{}", response.tenant["slug"].as_str().unwrap_or_default())))
        .json(response))
}

/// The signup rate limit of the request's client address (the web signup form shares it).
pub(crate) async fn check_rate(state: &AppState, request: &HttpRequest) -> Result<(), Problem> {
    check_client_rate(state, request, "signup", state.settings.signup_rate).await
}

/// Rate-limits the request's client (its address, or the forwarded one from a trusted proxy)
/// within `scope`.
pub(crate) async fn check_client_rate(
    state: &AppState,
    request: &HttpRequest,
    scope: &str,
    limit: RateLimit,
) -> Result<(), Problem> {
    let client = client_address(request, &state.settings.trusted_proxies);
    let client_key = client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    match state.cache.check_rate(&format!("{scope}:{client_key}"), limit).await {
        Ok(()) => Ok(()),
        Err(retry) => Err(Problem::too_many_requests(retry.0)),
    }
}

/// Validates and creates the tenant, seats its admin and mints the tenant-admin token: the API
/// and the web signup form both come here. Problems of the input name their field
/// (`field: message`) in the 422's `errors`.
pub(crate) async fn create(state: &AppState, body: SignupRequest) -> Result<SignupResponse, Problem> {
    let mut problems = Problems::default();
    problems.text("company_name", &body.company_name, 100);
    problems.email("admin_email", &body.admin_email);
    let seats = problems.seats("seats", body.seats);
    let chosen = match &body.slug {
        Some(slug) => problems.slug("slug", slug),
        None => {
            let suggested = Slug::suggest(&body.company_name);
            if suggested.is_none() && !body.company_name.trim().is_empty() {
                problems.push("slug: no usable name can be made from company_name; give one");
            }
            suggested
        }
    };
    problems.into_result()?;
    let (Some(slug), Some(licensed_seats)) = (chosen, seats) else { unreachable!("checked above") };
    open_plan(state, &body.plan).await?;
    let attempts = if body.slug.is_some() { 1 } else { SLUG_ATTEMPTS };
    let mut tenant = None;
    for attempt in 1..=attempts {
        let candidate = if attempt == 1 { Some(slug.clone()) } else { numbered(&slug, attempt) };
        let Some(candidate) = candidate else { break };
        let new = NewTenant {
            slug: candidate,
            display_name: body.company_name.trim().to_string(),
            owner_email: body.admin_email.clone(),
            plan: body.plan.clone(),
            licensed_seats,
            erp_version: state.settings.default_erp_version.clone(),
            first_seat: Some(body.admin_email.clone()),
        };
        match state.store.create_tenant(&new).await {
            Ok(created) => {
                tenant = Some(created);
                break;
            }
            Err(StoreError::Conflict(message)) if attempt == attempts => {
                return Err(Problem::conflict("slug_taken", message));
            }
            Err(StoreError::Conflict(_)) if body.slug.is_none() => continue,
            Err(error) => return Err(unknown_plan_is_invalid(error)),
        }
    }
    let tenant = tenant.ok_or_else(|| Problem::conflict("slug_taken", "no free name was found; give a slug"))?;
    state.changed();
    state.refresh_seat_count(&tenant.slug).await;
    let ttl = state.settings.signup_token_ttl;
    let token = state.keys.issue(Role::TenantAdmin, Some(&tenant.slug), &tenant.owner_email, ttl).map_err(|error| {
        tracing::error!(%error, "could not mint a tenant-admin token");
        Problem::internal()
    })?;
    let expires = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    let tenant = serde_json::to_value(TenantView::from(tenant)).map_err(|_| Problem::internal())?;
    Ok(SignupResponse { tenant, token: Some(token), token_expires_at: Some(expires) })
}

/// `acme-2`, `acme-3`…, shortened to fit.
fn numbered(slug: &Slug, n: u32) -> Option<Slug> {
    let suffix = format!("-{n}");
    let base: String = slug.as_str().chars().take(crate::slug::MAX_LEN - suffix.len()).collect();
    Slug::parse(&format!("{}{suffix}", base.trim_end_matches('-'))).ok()
}

/// The peer address, or — behind a trusted proxy — the last address of `X-Forwarded-For` that
/// is not itself a trusted proxy.
fn client_address(request: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = request.peer_addr().map(|address| address.ip());
    let peer_trusted = peer.is_some_and(|ip| trusted_proxies.contains(&ip));
    if !peer_trusted {
        return peer;
    }
    let forwarded = request.headers().get("x-forwarded-for").and_then(|value| value.to_str().ok()).unwrap_or("");
    forwarded
        .split(',')
        .rev()
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted_proxies.contains(ip))
        .or(peer)
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, Problem> {
    let Some(value) = request.headers().get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().unwrap_or("");
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key: 1 to 255 visible ASCII characters (a UUID is a good choice)",
        ));
    }
    Ok(Some(key.to_string()))
}

/// What makes two signups the same request.
fn fingerprint(body: &SignupRequest) -> String {
    let canonical = serde_json::json!([body.company_name, body.slug, body.admin_email, body.plan, body.seats]);
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_slugs_fit() {
        let long = Slug::parse(&"a".repeat(crate::slug::MAX_LEN)).unwrap();
        let numbered = numbered(&long, 3).unwrap();
        assert!(numbered.as_str().ends_with("-3") && numbered.as_str().len() <= crate::slug::MAX_LEN);
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let request = actix_web::test::TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "203.0.113.9, 10.0.0.1"))
            .to_http_request();
        assert_eq!(client_address(&request, &[proxy]), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(client_address(&request, &[]), Some(proxy));
    }
}
