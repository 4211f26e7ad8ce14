//! `/` and `/signup`: the plan catalogue and the signup form; `/signup/slug`: the availability
//! check the form runs as the customer types.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::layout::{self, csrf_field, frame, page, see_other};
use super::session::{self, CsrfToken, Session, check_csrf};
use crate::cache::RateLimit;
use crate::domain::money::Money;
use crate::domain::plan::{ModulePolicy, PlanSpec};
use crate::domain::seats::seats_phrase;
use crate::http::AppState;
use crate::http::input::check_email;
use crate::http::problem::Problem;
use crate::http::types::SignupRequest;
use crate::slug::{Slug, SlugError};
use crate::store::StoreError;

/// What the form sends (every field optional, so a partial form is answered field by field).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SignupForm {
    pub company_name: String,
    pub slug: String,
    pub admin_email: String,
    pub seats: String,
    pub plan: String,
    pub csrf: String,
}

/// The problems of a submitted form: per field, and for the page as a whole.
#[derive(Debug, Default)]
struct FormErrors {
    fields: BTreeMap<&'static str, String>,
    page: Option<String>,
}

impl FormErrors {
    fn field(&mut self, field: &'static str, message: impl Into<String>) {
        self.fields.entry(field).or_insert_with(|| message.into());
    }
}

/// Availability checks per client: a person typing makes a few per company name.
const SLUG_CHECK_RATE: RateLimit = RateLimit { per_minute: 60, burst: 30 };

/// The fields of the form, in order: (name, label).
const FIELDS: [&str; 5] = ["company_name", "slug", "admin_email", "seats", "plan"];

pub async fn form_page(state: web::Data<AppState>, request: HttpRequest, session: Session) -> HttpResponse {
    let plans = match open_plans(&state).await {
        Ok(plans) => plans,
        Err(_) => return layout::unavailable(&request, &session),
    };
    let csrf = CsrfToken::for_request(&request);
    let form = SignupForm {
        seats: "1".into(),
        plan: plans.first().map(|plan| plan.name.clone()).unwrap_or_default(),
        ..SignupForm::default()
    };
    render(&request, &session, &csrf, &plans, &form, &FormErrors::default(), StatusCode::OK)
}

pub async fn submit(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    form: web::Form<SignupForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if check_csrf(&request, &form.csrf).is_err() {
        return layout::forbidden(&request);
    }
    let plans = match open_plans(&state).await {
        Ok(plans) => plans,
        Err(_) => return layout::unavailable(&request, &session),
    };
    let csrf = CsrfToken::for_request(&request);
    let mut errors = FormErrors::default();
    if let Err(problem) = crate::http::signup::check_rate(&state, &request).await {
        errors.page = Some(
            "Too many sign-ups came from your network just now. Nothing was created; please try again in a minute."
                .into(),
        );
        let mut response = render(&request, &session, &csrf, &plans, &form, &errors, StatusCode::TOO_MANY_REQUESTS);
        if let Some(retry) = actix_web::ResponseError::error_response(&problem).headers().get(header::RETRY_AFTER) {
            response.headers_mut().insert(header::RETRY_AFTER, retry.clone());
        }
        return response;
    }

    // A seat count that is not a number is sent as 0, which the shared checks refuse: every
    // other field is still checked in the same pass and nothing is created.
    let seats = form.seats.trim().parse::<i64>();
    if seats.is_err() {
        errors.field("seats", "Enter the number of seats as a whole number, for example 5.");
    }
    if form.plan.is_empty() {
        errors.field("plan", "Choose a plan.");
    }
    let slug = form.slug.trim();
    // Conflicts the store would report one at a time are looked for first, so that a person
    // sees every problem of the form at once (the store still decides).
    if let Ok(parsed) = crate::slug::Slug::parse(slug)
        && state.store.tenant(parsed.as_str()).await.is_ok()
    {
        errors.field("slug", "This address is taken; choose another.");
    }
    if let (Ok(wanted), Some(plan)) = (&seats, plans.iter().find(|plan| plan.name == form.plan))
        && *wanted > i64::from(plan.max_seats)
    {
        errors.field("seats", plan_maximum_message(plan));
    }
    let request_body = SignupRequest {
        company_name: form.company_name.clone(),
        slug: (!slug.is_empty()).then(|| slug.to_string()),
        admin_email: form.admin_email.trim().to_string(),
        plan: form.plan.clone(),
        seats: seats.unwrap_or(0),
    };
    match crate::http::signup::create(&state, request_body).await {
        Ok(created) => {
            let slug = created.tenant["slug"].as_str().unwrap_or_default().to_string();
            let Some(token) = created.token else {
                tracing::error!(tenant = slug, "signup returned no token");
                return layout::unavailable(&request, &session);
            };
            let lifetime = state.settings.signup_token_ttl.as_secs().max(1);
            let cookie = session::session_cookie(&request, &token, lifetime);
            see_other(&format!("/t/{slug}"), &[cookie])
        }
        Err(problem) => {
            explain(&problem, &form, &plans, &mut errors);
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            render(&request, &session, &csrf, &plans, &form, &errors, status)
        }
    }
}

