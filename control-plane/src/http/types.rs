//! The API's request and response bodies. They are the public contract, kept apart from the
//! store's rows so either can change without breaking the other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, Schema};

use crate::domain::plan::PlanSpec;
use crate::domain::subscription::SubscriptionState;
use crate::domain::whole;
use crate::store::{self, ProvisioningState};

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub slug: String,
    pub display_name: String,
    pub owner_email: String,
    pub plan: String,
    /// The plan version the tenant pays by.
    pub plan_version: i64,
    pub state: SubscriptionState,
    pub erp_version: String,
    /// The production host given by hand (a customer's own domain); `null`: the deployment's
    /// `<slug>.<domain>`. The test environment is at the same host with `test` as its second
    /// label.
    pub host: Option<String>,
    /// Licensed seats: the seat limit the customer sets within the plan's maximum (also passed
    /// to the ERP). Billing counts the seats held, not this.
    #[schema(value_type = i64, minimum = 1, maximum = 4_294_967_295_u32)]
    pub seats: u32,
    /// `waiting` (recorded, not yet applied), `applied`, then the operator's phase in lowercase.
    #[schema(value_type = String, example = "ready")]
    pub provisioning: ProvisioningState,
    pub url: Option<String>,
    /// The Tenant's status conditions, as the operator reports them (`[]` before it has).
    #[schema(value_type = Vec<Object>)]
    pub conditions: serde_json::Value,
    /// Each environment (`production`, and `test` when the plan has one): `{name, version, ready,
    /// url}`, as the operator reports them (`[]` before it has).
    #[schema(value_type = Vec<Object>)]
    pub environments: serde_json::Value,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<store::Tenant> for TenantView {
    fn from(tenant: store::Tenant) -> Self {
        Self {
            slug: tenant.slug,
            display_name: tenant.display_name,
            owner_email: tenant.owner_email,
            plan: tenant.plan,
            plan_version: tenant.plan_version,
            state: tenant.state,
            erp_version: tenant.erp_version,
            host: tenant.host,
            seats: tenant.licensed_seats,
            provisioning: tenant.provisioning,
            url: tenant.url,
            conditions: tenant.conditions,
            environments: tenant.environments,
            trial_ends_at: tenant.trial_ends_at,
            created_at: tenant.created_at,
            updated_at: tenant.updated_at,
            deleted_at: tenant.deleted_at,
        }
    }
}

/// A version of a plan: the plan's own fields, then its version and dates.
#[derive(Debug, Serialize)]
pub struct PlanView {
    pub version: i64,
    #[serde(flatten)]
    pub spec: PlanSpec,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// The fields [`PlanView`] adds to the plan's own: the schema's source, merged into one object
/// with the plan's fields. (An `allOf` of the two would not do: each closes its object to the
/// other's fields, so no response could match both.)
#[derive(ToSchema)]
#[allow(dead_code, reason = "only its schema is used")]
struct PlanVersionFields {
    /// 1 for a new plan, one more for each change.
    #[schema(minimum = 1)]
    version: i64,
    created_at: DateTime<Utc>,
    /// Set when the plan takes no new tenants.
    retired_at: Option<DateTime<Utc>>,
}

impl utoipa::PartialSchema for PlanView {
    fn schema() -> RefOr<Schema> {
        let (RefOr::T(Schema::Object(mut plan)), RefOr::T(Schema::Object(version))) =
            (PlanSpec::schema(), PlanVersionFields::schema())
        else {
            unreachable!("both derive object schemas")
        };
        plan.description = Some("A version of a plan: the plan's own fields, then its version and dates.".into());
        plan.properties.extend(version.properties);
        plan.required.extend(version.required);
        RefOr::T(Schema::Object(plan))
    }
}

impl ToSchema for PlanView {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        // The plan's fields refer to `Money` and `ModulePolicy`.
        <PlanSpec as ToSchema>::schemas(schemas);
    }
}

impl From<store::Plan> for PlanView {
    fn from(plan: store::Plan) -> Self {
        Self { version: plan.version, spec: plan.spec, created_at: plan.created_at, retired_at: plan.retired_at }
    }
}

/// One page of a list; pass `next` as `after` for the following page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub company_name: String,
    /// Made from the company name when absent.
    pub slug: Option<String>,
    pub admin_email: String,
    pub plan: String,
    /// The seat limit (licensed seats): 1 to the plan's maximum. Billing counts the seats held.
    #[serde(deserialize_with = "whole::deserialize")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u32)]
    pub seats: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignupResponse {
    #[schema(value_type = Object)]
    pub tenant: serde_json::Value,
    /// A tenant-admin token, in the first response only: a replay of the same `Idempotency-Key`
    /// returns the tenant without it (tokens are never returned twice).
    pub token: Option<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    pub slug: String,
    pub display_name: String,
    pub owner_email: String,
    pub plan: String,
    /// Licensed seats, 1 to the plan's maximum.
    #[serde(deserialize_with = "whole::deserialize")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u32)]
    pub seats: i64,
    /// The deployment's default when absent; one of the provider's catalogue of ERP versions.
    pub erp_version: Option<String>,
    /// A production host given by hand (a customer's own domain), unique among tenants.
    pub host: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    pub display_name: Option<String>,
    pub owner_email: Option<String>,
    /// Moves the tenant to the plan's current version; refused when more seats are held, or
    /// licensed, than it allows (send `seats` with it to lower the licence in the same change).
    pub plan: Option<String>,
    /// The seat limit (licensed seats): 1 to the plan's maximum, and not below the seats held.
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u32)]
    pub seats: Option<i64>,
    /// Provider admins only: one of the catalogue's versions, never older than production's.
    pub erp_version: Option<String>,
    /// Provider admins only: a production host given by hand, unique among tenants; `null` goes
    /// back to the deployment's generated host.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub host: Option<Option<String>>,
    /// Provider admins only; `canceled` is reached by deleting the tenant.
    pub state: Option<SubscriptionState>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatRequest {
    /// Any case; compared without it, stored with the domain in lower case.
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatView {
    pub email: String,
    pub assigned_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatsView {
    pub tenant: String,
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_u32)]
    pub count: u32,
    /// The most seats that may be held: the tenant's licensed seats.
    #[schema(value_type = i64, minimum = 1, maximum = 4_294_967_295_u32)]
    pub max_seats: u32,
    /// The users holding a seat, in natural order of their addresses; absent for billing readers, who see counts only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seats: Option<Vec<SeatView>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub tenant: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Seats held at the end of the period.
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_u32)]
    pub current: u32,
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_u32)]
    pub peak: u32,
    /// Exact seat-seconds, for proration by the second.
    pub seat_seconds: i64,
    pub seat_days: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSeatCountView {
    pub tenant: String,
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_u32)]
    pub count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsageView {
    pub tenant: String,
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_u32)]
    pub current: u32,
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_u32)]
    pub peak: u32,
    pub seat_seconds: i64,
    pub seat_days: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// An absolute `https://` (or `http://`) URL without credentials.
    pub url: String,
    /// Event types to deliver; all when empty.
    #[serde(default)]
    pub events: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// The signing secret: in the creation response only, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<store::WebhookEndpoint> for WebhookView {
    fn from(endpoint: store::WebhookEndpoint) -> Self {
        Self {
            id: endpoint.id,
            url: endpoint.url,
            events: endpoint.events,
            created_at: endpoint.created_at,
            secret: None,
        }
    }
}

/// A field that may be set to `null`: `Some(None)` when it was, `None` when it was absent.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
