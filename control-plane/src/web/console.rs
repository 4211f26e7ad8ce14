//! `/t/{slug}/console`: the tenant console — seats (who holds them, the count against the
//! tenant's seat limit and the form to change that limit, a chart of the last 90 days),
//! environments (production and test: version, state, address) and the subscription (plan,
//! price, next period, plan change).
//!
//! The seat limit is the tenant's licensed seats: a cap the customer sets within the plan's
//! maximum. Billing counts the seats held, never the limit.
//!
//! Its forms go through the same functions as the API (`http::seats`, `http::tenants`), so a
//! limit the API enforces is enforced here too; the page also disables what the plan does not
//! allow, so a person does not have to find out by trying.

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, csrf_field, frame, page, see_other};
use super::progress::visible_tenant;
use super::session::{CsrfToken, Session, check_csrf};
use super::signup::format_money;
use super::{chart, sentence};
use crate::auth::Principal;
use crate::domain::plan::PlanSpec;
use crate::domain::seats::{DailyPeak, daily_peaks, seats_phrase};
use crate::domain::subscription::{SubscriptionState, next_period_start};
use crate::http::AppState;
use crate::http::problem::Problem;
use crate::http::types::UpdateTenantRequest;
use crate::store::{Plan, ProvisioningState, Seat, SeatAdded, StoreError, Tenant};

