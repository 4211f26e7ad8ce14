//! `/provider/plans`: every plan; `/provider/plans/{name}`: one plan, its revision form and its
//! retirement; `/provider/new-plan`: a new plan based on another. Writes go through the same
//! functions as `/v1/plans`, so a form is checked exactly as the API checks a body.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::plan_form::{FieldErrors, PlanForm, commercial_fields, input, summary};
use super::{confirmation, date, provider_admin, query_pairs, query_value};
use crate::domain::plan::{ModulePolicy, PlanSpec};
use crate::http::AppState;
use crate::store::{Plan, StoreError};
use crate::web::layout::{self, csrf_field, frame, page, see_other};
use crate::web::session::{CsrfToken, Session, check_csrf};
use crate::web::signup::format_money;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RetireForm {
    pub csrf: String,
    /// The box "I understand…": `yes` when ticked.
    pub confirm: String,
}

fn done_message(done: &str) -> Option<&'static str> {
    match done {
        "created" => Some("The plan was created as version 1. New tenants can choose it now."),
        "revised" => {
            Some("Saved as a new version: new tenants get it; existing tenants stay on the version they have.")
        }
        "unchanged" => Some("Nothing was saved: the form matched the current version."),
        "retired" => Some("The plan is retired: it takes no new tenants, and its tenants keep it."),
        _ => None,
    }
}

/// Every plan (newest versions) and how many live tenants each has.
async fn plans_with_tenants(state: &AppState) -> Result<(Vec<Plan>, TenantCounts), StoreError> {
    let (plans, totals) = futures::try_join!(state.store.plans(), state.store.plan_totals())?;
    let counts = totals.plans.into_iter().map(|(name, totals)| (name, totals.tenants)).collect();
    Ok((plans, TenantCounts(counts)))
}

/// Live tenants per plan name.
struct TenantCounts(BTreeMap<String, u64>);

impl TenantCounts {
    fn of(&self, plan: &str) -> u64 {
        self.0.get(plan).copied().unwrap_or(0)
    }
}

