//! The ERP master password, shown once to the tenant's own admin when the ERP is ready: a
//! button on the progress page asks for it (a POST, so no prefetch or reload shows it), the store
//! records the showing before the Secret is read, and nothing keeps the password afterwards.
//! If it cannot be read, the claim is given back so the admin can try again.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, csrf_field, frame, page};
use super::session::{CsrfToken, Session, check_csrf};
use crate::auth::Role;
use crate::http::AppState;
use crate::provision::password::read_master_password;
use crate::slug::Slug;
use crate::store::{ProvisioningState, StoreError, Tenant};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RevealForm {
    pub csrf: String,
}

/// Only the tenant's own admin: the password is theirs, and a provider's look would use up the
/// one showing.
fn is_own_admin(session: &Session, slug: &str) -> bool {
    session.principal().is_some_and(|p| p.role == Role::TenantAdmin && p.tenant.as_deref() == Some(slug))
}

/// The part of the progress page about the password: a button while it was never shown.
pub fn section(session: &Session, tenant: &Tenant, revealed: bool, csrf: &CsrfToken) -> Markup {
    if !is_own_admin(session, &tenant.slug) || tenant.provisioning != ProvisioningState::Ready {
        return html! {};
    }
    html! {
        section id="master-password" class="master-password" aria-labelledby="password-title" {
            h2 id="password-title" { "Master password" }
            @if revealed {
                p { "The master password of your ERP was shown once already and is not shown again." }
            } @else {
                p { "Your ERP's master password can be shown " strong { "once" } ". Have a password manager ready." }
                form method="post" action={ "/t/" (tenant.slug) "/password" } {
                    (csrf_field(csrf))
                    button type="submit" { "Show the master password" }
                }
            }
        }
    }
}

pub async fn reveal(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<RevealForm>,
) -> HttpResponse {
    if check_csrf(&request, &form.csrf).is_err() {
        return layout::forbidden(&request);
    }
    let Ok(slug) = Slug::parse(&slug) else { return layout::not_found(&request, &session) };
    if !is_own_admin(&session, slug.as_str()) {
        return layout::not_found(&request, &session);
    }
    let tenant = match state.store.tenant(slug.as_str()).await {
        Ok(tenant) if tenant.deleted_at.is_none() => tenant,
        Ok(_) | Err(StoreError::NotFound { .. }) => return layout::not_found(&request, &session),
        Err(error) => {
            tracing::warn!(%error, "tenant not read for its password");
            return layout::unavailable(&request, &session);
        }
    };
    let csrf = CsrfToken::for_request(&request);
    if tenant.provisioning != ProvisioningState::Ready {
        return message(&request, &session, &csrf, &tenant, StatusCode::CONFLICT, "Your ERP is not ready yet.");
    }
    let Some(cluster) = &state.cluster else {
        return message(
            &request,
            &session,
            &csrf,
            &tenant,
            StatusCode::SERVICE_UNAVAILABLE,
            "This service is not connected to the cluster that holds the password; try again later.",
        );
    };
    match state.store.claim_password_reveal(slug.as_str()).await {
        Ok(true) => {}
        Ok(false) => {
            return message(
                &request,
                &session,
                &csrf,
                &tenant,
                StatusCode::GONE,
                "The master password was shown once already and is not shown again.",
            );
        }
        Err(error) => {
            tracing::warn!(%error, "password showing not claimed");
            return layout::unavailable(&request, &session);
        }
    }
    let password = match read_master_password(cluster, &slug).await {
        Ok(password) => password,
        Err(error) => {
            tracing::warn!(tenant = %slug, %error, "master password not read; the showing is given back");
            if let Err(error) = state.store.release_password_reveal(slug.as_str()).await {
                tracing::error!(tenant = %slug, %error, "the password showing could not be given back");
            }
            return message(
                &request,
                &session,
                &csrf,
                &tenant,
                StatusCode::SERVICE_UNAVAILABLE,
                "The password could not be read just now. Nothing was used up: try again in a moment.",
            );
        }
    };
    let main = html! {
        h1 { "Master password of " (tenant.display_name) }
        p class="warning" role="alert" {
            strong { "This is the only time it is shown." }
            " Copy it into your password manager now: leaving or reloading this page loses it."
        }
        p {
            label for="master-password-value" { "Master password" }
            input id="master-password-value" type="text" readonly value=(password.as_str()) autocomplete="off" spellcheck="false";
            " "
            button type="button" data-copy="master-password-value" { "Copy" }
            span class="status" data-copy-status aria-live="polite" {}
        }
        p { a href={ "/t/" (tenant.slug) } { "Back to your ERP's status" } }
    };
    let markup = frame(&request, "Master password", &session, Some(&csrf), None, main);
    let mut response = page(&request, StatusCode::OK, Some(&csrf), markup);
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn message(
    request: &HttpRequest,
    session: &Session,
    csrf: &CsrfToken,
    tenant: &Tenant,
    status: StatusCode,
    text: &str,
) -> HttpResponse {
    let main = html! {
        h1 { "Master password" }
        p role="alert" { (text) }
        p { a href={ "/t/" (tenant.slug) } { "Back to your ERP's status" } }
    };
    page(request, status, Some(csrf), frame(request, "Master password", session, Some(csrf), None, main))
}