/// How far back the usage chart looks.
const CHART_DAYS: u32 = 90;

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(web::resource("/t/{slug}/console").route(web::get().to(page_view)))
        .service(web::resource("/t/{slug}/console/seats").app_data(super::form()).route(web::post().to(add_seat)))
        .service(
            web::resource("/t/{slug}/console/seats/remove").app_data(super::form()).route(web::post().to(remove_seat)),
        )
        .service(web::resource("/t/{slug}/console/plan").app_data(super::form()).route(web::post().to(change_plan)))
        .service(
            web::resource("/t/{slug}/console/seat-limit")
                .app_data(super::form())
                .route(web::post().to(change_seat_limit)),
        );
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SeatForm {
    pub email: String,
    pub csrf: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PlanForm {
    pub plan: String,
    pub csrf: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SeatLimitForm {
    pub seats: String,
    pub csrf: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Done {
    pub done: Option<String>,
}

/// What a form sent back to the page: an error at a field, and what was typed.
#[derive(Debug, Default)]
struct Outcome {
    seat_error: Option<String>,
    seat_email: String,
    plan_error: Option<String>,
    limit_error: Option<String>,
    /// What was typed into the seat-limit field.
    limit_value: Option<String>,
    /// A confirmation of the last change (after its redirect).
    done: Option<&'static str>,
}

/// Everything the page shows, read in one place.
struct Console {
    tenant: Tenant,
    /// The plan version the tenant pays by.
    plan: Plan,
    /// Plans a tenant may move to.
    open_plans: Vec<PlanSpec>,
    seats: Vec<Seat>,
    peaks: Vec<DailyPeak>,
    now: DateTime<Utc>,
}

impl Console {
    /// Seats held now: the ledger's open seats, listed above.
    fn held(&self) -> u32 {
        u32::try_from(self.seats.len()).unwrap_or(u32::MAX)
    }
}

async fn load(state: &AppState, tenant: Tenant) -> Result<Console, StoreError> {
    let now = Utc::now();
    let plan = state.store.plan_version(&tenant.plan, tenant.plan_version).await?;
    let open_plans = super::signup::open_plans(state).await?;
    let seats = state.store.seats(&tenant.slug).await?;
    let from = now - TimeDelta::days(i64::from(CHART_DAYS));
    let holdings = state.store.seat_holdings(&tenant.slug, from, now).await?;
    let peaks = daily_peaks(&holdings, now, CHART_DAYS);
    Ok(Console { tenant, plan, open_plans, seats, peaks, now })
}

/// The tenant when the session may manage it, else the response to send instead.
async fn tenant_for(
    state: &AppState,
    request: &HttpRequest,
    session: &Session,
    slug: &str,
) -> Result<Tenant, HttpResponse> {
    match visible_tenant(state, session, slug).await {
        Ok(Some(tenant)) if tenant.deleted_at.is_none() => Ok(tenant),
        Ok(_) => Err(layout::not_found(request, session)),
        Err(error) => {
            tracing::warn!(%error, "tenant not read for its console");
            Err(layout::unavailable(request, session))
        }
    }
}

/// A console form's checks before it acts: the CSRF token, and a session that may manage the
/// tenant. The tenant and who acts, else the response to send instead.
async fn posted<'s>(
    state: &AppState,
    request: &HttpRequest,
    session: &'s Session,
    slug: &str,
    csrf: &str,
) -> Result<(Tenant, &'s Principal), HttpResponse> {
    if check_csrf(request, csrf).is_err() {
        return Err(layout::forbidden(request));
    }
    let tenant = tenant_for(state, request, session, slug).await?;
    let principal = session.principal().ok_or_else(|| layout::not_found(request, session))?;
    Ok((tenant, principal))
}

pub async fn page_view(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    query: web::Query<Done>,
) -> HttpResponse {
    let tenant = match tenant_for(&state, &request, &session, &slug).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let done = match query.done.as_deref() {
        Some("seat-added") => Some("The seat was added."),
        Some("seat-held") => Some("That person already holds a seat; nothing changed."),
        Some("seat-removed") => Some("The seat was released."),
        Some("plan-changed") => Some("Your plan was changed."),
        Some("limit-changed") => Some("Your seat limit was changed."),
        _ => None,
    };
    render(&state, &request, &session, tenant, Outcome { done, ..Outcome::default() }, StatusCode::OK).await
}

pub async fn add_seat(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<SeatForm>,
) -> HttpResponse {
    let (tenant, principal) = match posted(&state, &request, &session, &slug, &form.csrf).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let email = form.email.trim();
    match crate::http::seats::add_seat(&state, principal, &slug, email).await {
        Ok(SeatAdded::Added(_)) => see_other(&format!("/t/{slug}/console?done=seat-added#seats"), &[]),
        Ok(SeatAdded::AlreadyHeld(_)) => see_other(&format!("/t/{slug}/console?done=seat-held#seats"), &[]),
        Err(problem) => {
            let Some((status, message)) = seat_problem(&problem) else {
                return failure(&request, &session, &problem);
            };
            let outcome = Outcome { seat_error: Some(message), seat_email: email.to_string(), ..Outcome::default() };
            render(&state, &request, &session, tenant, outcome, status).await
        }
    }
}

pub async fn remove_seat(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<SeatForm>,
) -> HttpResponse {
    let (tenant, principal) = match posted(&state, &request, &session, &slug, &form.csrf).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    match crate::http::seats::remove_seat(&state, principal, &slug, &form.email).await {
        Ok(()) => see_other(&format!("/t/{slug}/console?done=seat-removed#seats"), &[]),
        // Released already (another tab, or twice): the page shows who holds seats now.
        Err(problem) if problem.code == "seat_not_found" => {
            let outcome =
                Outcome { seat_error: Some(format!("{} holds no seat (any more).", form.email)), ..Outcome::default() };
            render(&state, &request, &session, tenant, outcome, StatusCode::NOT_FOUND).await
        }
        Err(problem) => failure(&request, &session, &problem),
    }
}

pub async fn change_plan(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<PlanForm>,
) -> HttpResponse {
    let (tenant, principal) = match posted(&state, &request, &session, &slug, &form.csrf).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let (status, message) = if form.plan.is_empty() {
        (StatusCode::UNPROCESSABLE_ENTITY, "Choose a plan.".to_string())
    } else if form.plan == tenant.plan {
        (StatusCode::UNPROCESSABLE_ENTITY, "You are on this plan already.".to_string())
    } else {
        // A seat limit above the new plan's maximum comes down to it with the move (the page
        // says so beside the plan); the seats held must still fit.
        let lowered = match state.store.plan(&form.plan).await {
            Ok(plan) if plan.spec.max_seats < tenant.licensed_seats => Some(i64::from(plan.spec.max_seats)),
            _ => None,
        };
        let change =
            UpdateTenantRequest { plan: Some(form.plan.clone()), seats: lowered, ..UpdateTenantRequest::default() };
        match crate::http::tenants::change(&state, principal, &slug, change).await {
            Ok(_) => return see_other(&format!("/t/{slug}/console?done=plan-changed#subscription"), &[]),
            Err(problem) => match problem.code {
                "plan_too_small" | "seat_limit_reached" => (
                    StatusCode::CONFLICT,
                    format!("{} Release seats first, or choose a larger plan.", sentence(&problem.detail)),
                ),
                "plan_retired" | "validation_failed" | "plan_not_found" => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "That plan takes no new customers; choose one of the plans listed.".to_string(),
                ),
                _ => return failure(&request, &session, &problem),
            },
        }
    };
    let outcome = Outcome { plan_error: Some(message), ..Outcome::default() };
    render(&state, &request, &session, tenant, outcome, status).await
}

/// The seat limit (licensed seats) as the tenant admin sets it: through `PATCH
/// /v1/tenants/{slug}`'s own checks.
pub async fn change_seat_limit(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<SeatLimitForm>,
) -> HttpResponse {
    let (tenant, principal) = match posted(&state, &request, &session, &slug, &form.csrf).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let typed = form.seats.trim();
    let (status, message) = match typed.parse::<i64>() {
        Err(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Enter the seat limit as a whole number, for example 5.".into()),
        Ok(seats) => {
            let change = UpdateTenantRequest { seats: Some(seats), ..UpdateTenantRequest::default() };
            match crate::http::tenants::change(&state, principal, &slug, change).await {
                Ok(_) => return see_other(&format!("/t/{slug}/console?done=limit-changed#seats"), &[]),
                Err(problem) => match problem.code {
                    "seat_limit_reached" | "seats_in_use" => (StatusCode::CONFLICT, sentence(&problem.detail)),
                    "validation_failed" => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "Enter a whole number of seats, at least 1.".into())
                    }
                    _ => return failure(&request, &session, &problem),
                },
            }
        }
    };
    let outcome = Outcome { limit_error: Some(message), limit_value: Some(typed.to_string()), ..Outcome::default() };
    render(&state, &request, &session, tenant, outcome, status).await
}

