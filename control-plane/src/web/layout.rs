//! The frame every page shares, the responses pages are sent in (with their security headers),
//! and the error pages.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use maud::{DOCTYPE, Markup, html};

use super::session::{CSRF_FIELD, CsrfToken, Session};
use crate::auth::Role;
use crate::http::AppState;

pub const HTML: &str = "text/html; charset=utf-8";

/// The headers every page and asset carries: no inline script, no framing, no sniffing.
pub fn secure(builder: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
}

/// A page response. The CSRF cookie is set when the page made a new token.
pub fn page(request: &HttpRequest, status: StatusCode, csrf: Option<&CsrfToken>, markup: Markup) -> HttpResponse {
    let mut builder = HttpResponse::build(status);
    secure(&mut builder).content_type(HTML).insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(cookie) = csrf.and_then(|csrf| csrf.set_cookie(request)) {
        builder.append_header((header::SET_COOKIE, cookie));
    }
    builder.body(markup.into_string())
}

/// A 303 to `location` (after a form post), with extra `Set-Cookie` values.
pub fn see_other(location: &str, cookies: &[String]) -> HttpResponse {
    let mut builder = HttpResponse::SeeOther();
    secure(&mut builder).insert_header((header::LOCATION, location.to_string()));
    for cookie in cookies {
        builder.append_header((header::SET_COOKIE, cookie.clone()));
    }
    builder.finish()
}

/// The hidden CSRF field of a form.
pub fn csrf_field(csrf: &CsrfToken) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(csrf.value); }
}

/// The whole document: header (where a signed-in person can go, who is signed in, and a logout
/// button), a notice when the cluster only simulates its workloads, the main content, footer.
/// `refresh` adds a `<noscript>` meta refresh of that many seconds, for pages that update live.
pub fn frame(
    request: &HttpRequest,
    title: &str,
    session: &Session,
    csrf: Option<&CsrfToken>,
    refresh: Option<u32>,
    main: Markup,
) -> Markup {
    let simulated = request.app_data::<web::Data<AppState>>().is_some_and(|state| state.simulated_workloads.get());
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Tenantry" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
                @if let Some(seconds) = refresh {
                    noscript { meta http-equiv="refresh" content=(seconds); }
                }
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/" { "Tenantry" }
                    @if let Some(principal) = session.principal() {
                        nav aria-label="Consoles" class="sections" {
                            @match (principal.role, principal.tenant.as_deref()) {
                                (Role::TenantAdmin, Some(slug)) => {
                                    a href={ "/t/" (slug) } { "Set-up" }
                                    a href={ "/t/" (slug) "/console" } { "Console" }
                                }
                                (Role::ProviderAdmin, _) => {
                                    a href="/provider" { "Tenants" }
                                    a href="/provider/plans" { "Plans" }
                                }
                                _ => {}
                            }
                        }
                    }
                    nav aria-label="Account" {
                        @match (session.principal(), csrf) {
                            (Some(principal), Some(csrf)) => {
                                span class="who" { "Signed in as " (principal.subject) " (" (role_name(principal.role)) ")" }
                                form method="post" action="/logout" class="inline" {
                                    (csrf_field(csrf))
                                    button type="submit" class="link" { "Sign out" }
                                }
                            }
                            (Some(principal), None) => {
                                span class="who" { "Signed in as " (principal.subject) }
                            }
                            (None, _) => {
                                a href="/login" { "Sign in" }
                            }
                        }
                    }
                }
                @if simulated {
                    p class="simulated" role="note" {
                        strong { "Simulated workloads. " }
                        "This control plane is connected to a test cluster whose nodes only pretend to run "
                        "pods: tenants reach Ready, but no ERP actually runs and their addresses do not answer."
                    }
                }
                main id="main" tabindex="-1" { (main) }
                footer class="bottom" { p { "Tenantry — ERP for your company, run for you." } }
            }
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::ProviderAdmin => "provider administrator",
        Role::TenantAdmin => "administrator",
        Role::BillingReader => "billing reader",
    }
}

/// What an unknown tenant and a tenant the caller may not see both answer: identical pages.
pub fn not_found(request: &HttpRequest, session: &Session) -> HttpResponse {
    let csrf = session.principal().map(|_| CsrfToken::for_request(request));
    let main = html! {
        h1 { "Page not found" }
        p { "There is no page here, or you are not signed in to see it." }
        p {
            a href="/login" { "Sign in" } " with your access token, or "
            a href="/signup" { "sign up" } " for a new ERP."
        }
    };
    page(request, StatusCode::NOT_FOUND, csrf.as_ref(), frame(request, "Not found", session, csrf.as_ref(), None, main))
}

/// A refused form post (CSRF).
pub fn forbidden(request: &HttpRequest) -> HttpResponse {
    refused(request, StatusCode::FORBIDDEN)
}

/// A form post that was refused before it was read (CSRF, or a body that is not a form).
pub fn refused(request: &HttpRequest, status: StatusCode) -> HttpResponse {
    let session = Session(None);
    let main = html! {
        h1 { "This form could not be accepted" }
        p {
            "The form was not sent from this site, or it has expired. "
            "Go back, reload the page and try again."
        }
        p { a href="/" { "Back to the start page" } }
    };
    page(request, status, None, frame(request, "Refused", &session, None, None, main))
}

/// A page for a failure of the server itself (the store is down…).
pub fn unavailable(request: &HttpRequest, session: &Session) -> HttpResponse {
    let main = html! {
        h1 { "Something went wrong on our side" }
        p { "The service could not answer just now. Please try again in a moment." }
    };
    page(request, StatusCode::SERVICE_UNAVAILABLE, None, frame(request, "Unavailable", session, None, None, main))
}
