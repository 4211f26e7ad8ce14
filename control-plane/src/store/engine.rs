//! Writing each query once for both engines, and the steps many store operations share.
//!
//! [`per_engine!`] compiles the same items twice, in a module `pg` and a module `sqlite`, each
//! with its own `Db`, `DbPool`, `Conn`, `Tx` and `BACKEND`; so every query is type-checked
//! against each engine's concrete types, and dialect differences are a `match BACKEND` around
//! the SQL text only.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::codec::{JsonDoc, Ts, corrupt};
use super::{Plan, ProvisionOp, ProvisioningState, Result, StoreError, Tenant};
use crate::domain::plan::PlanSpec;

macro_rules! per_engine {
    ($($item:item)*) => {
        pub(crate) mod pg {
            #![allow(unused_imports, dead_code)]
            use super::*;
            use crate::store::engine::pg as shared;
            pub(crate) type Db = sqlx::Postgres;
            pub(crate) type DbPool = sqlx::PgPool;
            pub(crate) type Conn = sqlx::PgConnection;
            pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Postgres>;
            pub(crate) const BACKEND: crate::store::Backend = crate::store::Backend::Postgres;
            $($item)*
        }
        pub(crate) mod sqlite {
            #![allow(unused_imports, dead_code)]
            use super::*;
            use crate::store::engine::sqlite as shared;
            pub(crate) type Db = sqlx::Sqlite;
            pub(crate) type DbPool = sqlx::SqlitePool;
            pub(crate) type Conn = sqlx::SqliteConnection;
            pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;
            pub(crate) const BACKEND: crate::store::Backend = crate::store::Backend::Sqlite;
            $($item)*
        }
    };
}
pub(crate) use per_engine;

/// Picks the SQL text for the engine: `dialect!(pg: "…", sqlite: "…")`.
macro_rules! dialect {
    (pg: $pg:expr, sqlite: $sqlite:expr $(,)?) => {
        match BACKEND {
            crate::store::Backend::Postgres => $pg,
            crate::store::Backend::Sqlite => $sqlite,
        }
    };
}
pub(crate) use dialect;

/// The columns of [`TenantRow`], as a literal for `concat!`.
macro_rules! tenant_columns {
    () => {
        "slug, display_name, owner_email, plan, plan_version, state, erp_version, licensed_seats, provisioning, url, \
         conditions, environments, trial_ends_at, created_at, updated_at, deleted_at, host, resumes_as"
    };
}
pub(crate) use tenant_columns;

/// The columns of [`PlanRow`].
macro_rules! plan_columns {
    () => {
        "version, spec, created_at, retired_at"
    };
}
pub(crate) use plan_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    slug: String,
    display_name: String,
    owner_email: String,
    plan: String,
    plan_version: i64,
    state: String,
    erp_version: String,
    licensed_seats: i64,
    provisioning: String,
    url: Option<String>,
    conditions: JsonDoc,
    environments: JsonDoc,
    trial_ends_at: Option<Ts>,
    created_at: Ts,
    updated_at: Ts,
    deleted_at: Option<Ts>,
    host: Option<String>,
    resumes_as: Option<String>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Self> {
        Ok(Tenant {
            state: row.state.parse().map_err(corrupt)?,
            licensed_seats: u32::try_from(row.licensed_seats)
                .map_err(|_| corrupt(format!("licensed seats {}", row.licensed_seats)))?,
            provisioning: provisioning_from_str(&row.provisioning)?,
            slug: row.slug,
            display_name: row.display_name,
            owner_email: row.owner_email,
            plan: row.plan,
            plan_version: row.plan_version,
            erp_version: row.erp_version,
            url: row.url,
            conditions: row.conditions.0,
            environments: row.environments.0,
            trial_ends_at: row.trial_ends_at.map(Into::into),
            created_at: row.created_at.into(),
            updated_at: row.updated_at.into(),
            deleted_at: row.deleted_at.map(Into::into),
            host: row.host,
            resumes_as: row.resumes_as.map(|state| state.parse()).transpose().map_err(corrupt)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PlanRow {
    version: i64,
    spec: JsonDoc,
    created_at: Ts,
    retired_at: Option<Ts>,
}

impl TryFrom<PlanRow> for Plan {
    type Error = StoreError;

    fn try_from(row: PlanRow) -> Result<Self> {
        let spec: PlanSpec = serde_json::from_value(row.spec.0).map_err(|e| corrupt(format!("plan spec: {e}")))?;
        Ok(Plan {
            version: row.version,
            spec,
            created_at: row.created_at.into(),
            retired_at: row.retired_at.map(Into::into),
        })
    }
}

pub(crate) fn provisioning_as_str(state: ProvisioningState) -> &'static str {
    state.as_str()
}

fn provisioning_from_str(text: &str) -> Result<ProvisioningState> {
    serde_json::from_value(json!(text)).map_err(|_| corrupt(format!("provisioning state {text:?}")).into())
}

pub(crate) fn op_as_str(op: ProvisionOp) -> &'static str {
    match op {
        ProvisionOp::Apply => "apply",
        ProvisionOp::Delete => "delete",
    }
}

pub(crate) fn op_from_str(text: &str) -> Result<ProvisionOp> {
    match text {
        "apply" => Ok(ProvisionOp::Apply),
        "delete" => Ok(ProvisionOp::Delete),
        other => Err(corrupt(format!("provisioning op {other:?}")).into()),
    }
}

pub(crate) fn count_u32(count: i64) -> Result<u32> {
    u32::try_from(count).map_err(|_| corrupt(format!("count {count}")).into())
}

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_unique_violation())
}

pub(crate) fn tenant_not_found(slug: &str) -> StoreError {
    StoreError::NotFound { what: format!("tenant {slug:?}") }
}

