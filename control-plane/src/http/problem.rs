//! RFC 7807 problem details: every error the API returns, with a stable `code` clients can
//! branch on (the `title` and `detail` are for people and may change).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` names the problem.
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub title: String,
    /// The HTTP status, repeated.
    #[schema(value_type = i64, minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable: `tenant_not_found`, `seat_limit_reached`, `invalid_body`…
    pub code: &'static str,
    /// Every problem of an invalid input, each naming its field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip)]
    retry_after_seconds: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            type_: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            errors: Vec::new(),
            retry_after_seconds: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<String>) -> Self {
        self.errors = errors;
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// What every tenant-scoped endpoint answers for a tenant the caller may not see: the same as
    /// for one that does not exist, so a tenant-admin learns nothing of other tenants.
    pub fn tenant_not_found(slug: &str) -> Self {
        Self::not_found("tenant_not_found", format!("tenant {slug:?} not found"))
    }

    pub fn too_many_requests(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests from this client; retry in {seconds} s"),
        );
        problem.retry_after_seconds = Some(seconds);
        problem
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed; the error is logged")
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)));
        if let Some(seconds) = self.retry_after_seconds {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.body(serde_json::to_string(self).unwrap_or_default())
    }
}

/// Store errors as the API shows them. Database failures are logged here, once, and shown as a
/// bare 500 or 503 without their text.
impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what } => {
                let code = if what.starts_with("tenant") {
                    "tenant_not_found"
                } else if what.starts_with("plan") {
                    "plan_not_found"
                } else if what.starts_with("seat") {
                    "seat_not_found"
                } else if what.starts_with("webhook") {
                    "webhook_not_found"
                } else {
                    "not_found"
                };
                Problem::not_found(code, format!("{what} not found"))
            }
            StoreError::Conflict(message) => Problem::conflict("conflict", message),
            error @ StoreError::SeatLimit { .. } => Problem::conflict("seat_limit_reached", error.to_string()),
            error @ StoreError::LicenceAbovePlan { .. } => Problem::conflict("seat_limit_reached", error.to_string()),
            error @ StoreError::LicenceBelowHeld { .. } => Problem::conflict("seats_in_use", error.to_string()),
            error @ (StoreError::PlanTooSmall { .. } | StoreError::PlanBelowLicence { .. }) => {
                Problem::conflict("plan_too_small", error.to_string())
            }
            error @ StoreError::NotSuspended { .. } => Problem::conflict("not_suspended", error.to_string()),
            error @ StoreError::Transition(_) => Problem::conflict("invalid_state_transition", error.to_string()),
            error @ StoreError::VersionDowngrade { .. } => Problem::conflict("version_downgrade", error.to_string()),
            error @ StoreError::HostTaken(_) => Problem::conflict("host_taken", error.to_string()),
            error @ StoreError::BadUrl(_) => {
                tracing::error!(%error, "store misconfigured");
                Problem::internal()
            }
            StoreError::Database(error) if is_unavailable(&error) => {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable("the database is unavailable; retry shortly")
            }
            error => {
                tracing::error!(%error, "store error");
                Problem::internal()
            }
        }
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
}
