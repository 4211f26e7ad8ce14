//! Checks of request fields that serde cannot express, each naming the field, plus the
//! extractor configuration that turns malformed bodies, queries and paths into problem+json.

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{FromRequest, HttpRequest, web};
use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::problem::Problem;
use crate::domain::versions::VersionCatalogue;
use crate::slug::Slug;

pub const MAX_PAGE: u32 = 500;
pub const DEFAULT_PAGE: u32 = 100;

/// Collects every problem of one input, so a client fixes them all at once.
#[derive(Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    pub fn into_result(self) -> Result<(), Problem> {
        if self.0.is_empty() {
            return Ok(());
        }
        let detail = self.0.join("; ");
        Err(Problem::unprocessable("validation_failed", detail).with_errors(self.0))
    }

    pub fn text(&mut self, field: &str, value: &str, max_chars: usize) {
        let length = value.trim().chars().count();
        if length == 0 || value.chars().count() > max_chars {
            self.push(format!("{field}: 1 to {max_chars} characters"));
        } else if value.chars().any(char::is_control) {
            self.push(format!("{field}: must not contain control characters"));
        }
    }

    /// The address in its stored form (see [`normalize_email`]), or `None` with a problem.
    pub fn email(&mut self, field: &str, value: &str) -> Option<String> {
        match check_email(value) {
            Ok(()) => Some(normalize_email(value)),
            Err(reason) => {
                self.push(format!("{field}: {reason} (got {value:?})"));
                None
            }
        }
    }

    /// A production host given by hand, in lowercase (host names are case-insensitive).
    pub fn host(&mut self, field: &str, value: &str) -> Option<String> {
        let host = value.trim().trim_end_matches('.').to_ascii_lowercase();
        let checked = if host.split('.').count() < 2 {
            Err(format!("`{host}` is not a public host name such as erp.example.com"))
        } else {
            tenantry_blueprint::validate::check_host(&host)
        };
        checked.map(|()| host).map_err(|e| self.push(format!("{field}: {e}"))).ok()
    }

    /// A version of the provider's catalogue.
    pub fn offered_version(&mut self, field: &str, value: &str, catalogue: &VersionCatalogue) {
        if let Err(e) = catalogue.offered(value) {
            self.push(format!("{field}: {e}"));
        }
    }

    pub fn slug(&mut self, field: &str, value: &str) -> Option<Slug> {
        Slug::parse(value).map_err(|error| self.push(format!("{field}: {error}"))).ok()
    }

    /// Seats as a client sends them (any JSON integer), checked to be 1 or more.
    pub fn seats(&mut self, field: &str, value: i64) -> Option<u32> {
        match u32::try_from(value) {
            Ok(seats) if seats >= 1 => Some(seats),
            _ => {
                self.push(format!("{field}: a whole number of seats, at least 1 (got {value})"));
                None
            }
        }
    }
}

/// Whether `value` is an e-mail address: any case is accepted (`Ada@Acme.example`), since
/// addresses are compared without it.
pub fn check_email(value: &str) -> Result<(), &'static str> {
    let (local, domain) = value.rsplit_once('@').ok_or("an email address needs an @")?;
    if value.len() > 254 || local.is_empty() || local.len() > 64 {
        return Err("not a valid email address");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) || local.contains('@') {
        return Err("not a valid email address");
    }
    let labels_ok = domain.split('.').count() >= 2
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !labels_ok {
        return Err("the domain of an email address is a DNS name such as example.com");
    }
    Ok(())
}

/// The stored form of a checked address: the local part as given, the domain (which DNS
/// compares without case anyway) in lower case.
pub fn normalize_email(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => value.to_string(),
    }
}

/// `limit` of a list: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_limit(limit: Option<u32>) -> Result<u32, Problem> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(limit @ 1..=MAX_PAGE) => Ok(limit),
        Some(limit) => Err(Problem::bad_request("invalid_query", format!("limit: 1 to {MAX_PAGE} (got {limit})"))),
    }
}

/// A period `[from, to)`: `to` defaults to now, `from` to the start of `to`'s month.
pub fn period(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Problem> {
    use chrono::Datelike;
    let to = to.unwrap_or_else(Utc::now);
    let from = match from {
        Some(from) => from,
        None => to
            .date_naive()
            .with_day(1)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|start| start.and_utc())
            .unwrap_or(to),
    };
    if to < from {
        return Err(Problem::bad_request("invalid_query", format!("the period ends ({to}) before it starts ({from})")));
    }
    Ok((from, to))
}

/// A JSON body read strictly: a field the type does not know, at any depth, is refused with
/// a 400 naming it by its path (`resources.qouta`), and a bad value names its path too. The
/// body's size, media type and syntax are checked as for `web::Json` (see [`json_config`]).
/// Serde's own `deny_unknown_fields` only covers the types that ask for it; nested types from
/// other crates (a plan's `resources`) would otherwise drop what they do not know silently.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<T> StrictJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for StrictJson<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for StrictJson<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(request, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            strict_from_value(value).map(Self).map_err(Into::into)
        })
    }
}

