//! `POST /v1/signup`: a customer's self-service start. Public, rate-limited per client address,
//! and idempotent under an `Idempotency-Key` header.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::Utc;
use ipnet::IpNet;

use super::AppState;
use super::input::{Problems, StrictJson};
use super::problem::Problem;
use super::tenants::{open_plan, unknown_plan_is_invalid};
use super::types::{SignupRequest, SignupResponse, TenantView};
use crate::auth::Role;
use crate::cache::{Begin, IdempotencyRecord, RateLimit};
use crate::slug::{Slug, SlugError};
use crate::store::{NewTenant, SignupKey, StoreError};

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
    body: StrictJson<SignupRequest>,
) -> Result<HttpResponse, Problem> {
    check_rate(&state, &request).await?;
    let body = body.into_inner();
    let Some(key) = idempotency_key(&request)? else {
        return Ok(accepted(create(&state, body).await?));
    };
    let key = SignupKey { key, fingerprint: fingerprint(&body) };
    // The store is the record of a signup's key (written with its tenant); the cache only
    // answers the common retry quickly and holds concurrent requests back while one runs.
    let claimed = match state.cache.idempotency_begin(IDEMPOTENCY_SCOPE, &key.key, &key.fingerprint).await {
        Ok(Begin::Done(record)) => return Ok(replay(record)),
        Ok(Begin::Mismatch) => return Err(key_reused()),
        Ok(Begin::InFlight) => {
            if let Some(record) = committed(&state, &key).await? {
                return Ok(replay(record));
            }
            return Err(Problem::conflict(
                "idempotency_in_flight",
                "a signup with this Idempotency-Key is in progress; retry shortly",
            ));
        }
        Ok(Begin::Started) => true,
        Err(error) => {
            // Not fatal: the store still finds a committed signup by its key and refuses a
            // second commit under it.
            tracing::warn!(%error, "idempotency cache unavailable; the store alone guards the key");
            false
        }
    };
    let outcome = match committed(&state, &key).await {
        Err(problem) => Err(problem),
        Ok(Some(record)) => Ok(Outcome::Replayed(record)),
        Ok(None) => match create_keyed(&state, body, Some(&key)).await {
            Ok(response) => {
                crate::failpoint::hit(crate::failpoint::AFTER_SIGNUP_COMMIT, "after a signup's commit");
                Ok(Outcome::Created(response))
            }
            // Another request may have committed under the key meanwhile (its key or its slug
            // won): then this is a retry of that one.
            Err(problem) => match committed(&state, &key).await {
                Ok(Some(record)) => Ok(Outcome::Replayed(record)),
                _ => Err(problem),
            },
        },
    };
    if claimed {
        let kept = match &outcome {
            Ok(Outcome::Created(response)) => {
                let record = record_of(&key, &response.tenant);
                state.cache.idempotency_finish(IDEMPOTENCY_SCOPE, &key.key, &record).await
            }
            Ok(Outcome::Replayed(record)) => state.cache.idempotency_finish(IDEMPOTENCY_SCOPE, &key.key, record).await,
            Err(_) => state.cache.idempotency_abandon(IDEMPOTENCY_SCOPE, &key.key).await,
        };
        if let Err(error) = kept {
            tracing::warn!(%error, "the signup's idempotency cache entry was not updated; it expires on its own");
        }
    }
    match outcome? {
        Outcome::Created(response) => Ok(accepted(response)),
        Outcome::Replayed(record) => Ok(replay(record)),
    }
}

/// What a signup under an idempotency key came to.
enum Outcome {
    Created(SignupResponse),
    /// The signup committed earlier under the key.
    Replayed(IdempotencyRecord),
}

fn accepted(response: SignupResponse) -> HttpResponse {
    let location = format!("/v1/tenants/{}", response.tenant["slug"].as_str().unwrap_or_default());
    HttpResponse::Accepted().insert_header(("Location", location)).json(response)
}

fn replay(record: IdempotencyRecord) -> HttpResponse {
    let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = HttpResponse::build(status);
    if let Some(slug) = record.body["tenant"]["slug"].as_str() {
        response.insert_header(("Location", format!("/v1/tenants/{slug}")));
    }
    response.insert_header(("Idempotent-Replayed", "true")).json(record.body)
}

