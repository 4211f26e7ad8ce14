//! `GET /provider/tenants/{slug}`: one tenant as the provider sees it (deleted ones included),
//! and its `Suspend` / `Resume` forms, which go through the API's own state change.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    confirmation, date, date_time, provider_admin, provisioning_label, query_pairs, query_value, sentence, state_label,
};
use crate::domain::subscription::SubscriptionState;
use crate::domain::versions::VersionCatalogue;
use crate::http::AppState;
use crate::http::problem::Problem;
use crate::store::{Plan, PlanChange, Seat, StoreError, Tenant};
use crate::web::layout::{self, csrf_field, frame, page, see_other};
use crate::web::progress::progress;
use crate::web::session::{CsrfToken, Session, check_csrf};
use crate::web::signup::format_money;
use tenantry_contract::version::ErpVersion;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StateForm {
    pub csrf: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VersionForm {
    pub csrf: String,
    pub version: String,
}

/// What the page says after `?done=…`.
fn done_message(done: &str) -> Option<&'static str> {
    match done {
        "suspended" => Some("The tenant is suspended: its ERP is being scaled to zero, and all its data is kept."),
        "resumed" => Some("The tenant is resumed in the state it had before its suspension: its ERP is being started."),
        "version" => Some("The ERP version is changed: the tenant's ERP is being moved to it."),
        _ => None,
    }
}

pub async fn page_view(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
) -> HttpResponse {
    if provider_admin(&session).is_none() {
        return layout::not_found(&request, &session);
    }
    let pairs = query_pairs(&request);
    let notice = query_value(&pairs, "done").and_then(done_message);
    render(&state, &request, &session, &slug, Outcome { notice, refusal: None }, StatusCode::OK).await
}

pub async fn suspend(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<StateForm>,
) -> HttpResponse {
    move_to(&state, &request, &session, &slug, &form, SubscriptionState::Suspended).await
}

pub async fn resume(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<StateForm>,
) -> HttpResponse {
    move_to(&state, &request, &session, &slug, &form, SubscriptionState::Active).await
}

async fn move_to(
    state: &AppState,
    request: &HttpRequest,
    session: &Session,
    slug: &str,
    form: &StateForm,
    to: SubscriptionState,
) -> HttpResponse {
    let Some(principal) = provider_admin(session) else { return layout::not_found(request, session) };
    if check_csrf(request, &form.csrf).is_err() {
        return layout::forbidden(request);
    }
    match crate::http::tenants::change_state(state, principal, slug, to).await {
        Ok(_) => {
            let done = if to == SubscriptionState::Suspended { "suspended" } else { "resumed" };
            see_other(&format!("/provider/tenants/{slug}?done={done}"), &[])
        }
        Err(problem) => match refusal(state, slug, &problem, to).await {
            Some(words) => {
                let outcome = Outcome { notice: None, refusal: Some(words) };
                render(state, request, session, slug, outcome, StatusCode::CONFLICT).await
            }
            None if problem.status == 404 => layout::not_found(request, session),
            None => {
                tracing::warn!(%problem, tenant = slug, "tenant state not changed from the provider console");
                layout::unavailable(request, session)
            }
        },
    }
}

/// Changes the tenant's ERP version to one of the catalogue, through the API's own change.
pub async fn change_version(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<VersionForm>,
) -> HttpResponse {
    let Some(principal) = provider_admin(&session) else { return layout::not_found(&request, &session) };
    if check_csrf(&request, &form.csrf).is_err() {
        return layout::forbidden(&request);
    }
    let body =
        crate::http::types::UpdateTenantRequest { erp_version: Some(form.version.clone()), ..Default::default() };
    match crate::http::tenants::change(&state, principal, &slug, body).await {
        Ok(_) => see_other(&format!("/provider/tenants/{slug}?done=version"), &[]),
        Err(problem) if matches!(problem.status, 409 | 422) => {
            let refusal = format!("The ERP version was not changed. {}", sentence(&problem.detail));
            let outcome = Outcome { notice: None, refusal: Some(refusal) };
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::CONFLICT);
            render(&state, &request, &session, &slug, outcome, status).await
        }
        Err(problem) if problem.status == 404 => layout::not_found(&request, &session),
        Err(problem) => {
            tracing::warn!(%problem, tenant = %slug, "ERP version not changed from the provider console");
            layout::unavailable(&request, &session)
        }
    }
}

