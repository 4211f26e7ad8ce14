//! `/login`: sign in by pasting an access token; `/logout`: sign out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use maud::html;
use serde::Deserialize;

use super::layout::{self, csrf_field, frame, page, see_other};
use super::session::{self, CsrfToken, Session, check_csrf};
use crate::auth::{Keys, Role};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    pub token: String,
    pub csrf: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogoutForm {
    pub csrf: String,
}

pub async fn form_page(request: HttpRequest, session: Session) -> HttpResponse {
    render(&request, &session, None, StatusCode::OK)
}

pub async fn submit(request: HttpRequest, session: Session, form: web::Form<LoginForm>) -> HttpResponse {
    if check_csrf(&request, &form.csrf).is_err() {
        return layout::forbidden(&request);
    }
    let Some(keys) = request.app_data::<web::Data<Keys>>() else {
        tracing::error!("no keys to verify sign-in tokens with");
        return layout::unavailable(&request, &session);
    };
    let token = form.token.trim();
    if token.is_empty() {
        return render(&request, &session, Some("Paste your access token.".into()), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let verified = keys.verify(token).and_then(|principal| Ok((principal, keys.verify_claims(token)?)));
    let (principal, claims) = match verified {
        Ok(verified) => verified,
        Err(error) => {
            let message = format!("This token was not accepted: {error}.");
            return render(&request, &session, Some(message), StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    let lifetime = u64::try_from(claims.exp - Utc::now().timestamp()).unwrap_or(0).max(1);
    let cookie = session::session_cookie(&request, token, lifetime);
    let location = match (principal.role, principal.tenant.as_deref()) {
        (Role::TenantAdmin, Some(slug)) => format!("/t/{slug}/console"),
        (Role::ProviderAdmin, _) => "/provider".to_string(),
        _ => "/".to_string(),
    };
    see_other(&location, &[cookie])
}

pub async fn logout(request: HttpRequest, form: web::Form<LogoutForm>) -> HttpResponse {
    if check_csrf(&request, &form.csrf).is_err() {
        return layout::forbidden(&request);
    }
    see_other("/login", &[session::clear_session_cookie(&request)])
}

fn render(request: &HttpRequest, session: &Session, error: Option<String>, status: StatusCode) -> HttpResponse {
    let csrf = CsrfToken::for_request(request);
    let described_by = if error.is_some() { "token-error token-hint" } else { "token-hint" };
    let main = html! {
        h1 { "Sign in" }
        @if let Some(principal) = session.principal() {
            p { "You are signed in as " (principal.subject) ". Signing in again replaces that session." }
        }
        form method="post" action="/login" class="login" {
            (csrf_field(&csrf))
            div class={ "field" @if error.is_some() { " invalid" } } {
                label for="token" { "Access token" }
                p class="hint" id="token-hint" {
                    "Paste the token you were given. After signing up you are signed in already; provider "
                    "administrators get a token from " code { "control-plane token issue --role provider-admin" } "."
                }
                @if let Some(error) = &error { p class="error" id="token-error" { (error) } }
                textarea id="token" name="token" rows="4" autocomplete="off" spellcheck="false" required
                    aria-describedby=(described_by) aria-invalid=[error.as_ref().map(|_| "true")] {}
            }
            button type="submit" { "Sign in" }
        }
        p { "New here? " a href="/signup" { "Sign up for an ERP" } "." }
    };
    let markup = frame(request, "Sign in", session, Some(&csrf), None, main);
    page(request, status, Some(&csrf), markup)
}
