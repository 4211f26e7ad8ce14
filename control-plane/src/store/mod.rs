//! The control plane's store: plans, tenants, the seat ledger, plan-change history and the two
//! durable outboxes (desired Tenants for the provisioning worker, events for webhook delivery).
//!
//! One interface, two engines: PostgreSQL in production, SQLite for the embedded default. Every
//! query is written once: `engine::per_engine!` compiles each operation for both engines'
//! concrete types, and `on_pool!` calls the one of the store's engine.
//! Anything that changes a tenant writes its outbox rows in the same transaction, so a crash
//! after the commit loses nothing.

mod billing;
mod codec;
mod console;
mod engine;
mod plans;
mod provision;
mod retention;
mod seats;
mod tenants;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::plan::PlanSpec;
use crate::domain::seats::{Holding, Usage, seats_phrase};
use crate::domain::subscription::{SubscriptionState, TransitionError};
use crate::slug::Slug;

/// Which engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{0}")]
    Conflict(String),
    /// Adding a seat would go beyond the tenant's licensed seats.
    #[error("{}", seat_limit_message(*.licensed, *.held, *.plan_max))]
    SeatLimit { licensed: u32, held: u32, plan_max: u32 },
    /// Licensed seats asked for beyond the plan's `max_seats` (or 0).
    #[error("the plan allows 1 to {} to be licensed; {asked} were asked for", seats_phrase(*.plan_max))]
    LicenceAbovePlan { asked: u32, plan_max: u32 },
    /// Licensed seats lowered below the seats held now.
    #[error("{} held now; release seats before lowering the licensed seats to {asked}", held_phrase(*.held))]
    LicenceBelowHeld { asked: u32, held: u32 },
    /// A plan change to a plan whose `max_seats` is below the seats held.
    #[error("the new plan allows at most {} and {} held now", seats_phrase(*.max), held_phrase(*.held))]
    PlanTooSmall { max: u32, held: u32 },
    /// A plan change to a plan whose `max_seats` is below the licensed seats (that would stay).
    #[error(
        "the new plan allows at most {} and {licensed} are licensed; lower the licensed seats with the plan change",
        seats_phrase(*.max)
    )]
    PlanBelowLicence { max: u32, licensed: u32 },
    /// `/resume` of a tenant that is not suspended.
    #[error("the tenant is {state}, not suspended")]
    NotSuspended { state: SubscriptionState },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Production would go back to an older ERP version than it has (or runs).
    #[error(
        "production runs ERP {current}; {wanted} is older, and an older ERP on a database that a newer one has \
         migrated would corrupt it, so versions only go up"
    )]
    VersionDowngrade { current: String, wanted: String },
    /// Another live tenant has this host.
    #[error("the host {0} is already used by another tenant")]
    HostTaken(String),
    #[error("invalid database URL {0:?}: use postgres://… or sqlite:…")]
    BadUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another signup committed under this `Idempotency-Key` (see [`Store::signup_by_key`]).
    #[error("a signup with this Idempotency-Key was already committed")]
    IdempotencyKeyUsed,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `1 seat is`, `3 seats are`.
fn held_phrase(held: u32) -> String {
    format!("{} {}", seats_phrase(held), if held == 1 { "is" } else { "are" })
}

fn seat_limit_message(licensed: u32, held: u32, plan_max: u32) -> String {
    let held = held_phrase(held);
    if licensed < plan_max {
        format!(
            "{held} held and {licensed} licensed; raise the licensed seats (the plan allows up to {plan_max}) or release a seat"
        )
    } else {
        format!("{held} held and {licensed} licensed, the plan's maximum; release a seat or move to a larger plan")
    }
}

/// One version of a plan. A tenant stays on the version it subscribed to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub version: i64,
    #[serde(flatten)]
    pub spec: PlanSpec,
    pub created_at: DateTime<Utc>,
    /// Retired plans take no new tenants; existing tenants keep them.
    pub retired_at: Option<DateTime<Utc>>,
}