fn key_reused() -> Problem {
    Problem::unprocessable("idempotency_key_reused", "this Idempotency-Key was used for a different signup")
}

/// What a retry gets: the tenant but never the token, as a secret is returned once.
fn record_of(key: &SignupKey, tenant: &serde_json::Value) -> IdempotencyRecord {
    IdempotencyRecord {
        fingerprint: key.fingerprint.clone(),
        status: StatusCode::ACCEPTED.as_u16(),
        body: serde_json::json!({"tenant": tenant, "token": null, "token_expires_at": null}),
    }
}

/// The signup committed under the key, as a retry should see it; `key_reused` when it was
/// committed for another body.
async fn committed(state: &AppState, key: &SignupKey) -> Result<Option<IdempotencyRecord>, Problem> {
    let Some((fingerprint, tenant)) = state.store.signup_by_key(&key.key).await? else { return Ok(None) };
    if fingerprint != key.fingerprint {
        return Err(key_reused());
    }
    let tenant = serde_json::to_value(TenantView::from(tenant)).map_err(|_| Problem::internal())?;
    Ok(Some(record_of(key, &tenant)))
}

/// The signup rate limit of the request's client address (the web signup form shares it).
pub(crate) async fn check_rate(state: &AppState, request: &HttpRequest) -> Result<(), Problem> {
    check_client_rate(state, request, "signup", state.settings.signup_rate).await
}

/// Rate-limits the request's client within `scope`: its address (or, behind a trusted proxy,
/// the forwarded one), an IPv6 client by its /64, since one subscriber owns at least that many
/// addresses and could otherwise sign up without limit by rotating them.
pub(crate) async fn check_client_rate(
    state: &AppState,
    request: &HttpRequest,
    scope: &str,
    limit: RateLimit,
) -> Result<(), Problem> {
    let client = client_address(request, &state.settings.trusted_proxies);
    let client_key = client.map_or_else(|| "unknown".to_string(), rate_key);
    match state.cache.check_rate(&format!("{scope}:{client_key}"), limit).await {
        Ok(()) => Ok(()),
        Err(retry) => Err(Problem::too_many_requests(retry.0)),
    }
}

/// The budget a client address counts against: an IPv4 address, or the /64 of an IPv6 one
/// (an IPv4-mapped IPv6 address counts as its IPv4 address).
fn rate_key(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::MAX >> IPV6_RATE_PREFIX);
            format!("{}/{IPV6_RATE_PREFIX}", Ipv6Addr::from(prefix))
        }
    }
}

/// IPv6 clients share a budget per this prefix: the smallest one a subscriber is given.
const IPV6_RATE_PREFIX: u32 = 64;

/// Validates and creates the tenant, seats its admin and mints the tenant-admin token: the API
/// and the web signup form both come here. Problems of the input name their field
/// (`field: message`) in the 422's `errors`.
pub(crate) async fn create(state: &AppState, body: SignupRequest) -> Result<SignupResponse, Problem> {
    create_keyed(state, body, None).await
}

