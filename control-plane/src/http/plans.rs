//! `/v1/plans`: the provider's catalogue. Changing a plan makes a new version; tenants keep the
//! version they pay by until they change plan.

use actix_web::{HttpResponse, delete, get, patch, post, web};

use super::AppState;
use super::access;
use super::input::StrictJson;
use super::problem::Problem;
use super::types::PlanView;
use crate::auth::Principal;
use crate::domain::plan::PlanSpec;
use crate::store::Plan;

type Response = Result<HttpResponse, Problem>;

fn valid(spec: &PlanSpec) -> Result<(), Problem> {
    spec.validate()
        .map_err(|invalid| Problem::unprocessable("validation_failed", invalid.0.join("; ")).with_errors(invalid.0))
}

/// Version 1 of a new plan, as `principal` asks it: what `POST /v1/plans` and the provider
/// console's "new plan" form both do. A name that exists (retired ones included) is 409.
pub(crate) async fn create_plan(state: &AppState, principal: &Principal, spec: &PlanSpec) -> Result<Plan, Problem> {
    access::provider_admin(principal)?;
    valid(spec)?;
    Ok(state.store.create_plan(spec).await?)
}

/// A new version of plan `name` from the whole plan as it should be (or the current version
/// when nothing differs): what `PATCH /v1/plans/{name}` and the console's revision form do.
pub(crate) async fn revise_plan(
    state: &AppState,
    principal: &Principal,
    name: &str,
    spec: &PlanSpec,
) -> Result<Plan, Problem> {
    access::provider_admin(principal)?;
    if spec.name != name {
        let problem =
            format!("name: the body names plan {:?} but the path {name:?}; plans cannot be renamed", spec.name);
        return Err(Problem::unprocessable("validation_failed", problem.clone()).with_errors(vec![problem]));
    }
    valid(spec)?;
    Ok(state.store.revise_plan(spec).await?)
}

/// Retires plan `name`: no new tenants on it, existing ones keep it.
pub(crate) async fn retire_plan(state: &AppState, principal: &Principal, name: &str) -> Result<Plan, Problem> {
    access::provider_admin(principal)?;
    Ok(state.store.retire_plan(name).await?)
}

/// The newest version of every plan, retired ones included (provider admins and billing
/// readers, who need the prices).
#[utoipa::path(get, path = "/v1/plans", tag = "plans", security(("bearer" = [])),
    responses((status = 200, body = Vec<PlanView>), (status = 403, body = Problem, description = "the caller's role may not do this")))]
#[get("/plans")]
pub async fn list(state: web::Data<AppState>, principal: Principal) -> Response {
    access::billing(&principal)?;
    let plans: Vec<PlanView> = state.store.plans().await?.into_iter().map(PlanView::from).collect();
    Ok(HttpResponse::Ok().json(plans))
}

#[utoipa::path(post, path = "/v1/plans", tag = "plans", security(("bearer" = [])), request_body = PlanSpec,
    responses((status = 201, body = PlanView), (status = 403, body = Problem, description = "the caller's role may not do this"),
        (status = 409, body = Problem, description = "the name is taken"), (status = 422, body = Problem)))]
#[post("/plans")]
pub async fn create(state: web::Data<AppState>, principal: Principal, spec: StrictJson<PlanSpec>) -> Response {
    let plan = create_plan(&state, &principal, &spec).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/plans/{}", plan.spec.name)))
        .json(PlanView::from(plan)))
}

/// One plan: its newest version, or `?version=` a past one (what a tenant on it pays).
#[utoipa::path(get, path = "/v1/plans/{name}", tag = "plans", security(("bearer" = [])),
    params(("name" = String, Path, description = "plan name", example = "starter"), ("version" = Option<i64>, Query, description = "a past version")),
    responses((status = 200, body = PlanView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem)))]
#[get("/plans/{name}")]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    query: web::Query<VersionQuery>,
) -> Response {
    access::billing(&principal)?;
    let plan = match query.version {
        Some(version) => state.store.plan_version(&name, version).await?,
        None => state.store.plan(&name).await?,
    };
    Ok(HttpResponse::Ok().json(PlanView::from(plan)))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    version: Option<i64>,
}

/// A new version of the plan, from the whole plan as it should be (its `name` must match the
/// path). Existing tenants stay on their version.
#[utoipa::path(patch, path = "/v1/plans/{name}", tag = "plans", security(("bearer" = [])), request_body = PlanSpec,
    params(("name" = String, Path, example = "starter")),
    responses((status = 200, body = PlanView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "written concurrently"), (status = 422, body = Problem)))]
#[patch("/plans/{name}")]
pub async fn update(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    spec: StrictJson<PlanSpec>,
) -> Response {
    let plan = revise_plan(&state, &principal, &name, &spec).await?;
    Ok(HttpResponse::Ok().json(PlanView::from(plan)))
}

/// Retires the plan: no new tenants on it; existing tenants keep it.
#[utoipa::path(delete, path = "/v1/plans/{name}", tag = "plans", security(("bearer" = [])), params(("name" = String, Path, example = "starter")),
    responses((status = 200, body = PlanView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem)))]
#[delete("/plans/{name}")]
pub async fn retire(state: web::Data<AppState>, principal: Principal, name: web::Path<String>) -> Response {
    let plan = retire_plan(&state, &principal, &name).await?;
    Ok(HttpResponse::Ok().json(PlanView::from(plan)))
}