/// Where a tenant's ERP is, as far as the control plane knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisioningState {
    /// Recorded; the provisioning worker has not applied it yet (or there is no cluster).
    Waiting,
    /// Applied to the cluster; the operator has not reported yet.
    Applied,
    /// Mirrored from the Tenant's `status.phase`.
    Provisioning,
    Ready,
    Degraded,
    Suspended,
    Invalid,
    Deleting,
    /// The Tenant is gone from the cluster.
    Deleted,
}

impl ProvisioningState {
    /// As stored, and as in the API's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Applied => "applied",
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Degraded => "degraded",
            Self::Suspended => "suspended",
            Self::Invalid => "invalid",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    pub slug: String,
    pub display_name: String,
    pub owner_email: String,
    pub plan: String,
    pub plan_version: i64,
    pub state: SubscriptionState,
    pub erp_version: String,
    /// Licensed seats, passed to the ERP (the Tenant's `spec.seats`).
    pub licensed_seats: u32,
    pub provisioning: ProvisioningState,
    pub url: Option<String>,
    /// The Tenant's status conditions as the operator wrote them.
    pub conditions: serde_json::Value,
    /// Each environment's status as the operator wrote it: `[{name, version, ready, url}]`.
    pub environments: serde_json::Value,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The production host given by hand; `None`: the deployment's `<slug>.<domain>`.
    pub host: Option<String>,
    /// While suspended: the state `/resume` returns to (the one before the suspension). Kept
    /// out of the tenant's JSON (events); the API shows `state` only.
    #[serde(skip)]
    pub resumes_as: Option<SubscriptionState>,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub slug: Slug,
    pub display_name: String,
    pub owner_email: String,
    pub plan: String,
    pub licensed_seats: u32,
    pub erp_version: String,
    /// Seated at creation (the admin), counted against the plan's maximum.
    pub first_seat: Option<String>,
    /// A production host given by hand.
    pub host: Option<String>,
    /// The deployment's generated host for this slug (`<slug>.<domain>`), when it has a domain:
    /// the slug is taken if another tenant was given this host by hand.
    pub generated_host: Option<String>,
}

/// A signup's `Idempotency-Key` and the fingerprint of its request body, recorded in the
/// transaction that creates the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupKey {
    pub key: String,
    pub fingerprint: String,
}