/// The words and status for a refused seat, or `None` when it is not the form's fault.
fn seat_problem(problem: &Problem) -> Option<(StatusCode, String)> {
    match problem.code {
        "seat_limit_reached" => Some((StatusCode::CONFLICT, sentence(&problem.detail))),
        "validation_failed" => {
            Some((StatusCode::UNPROCESSABLE_ENTITY, "Enter an email address, for example ada@example.com.".into()))
        }
        _ => None,
    }
}

/// A failure that is not about the form: the tenant vanished, or the service is down.
fn failure(request: &HttpRequest, session: &Session, problem: &Problem) -> HttpResponse {
    if problem.status == 404 || problem.status == 403 {
        return layout::not_found(request, session);
    }
    tracing::warn!(code = problem.code, detail = %problem.detail, "a console change failed");
    layout::unavailable(request, session)
}

async fn render(
    state: &AppState,
    request: &HttpRequest,
    session: &Session,
    tenant: Tenant,
    outcome: Outcome,
    status: StatusCode,
) -> HttpResponse {
    let console = match load(state, tenant).await {
        Ok(console) => console,
        Err(error) => {
            tracing::warn!(%error, "console not read");
            return layout::unavailable(request, session);
        }
    };
    let csrf = CsrfToken::for_request(request);
    let title = format!("{} — console", console.tenant.display_name);
    let main = html! {
        h1 { (console.tenant.display_name) }
        p class="lead" { "Your ERP " code { (console.tenant.slug) } ": seats, environments and subscription." }
        @if let Some(done) = outcome.done {
            p class="confirm" role="status" { (done) }
        }
        (seats_section(&console, &outcome, &csrf))
        (environments_section(&console))
        (subscription_section(&console, &outcome, &csrf))
    };
    page(request, status, Some(&csrf), frame(request, &title, session, Some(&csrf), None, main))
}

