//! Browser sessions and CSRF protection.
//!
//! The session is a cookie holding a JWT of the same kind as the API's bearer tokens, minted and
//! verified with the app's `Keys`. Forms are protected by a double-submit token: a random cookie
//! set when the form is rendered and the same value in a hidden field, compared in constant time,
//! plus a check of the `Origin` header when the browser sends one.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

use crate::auth::{Keys, Principal, Role};

pub const SESSION_COOKIE: &str = "tenantry_session";
pub const CSRF_COOKIE: &str = "tenantry_csrf";
/// The hidden form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// 32 random bytes in unpadded base64url.
const CSRF_LEN: usize = 43;

/// The value of cookie `name` of the request, if sent.
pub fn cookie(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_string())
}

/// Whether the request came from one of the configured `trusted_proxies`: only then are its
/// `Forwarded` / `X-Forwarded-Proto` / `X-Forwarded-Host` headers believed.
fn from_trusted_proxy(request: &HttpRequest) -> bool {
    let Some(state) = request.app_data::<web::Data<crate::http::AppState>>() else { return false };
    request.peer_addr().is_some_and(|peer| {
        let ip = peer.ip().to_canonical();
        state.settings.trusted_proxies.iter().any(|network| network.contains(&ip))
    })
}

/// The scheme and host the browser used: as a trusted proxy forwards them, else this server's
/// own scheme and the `Host` header.
fn own_origin(request: &HttpRequest) -> (String, String) {
    if from_trusted_proxy(request) {
        let info = request.connection_info();
        return (info.scheme().to_string(), info.host().to_string());
    }
    let scheme = if request.app_config().secure() { "https" } else { "http" };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| request.app_config().host().to_string(), str::to_string);
    (scheme.to_string(), host)
}

/// Whether the request came over HTTPS (directly, or as a trusted proxy reports it).
pub fn is_https(request: &HttpRequest) -> bool {
    own_origin(request).0.eq_ignore_ascii_case("https")
}

/// A `Set-Cookie` value with the attributes every cookie of the pages has.
fn set_cookie(request: &HttpRequest, name: &str, value: &str, same_site: &str, max_age: Option<u64>) -> String {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={seconds}"));
    }
    if is_https(request) {
        text.push_str("; Secure");
    }
    text
}

/// The session cookie carrying `token`, living as long as the token.
pub fn session_cookie(request: &HttpRequest, token: &str, lifetime_seconds: u64) -> String {
    set_cookie(request, SESSION_COOKIE, token, "Lax", Some(lifetime_seconds))
}

/// Clears the session cookie.
pub fn clear_session_cookie(request: &HttpRequest) -> String {
    set_cookie(request, SESSION_COOKIE, "", "Lax", Some(0))
}

/// The caller of a page, if it has a valid session. An invalid or expired session is no session.
#[derive(Debug, Clone)]
pub struct Session(pub Option<Principal>);

impl Session {
    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_ref()
    }

    /// Whether the session may see tenant `slug`'s pages: its own tenant-admin or a provider admin.
    pub fn can_manage(&self, slug: &str) -> bool {
        self.0.as_ref().is_some_and(|principal| match principal.role {
            Role::ProviderAdmin => true,
            Role::TenantAdmin => principal.tenant.as_deref() == Some(slug),
            Role::BillingReader => false,
        })
    }
}

impl FromRequest for Session {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let principal = cookie(request, SESSION_COOKIE).filter(|token| !token.is_empty()).and_then(|token| {
            let keys = request.app_data::<web::Data<Keys>>()?;
            match keys.verify(&token) {
                Ok(principal) => Some(principal),
                Err(error) => {
                    tracing::debug!(%error, "session cookie refused");
                    None
                }
            }
        });
        ready(Ok(Session(principal)))
    }
}

/// The CSRF token of a form page: the request's own when it has a well-formed one, else a new one
/// (`new` is then true and the cookie must be set).
pub struct CsrfToken {
    pub value: String,
    pub new: bool,
}

