//! `/t/{slug}`: a tenant's provisioning progress, and `/t/{slug}/progress`: the same as JSON for
//! the page's live updates.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use maud::html;
use serde::Serialize;

use super::layout::{self, frame, page};
use super::session::{CsrfToken, Session};
use super::signup::json;
use crate::auth::Role;
use crate::domain::seats::seats_phrase;
use crate::http::AppState;
use crate::http::problem::Problem;
use crate::store::{ProvisioningState, StoreError, Tenant};

/// How long a tenant may wait in the outbox before the page says no cluster seems to take it.
const LONG_WAIT_SECONDS: i64 = 120;
/// How often the page refreshes itself without JavaScript.
const REFRESH_SECONDS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Waiting,
    InProgress,
    Done,
    Suspended,
    Failed,
    /// Not part of this tenant (TLS without a public host).
    Skipped,
}

impl StepState {
    /// As in the JSON (and the page's CSS classes).
    pub fn key(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::InProgress => "in_progress",
            Self::Done => "done",
            Self::Suspended => "suspended",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::InProgress => "in progress",
            Self::Done => "done",
            Self::Suspended => "paused",
            Self::Failed => "failed",
            Self::Skipped => "not used",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub key: &'static str,
    pub label: &'static str,
    pub state: StepState,
    /// The state in words, as the page shows it.
    pub state_label: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub slug: String,
    pub provisioning: ProvisioningState,
    /// One sentence on where the tenant is.
    pub summary: String,
    /// Recorded but not applied: no cluster has taken it up (yet).
    pub waiting_for_cluster: bool,
    pub steps: Vec<Step>,
    pub ready: bool,
    /// The ERP's address, once ready.
    pub url: Option<String>,
}

/// The steps and summary of a tenant, from its provisioning state and mirrored conditions.
pub fn progress(tenant: &Tenant, now: DateTime<Utc>) -> Progress {
    let state = tenant.provisioning;
    let condition = |type_: &str| -> Option<(&str, &str, &str)> {
        tenant.conditions.as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
            (
                c["status"].as_str().unwrap_or("Unknown"),
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or(""),
            )
        })
    };
    let from_condition = |type_: &str, done: &str| -> (StepState, String) {
        match condition(type_) {
            Some(("True", _, _)) => (StepState::Done, done.to_string()),
            Some((_, "Suspended", message)) => (StepState::Suspended, message.to_string()),
            Some(("False", _, message)) if state == ProvisioningState::Invalid => {
                (StepState::Failed, message.to_string())
            }
            Some(("False", _, message)) => (StepState::InProgress, message.to_string()),
            _ => (StepState::Waiting, "not started yet".to_string()),
        }
    };
    let https = tenant.url.as_deref().is_some_and(|url| url.starts_with("https://"));
    let ready = state == ProvisioningState::Ready;
    let waited = (now - tenant.created_at).num_seconds();
    let all = |step_state: StepState, detail: &str| -> [(StepState, String); 4] {
        std::array::from_fn(|_| (step_state, detail.to_string()))
    };
    let states: [(StepState, String); 4] = match state {
        ProvisioningState::Waiting => all(StepState::Waiting, "waiting for a cluster"),
        ProvisioningState::Applied => all(StepState::Waiting, "sent to the cluster; waiting for it to start"),
        ProvisioningState::Deleting | ProvisioningState::Deleted => all(StepState::Skipped, "the ERP is being removed"),
        _ => {
            let tls = match condition("Ready") {
                Some(("True", _, _)) if https => (StepState::Done, "served over HTTPS".to_string()),
                Some(("True", _, _)) => (
                    StepState::Skipped,
                    "no public address is configured: the ERP is reachable inside the cluster only".to_string(),
                ),
                Some((_, "Suspended", _)) => (StepState::Suspended, "scaled to zero".to_string()),
                _ if https => (StepState::InProgress, "waiting for the certificate and the ERP".to_string()),
                _ => (StepState::Waiting, "not started yet".to_string()),
            };
            [
                from_condition("DatabaseReady", "the database is ready"),
                from_condition("ServerReady", "the ERP server is ready"),
                from_condition("WebReady", "the web client is ready"),
                tls,
            ]
        }
    };
    let labels = [("database", "Database"), ("server", "ERP server"), ("web", "Web client"), ("tls", "TLS")];
    let steps = labels
        .into_iter()
        .zip(states)
        .map(|((key, label), (state, detail))| Step { key, label, state, state_label: state.label(), detail })
        .collect();
    let summary = match state {
        ProvisioningState::Waiting if waited >= LONG_WAIT_SECONDS => format!(
            "Waiting for a cluster: your ERP is recorded, but no cluster has taken it up for {} minutes. This \
             service may have no cluster connected yet; building starts as soon as one is.",
            waited / 60
        ),
        ProvisioningState::Waiting => {
            "Waiting for a cluster: your ERP is recorded, and building starts when a cluster takes it up.".to_string()
        }
        ProvisioningState::Applied => "Sent to the cluster; waiting for it to start building.".to_string(),
        ProvisioningState::Provisioning => "Your ERP is being built.".to_string(),
        ProvisioningState::Ready => "Your ERP is ready.".to_string(),
        ProvisioningState::Degraded => {
            "Your ERP is running, but part of it is not healthy; it is being repaired.".to_string()
        }
        ProvisioningState::Suspended => {
            "Your ERP is suspended: it is scaled down and all its data is kept.".to_string()
        }
        ProvisioningState::Invalid => {
            "The cluster refused this ERP's settings. Please contact your provider.".to_string()
        }
        ProvisioningState::Deleting => "Your ERP is being deleted.".to_string(),
        ProvisioningState::Deleted => "Your ERP has been deleted.".to_string(),
    };
    Progress {
        slug: tenant.slug.clone(),
        provisioning: state,
        summary,
        waiting_for_cluster: state == ProvisioningState::Waiting,
        steps,
        ready,
        url: if ready { tenant.url.clone() } else { None },
    }
}