/// A change to a tenant; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantChange {
    pub display_name: Option<String>,
    pub owner_email: Option<String>,
    /// Moves the tenant to the current version of this plan (recorded in the history).
    pub plan: Option<String>,
    pub licensed_seats: Option<u32>,
    pub erp_version: Option<String>,
    /// `Some(None)` goes back to the deployment's generated host.
    pub host: Option<Option<String>>,
    pub state: Option<SubscriptionState>,
    /// Change nothing unless the tenant is in this state when the change is made (under its
    /// row lock): for background moves that must not undo a person's change made meanwhile.
    pub only_if_state: Option<SubscriptionState>,
    /// Returns a suspended tenant to the state it had before its suspension (see
    /// `SubscriptionState::on_resume`); `NotSuspended` otherwise. `state` is then ignored.
    pub resume: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub plan: Option<String>,
    pub state: Option<SubscriptionState>,
    /// Cursor: the last slug of the previous page.
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seat {
    pub email: String,
    pub assigned_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatAdded {
    Added(Seat),
    /// The user already held a seat: nothing changed.
    AlreadyHeld(Seat),
}

/// A tenant's current seat count. `version` grows with every seat change of the tenant, so a
/// cache can refuse to replace a newer count with an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatCount {
    pub count: u32,
    /// The most seats that may be held: the tenant's licensed seats (within its plan's maximum).
    pub max_seats: u32,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanChange {
    pub from_plan: String,
    pub from_version: i64,
    pub to_plan: String,
    pub to_version: i64,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantSeatCount {
    pub tenant: String,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantUsage {
    pub tenant: String,
    pub usage: Usage,
}

/// What the provisioning worker must do with one Tenant object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionOp {
    Apply,
    Delete,
}

/// A claimed provisioning outbox row: the desired Tenant object, written in the transaction of
/// the change that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionJob {
    pub id: i64,
    pub tenant: String,
    pub op: ProvisionOp,
    /// The whole `Tenant` object (apiVersion, kind, metadata, spec) to apply.
    pub object: serde_json::Value,
    pub attempts: i32,
}

/// The Tenant status as mirrored back into the store.
#[derive(Debug, Clone, PartialEq)]
pub struct MirroredStatus {
    pub provisioning: ProvisioningState,
    pub url: Option<String>,
    pub conditions: serde_json::Value,
    pub environments: serde_json::Value,
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub outbox: u64,
    pub deliveries: u64,
    pub events: u64,
    /// Signup idempotency keys (a retry after this long makes a new signup).
    pub signup_keys: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    /// Event types delivered; empty means all.
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// A claimed webhook delivery: one event to one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub endpoint_id: String,
    pub url: String,
    /// The endpoint's signing secret, sealed (see `crate::secrets`); never stored in the clear.
    pub sealed_secret: Vec<u8>,
    pub event_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub attempts: i32,
}

/// A handle on the store; cheap to clone (a connection pool inside).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

#[derive(Clone)]
enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

// Event types written to the webhook outbox.
pub const TENANT_CREATED: &str = "tenant.created";
pub const TENANT_READY: &str = "tenant.ready";
pub const TENANT_SUSPENDED: &str = "tenant.suspended";
pub const SEATS_CHANGED: &str = "seats.changed";
pub const SUBSCRIPTION_CHANGED: &str = "subscription.changed";
pub const EVENT_TYPES: [&str; 5] =
    [TENANT_CREATED, TENANT_READY, TENANT_SUSPENDED, SEATS_CHANGED, SUBSCRIPTION_CHANGED];

/// Connections a PostgreSQL pool opens at most, unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 32;
/// The largest page any listing returns; smaller limits are kept, 0 means 1.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// How long a SQLite writer waits for another to finish before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite allows one writer at a time; a few connections serve the concurrent readers.
const SQLITE_MAX_CONNECTIONS: u32 = 8;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

pub(crate) fn page_limit(limit: u32) -> u32 {
    limit.clamp(1, MAX_PAGE_SIZE)
}

impl<T> Page<T> {
    /// `items` was fetched with `limit + 1` rows: the extra one only says there is a next page.
    pub(crate) fn cut(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if items.len() <= limit {
            return Self { items, next: None };
        }
        items.truncate(limit);
        let next = items.last().map(key);
        Self { items, next }
    }
}

/// Calls `module::engine::function(pool, args…)` for the store's engine.
macro_rules! on_pool {
    ($store:expr, $module:ident :: $function:ident ( $($arg:expr),* $(,)? )) => {
        match &$store.pool {
            Pool::Postgres(pool) => $module::pg::$function(pool, $($arg),*).await,
            Pool::Sqlite(pool) => $module::sqlite::$function(pool, $($arg),*).await,
        }
    };
}

impl Store {
    /// `postgres://…` or `sqlite:path` (the SQLite file is created when missing).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// As [`Store::connect`], with at most `max_connections` PostgreSQL connections (SQLite,
    /// which has one writer at a time, keeps its own small pool).
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new().max_connections(max_connections.max(1)).connect(url).await?;
            return Ok(Self { pool: Pool::Postgres(pool) });
        }
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| StoreError::BadUrl(url.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            // Every connection to `:memory:` is a database of its own: share one.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { SQLITE_MAX_CONNECTIONS })
                .idle_timeout(if in_memory { None } else { Some(Duration::from_secs(600)) })
                .max_lifetime(if in_memory { None } else { Some(Duration::from_secs(1800)) })
                .connect_with(options)
                .await?;
            return Ok(Self { pool: Pool::Sqlite(pool) });
        }
        Err(StoreError::BadUrl(url.to_string()))
    }

    /// Applies `migrations/postgres` or `migrations/sqlite`.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// One round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?,
            Pool::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?,
        }
        Ok(())
    }

    /// Closes every connection; pending operations finish first.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }

    // --- plans ---------------------------------------------------------------------------------
    /// Version 1 of a new plan; `Conflict` when the name exists (retired included).
    pub async fn create_plan(&self, spec: &PlanSpec) -> Result<Plan> {
        on_pool!(self, plans::create_plan(spec))
    }
    /// A new version of an existing plan (`NotFound` otherwise); an identical spec returns the
    /// current version unchanged. Tenants stay on the version they have. A retired plan's new
    /// version is retired too.
    pub async fn revise_plan(&self, spec: &PlanSpec) -> Result<Plan> {
        Ok(on_pool!(self, plans::revise_plan(spec))?.0)
    }
    /// Create or revise; `true` when something was written.
    pub async fn import_plan(&self, spec: &PlanSpec) -> Result<(Plan, bool)> {
        on_pool!(self, plans::import_plan(spec))
    }
    /// The newest version (retired ones included, with `retired_at`).
    pub async fn plan(&self, name: &str) -> Result<Plan> {
        on_pool!(self, plans::plan(name))
    }
    pub async fn plan_version(&self, name: &str, version: i64) -> Result<Plan> {
        on_pool!(self, plans::plan_version(name, version))
    }
    /// The newest version of every plan, by name.
    pub async fn plans(&self) -> Result<Vec<Plan>> {
        on_pool!(self, plans::plans())
    }
    /// No new tenants on it; existing ones keep it.
    pub async fn retire_plan(&self, name: &str) -> Result<Plan> {
        on_pool!(self, plans::retire_plan(name))
    }

    // --- tenants -------------------------------------------------------------------------------
    /// `Conflict` when the slug was ever taken or the plan is retired, `NotFound` for an unknown
    /// plan, `LicenceAbovePlan` when `licensed_seats` is 0 or exceeds its maximum. Trialing when the plan has
    /// trial days. Same transaction: the first seat, the provisioning outbox row,
    /// `tenant.created` (and `seats.changed` with a first seat).
    pub async fn create_tenant(&self, new: &NewTenant) -> Result<Tenant> {
        on_pool!(self, tenants::create_tenant(new, None))
    }
    /// As [`Store::create_tenant`], recording `key` in the same transaction:
    /// `IdempotencyKeyUsed` when a signup under the key has already committed (a concurrent one
    /// waits for the first to end).
    pub async fn create_signup_tenant(&self, new: &NewTenant, key: &SignupKey) -> Result<Tenant> {
        on_pool!(self, tenants::create_tenant(new, Some(key)))
    }
    /// The request fingerprint and the tenant (as it is now) of the signup committed under `key`.
    pub async fn signup_by_key(&self, key: &str) -> Result<Option<(String, Tenant)>> {
        on_pool!(self, tenants::signup_by_key(key))
    }
    /// Deleted tenants too (with `deleted_at`).
    pub async fn tenant(&self, slug: &str) -> Result<Tenant> {
        on_pool!(self, tenants::tenant(slug))
    }
    /// Not deleted, ordered by slug; at most [`MAX_PAGE_SIZE`] per page.
    pub async fn tenants(&self, filter: &TenantFilter) -> Result<Page<Tenant>> {
        on_pool!(self, tenants::tenants(filter))
    }
    /// Plan changes are refused with `PlanTooSmall` when more seats are held, `PlanBelowLicence`
    /// when more are licensed, than the new plan allows, and recorded in the history; licensed
    /// seats must be 1 to the plan's maximum (`LicenceAbovePlan`) and not below the seats held
    /// (`LicenceBelowHeld`); state moves follow `SubscriptionState::transition`, a resume
    /// `SubscriptionState::on_resume`. Same transaction: an outbox row when the desired Tenant
    /// changed, `subscription.changed` for plan or state changes, `tenant.suspended` on
    /// suspension. A deleted tenant is `NotFound`; a change that changes nothing writes nothing.
    pub async fn change_tenant(&self, slug: &str, change: &TenantChange) -> Result<Tenant> {
        on_pool!(self, tenants::change_tenant(slug, change))
    }
    /// Canceled, `deleted_at` set, every seat released, a `Delete` outbox row,
    /// `subscription.changed`. Deleting a deleted tenant returns it unchanged.
    pub async fn delete_tenant(&self, slug: &str) -> Result<Tenant> {
        on_pool!(self, tenants::delete_tenant(slug))
    }
    /// The master password is shown once: `true` for the first caller, who must show it (or
    /// call [`Store::release_password_reveal`] if it could not).
    pub async fn claim_password_reveal(&self, slug: &str) -> Result<bool> {
        on_pool!(self, tenants::claim_password_reveal(slug))
    }
    pub async fn release_password_reveal(&self, slug: &str) -> Result<()> {
        on_pool!(self, tenants::release_password_reveal(slug))
    }
    pub async fn password_revealed(&self, slug: &str) -> Result<bool> {
        on_pool!(self, tenants::password_revealed(slug))
    }
    pub async fn plan_history(&self, slug: &str) -> Result<Vec<PlanChange>> {
        on_pool!(self, tenants::plan_history(slug))
    }

    // --- seats ---------------------------------------------------------------------------------
    /// Idempotent per email, compared without case; `SeatLimit` beyond the tenant's licensed
    /// seats, leaving nothing behind.
    pub async fn add_seat(&self, slug: &str, email: &str) -> Result<SeatAdded> {
        self.add_seat_at(slug, email, Utc::now()).await
    }
    /// [`Store::add_seat`] at a given instant, for tests of usage over time.
    #[doc(hidden)]
    pub async fn add_seat_at(&self, slug: &str, email: &str, at: DateTime<Utc>) -> Result<SeatAdded> {
        on_pool!(self, seats::add_seat(slug, email, at))
    }
    /// `NotFound` when the user holds no seat.
    pub async fn remove_seat(&self, slug: &str, email: &str) -> Result<Seat> {
        self.remove_seat_at(slug, email, Utc::now()).await
    }
    /// [`Store::remove_seat`] at a given instant, for tests of usage over time.
    #[doc(hidden)]
    pub async fn remove_seat_at(&self, slug: &str, email: &str, at: DateTime<Utc>) -> Result<Seat> {
        on_pool!(self, seats::remove_seat(slug, email, at))
    }
    /// Seats held now, by email in natural order (`user2` before `user10`).
    pub async fn seats(&self, slug: &str) -> Result<Vec<Seat>> {
        on_pool!(self, seats::seats(slug))
    }
    pub async fn seat_count(&self, slug: &str) -> Result<SeatCount> {
        on_pool!(self, seats::seat_count(slug))
    }
    /// Deleted tenants too: billing asks about the past.
    pub async fn seat_count_at(&self, slug: &str, at: DateTime<Utc>) -> Result<u32> {
        on_pool!(self, seats::seat_count_at(slug, at))
    }
    /// The seat ledger's holdings that touch `[from, to]`: for usage over sub-periods (the
    /// console's daily chart) without one query per sub-period. Deleted tenants too.
    pub async fn seat_holdings(&self, slug: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Holding>> {
        on_pool!(self, seats::seat_holdings(slug, from, to))
    }
    /// Deleted tenants too.
    pub async fn seat_usage(&self, slug: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Usage> {
        on_pool!(self, seats::seat_usage(slug, from, to))
    }

    // --- billing -------------------------------------------------------------------------------
    /// Every tenant that existed at `at`, with its seat count then, by slug.
    pub async fn billing_seats(
        &self,
        at: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<TenantSeatCount>> {
        on_pool!(self, billing::billing_seats(at, after, limit))
    }
    /// Peak and seat-days of every tenant that existed during `[from, to)`, by slug.
    pub async fn billing_usage(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<TenantUsage>> {
        on_pool!(self, billing::billing_usage(from, to, after, limit))
    }

    // --- provisioning outbox -------------------------------------------------------------------
    /// Claims up to `limit` due jobs for `lease` (others skip them: PostgreSQL `FOR UPDATE SKIP
    /// LOCKED`); only the newest job of a tenant runs, older ones are superseded, and a tenant
    /// with a job in flight gets no second one until it is finished, retried or its lease ends.
    pub async fn claim_provision_jobs(&self, limit: u32, lease: Duration) -> Result<Vec<ProvisionJob>> {
        on_pool!(self, provision::claim_provision_jobs(limit, lease))
    }
    /// Done; an applied tenant still `waiting` becomes `applied`, a deleted one `deleted`.
    /// Finishing a finished job is a no-op; an unknown id is `NotFound`.
    pub async fn finish_provision_job(&self, id: i64) -> Result<()> {
        on_pool!(self, provision::finish_provision_job(id))
    }
    pub async fn retry_provision_job(&self, id: i64, error: &str, after: Duration) -> Result<()> {
        on_pool!(self, provision::retry_provision_job(id, error, after))
    }
    pub async fn pending_provision_jobs(&self) -> Result<i64> {
        on_pool!(self, provision::pending_provision_jobs())
    }
    /// Mirrors a Tenant's status; `true` (and a `tenant.ready` event in the same transaction)
    /// when the tenant has just become ready. A deleted tenant is left as it is (`false`).
    pub async fn mirror_status(&self, slug: &str, status: &MirroredStatus) -> Result<bool> {
        on_pool!(self, provision::mirror_status(slug, status))
    }

    // --- webhooks ------------------------------------------------------------------------------
    pub async fn create_webhook(&self, url: &str, events: &[String], sealed_secret: &[u8]) -> Result<WebhookEndpoint> {
        on_pool!(self, webhooks::create_webhook(url, events, sealed_secret))
    }
    pub async fn webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        on_pool!(self, webhooks::webhooks())
    }
    /// `NotFound` unless a live endpoint has this id; its pending deliveries are dropped.
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        on_pool!(self, webhooks::delete_webhook(id))
    }
    /// Claims due deliveries for `lease`, oldest first.
    pub async fn claim_deliveries(&self, limit: u32, lease: Duration) -> Result<Vec<Delivery>> {
        on_pool!(self, webhooks::claim_deliveries(limit, lease))
    }
    pub async fn finish_delivery(&self, id: i64) -> Result<()> {
        on_pool!(self, webhooks::finish_delivery(id))
    }
    /// Try again after `after`, or give up with `None` (kept, marked dead).
    pub async fn retry_delivery(&self, id: i64, error: &str, after: Option<Duration>) -> Result<()> {
        on_pool!(self, webhooks::retry_delivery(id, error, after))
    }
    /// Every event document written so far, oldest first: for tests and diagnostics.
    #[doc(hidden)]
    /// Deletes what was settled before `before`: finished or superseded provisioning jobs,
    /// delivered or dead webhook deliveries, and events no delivery is left for. Pending work
    /// is never touched, whatever its age.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<Pruned> {
        on_pool!(self, retention::prune(before))
    }

    pub async fn recorded_events(&self) -> Result<Vec<serde_json::Value>> {
        on_pool!(self, webhooks::recorded_events())
    }
}