/// Puts a refusal of the shared signup next to the fields it concerns, in plain words.
fn explain(problem: &Problem, form: &SignupForm, plans: &[PlanSpec], errors: &mut FormErrors) {
    match (problem.status, problem.code) {
        (422, _) if !problem.errors.is_empty() => {
            for error in &problem.errors {
                let (field, message) = error.split_once(": ").unwrap_or(("", error.as_str()));
                match FIELDS.iter().find(|known| **known == field) {
                    Some(field) => errors.field(field, plain_field_message(field, message, form)),
                    None => errors.page = Some(sentence(message)),
                }
            }
        }
        (409, "slug_taken") => errors.field("slug", "This address is taken; choose another."),
        (409, "plan_retired") => errors.field("plan", "This plan takes no new customers; choose another."),
        (409, "seat_limit_reached") => {
            let message = match plans.iter().find(|plan| plan.name == form.plan) {
                Some(plan) => plan_maximum_message(plan),
                None => sentence(&problem.detail),
            };
            errors.field("seats", message);
        }
        (status, _) if status >= 500 => {
            errors.page = Some("The sign-up could not be completed just now. Please try again in a moment.".into());
        }
        _ => errors.page = Some(sentence(&problem.detail)),
    }
}

/// A seat limit above the plan's maximum, naming the maximum.
fn plan_maximum_message(plan: &PlanSpec) -> String {
    format!(
        "The {} plan allows a limit of at most {}; choose a lower limit or a larger plan.",
        plan.display_name,
        seats_phrase(plan.max_seats)
    )
}

fn plain_field_message(field: &str, message: &str, form: &SignupForm) -> String {
    match field {
        "company_name" if message.contains("control characters") => {
            "The company name must not contain control characters.".into()
        }
        "company_name" => "Enter your company's name (at most 100 characters).".into(),
        "slug" => match Slug::parse(form.slug.trim()) {
            Err(error) if !form.slug.trim().is_empty() => slug_problem(&error),
            _ => unusable_company_name(&form.company_name),
        },
        "admin_email" => match check_email(form.admin_email.trim()) {
            Err(reason) => format!("{} Enter an address such as ada@example.com.", sentence(reason)),
            Ok(()) => sentence(message),
        },
        "seats" => "Enter the seat limit as a whole number, at least 1.".into(),
        "plan" => "Choose one of the plans.".into(),
        _ => sentence(message),
    }
}

/// Why no address is made from `company_name`, in plain words: a reserved word is named.
fn unusable_company_name(company_name: &str) -> String {
    match Slug::suggest(company_name) {
        Err(SlugError::Reserved(word)) => {
            format!("“{word}” is a reserved word, so it cannot be your address; enter another address.")
        }
        _ => "No address can be made from the company name; enter one.".into(),
    }
}

/// A slug refusal in plain words.
pub fn slug_problem(error: &SlugError) -> String {
    match error {
        SlugError::Empty => "Enter an address.".into(),
        SlugError::TooLong(length) => {
            format!("An address has at most {} characters; this one has {length}.", crate::slug::MAX_LEN)
        }
        SlugError::InvalidCharacter(c) => {
            format!("Use only lowercase letters a–z, digits and dashes (“{c}” is not allowed).")
        }
        SlugError::BadEdge => "An address starts with a letter and ends with a letter or digit.".into(),
        SlugError::Reserved(name) => format!("“{name}” is a reserved word; choose another address."),
    }
}

/// `text` with a capital first letter, a final period, and without a `(got …)` echo.
fn sentence(text: &str) -> String {
    let text = text.split(" (got ").next().unwrap_or(text).trim();
    let mut chars = text.chars();
    let mut sentence: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !sentence.ends_with('.') {
        sentence.push('.');
    }
    sentence
}

