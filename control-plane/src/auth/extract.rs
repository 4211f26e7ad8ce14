//! `Principal` as an actix-web extractor: the bearer token of the request, verified with the
//! `web::Data<Keys>` of the app. A refusal answers 401 problem+json.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;

use super::{AuthError, Keys, Principal};

const REALM: &str = "tenantry";

impl FromRequest for Principal {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let outcome = authenticate(request);
        if let Err(error) = &outcome {
            tracing::debug!(code = error.code(), %error, path = request.path(), "request not authenticated");
        }
        ready(outcome)
    }
}

fn authenticate(request: &HttpRequest) -> Result<Principal, AuthError> {
    let keys = request.app_data::<web::Data<Keys>>().ok_or(AuthError::NotConfigured)?;
    keys.verify(bearer_token(request.headers())?)
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(header::AUTHORIZATION).ok_or(AuthError::MissingBearer)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed("the Authorization header is not ASCII".into()))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::MissingBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MissingBearer);
    }
    Ok(token)
}

/// RFC 7807 body, the same shape as the HTTP layer's problems.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'static str,
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotConfigured | Self::Signing(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, self.challenge()));
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

impl AuthError {
    /// The `WWW-Authenticate` challenge of RFC 6750 §3: no error code when no token was sent.
    fn challenge(&self) -> HeaderValue {
        let text = match self {
            Self::MissingBearer => format!("Bearer realm=\"{REALM}\""),
            _ => {
                let description: String = self
                    .to_string()
                    .chars()
                    .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
                    .filter(|c| c.is_ascii() && !c.is_ascii_control())
                    .collect();
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\"")
            }
        };
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_bearer_scheme_is_required() {
        let headers = |value: &str| {
            let request = TestRequest::default().insert_header((header::AUTHORIZATION, value)).to_http_request();
            request.headers().clone()
        };
        assert_eq!(bearer_token(&headers("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&headers("bearer   abc ")), Ok("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), Err(AuthError::MissingBearer));
        assert_eq!(bearer_token(&headers("Bearer ")), Err(AuthError::MissingBearer));
        assert_eq!(bearer_token(&HeaderMap::new()), Err(AuthError::MissingBearer));
    }

    #[actix_web::test]
    async fn refusals_are_problem_json_with_a_challenge() {
        let response = AuthError::Expired.error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers().get(header::CONTENT_TYPE).unwrap(), "application/problem+json");
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap().to_string();
        assert!(challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""), "{challenge}");
        let body: serde_json::Value = serde_json::from_slice(&to_bytes(response.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["code"], "token_expired");
        assert_eq!(body["status"], 401);
        assert_eq!(body["type"], "about:blank");

        let missing = AuthError::MissingBearer.error_response();
        let challenge = missing.headers().get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap();
        assert!(!challenge.contains("error="), "{challenge}");

        // Attacker-chosen text cannot break out of the quoted description.
        let quoted = AuthError::UnknownKid("a\"b\u{e9}".into()).error_response();
        let challenge = quoted.headers().get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap().to_string();
        assert!(
            challenge.ends_with("error_description=\"the token is signed with an unknown key id 'a''b'\""),
            "{challenge}"
        );
    }
}
