//! `/v1/tenants`: onboarding, changes, suspension and deletion. Every change writes the desired
//! Tenant into the provisioning outbox in its own transaction (see the store).

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;

use super::AppState;
use super::access;
use super::input::{Problems, StrictJson, page_limit};
use super::problem::Problem;
use super::types::{CreateTenantRequest, Page, TenantView, UpdateTenantRequest};
use crate::auth::{Principal, Role};
use crate::domain::subscription::SubscriptionState;
use crate::store::{NewTenant, PlanChange, TenantChange, TenantFilter};

type Response = Result<HttpResponse, Problem>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only tenants on this plan.
    plan: Option<String>,
    /// Only tenants in this subscription state.
    #[param(inline)]
    state: Option<SubscriptionState>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// 1 to 500, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Tenants by slug, a page at a time. A tenant-admin sees only its own tenant.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<TenantView>), (status = 400, body = Problem), (status = 403, body = Problem, description = "the caller's role may not do this")))]
#[get("/tenants")]
pub async fn list(state: web::Data<AppState>, principal: Principal, query: web::Query<ListQuery>) -> Response {
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let filter = TenantFilter { plan: query.plan, state: query.state, after: query.after, limit };
    let page = match principal.role {
        Role::ProviderAdmin => state.store.tenants(&filter).await?,
        Role::BillingReader => return Err(Problem::forbidden("billing readers use /v1/billing")),
        Role::TenantAdmin => {
            let own = principal.tenant.as_deref().unwrap_or_default();
            let mut page = crate::store::Page { items: Vec::new(), next: None };
            if filter.after.as_deref().is_none_or(|after| own > after) {
                match state.store.tenant(own).await {
                    Ok(tenant)
                        if tenant.deleted_at.is_none()
                            && filter.plan.as_ref().is_none_or(|plan| *plan == tenant.plan)
                            && filter.state.is_none_or(|wanted| wanted == tenant.state) =>
                    {
                        page.items.push(tenant)
                    }
                    Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            page
        }
    };
    Ok(HttpResponse::Ok().json(Page { items: page.items.into_iter().map(TenantView::from).collect(), next: page.next }))
}

/// Onboards a tenant (provider admins; customers use `/v1/signup`).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", security(("bearer" = [])), request_body = CreateTenantRequest,
    responses((status = 201, body = TenantView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
#[post("/tenants")]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    body: StrictJson<CreateTenantRequest>,
) -> Response {
    access::provider_admin(&principal)?;
    let body = body.into_inner();
    let mut problems = Problems::default();
    let slug = problems.slug("slug", &body.slug);
    problems.text("display_name", &body.display_name, 100);
    let owner_email = problems.email("owner_email", &body.owner_email);
    let seats = problems.seats("seats", body.seats);
    let erp_version = body.erp_version.unwrap_or_else(|| state.settings.default_erp_version.clone());
    problems.offered_version("erp_version", &erp_version, &state.settings.erp_versions);
    let host = body.host.as_deref().and_then(|host| problems.host("host", host));
    problems.into_result()?;
    if let Some(host) = &host {
        host_available(&state, host, None).await?;
    }
    let (Some(slug), Some(licensed_seats), Some(owner_email)) = (slug, seats, owner_email) else {
        unreachable!("checked above")
    };
    open_plan(&state, &body.plan).await?;
    let new = NewTenant {
        generated_host: state.settings.tenant_hosts.generated_host(slug.as_str()),
        slug,
        display_name: body.display_name.trim().to_string(),
        owner_email,
        plan: body.plan,
        licensed_seats,
        erp_version,
        first_seat: None,
        host,
    };
    let tenant = state.store.create_tenant(&new).await.map_err(|error| match error {
        crate::store::StoreError::Conflict(message) => Problem::conflict("slug_taken", message),
        error @ crate::store::StoreError::HostTaken(_) => error.into(),
        error => unknown_plan_is_invalid(error),
    })?;
    state.changed();
    state.refresh_seat_count(&tenant.slug).await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/tenants/{}", tenant.slug)))
        .json(TenantView::from(tenant)))
}

/// A host given by hand must be servable over HTTPS and must not be another tenant's generated
/// address (`<slug>.<domain>`). Hosts given by hand to two tenants are refused by the store, under
/// its unique index.
async fn host_available(state: &AppState, host: &str, own_slug: Option<&str>) -> Result<(), Problem> {
    let hosts = &state.settings.tenant_hosts;
    if !hosts.serves_tls() {
        return Err(Problem::unprocessable(
            "validation_failed",
            "host: this deployment has no TLS for tenants (tenants.tls_issuer or tenants.tls_default_certificate)",
        )
        .with_errors(vec!["host: this deployment cannot serve a host given by hand over HTTPS".into()]));
    }
    let generated_slug = hosts.domain.as_ref().and_then(|domain| {
        let first = host.strip_suffix(domain.as_str())?.strip_suffix('.')?;
        (!first.contains('.')).then_some(first)
    });
    if let Some(slug) = generated_slug
        && Some(slug) != own_slug
    {
        match state.store.tenant(slug).await {
            Ok(_) => return Err(crate::store::StoreError::HostTaken(host.to_string()).into()),
            Err(crate::store::StoreError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// New tenants only go on a plan that exists and is not retired. (The store checks again in
/// its transaction; this gives the precise answer.)
pub async fn open_plan(state: &AppState, name: &str) -> Result<(), Problem> {
    match state.store.plan(name).await {
        Ok(plan) if plan.retired_at.is_some() => {
            Err(Problem::conflict("plan_retired", format!("plan {name:?} is retired and takes no new tenants")))
        }
        Ok(_) => Ok(()),
        Err(error) => Err(unknown_plan_is_invalid(error)),
    }
}

/// An unknown plan in a request body is a problem of the input, not a missing resource.
pub fn unknown_plan_is_invalid(error: crate::store::StoreError) -> Problem {
    match error {
        crate::store::StoreError::NotFound { what } if what.starts_with("plan") => {
            Problem::unprocessable("validation_failed", format!("plan: {what} not found"))
                .with_errors(vec![format!("plan: {what} not found")])
        }
        error => error.into(),
    }
}

#[utoipa::path(get, path = "/v1/tenants/{slug}", tag = "tenants", security(("bearer" = [])), params(("slug" = String, Path, example = "acme")),
    responses((status = 200, body = TenantView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem)))]
#[get("/tenants/{slug}")]
pub async fn get(state: web::Data<AppState>, principal: Principal, slug: web::Path<String>) -> Response {
    access::tenant(&principal, &slug, false)?;
    let tenant = state.store.tenant(&slug).await?;
    if tenant.deleted_at.is_some() && principal.role != Role::ProviderAdmin {
        return Err(Problem::tenant_not_found(&slug));
    }
    Ok(HttpResponse::Ok().json(TenantView::from(tenant)))
}

/// Changes a tenant. Tenant admins may change the display name, owner, plan and seats; the ERP
/// version and the subscription state are the provider's.
#[utoipa::path(patch, path = "/v1/tenants/{slug}", tag = "tenants", security(("bearer" = [])), request_body = UpdateTenantRequest,
    params(("slug" = String, Path, example = "acme")),
    responses((status = 200, body = TenantView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
#[patch("/tenants/{slug}")]
pub async fn update(
    state: web::Data<AppState>,
    principal: Principal,
    slug: web::Path<String>,
    body: StrictJson<UpdateTenantRequest>,
) -> Response {
    let tenant = change(&state, &principal, &slug, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(TenantView::from(tenant)))
}

/// A change to a tenant as `principal` asks it, checked as the API checks it: what the pages'
/// forms and `PATCH /v1/tenants/{slug}` both do.
pub(crate) async fn change(
    state: &AppState,
    principal: &Principal,
    slug: &str,
    body: UpdateTenantRequest,
) -> Result<crate::store::Tenant, Problem> {
    access::tenant(principal, slug, false)?;
    if principal.role != Role::ProviderAdmin
        && (body.erp_version.is_some() || body.state.is_some() || body.host.is_some())
    {
        return Err(Problem::forbidden(
            "only provider admins change the ERP version, the host or the subscription state",
        ));
    }
    let mut problems = Problems::default();
    if let Some(name) = &body.display_name {
        problems.text("display_name", name, 100);
    }
    let owner_email = body.owner_email.as_deref().map(|email| problems.email("owner_email", email));
    let seats = body.seats.map(|seats| problems.seats("seats", seats));
    if let Some(version) = &body.erp_version {
        problems.offered_version("erp_version", version, &state.settings.erp_versions);
    }
    let host = body.host.as_ref().map(|host| host.as_deref().and_then(|host| problems.host("host", host)));
    if body.state == Some(SubscriptionState::Canceled) {
        problems.push("state: a tenant is canceled by deleting it (DELETE /v1/tenants/{slug})");
    }
    problems.into_result()?;
    if let Some(plan) = &body.plan {
        open_plan(state, plan).await?;
    }
    if let Some(Some(host)) = &host {
        host_available(state, host, Some(slug)).await?;
    }
    let change = TenantChange {
        display_name: body.display_name.map(|name| name.trim().to_string()),
        owner_email: owner_email.flatten(),
        plan: body.plan,
        licensed_seats: seats.flatten(),
        erp_version: body.erp_version,
        host,
        state: body.state,
        only_if_state: None,
        resume: false,
    };
    let tenant = state.store.change_tenant(slug, &change).await.map_err(unknown_plan_is_invalid)?;
    state.changed();
    state.refresh_seat_count(slug).await;
    Ok(tenant)
}

/// Cancels the tenant and removes its ERP (its data follows the Tenant's deletion policy). The
/// record stays for billing.
#[utoipa::path(delete, path = "/v1/tenants/{slug}", tag = "tenants", security(("bearer" = [])), params(("slug" = String, Path, example = "acme")),
    responses((status = 200, body = TenantView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
#[delete("/tenants/{slug}")]
pub async fn delete(state: web::Data<AppState>, principal: Principal, slug: web::Path<String>) -> Response {
    access::tenant(&principal, &slug, false)?;
    access::provider_admin(&principal)?;
    let tenant = state.store.delete_tenant(&slug).await?;
    state.cache.forget_seat_count(&slug).await;
    state.changed();
    Ok(HttpResponse::Ok().json(TenantView::from(tenant)))
}

/// Suspends the tenant: its ERP is scaled to zero, all data kept.
#[utoipa::path(post, path = "/v1/tenants/{slug}/suspend", tag = "tenants", security(("bearer" = [])),
    params(("slug" = String, Path, example = "acme")),
    responses((status = 200, body = TenantView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/tenants/{slug}/suspend")]
pub async fn suspend(state: web::Data<AppState>, principal: Principal, slug: web::Path<String>) -> Response {
    move_to(state, principal, &slug, SubscriptionState::Suspended).await
}

/// Resumes a suspended tenant in the state it had before the suspension: a trial goes on with
/// its end unchanged (or is `past_due` if it ended meanwhile), an overdue account stays overdue.
#[utoipa::path(post, path = "/v1/tenants/{slug}/resume", tag = "tenants", security(("bearer" = [])),
    params(("slug" = String, Path, example = "acme")),
    responses((status = 200, body = TenantView), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/tenants/{slug}/resume")]
pub async fn resume(state: web::Data<AppState>, principal: Principal, slug: web::Path<String>) -> Response {
    move_to(state, principal, &slug, SubscriptionState::Active).await
}

async fn move_to(state: web::Data<AppState>, principal: Principal, slug: &str, to: SubscriptionState) -> Response {
    let tenant = change_state(&state, &principal, slug, to).await?;
    Ok(HttpResponse::Ok().json(TenantView::from(tenant)))
}

/// Suspends (`Suspended`) or resumes (`Active`) a tenant: provider admins only. Resuming works
/// only from `suspended` (409 `not_suspended`, decided under the tenant's row lock) and returns
/// to the state before the suspension, so it never ends a trial or settles an overdue account.
pub(crate) async fn change_state(
    state: &AppState,
    principal: &Principal,
    slug: &str,
    to: SubscriptionState,
) -> Result<crate::store::Tenant, Problem> {
    access::tenant(principal, slug, false)?;
    access::provider_admin(principal)?;
    let change = if to == SubscriptionState::Active {
        TenantChange { resume: true, ..TenantChange::default() }
    } else {
        TenantChange { state: Some(to), ..TenantChange::default() }
    };
    let tenant = state.store.change_tenant(slug, &change).await?;
    state.changed();
    Ok(tenant)
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PlanChangeView {
    pub from_plan: String,
    pub from_version: i64,
    pub to_plan: String,
    pub to_version: i64,
    pub changed_at: chrono::DateTime<chrono::Utc>,
}

impl From<PlanChange> for PlanChangeView {
    fn from(change: PlanChange) -> Self {
        Self {
            from_plan: change.from_plan,
            from_version: change.from_version,
            to_plan: change.to_plan,
            to_version: change.to_version,
            changed_at: change.changed_at,
        }
    }
}

/// The tenant's plan changes, oldest first.
#[utoipa::path(get, path = "/v1/tenants/{slug}/plan-history", tag = "tenants", security(("bearer" = [])),
    params(("slug" = String, Path, example = "acme")),
    responses((status = 200, body = Vec<PlanChangeView>), (status = 403, body = Problem, description = "the caller's role may not do this"), (status = 404, body = Problem)))]
#[get("/tenants/{slug}/plan-history")]
pub async fn plan_history(state: web::Data<AppState>, principal: Principal, slug: web::Path<String>) -> Response {
    access::tenant(&principal, &slug, false)?;
    let history: Vec<PlanChangeView> =
        state.store.plan_history(&slug).await?.into_iter().map(PlanChangeView::from).collect();
    Ok(HttpResponse::Ok().json(history))
}