pub(crate) fn plan_not_found(name: &str) -> StoreError {
    StoreError::NotFound { what: format!("plan {name:?}") }
}

/// A `std::time::Duration` added to an instant; durations beyond chrono's range saturate at
/// a century, which is "never" for a lease or a retry.
pub(crate) fn after(now: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    const CENTURY: chrono::TimeDelta = chrono::TimeDelta::days(36_525);
    now + chrono::TimeDelta::from_std(duration).unwrap_or(CENTURY).min(CENTURY)
}

/// The full event document, as stored and as delivered.
pub(crate) fn event_payload(id: &str, kind: &str, at: DateTime<Utc>, data: serde_json::Value) -> serde_json::Value {
    json!({
        "id": id,
        "type": kind,
        "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": data,
    })
}

/// An error message kept for operators, bounded so a huge response body cannot bloat the table.
pub(crate) fn bounded_error(error: &str) -> String {
    const MAX_CHARS: usize = 2000;
    error.chars().take(MAX_CHARS).collect()
}

per_engine! {
    use sqlx::Row;

    /// Begins a transaction that writes. SQLite takes the write lock at once: a deferred
    /// transaction that reads first and then upgrades can fail with SQLITE_BUSY however long
    /// the busy timeout is.
    pub(crate) async fn begin_write(pool: &DbPool) -> sqlx::Result<Tx> {
        match BACKEND {
            crate::store::Backend::Postgres => pool.begin().await,
            crate::store::Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        }
    }

    /// The tenant, deleted ones included. `lock` holds its row until the transaction ends
    /// (PostgreSQL; a SQLite write transaction holds the whole database already).
    pub(crate) async fn tenant(conn: &mut Conn, slug: &str, lock: bool) -> Result<Option<Tenant>> {
        let sql = if lock {
            dialect!(
                pg: concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE slug = $1 FOR UPDATE"),
                sqlite: concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE slug = $1"),
            )
        } else {
            concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE slug = $1")
        };
        let row: Option<TenantRow> = sqlx::query_as(sql).bind(slug).fetch_optional(&mut *conn).await?;
        row.map(Tenant::try_from).transpose()
    }

    /// The live tenant that was given `host` by hand, if any.
    pub(crate) async fn host_holder(conn: &mut Conn, host: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT slug FROM tenants WHERE host = $1 AND deleted_at IS NULL")
            .bind(host)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row.map(|(slug,)| slug))
    }

    /// A tenant that is not deleted, locked for the rest of the transaction.
    pub(crate) async fn live_tenant_for_update(conn: &mut Conn, slug: &str) -> Result<Tenant> {
        match tenant(conn, slug, true).await? {
            Some(tenant) if tenant.deleted_at.is_none() => Ok(tenant),
            _ => Err(tenant_not_found(slug)),
        }
    }

    pub(crate) async fn newest_plan(conn: &mut Conn, name: &str) -> Result<Option<Plan>> {
        let row: Option<PlanRow> = sqlx::query_as(concat!(
            "SELECT ", plan_columns!(), " FROM plans WHERE name = $1 ORDER BY version DESC LIMIT 1"
        ))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(Plan::try_from).transpose()
    }

    pub(crate) async fn plan_version(conn: &mut Conn, name: &str, version: i64) -> Result<Plan> {
        let row: Option<PlanRow> =
            sqlx::query_as(concat!("SELECT ", plan_columns!(), " FROM plans WHERE name = $1 AND version = $2"))
                .bind(name)
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
        match row {
            Some(row) => Plan::try_from(row),
            None => Err(StoreError::NotFound { what: format!("plan {name:?} version {version}") }),
        }
    }

    pub(crate) async fn held_seats(conn: &mut Conn, slug: &str) -> Result<u32> {
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM seats WHERE tenant = $1 AND removed_at IS NULL")
            .bind(slug)
            .fetch_one(&mut *conn)
            .await?;
        count_u32(held)
    }

    /// Records an event and queues one delivery per live endpoint that subscribes to it, in the
    /// caller's transaction.
    pub(crate) async fn emit(conn: &mut Conn, kind: &str, data: serde_json::Value, at: DateTime<Utc>) -> Result<()> {
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query("INSERT INTO events (id, type, payload, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(kind)
            .bind(JsonDoc(event_payload(&id, kind, at, data)))
            .bind(Ts::from(at))
            .execute(&mut *conn)
            .await?;
        let endpoints = sqlx::query("SELECT id, events FROM webhook_endpoints WHERE deleted_at IS NULL")
            .fetch_all(&mut *conn)
            .await?;
        for endpoint in endpoints {
            let events: JsonDoc = endpoint.try_get("events")?;
            let subscribed = match events.0.as_array() {
                Some(types) => types.is_empty() || types.iter().any(|t| t.as_str() == Some(kind)),
                None => return Err(corrupt("webhook endpoint events are not a list").into()),
            };
            if subscribed {
                let endpoint_id: String = endpoint.try_get("id")?;
                sqlx::query(
                    "INSERT INTO deliveries (event_id, endpoint_id, attempts, next_attempt_at) VALUES ($1, $2, 0, $3)",
                )
                .bind(&id)
                .bind(endpoint_id)
                .bind(Ts::from(at))
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }

    /// Queues the desired Tenant object for the provisioning worker, in the caller's transaction.
    pub(crate) async fn enqueue_provision(
        conn: &mut Conn,
        slug: &str,
        op: ProvisionOp,
        object: serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO provision_outbox (tenant, op, object, created_at, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, $4, 0, $4)",
        )
        .bind(slug)
        .bind(op_as_str(op))
        .bind(JsonDoc(object))
        .bind(Ts::from(at))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