/// A refused move in words, when the tenant is there to show it on: a conflict with its state,
/// or a deleted tenant (which the store treats as gone).
async fn refusal(state: &AppState, slug: &str, problem: &Problem, to: SubscriptionState) -> Option<String> {
    let verb = if to == SubscriptionState::Suspended { "suspended" } else { "resumed" };
    match (problem.status, problem.code) {
        (409, "not_suspended") => Some("This tenant is not suspended, so there is nothing to resume.".to_string()),
        (409, _) => Some(format!("This tenant cannot be {verb} now. {}", sentence(&problem.detail))),
        (404, _) => match state.store.tenant(slug).await {
            Ok(tenant) if tenant.deleted_at.is_some() => Some(format!("This tenant is deleted: it cannot be {verb}.")),
            _ => None,
        },
        _ => None,
    }
}

/// What happened just before the page is shown.
struct Outcome<'a> {
    notice: Option<&'a str>,
    refusal: Option<String>,
}

/// What the page shows besides the tenant itself.
struct Details {
    plan: Plan,
    newest_version: i64,
    seats: Vec<Seat>,
    history: Vec<PlanChange>,
}

async fn details(state: &AppState, tenant: &Tenant) -> Result<Details, StoreError> {
    let seats = async {
        // A deleted tenant holds no seat (deletion released them all).
        if tenant.deleted_at.is_some() { Ok(Vec::new()) } else { state.store.seats(&tenant.slug).await }
    };
    let (plan, newest, seats, history) = futures::try_join!(
        state.store.plan_version(&tenant.plan, tenant.plan_version),
        state.store.plan(&tenant.plan),
        seats,
        state.store.plan_history(&tenant.slug),
    )?;
    Ok(Details { plan, newest_version: newest.version, seats, history })
}

async fn render(
    state: &AppState,
    request: &HttpRequest,
    session: &Session,
    slug: &str,
    outcome: Outcome<'_>,
    status: StatusCode,
) -> HttpResponse {
    let tenant = match state.store.tenant(slug).await {
        Ok(tenant) => tenant,
        Err(StoreError::NotFound { .. }) => return layout::not_found(request, session),
        Err(error) => {
            tracing::warn!(%error, "tenant not read for the provider console");
            return layout::unavailable(request, session);
        }
    };
    let details = match details(state, &tenant).await {
        Ok(details) => details,
        Err(error) => {
            tracing::warn!(%error, "tenant details not read for the provider console");
            return layout::unavailable(request, session);
        }
    };
    let csrf = CsrfToken::for_request(request);
    let main = html! {
        p class="breadcrumb" { a href="/provider" { "← All tenants" } }
        h1 { (tenant.display_name) }
        p class="lead" { "Tenant " span class="code" { (tenant.slug) } }
        (confirmation(outcome.notice))
        @if let Some(words) = &outcome.refusal {
            div class="alert" role="alert" { (words) }
        }
        (subscription(&tenant, &details))
        (actions(&tenant, &csrf))
        (version(&tenant, &state.settings.erp_versions, &csrf))
        (seats(&tenant, &details))
        (provisioning(&tenant))
        (history(&details.history))
    };
    let markup = frame(request, &format!("{} — tenant", tenant.display_name), session, Some(&csrf), None, main);
    page(request, status, Some(&csrf), markup)
}

fn subscription(tenant: &Tenant, details: &Details) -> Markup {
    let plan = &details.plan;
    html! {
        section aria-labelledby="subscription-title" {
            h2 id="subscription-title" { "Subscription" }
            dl class="facts" {
                dt { "Owner" } dd { (tenant.owner_email) }
                dt { "Plan" }
                dd {
                    a href={ "/provider/plans/" (plan.spec.name) } { (plan.spec.display_name) }
                    " (" span class="code" { (plan.spec.name) } "), version " (plan.version) ": "
                    (format_money(&plan.spec.price_per_seat_month)) " per seat per month"
                    @if details.newest_version > plan.version {
                        " — the plan is at version " (details.newest_version) " now"
                    }
                }
                dt { "State" }
                dd id="subscription-state" class={ "state state-" (tenant.state.as_str()) } {
                    (state_label(tenant.state))
                }
                dt { "Trial ends" }
                dd { @match tenant.trial_ends_at { Some(at) => (date_time(at)), None => "no trial" } }
                dt { "Seats held" } dd { (details.seats.len()) " of " (tenant.licensed_seats) " licensed" }
                dt { "Licensed seats" } dd { (tenant.licensed_seats) " (the plan allows up to " (plan.spec.max_seats) ")" }
                dt { "ERP version" } dd { (tenant.erp_version) }
                dt { "Created" } dd { (date_time(tenant.created_at)) }
                @if let Some(deleted) = tenant.deleted_at {
                    dt { "Deleted" } dd { (date_time(deleted)) }
                }
            }
        }
    }
}

