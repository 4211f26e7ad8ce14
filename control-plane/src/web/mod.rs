//! The browser pages: server-rendered HTML (maud, escaped at compile time), a little JavaScript
//! from `/assets`, sessions in a cookie and CSRF protection on every form.
//!
//! - `GET /`, `GET /signup`: the plan catalogue and the signup form; `POST /signup` creates the
//!   tenant through the same code as `POST /v1/signup`.
//! - `GET /signup/slug?company=…&slug=…`: whether an address is free (JSON), as the form is typed.
//! - `GET /t/{slug}`: provisioning progress; `GET /t/{slug}/progress`: the same as JSON.
//! - `GET /login`, `POST /login`, `POST /logout`: sessions from a pasted token.
//! - `/t/{slug}/console…`: the tenant console (`console`); `/provider…`: the provider console
//!   (`provider`).

pub mod chart;
pub mod console;
pub mod layout;
pub mod login;
pub mod password;
pub mod progress;
pub mod provider;
pub mod session;
pub mod signup;

use actix_web::http::{StatusCode, header};
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};

pub use session::Session;

const APP_CSS: &str = include_str!("../../assets/app.css");
const APP_JS: &str = include_str!("../../assets/app.js");
/// Form bodies are small: a few fields.
const FORM_LIMIT: usize = 16 * 1024;

/// How the pages' forms are read: small bodies; a body that is not a form is refused with a page.
pub(crate) fn form() -> web::FormConfig {
    web::FormConfig::default().limit(FORM_LIMIT).error_handler(|error, request: &HttpRequest| {
        tracing::debug!(%error, "form not read");
        actix_web::error::InternalError::from_response(error, layout::refused(request, StatusCode::BAD_REQUEST)).into()
    })
}

/// A problem's detail as a sentence for a page: a capital first letter, a final period, and
/// without the `(got …)` echo of the input (the form shows what was typed).
pub(crate) fn sentence(text: &str) -> String {
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

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(web::resource("/").route(web::get().to(signup::form_page)))
        .service(
            web::resource("/signup")
                .app_data(form())
                .route(web::get().to(signup::form_page))
                .route(web::post().to(signup::submit)),
        )
        .service(web::resource("/signup/slug").route(web::get().to(signup::check_slug)))
        .service(
            web::resource("/login")
                .app_data(form())
                .route(web::get().to(login::form_page))
                .route(web::post().to(login::submit)),
        )
        .service(web::resource("/logout").app_data(form()).route(web::post().to(login::logout)))
        .service(web::resource("/t/{slug}").route(web::get().to(progress::page_view)))
        .service(web::resource("/t/{slug}/progress").route(web::get().to(progress::json_view)))
        .service(web::resource("/t/{slug}/password").app_data(form()).route(web::post().to(password::reveal)))
        .configure(console::configure)
        .configure(provider::configure)
        .service(web::resource("/assets/app.css").route(web::get().to(css)))
        .service(web::resource("/assets/app.js").route(web::get().to(js)));
}

async fn css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    layout::secure(&mut builder)
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_as_sentences() {
        assert_eq!(sentence("max_seats: at least 1 (got 0)"), "Max_seats: at least 1.");
        assert_eq!(sentence("the plan allows 3 seats and 3 are held"), "The plan allows 3 seats and 3 are held.");
        assert_eq!(sentence("done."), "Done.");
        assert_eq!(sentence("  "), "");
    }
}