/// The tenant, when the session may see it; `None` for an unknown tenant and for one the
/// session may not see alike.
pub(super) async fn visible_tenant(
    state: &AppState,
    session: &Session,
    slug: &str,
) -> Result<Option<Tenant>, StoreError> {
    if !session.can_manage(slug) {
        return Ok(None);
    }
    match state.store.tenant(slug).await {
        Ok(tenant) => {
            let provider = session.principal().is_some_and(|p| p.role == Role::ProviderAdmin);
            Ok((tenant.deleted_at.is_none() || provider).then_some(tenant))
        }
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

pub async fn page_view(
    state: web::Data<AppState>,
    request: HttpRequest,
    session: Session,
    slug: web::Path<String>,
) -> HttpResponse {
    let tenant = match visible_tenant(&state, &session, &slug).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => return layout::not_found(&request, &session),
        Err(error) => {
            tracing::warn!(%error, "tenant not read for its progress page");
            return layout::unavailable(&request, &session);
        }
    };
    let progress = progress(&tenant, Utc::now());
    let plan = match state.store.plan(&tenant.plan).await {
        Ok(plan) => plan.spec.display_name,
        Err(_) => tenant.plan.clone(),
    };
    let csrf = CsrfToken::for_request(&request);
    // A deleted tenant (a provider's view) has no password to show.
    let revealed = state.store.password_revealed(&tenant.slug).await.unwrap_or(true);
    let password_section = super::password::section(&session, &tenant, revealed, &csrf);
    let main = html! {
        h1 { (tenant.display_name) }
        p class="lead" { "Your ERP " code { (tenant.slug) } " on the " (plan) " plan, with a limit of " (seats_phrase(tenant.licensed_seats)) "." }
        section class="progress" aria-labelledby="progress-title" aria-live="polite"
            data-progress={ "/t/" (tenant.slug) "/progress" } data-loaded-ready[progress.ready] {
            h2 id="progress-title" { "Setting up" }
            p class={ "summary" @if progress.waiting_for_cluster { " notice" } } data-summary { (progress.summary) }
            ol class="steps" {
                @for step in &progress.steps {
                    li class={ "step state-" (step.state.key()) }
                        data-step=(step.key) {
                        span class="step-label" { (step.label) }
                        " "
                        span class="step-state" data-state { (step.state_label) }
                        " "
                        span class="step-detail" data-detail { (step.detail) }
                    }
                }
            }
            p class="erp-url" data-url hidden[progress.url.is_none()] {
                "Your ERP is at "
                a href=(progress.url.clone().unwrap_or_default()) data-url-link { (progress.url.clone().unwrap_or_default()) }
            }
        }
        (password_section)
        @if progress.ready {
            p { a href={ "/t/" (tenant.slug) "/console" } { "Manage seats, environments and your subscription" } }
        }
    };
    let refresh = (!progress.ready).then_some(REFRESH_SECONDS);
    let markup = frame(&request, &format!("{} — progress", tenant.display_name), &session, Some(&csrf), refresh, main);
    page(&request, StatusCode::OK, Some(&csrf), markup)
}

pub async fn json_view(state: web::Data<AppState>, session: Session, slug: web::Path<String>) -> HttpResponse {
    match visible_tenant(&state, &session, &slug).await {
        Ok(Some(tenant)) => json(StatusCode::OK, &progress(&tenant, Utc::now())),
        Ok(None) => problem(Problem::tenant_not_found(&slug)),
        Err(error) => {
            tracing::warn!(%error, "tenant not read for its progress");
            problem(Problem::unavailable("the progress could not be read; retry shortly"))
        }
    }
}

fn problem(problem: Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    layout::secure(&mut builder)
        .content_type(crate::http::problem::CONTENT_TYPE)
        .body(serde_json::to_string(&problem).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::subscription::SubscriptionState;

    fn tenant(provisioning: ProvisioningState, conditions: serde_json::Value, url: Option<&str>) -> Tenant {
        let now = Utc::now();
        Tenant {
            slug: "acme".into(),
            display_name: "Acme".into(),
            owner_email: "ada@acme.test".into(),
            plan: "starter".into(),
            plan_version: 1,
            state: SubscriptionState::Trialing,
            erp_version: "7.0.59".into(),
            licensed_seats: 2,
            provisioning,
            url: url.map(str::to_string),
            conditions,
            environments: json!([]),
            trial_ends_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            host: None,
            resumes_as: None,
        }
    }

    fn states(progress: &Progress) -> Vec<StepState> {
        progress.steps.iter().map(|step| step.state).collect()
    }

    #[test]
    fn a_recorded_tenant_waits_for_a_cluster() {
        let waiting = tenant(ProvisioningState::Waiting, json!([]), None);
        let now = progress(&waiting, waiting.created_at);
        assert!(now.waiting_for_cluster && now.summary.contains("Waiting for a cluster"));
        assert_eq!(states(&now), vec![StepState::Waiting; 4]);
        let later = progress(&waiting, waiting.created_at + chrono::Duration::minutes(5));
        assert!(later.summary.contains("no cluster has taken it up for 5 minutes"), "{}", later.summary);
    }

    #[test]
    fn steps_follow_the_conditions() {
        let condition = |type_: &str, status: &str, reason: &str| json!({"type": type_, "status": status, "reason": reason, "message": format!("{type_} {status}")});
        let building = tenant(
            ProvisioningState::Provisioning,
            json!([
                condition("DatabaseReady", "True", "Ready"),
                condition("ServerReady", "False", "Waiting"),
                condition("Ready", "False", "Provisioning")
            ]),
            Some("https://acme.erp.test"),
        );
        let building = progress(&building, Utc::now());
        assert_eq!(
            states(&building),
            vec![StepState::Done, StepState::InProgress, StepState::Waiting, StepState::InProgress]
        );
        assert_eq!(building.steps[1].detail, "ServerReady False");
        assert!(!building.ready && building.url.is_none());

        let all_ready = json!([
            condition("DatabaseReady", "True", "Ready"),
            condition("ServerReady", "True", "Ready"),
            condition("WebReady", "True", "Ready"),
            condition("Ready", "True", "Ready")
        ]);
        let ready =
            progress(&tenant(ProvisioningState::Ready, all_ready.clone(), Some("https://acme.erp.test")), Utc::now());
        assert_eq!(states(&ready), vec![StepState::Done; 4]);
        assert_eq!(ready.url.as_deref(), Some("https://acme.erp.test"));
        let internal = progress(
            &tenant(ProvisioningState::Ready, all_ready, Some("http://erp-web-production.tenant-acme.svc")),
            Utc::now(),
        );
        assert_eq!(internal.steps[3].state, StepState::Skipped);
    }
}
