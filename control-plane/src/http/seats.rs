//! `/v1/tenants/{slug}/seats`: the seat ledger. The count is what billing systems read most, so
//! it is served from the cache; every change offers the new count (with its newer version) to the
//! cache right after the commit, so a read after a write never sees the old count.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::access;
use super::input::{Problems, StrictJson, period};
use super::problem::Problem;
use super::types::{SeatRequest, SeatView, SeatsView, UsageView};
use crate::auth::{Principal, Role};
use crate::store::{SeatAdded, SeatCount};

type Response = Result<HttpResponse, Problem>;

/// The seat count (from the cache when it has it) and, for admins, who holds the seats.
#[utoipa::path(get, path = "/v1/tenants/{slug}/seats", tag = "seats", security(("bearer" = [])), params(("slug" = String, Path, example = "acme")),
    responses((status = 200, body = SeatsView), (status = 404, body = Problem)))]
#[get("/tenants/{slug}/seats")]
pub async fn list(state: web::Data<AppState>, principal: Principal, slug: web::Path<String>) -> Response {
    access::tenant(&principal, &slug, true)?;
    if principal.role == Role::BillingReader {
        let count = seat_count(&state, &slug).await?;
        return Ok(HttpResponse::Ok().json(SeatsView {
            tenant: slug.into_inner(),
            count: count.count,
            max_seats: count.max_seats,
            seats: None,
        }));
    }
    let count = state.store.seat_count(&slug).await?;
    let seats = state.store.seats(&slug).await?;
    let seats = seats.into_iter().map(|seat| SeatView { email: seat.email, assigned_at: seat.assigned_at }).collect();
    Ok(HttpResponse::Ok().json(SeatsView {
        tenant: slug.into_inner(),
        count: count.count,
        max_seats: count.max_seats,
        seats: Some(seats),
    }))
}

async fn seat_count(state: &AppState, slug: &str) -> Result<SeatCount, Problem> {
    if let Some(count) = state.cache.seat_count(slug).await {
        return Ok(count);
    }
    let count = state.store.seat_count(slug).await?;
    state.cache.offer_seat_count(slug, count).await;
    Ok(count)
}

/// Seats a user: 201 when added, 200 when the user already held a seat (nothing changes; the
/// address is compared without case), 409 beyond the tenant's licensed seats.
#[utoipa::path(post, path = "/v1/tenants/{slug}/seats", tag = "seats", security(("bearer" = [])), request_body = SeatRequest,
    params(("slug" = String, Path, example = "acme")),
    responses((status = 201, body = SeatView), (status = 200, body = SeatView, description = "already held"),
        (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem), (status = 409, body = Problem, description = "`seat_limit_reached`"),
        (status = 422, body = Problem)))]
#[post("/tenants/{slug}/seats")]
pub async fn add(
    state: web::Data<AppState>,
    principal: Principal,
    slug: web::Path<String>,
    body: StrictJson<SeatRequest>,
) -> Response {
    let (mut response, seat) = match add_seat(&state, &principal, &slug, &body.email).await? {
        SeatAdded::Added(seat) => (HttpResponse::Created(), seat),
        SeatAdded::AlreadyHeld(seat) => (HttpResponse::Ok(), seat),
    };
    Ok(response.json(SeatView { email: seat.email, assigned_at: seat.assigned_at }))
}

/// Seats `email` as `principal` asks it: what the tenant console and `POST .../seats` both do.
pub(crate) async fn add_seat(
    state: &AppState,
    principal: &Principal,
    slug: &str,
    email: &str,
) -> Result<SeatAdded, Problem> {
    access::tenant(principal, slug, false)?;
    let mut problems = Problems::default();
    let email = problems.email("email", email);
    problems.into_result()?;
    let Some(email) = email else { unreachable!("checked above") };
    let added = state.store.add_seat(slug, &email).await?;
    if let SeatAdded::Added(_) = added {
        state.refresh_seat_count(slug).await;
        state.changed();
    }
    Ok(added)
}

/// Releases `email`'s seat as `principal` asks it.
pub(crate) async fn remove_seat(
    state: &AppState,
    principal: &Principal,
    slug: &str,
    email: &str,
) -> Result<(), Problem> {
    access::tenant(principal, slug, false)?;
    state.store.remove_seat(slug, email).await?;
    state.refresh_seat_count(slug).await;
    state.changed();
    Ok(())
}

/// Releases a user's seat.
#[utoipa::path(delete, path = "/v1/tenants/{slug}/seats/{email}", tag = "seats", security(("bearer" = [])),
    params(("slug" = String, Path, example = "acme"), ("email" = String, Path, example = "ada@acme.test")),
    responses((status = 204, description = "released"), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
#[delete("/tenants/{slug}/seats/{email}")]
pub async fn remove(state: web::Data<AppState>, principal: Principal, path: web::Path<(String, String)>) -> Response {
    let (slug, email) = path.into_inner();
    remove_seat(&state, &principal, &slug, &email).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// RFC 3339; the start of `to`'s month by default.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; now by default.
    pub to: Option<DateTime<Utc>>,
}

/// Current, peak and seat-days over `[from, to)`: what proration needs.
#[utoipa::path(get, path = "/v1/tenants/{slug}/seats/usage", tag = "seats", security(("bearer" = [])),
    params(("slug" = String, Path, example = "acme"), PeriodQuery),
    responses((status = 200, body = UsageView), (status = 400, body = Problem), (status = 404, body = Problem)))]
#[get("/tenants/{slug}/seats/usage")]
pub async fn usage(
    state: web::Data<AppState>,
    principal: Principal,
    slug: web::Path<String>,
    query: web::Query<PeriodQuery>,
) -> Response {
    access::tenant(&principal, &slug, true)?;
    let (from, to) = period(query.from, query.to)?;
    let usage = state.store.seat_usage(&slug, from, to).await?;
    Ok(HttpResponse::Ok().json(UsageView {
        tenant: slug.into_inner(),
        from,
        to,
        current: usage.current,
        peak: usage.peak,
        seat_seconds: usage.seat_seconds,
        seat_days: usage.seat_days,
    }))
}