fn actions(tenant: &Tenant, csrf: &CsrfToken) -> Markup {
    let suspendable = tenant.deleted_at.is_none()
        && !matches!(tenant.state, SubscriptionState::Suspended | SubscriptionState::Canceled);
    let resumable = tenant.deleted_at.is_none() && tenant.state == SubscriptionState::Suspended;
    html! {
        section aria-labelledby="actions-title" {
            h2 id="actions-title" { "Suspension" }
            @if suspendable {
                p { "Suspending scales the tenant's ERP to zero: nobody can use it, and all its data is kept." }
                form method="post" action={ "/provider/tenants/" (tenant.slug) "/suspend" } {
                    (csrf_field(csrf))
                    button type="submit" { "Suspend" }
                }
            } @else if resumable {
                p { "The ERP is scaled to zero. Resuming starts it again and makes the subscription active." }
                form method="post" action={ "/provider/tenants/" (tenant.slug) "/resume" } {
                    (csrf_field(csrf))
                    button type="submit" { "Resume" }
                }
            } @else {
                p { "This tenant is deleted: it can be neither suspended nor resumed." }
            }
        }
    }
}

/// The version the tenant has and the catalogue's versions it may move to (never older ones).
fn version(tenant: &Tenant, catalogue: &VersionCatalogue, csrf: &CsrfToken) -> Markup {
    let current = tenant.erp_version.parse::<ErpVersion>().ok();
    let choices: Vec<ErpVersion> = catalogue.upgrades_from(current).filter(|v| Some(*v) != current).collect();
    html! {
        section aria-labelledby="version-title" {
            h2 id="version-title" { "ERP version" }
            p {
                "The tenant has " strong { (tenant.erp_version) } ". The provider's catalogue offers "
                (catalogue) "; production never goes back to an older version."
            }
            @if tenant.deleted_at.is_some() {
                p { "This tenant is deleted." }
            } @else if choices.is_empty() {
                p { "No newer version is in the catalogue." }
            } @else {
                form method="post" action={ "/provider/tenants/" (tenant.slug) "/version" } {
                    (csrf_field(csrf))
                    label for="version" { "Move to" }
                    " "
                    select id="version" name="version" {
                        @for choice in &choices { option value=(choice) { (choice) } }
                    }
                    " "
                    button type="submit" { "Change version" }
                }
            }
        }
    }
}

fn seats(tenant: &Tenant, details: &Details) -> Markup {
    html! {
        section aria-labelledby="seats-title" {
            h2 id="seats-title" { "Seats held" }
            @if details.seats.is_empty() {
                p { @if tenant.deleted_at.is_some() { "None: deleting the tenant released every seat." } @else { "No seat is held." } }
            } @else {
                ul class="seats" {
                    @for seat in &details.seats {
                        li { (seat.email) span class="muted" { " since " (date(seat.assigned_at)) } }
                    }
                }
            }
        }
    }
}

fn provisioning(tenant: &Tenant) -> Markup {
    let progress = progress(tenant, Utc::now());
    html! {
        section aria-labelledby="provisioning-title" {
            h2 id="provisioning-title" { "Provisioning" }
            p {
                "State: " strong id="provisioning-state" { (provisioning_label(tenant.provisioning)) } ". "
                (progress.summary)
            }
            ol class="steps" {
                @for step in &progress.steps {
                    li class={ "step state-" (step.state.key()) } {
                        span class="step-label" { (step.label) }
                        " "
                        span class="step-state" { (step.state_label) }
                        " "
                        span class="step-detail" { (step.detail) }
                    }
                }
            }
            p {
                "ERP address: "
                @match &tenant.url {
                    Some(url) => a href=(url) { (url) },
                    None => "none yet",
                }
            }
        }
    }
}

fn history(changes: &[PlanChange]) -> Markup {
    html! {
        section aria-labelledby="history-title" {
            h2 id="history-title" { "Plan history" }
            @if changes.is_empty() {
                p { "The tenant is on the plan it started with." }
            } @else {
                div class="table-scroll" role="region" aria-labelledby="history-caption" tabindex="0" {
                    table class="data" {
                        caption id="history-caption" { "Plan changes, oldest first" }
                        thead { tr { th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Changed" } } }
                        tbody {
                            @for change in changes {
                                tr {
                                    td { (change.from_plan) " v" (change.from_version) }
                                    td { (change.to_plan) " v" (change.to_version) }
                                    td { (date_time(change.changed_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