/// `value` as a `T`, refusing fields `T` does not know at any depth.
pub fn strict_from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    let mut unknown = Vec::new();
    // `Option`s show as `?` in the path; the field names alone are what a client wrote.
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string().replace(".?", ""));
    let parsed = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
    let parsed: T = parsed.map_err(|error| {
        let path = error.path().to_string();
        let detail = if path == "." { error.inner().to_string() } else { format!("{path}: {}", error.inner()) };
        Problem::bad_request("invalid_body", detail)
    })?;
    if !unknown.is_empty() {
        let detail = format!("unknown field{} {}", if unknown.len() == 1 { "" } else { "s" }, unknown.join(", "));
        return Err(Problem::bad_request("invalid_body", detail).with_errors(unknown));
    }
    Ok(parsed)
}

pub fn json_config(max_body_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(max_body_bytes).error_handler(move |error, _: &HttpRequest| {
        let problem = match &error {
            JsonPayloadError::OverflowKnownLength { length, limit } => Problem::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body has {length} bytes; at most {limit} are accepted"),
            ),
            JsonPayloadError::Overflow { limit } => Problem::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than the {limit} bytes accepted"),
            ),
            JsonPayloadError::ContentType => Problem::new(
                actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ),
            JsonPayloadError::Deserialize(error) => Problem::bad_request("invalid_body", error.to_string()),
            other => Problem::bad_request("invalid_body", other.to_string()),
        };
        problem.into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        let detail = match &error {
            QueryPayloadError::Deserialize(error) => error.to_string(),
            other => other.to_string(),
        };
        Problem::bad_request("invalid_query", detail).into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, _| {
        let detail = match &error {
            PathError::Deserialize(error) => error.to_string(),
            other => other.to_string(),
        };
        Problem::not_found("not_found", detail).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(check_email("ada@example.com").is_ok());
        for bad in ["", "ada", "@example.com", "ada@", "ada@localhost", "a b@example.com", "ada@-x.com"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_in_any_case_are_accepted_with_the_domain_in_lower_case() {
        assert!(check_email("Ada@Acme.example").is_ok());
        assert_eq!(normalize_email("Ada@Acme.EXAMPLE"), "Ada@acme.example");
        let mut problems = Problems::default();
        assert_eq!(problems.email("admin_email", "ADA@ACME.example").as_deref(), Some("ADA@acme.example"));
        assert!(problems.into_result().is_ok());
    }

    #[test]
    fn problems_name_every_field() {
        let mut problems = Problems::default();
        problems.text("display_name", "", 100);
        assert_eq!(problems.seats("seats", -3), None);
        problems.offered_version("erp_version", "7.1.0", &VersionCatalogue::default());
        assert_eq!(problems.host("host", "ERP.Acme.Example."), Some("erp.acme.example".to_string()));
        assert_eq!(problems.host("host", "acme.test.example.com"), None);
        assert_eq!(problems.host("host", "localhost"), None);
        let problem = problems.into_result().unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors.len(), 5, "{:?}", problem.errors);
        assert!(problem.errors[2].contains("7.1.0 is not in the provider's catalogue"), "{:?}", problem.errors);
        assert!(problem.errors[3].contains("reserved for test environments"), "{:?}", problem.errors);
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only parsed")]
    struct Outer {
        name: String,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[allow(dead_code, reason = "only parsed")]
    struct Inner {
        size: Option<u32>,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[test]
    fn strict_bodies_name_unknown_fields_by_path() {
        let ok: Outer = strict_from_value(serde_json::json!({"name": "a", "inner": {"size": 1}})).unwrap();
        assert_eq!(ok.inner.size, Some(1));
        let body = serde_json::json!({"name": "a", "nmae": 1, "inner": {"sise": 1, "items": [{}, {"x": 2}]}});
        let problem = strict_from_value::<Outer>(body).unwrap_err();
        assert_eq!((problem.status, problem.code), (400, "invalid_body"));
        assert_eq!(problem.errors, ["inner.items.1.x", "inner.sise", "nmae"]);
        let problem = strict_from_value::<Outer>(serde_json::json!({"name": "a", "inner": {"size": -1}})).unwrap_err();
        assert_eq!((problem.status, problem.code), (400, "invalid_body"));
        assert!(problem.detail.starts_with("inner.size: "), "{}", problem.detail);
    }

    #[test]
    fn periods_default_to_the_month_so_far() {
        let to: DateTime<Utc> = "2026-03-17T10:00:00Z".parse().unwrap();
        let (from, _) = period(None, Some(to)).unwrap();
        assert_eq!(from, "2026-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(period(Some(to), Some(from)).is_err());
        assert!(page_limit(Some(0)).is_err() && page_limit(Some(501)).is_err());
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
    }
}