pub async fn list_view(state: web::Data<AppState>, request: HttpRequest, session: Session) -> HttpResponse {
    if provider_admin(&session).is_none() {
        return layout::not_found(&request, &session);
    }
    let (plans, tenants) = match plans_with_tenants(&state).await {
        Ok(answers) => answers,
        Err(error) => {
            tracing::warn!(%error, "plans not read for the provider console");
            return layout::unavailable(&request, &session);
        }
    };
    let csrf = CsrfToken::for_request(&request);
    let main = html! {
        h1 { "Plans" }
        p class="lead" {
            "Changing a plan makes a new version: new tenants get it, existing tenants keep the version they "
            "subscribed to until their plan is changed."
        }
        div class="table-scroll" role="region" aria-labelledby="plans-caption" tabindex="0" {
            table class="data plans-table" {
                caption id="plans-caption" { "Every plan, newest version" }
                thead {
                    tr {
                        th scope="col" { "Plan" }
                        th scope="col" class="number" { "Version" }
                        th scope="col" class="number" { "Price per seat and month" }
                        th scope="col" class="number" { "Max seats" }
                        th scope="col" class="number" { "Max concurrent users" }
                        th scope="col" { "Trial" }
                        th scope="col" { "Test environment" }
                        th scope="col" { "Backups kept" }
                        th scope="col" class="number" { "Tenants" }
                        th scope="col" { "Status" }
                    }
                }
                tbody {
                    @for plan in &plans {
                        @let spec = &plan.spec;
                        tr data-plan=(spec.name) {
                            th scope="row" {
                                a href={ "/provider/plans/" (spec.name) } { (spec.display_name) }
                                br;
                                span class="code" { (spec.name) }
                            }
                            td class="number" { (plan.version) }
                            td class="number" { (format_money(&spec.price_per_seat_month)) }
                            td class="number" { (spec.max_seats) }
                            td class="number" { (spec.max_concurrent_users) }
                            td { @if spec.trial_days > 0 { (spec.trial_days) " days" } @else { "none" } }
                            td { @if spec.test_environment { "yes" } @else { "no" } }
                            td { (spec.backup_retention_days) " days" }
                            td class="number" { (tenants.of(&spec.name)) }
                            td {
                                @match plan.retired_at {
                                    Some(at) => { "retired since " (date(at)) },
                                    None => "open",
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="new-plan-title" {
            h2 id="new-plan-title" { "New plan" }
            p { "A new plan starts as a copy of an existing one: its resources (CPU, memory, storage) are copied, and you set the rest." }
            form method="get" action="/provider/new-plan" class="inline-form" {
                div class="field" {
                    label for="based_on" { "Based on" }
                    select id="based_on" name="based_on" {
                        @for plan in &plans { option value=(plan.spec.name) { (plan.spec.display_name) } }
                    }
                }
                button type="submit" { "Start a new plan" }
            }
        }
    };
    let markup = frame(&request, "Plans", &session, Some(&csrf), None, main);
    page(&request, StatusCode::OK, Some(&csrf), markup)
}

pub async fn plan_view(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    name: web::Path<String>,
) -> HttpResponse {
    if provider_admin(&session).is_none() {
        return layout::not_found(&request, &session);
    }
    let pairs = query_pairs(&request);
    let notice = query_value(&pairs, "done").and_then(done_message);
    render_plan(&state, &request, &session, &name, notice, Forms::default(), StatusCode::OK).await
}

/// The forms of a plan's page, as submitted when one was refused.
#[derive(Default)]
struct Forms {
    revision: Option<(PlanForm, FieldErrors)>,
    retirement: Option<FieldErrors>,
}

pub async fn revise(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    name: web::Path<String>,
    form: web::Form<PlanForm>,
) -> HttpResponse {
    let Some(principal) = provider_admin(&session) else { return layout::not_found(&request, &session) };
    if check_csrf(&request, &form.csrf).is_err() {
        return layout::forbidden(&request);
    }
    let current = match state.store.plan(&name).await {
        Ok(plan) => plan,
        Err(StoreError::NotFound { .. }) => return layout::not_found(&request, &session),
        Err(error) => {
            tracing::warn!(%error, "plan not read for its revision");
            return layout::unavailable(&request, &session);
        }
    };
    let form = form.into_inner();
    let refused = |errors: FieldErrors| Forms { revision: Some((form.clone(), errors)), retirement: None };
    // The resources are the current version's: the form only has the commercial fields.
    let spec = match form.to_spec(&current.spec, &current.spec.name) {
        Ok(spec) => spec,
        Err(errors) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return render_plan(&state, &request, &session, &name, None, refused(errors), status).await;
        }
    };
    match crate::http::plans::revise_plan(&state, principal, &name, &spec).await {
        Ok(plan) => {
            let done = if plan.version == current.version { "unchanged" } else { "revised" };
            see_other(&format!("/provider/plans/{name}?done={done}"), &[])
        }
        Err(problem) => {
            let mut errors = FieldErrors::default();
            errors.add_problem(&problem);
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            render_plan(&state, &request, &session, &name, None, refused(errors), status).await
        }
    }
}

pub async fn retire(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    name: web::Path<String>,
    form: web::Form<RetireForm>,
) -> HttpResponse {
    let Some(principal) = provider_admin(&session) else { return layout::not_found(&request, &session) };
    if check_csrf(&request, &form.csrf).is_err() {
        return layout::forbidden(&request);
    }
    if form.confirm != "yes" {
        let mut errors = FieldErrors::default();
        errors.field("confirm", "Tick the box to confirm: retiring cannot be undone.");
        let forms = Forms { revision: None, retirement: Some(errors) };
        return render_plan(&state, &request, &session, &name, None, forms, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    match crate::http::plans::retire_plan(&state, principal, &name).await {
        Ok(_) => see_other(&format!("/provider/plans/{name}?done=retired"), &[]),
        Err(problem) if problem.status == 404 => layout::not_found(&request, &session),
        Err(problem) => {
            tracing::warn!(%problem, plan = %name, "plan not retired from the provider console");
            layout::unavailable(&request, &session)
        }
    }
}

async fn render_plan(
    state: &AppState,
    request: &HttpRequest,
    session: &Session,
    name: &str,
    notice: Option<&str>,
    forms: Forms,
    status: StatusCode,
) -> HttpResponse {
    let answers = futures::try_join!(state.store.plan(name), plans_with_tenants(state));
    let (plan, tenants) = match answers {
        Ok((plan, (_, tenants))) => (plan, tenants.of(name)),
        Err(StoreError::NotFound { .. }) => return layout::not_found(request, session),
        Err(error) => {
            tracing::warn!(%error, "plan not read for the provider console");
            return layout::unavailable(request, session);
        }
    };
    let spec = &plan.spec;
    let (revision, revision_errors) = match forms.revision {
        Some((form, errors)) => (form, errors),
        None => (PlanForm::from_spec(spec), FieldErrors::default()),
    };
    let retirement_errors = forms.retirement.unwrap_or_default();
    let csrf = CsrfToken::for_request(request);
    let main = html! {
        p class="breadcrumb" { a href="/provider/plans" { "← All plans" } }
        h1 { (spec.display_name) " plan" }
        p class="lead" { span class="code" { (spec.name) } ", version " (plan.version) }
        (confirmation(notice))
        (facts(&plan, tenants))
        section aria-labelledby="revise-title" {
            h2 id="revise-title" { "Revise" }
            @if plan.retired_at.is_some() {
                p { "The plan is retired; a revision makes a retired version, for its existing tenants to move to." }
            }
            p { "Saving makes version " (plan.version + 1) ". The plan's resources are kept as they are." }
            (summary(&revision_errors))
            form method="post" action={ "/provider/plans/" (spec.name) } class="plan-form" novalidate {
                (csrf_field(&csrf))
                (commercial_fields(&revision, &revision_errors))
                button type="submit" { "Save as version " (plan.version + 1) }
            }
        }
        (retirement(&plan, tenants, &retirement_errors, &csrf))
    };
    let markup = frame(request, &format!("{} plan", spec.display_name), session, Some(&csrf), None, main);
    page(request, status, Some(&csrf), markup)
}

fn facts(plan: &Plan, tenants: u64) -> Markup {
    let spec = &plan.spec;
    html! {
        section aria-labelledby="facts-title" {
            h2 id="facts-title" { "Current version" }
            dl class="facts" {
                dt { "Price" } dd { (format_money(&spec.price_per_seat_month)) " per seat per month" }
                dt { "Seats" } dd { "up to " (spec.max_seats) ", " (spec.max_concurrent_users) " at the same time" }
                dt { "Free trial" } dd { @if spec.trial_days > 0 { (spec.trial_days) " days" } @else { "none" } }
                dt { "Test environment" } dd { @if spec.test_environment { "included" } @else { "not included" } }
                dt { "Modules" } dd {
                    @match spec.module_policy {
                        ModulePolicy::CertifiedOnly => "certified modules only",
                        ModulePolicy::CustomAllowed => "certified and their own modules",
                    }
                }
                dt { "Backups kept" } dd { (spec.backup_retention_days) " days" }
                dt { "Database size limit" } dd { (spec.database_size_limit) }
                dt { "Tenants on it" } dd { (tenants) }
                dt { "Since" } dd { (date(plan.created_at)) }
                dt { "Status" } dd {
                    @match plan.retired_at { Some(at) => { "retired since " (date(at)) }, None => "open to new tenants" }
                }
            }
        }
    }
}

fn retirement(plan: &Plan, tenants: u64, errors: &FieldErrors, csrf: &CsrfToken) -> Markup {
    let spec = &plan.spec;
    let error = errors.fields.get("confirm");
    html! {
        section aria-labelledby="retire-title" {
            h2 id="retire-title" { "Retire" }
            @if plan.retired_at.is_some() {
                p { "This plan is retired. Nothing can make it take new tenants again." }
            } @else {
                p {
                    "Retiring the " (spec.display_name) " plan stops new sign-ups on it, for good: a retired plan is "
                    "never reopened, and its name is never used again. Its " (tenants) " "
                    (if tenants == 1 { "tenant keeps" } else { "tenants keep" }) " it and "
                    (if tenants == 1 { "pays" } else { "pay" }) " as before."
                }
                form method="post" action={ "/provider/plans/" (spec.name) "/retire" } {
                    (csrf_field(csrf))
                    div class={ "field" @if error.is_some() { " invalid" } } {
                        @if let Some(error) = error { p class="error" id="confirm-error" { (error) } }
                        div class="choice" {
                            input type="checkbox" id="confirm" name="confirm" value="yes"
                                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "confirm-error")];
                            label for="confirm" { "I understand that retiring the " (spec.display_name) " plan cannot be undone" }
                        }
                    }
                    button type="submit" class="danger" { "Retire the " (spec.display_name) " plan" }
                }
            }
        }
    }
}

/// `GET /provider/new-plan?based_on=…`: the form, filled from the plan it is based on.
pub async fn new_plan_view(state: web::Data<AppState>, request: HttpRequest, session: Session) -> HttpResponse {
    if provider_admin(&session).is_none() {
        return layout::not_found(&request, &session);
    }
    let plans = match state.store.plans().await {
        Ok(plans) => plans,
        Err(error) => {
            tracing::warn!(%error, "plans not read for a new plan");
            return layout::unavailable(&request, &session);
        }
    };
    let pairs = query_pairs(&request);
    let wanted = query_value(&pairs, "based_on").unwrap_or_default();
    let mut errors = FieldErrors::default();
    let base = match plans.iter().find(|plan| plan.spec.name == wanted) {
        Some(base) => Some(base),
        None => {
            if !wanted.is_empty() {
                errors.field("based_on", format!("There is no plan “{wanted}”; choose one of these."));
            }
            plans.first()
        }
    };
    let form = match base {
        Some(base) => PlanForm { name: String::new(), display_name: String::new(), ..PlanForm::from_spec(&base.spec) },
        None => PlanForm::default(),
    };
    render_new_plan(&request, &session, &plans, &form, &errors, StatusCode::OK)
}

/// `POST /provider/new-plan`: version 1 of a plan with the resources of `based_on`.
pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    form: web::Form<PlanForm>,
) -> HttpResponse {
    let Some(principal) = provider_admin(&session) else { return layout::not_found(&request, &session) };
    if check_csrf(&request, &form.csrf).is_err() {
        return layout::forbidden(&request);
    }
    let plans = match state.store.plans().await {
        Ok(plans) => plans,
        Err(error) => {
            tracing::warn!(%error, "plans not read for a new plan");
            return layout::unavailable(&request, &session);
        }
    };
    let form = form.into_inner();
    let refused = |errors: &FieldErrors, status| render_new_plan(&request, &session, &plans, &form, errors, status);
    let Some(base) = plans.iter().find(|plan| plan.spec.name == form.based_on) else {
        let mut errors = FieldErrors::default();
        errors.field("based_on", "Choose the plan whose resources the new plan copies.");
        return refused(&errors, StatusCode::UNPROCESSABLE_ENTITY);
    };
    let spec: PlanSpec = match form.to_spec(&base.spec, form.name.trim()) {
        Ok(spec) => spec,
        Err(errors) => return refused(&errors, StatusCode::UNPROCESSABLE_ENTITY),
    };
    match crate::http::plans::create_plan(&state, principal, &spec).await {
        Ok(plan) => see_other(&format!("/provider/plans/{}?done=created", plan.spec.name), &[]),
        Err(problem) => {
            let mut errors = FieldErrors::default();
            if problem.status == 409 {
                let taken = "A plan of this name exists already (names are never used twice, retired plans included).";
                errors.field("name", taken);
            } else {
                errors.add_problem(&problem);
            }
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            refused(&errors, status)
        }
    }
}

fn render_new_plan(
    request: &HttpRequest,
    session: &Session,
    plans: &[Plan],
    form: &PlanForm,
    errors: &FieldErrors,
    status: StatusCode,
) -> HttpResponse {
    let csrf = CsrfToken::for_request(request);
    let based_on_error = errors.fields.get("based_on");
    let main = html! {
        p class="breadcrumb" { a href="/provider/plans" { "← All plans" } }
        h1 { "New plan" }
        p class="lead" { "The new plan copies the resources of the plan it is based on; everything else is set here." }
        (summary(errors))
        @if plans.is_empty() {
            p { "There is no plan to base a new one on. Import a catalogue with " code { "control-plane plans import" } "." }
        } @else {
            form method="post" action="/provider/new-plan" class="plan-form" novalidate {
                (csrf_field(&csrf))
                div class={ "field" @if based_on_error.is_some() { " invalid" } } {
                    label for="based_on" { "Based on (resources copied from)" }
                    @if let Some(error) = based_on_error { p class="error" id="based_on-error" { (error) } }
                    select id="based_on" name="based_on" aria-invalid=[based_on_error.map(|_| "true")]
                        aria-describedby=[based_on_error.map(|_| "based_on-error")] {
                        @for plan in plans {
                            option value=(plan.spec.name) selected[form.based_on == plan.spec.name] {
                                (plan.spec.display_name) " (" (format_money(&plan.spec.price_per_seat_month)) ")"
                            }
                        }
                    }
                }
                (input("name", "Name", &form.name, errors,
                    Some("Lowercase letters, digits and dashes, for example team-plus. It can never be changed or used again.")))
                (commercial_fields(form, errors))
                button type="submit" { "Create the plan" }
            }
        }
    };
    let markup = frame(request, "New plan", session, Some(&csrf), None, main);
    page(request, status, Some(&csrf), markup)
}