/// The plans that take new tenants, cheapest first.
pub(super) async fn open_plans(state: &AppState) -> Result<Vec<PlanSpec>, StoreError> {
    let mut plans: Vec<PlanSpec> = state
        .store
        .plans()
        .await
        .inspect_err(|error| tracing::warn!(%error, "plans not read for the signup page"))?
        .into_iter()
        .filter(|plan| plan.retired_at.is_none())
        .map(|plan| plan.spec)
        .collect();
    plans.sort_by(|a, b| a.price_per_seat_month.minor.cmp(&b.price_per_seat_month.minor).then(a.name.cmp(&b.name)));
    Ok(plans)
}

/// `€19.00`, `$5.50`, `£7.00`, else `19.00 CHF`.
pub fn format_money(money: &Money) -> String {
    let amount = format!("{}.{:02}", money.minor / 100, money.minor % 100);
    match money.currency.as_str() {
        "EUR" => format!("€{amount}"),
        "USD" => format!("${amount}"),
        "GBP" => format!("£{amount}"),
        other => format!("{amount} {other}"),
    }
}

fn render(
    request: &HttpRequest,
    session: &Session,
    csrf: &CsrfToken,
    plans: &[PlanSpec],
    form: &SignupForm,
    errors: &FormErrors,
    status: StatusCode,
) -> HttpResponse {
    let main = html! {
        h1 { "Start your ERP" }
        p class="lead" { "Choose a plan, tell us who you are, and your ERP is built for you in a few minutes." }
        @if let Some(message) = &errors.page {
            div class="alert" role="alert" id="form-error" { (message) }
        } @else if !errors.fields.is_empty() {
            div class="alert" role="alert" id="form-error" {
                "Please correct the " (if errors.fields.len() == 1 { "field" } else { "fields" }) " marked below. Nothing was created."
            }
        }
        section aria-labelledby="plans-title" {
            h2 id="plans-title" { "Plans" }
            @if plans.is_empty() {
                p { "No plan takes new customers at the moment." }
            }
            div class="plans" {
                @for plan in plans { (plan_card(plan)) }
            }
        }
        section aria-labelledby="signup-title" {
            h2 id="signup-title" { "Sign up" }
            form method="post" action="/signup" class="signup" data-signup novalidate {
                (csrf_field(csrf))
                (text_field("company_name", "Company name", "text", &form.company_name, errors,
                    Some("organization"), None))
                (text_field("slug", "Address", "text", &form.slug, errors, Some("off"),
                    Some("Lowercase letters, digits and dashes; it names your ERP in its web address. Suggested from the company name.")))
                p id="slug-status" class="status" aria-live="polite" {}
                (text_field("admin_email", "Your email address (you become the administrator)", "email",
                    &form.admin_email, errors, Some("email"), None))
                (text_field("seats", "Seat limit (users)", "number", &form.seats, errors, Some("off"),
                    Some("The most people who may hold a seat, up to the plan's maximum. You pay for the seats held, \
                          not for the limit, and you can change the limit later in your console.")))
                (plan_choice(plans, form, errors))
                button type="submit" { "Create my ERP" }
            }
        }
    };
    let markup = frame(request, "Sign up", session, Some(csrf), None, main);
    page(request, status, Some(csrf), markup)
}

fn plan_card(plan: &PlanSpec) -> Markup {
    html! {
        article class="plan" aria-labelledby={ "plan-title-" (plan.name) } {
            h3 id={ "plan-title-" (plan.name) } { (plan.display_name) }
            p class="price" {
                strong { (format_money(&plan.price_per_seat_month)) }
                " per seat per month"
            }
            dl {
                dt { "Seats" } dd { "up to " (plan.max_seats) }
                dt { "Test environment" } dd { @if plan.test_environment { "included" } @else { "not included" } }
                dt { "Modules" } dd {
                    @match plan.module_policy {
                        ModulePolicy::CertifiedOnly => "certified modules only",
                        ModulePolicy::CustomAllowed => "certified and your own modules",
                    }
                }
                // No "backups kept N days" here until the product takes and keeps backups: the
                // plan's retention is stored (providers set it) but nothing acts on it yet.
                dt { "Free trial" } dd {
                    @if plan.trial_days > 0 { (plan.trial_days) " days" } @else { "none" }
                }
            }
        }
    }
}

fn described_by(id: &str, hint: bool, error: bool) -> Option<String> {
    let mut ids = Vec::new();
    if error {
        ids.push(format!("{id}-error"));
    }
    if hint {
        ids.push(format!("{id}-hint"));
    }
    (!ids.is_empty()).then(|| ids.join(" "))
}