impl CsrfToken {
    pub fn for_request(request: &HttpRequest) -> Self {
        match cookie(request, CSRF_COOKIE).filter(|value| well_formed(value)) {
            Some(value) => Self { value, new: false },
            None => Self { value: random_token(), new: true },
        }
    }

    /// The `Set-Cookie` value when the token is new.
    pub fn set_cookie(&self, request: &HttpRequest) -> Option<String> {
        self.new.then(|| set_cookie(request, CSRF_COOKIE, &self.value, "Strict", None))
    }
}

fn well_formed(value: &str) -> bool {
    value.len() == CSRF_LEN && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a form post was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// No cookie, no field, or they differ.
    TokenMismatch,
    /// The `Origin` header names another site.
    ForeignOrigin,
}

/// Checks a form post: the `csrf` field equals the cookie, and the `Origin` (when sent) is this
/// server's own scheme and host.
pub fn check_csrf(request: &HttpRequest, field: &str) -> Result<(), CsrfRefusal> {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let (scheme, host) = own_origin(request);
        let own = format!("{scheme}://{host}");
        let origin = origin.to_str().unwrap_or("");
        if !origin.eq_ignore_ascii_case(&own) {
            return Err(CsrfRefusal::ForeignOrigin);
        }
    }
    let Some(cookie) = cookie(request, CSRF_COOKIE) else { return Err(CsrfRefusal::TokenMismatch) };
    if !well_formed(&cookie) || !well_formed(field) {
        return Err(CsrfRefusal::TokenMismatch);
    }
    if constant_time_eq(cookie.as_bytes(), field.as_bytes()) { Ok(()) } else { Err(CsrfRefusal::TokenMismatch) }
}

/// Compares every byte whatever the first difference (`ring::constant_time` is deprecated in
/// ring 0.17, so the fold is written here); the lengths are public (both are well-formed tokens).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let request =
            TestRequest::default().insert_header((header::COOKIE, "a=1; tenantry_csrf=xyz; b=2")).to_http_request();
        assert_eq!(cookie(&request, CSRF_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&request, "missing"), None);
    }

    #[test]
    fn csrf_needs_the_same_token_in_cookie_and_field_and_an_own_origin() {
        let token = random_token();
        assert!(well_formed(&token));
        let with_cookie = |origin: Option<&str>| {
            let mut request = TestRequest::default().insert_header((header::COOKIE, format!("{CSRF_COOKIE}={token}")));
            if let Some(origin) = origin {
                request = request.insert_header((header::ORIGIN, origin));
            }
            request.insert_header((header::HOST, "example.test")).to_http_request()
        };
        assert_eq!(check_csrf(&with_cookie(None), &token), Ok(()));
        assert_eq!(check_csrf(&with_cookie(Some("http://example.test")), &token), Ok(()));
        assert_eq!(check_csrf(&with_cookie(Some("https://evil.test")), &token), Err(CsrfRefusal::ForeignOrigin));
        assert_eq!(check_csrf(&with_cookie(None), &random_token()), Err(CsrfRefusal::TokenMismatch));
        assert_eq!(check_csrf(&with_cookie(None), ""), Err(CsrfRefusal::TokenMismatch));
        let bare = TestRequest::default().to_http_request();
        assert_eq!(check_csrf(&bare, &token), Err(CsrfRefusal::TokenMismatch));
    }

    #[test]
    fn a_well_formed_cookie_token_is_reused() {
        let token = random_token();
        let request =
            TestRequest::default().insert_header((header::COOKIE, format!("{CSRF_COOKIE}={token}"))).to_http_request();
        let csrf = CsrfToken::for_request(&request);
        assert_eq!((csrf.value.as_str(), csrf.new), (token.as_str(), false));
        assert!(csrf.set_cookie(&request).is_none());
        let fresh = CsrfToken::for_request(&TestRequest::default().to_http_request());
        assert!(fresh.new && fresh.set_cookie(&request).unwrap().contains("SameSite=Strict"));
    }
}