fn seats_section(console: &Console, outcome: &Outcome, csrf: &CsrfToken) -> Markup {
    let slug = &console.tenant.slug;
    let (count, limit, plan_max) = (console.held(), console.tenant.licensed_seats, console.plan.spec.max_seats);
    let full = count >= limit;
    let described_by = match (&outcome.seat_error, full) {
        (Some(_), _) => "seat-email-error",
        (None, true) => "seat-limit-note",
        (None, false) => "seat-email-hint",
    };
    let limit_value = outcome.limit_value.clone().unwrap_or_else(|| limit.to_string());
    html! {
        section id="seats" class="console-section" aria-labelledby="seats-title" {
            h2 id="seats-title" { "Seats" }
            p class="meter-line" {
                span id="seat-count" { strong data-seat-count { (count) } " of " (seats_phrase(limit)) " in use" }
                meter min="0" max=(limit) value=(count) aria-labelledby="seat-count" {}
            }
            @if console.seats.is_empty() {
                p { "Nobody holds a seat yet." }
            } @else {
                ul class="seat-list" aria-label="People holding a seat" {
                    @for seat in &console.seats {
                        li data-seat=(seat.email) {
                            span { (seat.email) " " span class="hint" { "since " (seat.assigned_at.format("%-d %b %Y")) } }
                            form method="post" action={ "/t/" (slug) "/console/seats/remove" } class="inline" {
                                (csrf_field(csrf))
                                input type="hidden" name="email" value=(seat.email);
                                button type="submit" class="secondary" aria-label={ "Remove " (seat.email) } { "Remove" }
                            }
                        }
                    }
                }
            }
            form method="post" action={ "/t/" (slug) "/console/seats" } class="signup" novalidate {
                (csrf_field(csrf))
                div class={ "field" @if outcome.seat_error.is_some() { " invalid" } } {
                    label for="seat-email" { "Add a person (email address)" }
                    p class="hint" id="seat-email-hint" { "They take one seat; billing counts the seats held." }
                    @if full {
                        p class="notice" id="seat-limit-note" {
                            @if limit < plan_max {
                                "Your seat limit of " (limit) " is reached. Raise it below (your plan allows up to "
                                (plan_max) "), or remove someone, to add more people."
                            } @else {
                                "Your plan's maximum of " (seats_phrase(limit)) " is reached. Remove someone, or move to a larger plan below, to add more people."
                            }
                        }
                    }
                    @if let Some(error) = &outcome.seat_error { p class="error" id="seat-email-error" role="alert" { (error) } }
                    input type="email" id="seat-email" name="email" autocomplete="off" value=(outcome.seat_email)
                        disabled[full] aria-describedby=(described_by)
                        aria-invalid=[outcome.seat_error.as_ref().map(|_| "true")];
                }
                button type="submit" disabled[full] { "Add seat" }
            }
            form method="post" action={ "/t/" (slug) "/console/seat-limit" } class="signup" novalidate {
                (csrf_field(csrf))
                div class={ "field" @if outcome.limit_error.is_some() { " invalid" } } {
                    label for="seat-limit" { "Seat limit" }
                    p class="hint" id="seat-limit-hint" {
                        "The most people who may hold a seat: from the " (count) " held now up to your plan's " (plan_max)
                        ". You pay for the seats held, not for the limit."
                    }
                    @if let Some(error) = &outcome.limit_error { p class="error" id="seat-limit-error" role="alert" { (error) } }
                    input type="number" id="seat-limit" name="seats" min=(count.max(1)) max=(plan_max) inputmode="numeric"
                        value=(limit_value)
                        aria-describedby=(if outcome.limit_error.is_some() { "seat-limit-error seat-limit-hint" } else { "seat-limit-hint" })
                        aria-invalid=[outcome.limit_error.as_ref().map(|_| "true")];
                }
                button type="submit" class="secondary" { "Change the seat limit" }
            }
            h3 { "Usage" }
            (chart::seat_usage(&console.peaks, count, limit))
        }
    }
}

/// One environment as the page shows it.
struct EnvironmentView {
    name: &'static str,
    exists: bool,
    version: String,
    state: &'static str,
    url: Option<String>,
}

fn environments(console: &Console) -> [EnvironmentView; 2] {
    let tenant = &console.tenant;
    let reported = |name: &str| {
        tenant.environments.as_array().and_then(|list| list.iter().find(|env| env["name"] == name)).cloned()
    };
    let suspended = tenant.provisioning == ProvisioningState::Suspended;
    let state = |reported: Option<&serde_json::Value>| -> &'static str {
        match (reported, tenant.provisioning) {
            (_, ProvisioningState::Suspended) => "suspended (scaled to zero, data kept)",
            (_, ProvisioningState::Waiting | ProvisioningState::Applied) => "waiting to be built",
            (_, ProvisioningState::Invalid) => "refused by the cluster",
            (_, ProvisioningState::Deleting | ProvisioningState::Deleted) => "being removed",
            (Some(env), _) if env["ready"] == true => "running",
            (Some(_), _) => "starting",
            (None, _) => "being built",
        }
    };
    let production = reported("production");
    let test = reported("test");
    let has_test = console.plan.spec.test_environment || test.is_some();
    let url = |env: Option<&serde_json::Value>| env.and_then(|env| env["url"].as_str().map(str::to_string));
    let version = |env: Option<&serde_json::Value>| {
        env.and_then(|env| env["version"].as_str().map(str::to_string)).unwrap_or_else(|| tenant.erp_version.clone())
    };
    [
        EnvironmentView {
            name: "production",
            exists: true,
            version: version(production.as_ref()),
            state: state(production.as_ref()),
            url: if suspended { None } else { url(production.as_ref()).or_else(|| tenant.url.clone()) },
        },
        EnvironmentView {
            name: "test",
            exists: has_test,
            version: version(test.as_ref()),
            state: state(test.as_ref()),
            url: if suspended { None } else { url(test.as_ref()) },
        },
    ]
}