/// As [`create`], recording the signup's idempotency key with its tenant.
async fn create_keyed(
    state: &AppState,
    body: SignupRequest,
    key: Option<&SignupKey>,
) -> Result<SignupResponse, Problem> {
    let mut problems = Problems::default();
    problems.text("company_name", &body.company_name, 100);
    let admin_email = problems.email("admin_email", &body.admin_email);
    let seats = problems.seats("seats", body.seats);
    let chosen = match &body.slug {
        Some(slug) => problems.slug("slug", slug),
        None => match Slug::suggest(&body.company_name) {
            Ok(suggested) => Some(suggested),
            Err(SlugError::Reserved(word)) => {
                problems.push(format!("slug: `{word}`, made from company_name, is a reserved word; give a slug"));
                None
            }
            Err(_) if !body.company_name.trim().is_empty() => {
                problems.push("slug: no usable name can be made from company_name; give one");
                None
            }
            Err(_) => None,
        },
    };
    problems.into_result()?;
    let (Some(slug), Some(licensed_seats), Some(admin_email)) = (chosen, seats, admin_email) else {
        unreachable!("checked above")
    };
    open_plan(state, &body.plan).await?;
    let attempts = if body.slug.is_some() { 1 } else { SLUG_ATTEMPTS };
    let mut tenant = None;
    for attempt in 1..=attempts {
        let candidate = if attempt == 1 { Some(slug.clone()) } else { numbered(&slug, attempt) };
        let Some(candidate) = candidate else { break };
        let new = NewTenant {
            generated_host: state.settings.tenant_hosts.generated_host(candidate.as_str()),
            slug: candidate,
            display_name: body.company_name.trim().to_string(),
            owner_email: admin_email.clone(),
            plan: body.plan.clone(),
            licensed_seats,
            erp_version: state.settings.default_erp_version.clone(),
            first_seat: Some(admin_email.clone()),
            host: None,
        };
        let created = match key {
            Some(key) => state.store.create_signup_tenant(&new, key).await,
            None => state.store.create_tenant(&new).await,
        };
        match created {
            Ok(created) => {
                tenant = Some(created);
                break;
            }
            Err(StoreError::Conflict(message)) if attempt == attempts => {
                return Err(Problem::conflict("slug_taken", message));
            }
            Err(StoreError::Conflict(_)) if body.slug.is_none() => continue,
            Err(StoreError::IdempotencyKeyUsed) => {
                return Err(Problem::conflict("idempotency_in_flight", "a signup with this Idempotency-Key committed"));
            }
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

/// The peer address or, when the peer is a trusted proxy, the rightmost address of
/// `X-Forwarded-For` that is not itself a trusted proxy: the hops left of it were written by
/// the client and prove nothing. Not actix's `realip_remote_addr`, which believes any peer's
/// `Forwarded`/`X-Forwarded-For` and takes the leftmost (client-chosen) entry.
fn client_address(request: &HttpRequest, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|network| network.contains(&ip.to_canonical()));
    let peer = request.peer_addr().map(|address| address.ip().to_canonical());
    if !peer.as_ref().is_some_and(trusted) {
        return peer;
    }
    let mut hops = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    hops.reverse();
    for hop in hops {
        // Some proxies add the client's port (`203.0.113.9:5123`, `[2001:db8::1]:5123`). A hop
        // that is not an address (`unknown`, garbage) ends what can be believed.
        let parsed = hop.parse::<IpAddr>().or_else(|_| hop.parse::<SocketAddr>().map(|address| address.ip()));
        let Ok(ip) = parsed.map(|ip| ip.to_canonical()) else { break };
        if !trusted(&ip) {
            return Some(ip);
        }
    }
    peer
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

    fn request(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut request = actix_web::test::TestRequest::default().peer_addr(peer.parse().unwrap());
        for value in forwarded {
            request = request.append_header(("x-forwarded-for", *value));
        }
        request.to_http_request()
    }

    fn networks(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|network| network.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxies = networks(&["10.0.0.0/8"]);
        let forwarded = request("10.0.0.1:5000", &["198.51.100.1, 203.0.113.9, 10.0.0.2"]);
        let ip = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        assert_eq!(client_address(&forwarded, &proxies), ip("203.0.113.9"), "the rightmost untrusted hop");
        assert_eq!(client_address(&forwarded, &[]), ip("10.0.0.1"), "an untrusted peer's header is ignored");
        let spoofed = request("198.51.100.7:5000", &["203.0.113.9"]);
        assert_eq!(client_address(&spoofed, &proxies), ip("198.51.100.7"));
        let two_headers = request("10.0.0.1:5000", &["203.0.113.1", "203.0.113.2"]);
        assert_eq!(client_address(&two_headers, &proxies), ip("203.0.113.2"), "headers are one list, in order");
        let garbage = request("10.0.0.1:5000", &["203.0.113.1, bogus"]);
        assert_eq!(client_address(&garbage, &proxies), ip("10.0.0.1"), "nothing left of garbage is believed");
        let with_port = request("10.0.0.1:5000", &["203.0.113.8:5123, [2001:db8::1]:443"]);
        assert_eq!(client_address(&with_port, &proxies), ip("2001:db8::1"), "a hop with a port");
        let mapped = request("[::ffff:10.0.0.1]:5000", &["::ffff:203.0.113.9"]);
        assert_eq!(client_address(&mapped, &proxies), ip("203.0.113.9"), "mapped addresses as IPv4");
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let key = |text: &str| rate_key(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(key("2001:db8:1:2::7"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:203.0.113.9"), key("203.0.113.9"));
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
    }
}