fn text_field(
    name: &'static str,
    label: &str,
    kind: &str,
    value: &str,
    errors: &FormErrors,
    autocomplete: Option<&str>,
    hint: Option<&str>,
) -> Markup {
    let error = errors.fields.get(name);
    let invalid = error.map(|_| "true");
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } {
            label for=(name) { (label) }
            @if let Some(hint) = hint { p class="hint" id={ (name) "-hint" } { (hint) } }
            @if let Some(error) = error { p class="error" id={ (name) "-error" } { (error) } }
            input type=(kind) id=(name) name=(name) value=(value) autocomplete=[autocomplete]
                aria-invalid=[invalid] aria-describedby=[described_by(name, hint.is_some(), error.is_some())]
                min=[(kind == "number").then_some("1")] inputmode=[(kind == "number").then_some("numeric")]
                required;
        }
    }
}

fn plan_choice(plans: &[PlanSpec], form: &SignupForm, errors: &FormErrors) -> Markup {
    let error = errors.fields.get("plan");
    html! {
        fieldset class={ "field" @if error.is_some() { " invalid" } }
            aria-describedby=[error.map(|_| "plan-error")] {
            legend { "Plan" }
            @if let Some(error) = error { p class="error" id="plan-error" { (error) } }
            @for plan in plans {
                @let id = format!("plan-{}", plan.name);
                div class="choice" {
                    input type="radio" id=(id) name="plan" value=(plan.name) checked[form.plan == plan.name]
                        aria-describedby=[error.map(|_| "plan-error")] aria-invalid=[error.map(|_| "true")];
                    label for=(id) {
                        (plan.display_name) " — " (format_money(&plan.price_per_seat_month)) " per seat per month, up to "
                        (seats_phrase(plan.max_seats))
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlugQuery {
    pub company: String,
    pub slug: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SlugCheck {
    /// The slug checked: the one given, else the one suggested from the company name.
    pub slug: Option<String>,
    pub available: bool,
    /// Why it cannot be used, in plain words.
    pub problem: Option<String>,
}

/// `GET /signup/slug?company=…&slug=…`: the slug given (or suggested from the company name),
/// whether it is free, and if not why.
pub async fn check_slug(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<SlugQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    let given = query.slug.trim();
    let refused = |slug: Option<String>, problem: String| SlugCheck { slug, available: false, problem: Some(problem) };
    // Each check is a store lookup and tells whether a tenant exists: generous for a person
    // typing, a wall for a script walking through names.
    if crate::http::signup::check_client_rate(&state, &request, "slug-check", SLUG_CHECK_RATE).await.is_err() {
        let problem = "Too many checks just now; the address is checked again when you submit the form.";
        return json(StatusCode::TOO_MANY_REQUESTS, &refused(None, problem.to_string()));
    }
    let slug = if given.is_empty() {
        match Slug::suggest(&query.company) {
            Ok(slug) => slug,
            Err(_) if query.company.trim().is_empty() => {
                return json(StatusCode::OK, &refused(None, "Enter your company name or an address.".into()));
            }
            Err(_) => return json(StatusCode::OK, &refused(None, unusable_company_name(&query.company))),
        }
    } else {
        match Slug::parse(given) {
            Ok(slug) => slug,
            Err(error) => return json(StatusCode::OK, &refused(Some(given.to_string()), slug_problem(&error))),
        }
    };
    let name = Some(slug.to_string());
    match state.store.tenant(slug.as_str()).await {
        // Deleted tenants keep their slug: it is never given out again.
        Ok(_) => json(StatusCode::OK, &refused(name, "This address is taken; choose another.".into())),
        Err(StoreError::NotFound { .. }) => {
            json(StatusCode::OK, &SlugCheck { slug: name, available: true, problem: None })
        }
        Err(error) => {
            tracing::warn!(%error, "slug availability not checked");
            let problem = "Availability could not be checked just now.".to_string();
            json(StatusCode::SERVICE_UNAVAILABLE, &refused(name, problem))
        }
    }
}

pub fn json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    let mut builder = HttpResponse::build(status);
    layout::secure(&mut builder).insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_with_its_symbol_or_code() {
        let money = |minor, currency: &str| Money::new(minor, currency.parse().unwrap()).unwrap();
        assert_eq!(format_money(&money(1900, "EUR")), "€19.00");
        assert_eq!(format_money(&money(5, "USD")), "$0.05");
        assert_eq!(format_money(&money(123456, "CHF")), "1234.56 CHF");
    }

    #[test]
    fn messages_are_sentences_without_echoes() {
        assert_eq!(sentence("not a valid email address (got \"x\")"), "Not a valid email address.");
        assert_eq!(sentence("done."), "Done.");
        assert_eq!(sentence(""), "");
    }
}