fn environments_section(console: &Console) -> Markup {
    html! {
        section id="environments" class="console-section" aria-labelledby="environments-title" {
            h2 id="environments-title" { "Environments" }
            div class="envs" {
                @for env in environments(console) {
                    div class="env" data-environment=(env.name) {
                        h3 { @if env.name == "production" { "Production" } @else { "Test" } }
                        @if env.exists {
                            dl class="facts" {
                                dt { "Version" } dd { "Tryton " (env.version) }
                                dt { "State" } dd data-env-state { (env.state) }
                                dt { "Address" }
                                dd {
                                    @match &env.url {
                                        Some(url) => a href=(url) { (url) },
                                        None => "not available yet",
                                    }
                                }
                            }
                        } @else {
                            p { "Your plan has no test environment. Plans with one are listed below." }
                        }
                    }
                }
            }
        }
    }
}

fn state_words(state: SubscriptionState) -> &'static str {
    match state {
        SubscriptionState::Trialing => "free trial",
        SubscriptionState::Active => "active",
        SubscriptionState::PastDue => "payment overdue",
        SubscriptionState::Suspended => "suspended",
        SubscriptionState::Canceled => "canceled",
    }
}

fn subscription_section(console: &Console, outcome: &Outcome, csrf: &CsrfToken) -> Markup {
    let tenant = &console.tenant;
    let spec = &console.plan.spec;
    let price = &spec.price_per_seat_month;
    let held = console.held();
    let monthly = price.times(held).map(|amount| format_money(&amount)).unwrap_or_else(|_| "—".into());
    let next = next_period_start(tenant.created_at, tenant.trial_ends_at, console.now);
    let trialing = tenant.state == SubscriptionState::Trialing;
    // A suspended tenant owes nothing until it is resumed: no period runs, nothing is billed.
    let suspended = tenant.state == SubscriptionState::Suspended;
    html! {
        section id="subscription" class="console-section" aria-labelledby="subscription-title" {
            h2 id="subscription-title" { "Subscription" }
            dl class="facts" {
                dt { "Plan" } dd data-plan { (spec.display_name) }
                dt { "Price" } dd { (format_money(price)) " per seat per month" }
                dt { "State" } dd data-subscription-state { (state_words(tenant.state)) }
                @if let (true, Some(ends)) = (trialing, tenant.trial_ends_at) {
                    dt { "Trial ends" } dd { (ends.format("%-d %B %Y")) }
                }
                @if suspended {
                    dt { "Amount owed" }
                    dd data-amount-owed { "nothing while your subscription is suspended" }
                } @else {
                    dt { "Next period" } dd { "from " (next.format("%-d %B %Y")) }
                    dt { "Next period's amount" }
                    dd data-next-amount { (monthly) " for the " (seats_phrase(held)) " held now" }
                }
            }
            form method="post" action={ "/t/" (tenant.slug) "/console/plan" } class="signup" {
                (csrf_field(csrf))
                fieldset class={ "field" @if outcome.plan_error.is_some() { " invalid" } }
                    aria-describedby=[outcome.plan_error.as_ref().map(|_| "plan-error")] {
                    legend { "Change plan" }
                    @if let Some(error) = &outcome.plan_error { p class="error" id="plan-error" role="alert" { (error) } }
                    @for plan in &console.open_plans {
                        @let id = format!("plan-{}", plan.name);
                        @let own = plan.name == tenant.plan;
                        @let too_small = plan.max_seats < held;
                        div class="choice" {
                            input type="radio" id=(id) name="plan" value=(plan.name)
                                checked[own] disabled[too_small && !own];
                            label for=(id) {
                                strong { (plan.display_name) } " — " (format_money(&plan.price_per_seat_month))
                                " per seat per month, up to " (seats_phrase(plan.max_seats))
                                @if plan.test_environment { ", test environment" }
                                @if own { " (your plan)" }
                                @if too_small && !own { " — too small for the " (seats_phrase(held)) " held" }
                                @else if !own && plan.max_seats < tenant.licensed_seats {
                                    " — your seat limit would become " (plan.max_seats)
                                }
                            }
                        }
                    }
                }
                button type="submit" { "Change plan" }
            }
        }
    }
}
