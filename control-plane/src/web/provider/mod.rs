//! The provider console, for provider-admin sessions only: anyone else gets the page of an
//! unknown URL, so the console does not even show that it exists.
//!
//! - `GET /provider`: totals per plan (tenants, seats, monthly recurring revenue) and the tenant
//!   table (search, filters, sorting, pages) (`tenants`);
//! - `GET /provider/tenants/{slug}`: one tenant, with `POST …/suspend` and `…/resume` (`detail`);
//! - `GET /provider/plans`, `GET|POST /provider/plans/{name}` (revise), `POST
//!   /provider/plans/{name}/retire`, `GET|POST /provider/new-plan` (`plans`, forms in
//!   `plan_form`).
//!
//! Changes go through the same functions as the API (`crate::http::tenants::change_state`,
//! `crate::http::plans::{create_plan, revise_plan, retire_plan}`), so they are checked alike.

mod detail;
mod plan_form;
mod plans;
mod tenants;

use actix_web::HttpRequest;
use actix_web::web::{self, ServiceConfig};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::sentence;
use super::session::Session;
use crate::auth::{Principal, Role};
use crate::domain::subscription::SubscriptionState;
use crate::store::ProvisioningState;

pub fn configure(config: &mut ServiceConfig) {
    let form = super::form;
    config
        .service(web::resource("/provider").route(web::get().to(tenants::page_view)))
        .service(web::resource("/provider/tenants/{slug}").route(web::get().to(detail::page_view)))
        .service(
            web::resource("/provider/tenants/{slug}/suspend").app_data(form()).route(web::post().to(detail::suspend)),
        )
        .service(
            web::resource("/provider/tenants/{slug}/resume").app_data(form()).route(web::post().to(detail::resume)),
        )
        .service(
            web::resource("/provider/tenants/{slug}/version")
                .app_data(form())
                .route(web::post().to(detail::change_version)),
        )
        .service(web::resource("/provider/plans").route(web::get().to(plans::list_view)))
        .service(
            web::resource("/provider/new-plan")
                .app_data(form())
                .route(web::get().to(plans::new_plan_view))
                .route(web::post().to(plans::create)),
        )
        .service(
            web::resource("/provider/plans/{name}")
                .app_data(form())
                .route(web::get().to(plans::plan_view))
                .route(web::post().to(plans::revise)),
        )
        .service(web::resource("/provider/plans/{name}/retire").app_data(form()).route(web::post().to(plans::retire)));
}

/// The provider admin of the session; `None` for every other session and for none.
fn provider_admin(session: &Session) -> Option<&Principal> {
    session.principal().filter(|principal| principal.role == Role::ProviderAdmin)
}

/// The query string's pairs; the first of a repeated name counts. A query that cannot be read
/// at all counts as empty (the pages then show their defaults).
fn query_pairs(request: &HttpRequest) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(request.query_string()).map(|q| q.into_inner()).unwrap_or_default()
}

fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// `?name=value&…`, form-encoded as the browser sends a GET form, leaving out empty values;
/// empty when nothing is left.
fn query_string(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<&(&str, &str)> = pairs.iter().filter(|(_, value)| !value.is_empty()).collect();
    match serde_urlencoded::to_string(&kept) {
        Ok(encoded) if !encoded.is_empty() => format!("?{encoded}"),
        _ => String::new(),
    }
}

fn state_label(state: SubscriptionState) -> &'static str {
    match state {
        SubscriptionState::Trialing => "trialing",
        SubscriptionState::Active => "active",
        SubscriptionState::PastDue => "past due",
        SubscriptionState::Suspended => "suspended",
        SubscriptionState::Canceled => "canceled",
    }
}

fn provisioning_label(state: ProvisioningState) -> &'static str {
    state.as_str()
}

/// A day, readable, with the exact instant for machines.
fn date(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) { (at.format("%Y-%m-%d")) } }
}

/// A day and time (UTC).
fn date_time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) { (at.format("%Y-%m-%d %H:%M UTC")) }
    }
}

/// A short confirmation after a change, announced politely.
fn confirmation(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p class="confirmation" role="status" { (message) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_encoded_and_skip_empty_values() {
        assert_eq!(
            query_string(&[("q", "100% off & more"), ("plan", ""), ("page", "2")]),
            "?q=100%25+off+%26+more&page=2"
        );
        assert_eq!(query_string(&[("q", "")]), "");
        assert_eq!(query_string(&[("q", "ä")]), "?q=%C3%A4");
    }
}
