//! `/v1/billing`: what billing systems read — every tenant's seats at an instant, and usage
//! over a period — a page at a time.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::access;
use super::input::{page_limit, period};
use super::problem::Problem;
use super::types::{Page, TenantSeatCountView, TenantUsageView};
use crate::auth::Principal;

type Response = Result<HttpResponse, Problem>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SeatsQuery {
    /// RFC 3339; now by default.
    at: Option<DateTime<Utc>>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// 1 to 500, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Every tenant that existed at `at`, with its seat count then.
#[utoipa::path(get, path = "/v1/billing/seats", tag = "billing", security(("bearer" = [])), params(SeatsQuery),
    responses((status = 200, body = Page<TenantSeatCountView>), (status = 403, body = Problem, description = "the caller's role may not do this")))]
#[get("/billing/seats")]
pub async fn seats(state: web::Data<AppState>, principal: Principal, query: web::Query<SeatsQuery>) -> Response {
    access::billing(&principal)?;
    let limit = page_limit(query.limit)?;
    let at = query.at.unwrap_or_else(Utc::now);
    let page = state.store.billing_seats(at, query.after.as_deref(), limit).await?;
    let items =
        page.items.into_iter().map(|row| TenantSeatCountView { tenant: row.tenant, count: row.count }).collect();
    Ok(HttpResponse::Ok().json(Page { items, next: page.next }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// RFC 3339; the start of `to`'s month by default.
    from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; now by default.
    to: Option<DateTime<Utc>>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// 1 to 500, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Peak and seat-days of every tenant that existed during `[from, to)`.
#[utoipa::path(get, path = "/v1/billing/usage", tag = "billing", security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, body = Page<TenantUsageView>), (status = 400, body = Problem), (status = 403, body = Problem, description = "the caller's role may not do this")))]
#[get("/billing/usage")]
pub async fn usage(state: web::Data<AppState>, principal: Principal, query: web::Query<UsageQuery>) -> Response {
    access::billing(&principal)?;
    let limit = page_limit(query.limit)?;
    let (from, to) = period(query.from, query.to)?;
    let page = state.store.billing_usage(from, to, query.after.as_deref(), limit).await?;
    let items = page
        .items
        .into_iter()
        .map(|row| TenantUsageView {
            tenant: row.tenant,
            current: row.usage.current,
            peak: row.usage.peak,
            seat_seconds: row.usage.seat_seconds,
            seat_days: row.usage.seat_days,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page { items, next: page.next }))
}
