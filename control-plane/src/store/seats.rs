//! The seat ledger: assignments and removals, current counts and usage over time.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row;

use super::codec::Ts;
use super::engine::{count_u32, dialect, per_engine, tenant_not_found};
use super::{Result, SEATS_CHANGED, Seat, SeatAdded, SeatCount, StoreError};
use crate::domain::seats::{Holding, Usage, natural_order, usage};

fn seat_from_row<R: Row>(row: &R) -> Result<Seat>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Ts: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Seat {
        email: row.try_get("email")?,
        assigned_at: row.try_get::<Ts, _>("assigned_at")?.into(),
        removed_at: row.try_get::<Option<Ts>, _>("removed_at")?.map(Into::into),
    })
}

pub(crate) fn holding_from_row<R: Row>(row: &R) -> Result<Holding>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Ts: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Holding {
        assigned_at: row.try_get::<Ts, _>("assigned_at")?.into(),
        removed_at: row.try_get::<Option<Ts>, _>("removed_at")?.map(Into::into),
    })
}

/// What seats are compared by: the address without case (`Ada@Acme.example` is
/// `ada@acme.example`), as people and mail systems treat it.
pub(crate) fn email_key(email: &str) -> String {
    email.to_lowercase()
}

fn seats_changed(slug: &str, email: &str, change: &str, count: u32) -> serde_json::Value {
    json!({"tenant": slug, "email": email, "change": change, "count": count})
}

per_engine! {
    /// The tenant's licensed seats and its plan's maximum, with its row locked: seat changes of
    /// one tenant run one at a time, so a count read here stays true until the commit.
    async fn lock_for_seats(conn: &mut Conn, slug: &str) -> Result<(u32, u32)> {
        let limits: Option<(i64, i64)> = sqlx::query_as(dialect!(
            pg: "SELECT t.licensed_seats, p.max_seats FROM tenants t \
                 JOIN plans p ON p.name = t.plan AND p.version = t.plan_version \
                 WHERE t.slug = $1 AND t.deleted_at IS NULL FOR UPDATE OF t",
            sqlite: "SELECT t.licensed_seats, p.max_seats FROM tenants t \
                     JOIN plans p ON p.name = t.plan AND p.version = t.plan_version \
                     WHERE t.slug = $1 AND t.deleted_at IS NULL",
        ))
        .bind(slug)
        .fetch_optional(&mut *conn)
        .await?;
        let (licensed, plan_max) = limits.ok_or_else(|| tenant_not_found(slug))?;
        Ok((count_u32(licensed)?, count_u32(plan_max)?))
    }

    async fn held_seat(conn: &mut Conn, slug: &str, email: &str) -> Result<Option<Seat>> {
        let row = sqlx::query(
            "SELECT email, assigned_at, removed_at FROM seats WHERE tenant = $1 AND email_key = $2 AND removed_at IS NULL",
        )
        .bind(slug)
        .bind(email_key(email))
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(seat_from_row).transpose()
    }

    async fn bump_seat_version(conn: &mut Conn, slug: &str) -> Result<()> {
        sqlx::query("UPDATE tenants SET seat_version = seat_version + 1 WHERE slug = $1")
            .bind(slug)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn add_seat(pool: &DbPool, slug: &str, email: &str, at: DateTime<Utc>) -> Result<SeatAdded> {
        let at = Ts::from(at);
        let mut tx = shared::begin_write(pool).await?;
        let (licensed, plan_max) = lock_for_seats(&mut tx, slug).await?;
        if let Some(seat) = held_seat(&mut tx, slug, email).await? {
            return Ok(SeatAdded::AlreadyHeld(seat));
        }
        let held = shared::held_seats(&mut tx, slug).await?;
        if held >= licensed {
            return Err(StoreError::SeatLimit { licensed, held, plan_max });
        }
        sqlx::query("INSERT INTO seats (tenant, email, email_key, assigned_at) VALUES ($1, $2, $3, $4)")
            .bind(slug)
            .bind(email)
            .bind(email_key(email))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        bump_seat_version(&mut tx, slug).await?;
        shared::emit(&mut tx, SEATS_CHANGED, seats_changed(slug, email, "added", held + 1), at.0).await?;
        tx.commit().await?;
        Ok(SeatAdded::Added(Seat { email: email.to_string(), assigned_at: at.0, removed_at: None }))
    }

    pub(crate) async fn remove_seat(pool: &DbPool, slug: &str, email: &str, at: DateTime<Utc>) -> Result<Seat> {
        let at = Ts::from(at);
        let mut tx = shared::begin_write(pool).await?;
        lock_for_seats(&mut tx, slug).await?;
        let Some(seat) = held_seat(&mut tx, slug, email).await? else {
            return Err(StoreError::NotFound { what: format!("seat of {email:?} in tenant {slug:?}") });
        };
        if at.0 < seat.assigned_at {
            return Err(StoreError::Conflict(format!("the seat of {email:?} was assigned after {}", at.0)));
        }
        sqlx::query("UPDATE seats SET removed_at = $3 WHERE tenant = $1 AND email_key = $2 AND removed_at IS NULL")
            .bind(slug)
            .bind(email_key(email))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        bump_seat_version(&mut tx, slug).await?;
        let held = shared::held_seats(&mut tx, slug).await?;
        shared::emit(&mut tx, SEATS_CHANGED, seats_changed(slug, email, "removed", held), at.0).await?;
        tx.commit().await?;
        Ok(Seat { removed_at: Some(at.0), ..seat })
    }

    async fn live_tenant(conn: &mut Conn, slug: &str) -> Result<()> {
        match shared::tenant(conn, slug, false).await? {
            Some(tenant) if tenant.deleted_at.is_none() => Ok(()),
            _ => Err(tenant_not_found(slug)),
        }
    }

    pub(crate) async fn seats(pool: &DbPool, slug: &str) -> Result<Vec<Seat>> {
        let mut conn = pool.acquire().await?;
        live_tenant(&mut conn, slug).await?;
        let rows = sqlx::query(
            "SELECT email, assigned_at, removed_at FROM seats WHERE tenant = $1 AND removed_at IS NULL",
        )
        .bind(slug)
        .fetch_all(&mut *conn)
        .await?;
        let mut seats = rows.iter().map(seat_from_row).collect::<Result<Vec<_>>>()?;
        seats.sort_by(|a, b| natural_order(&a.email, &b.email));
        Ok(seats)
    }

    pub(crate) async fn seat_count(pool: &DbPool, slug: &str) -> Result<SeatCount> {
        // One statement, so the count, the maximum and the version come from one snapshot.
        let row = sqlx::query(
            "SELECT t.seat_version, t.licensed_seats, \
             (SELECT count(*) FROM seats s WHERE s.tenant = t.slug AND s.removed_at IS NULL) AS held \
             FROM tenants t WHERE t.slug = $1 AND t.deleted_at IS NULL",
        )
        .bind(slug)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| tenant_not_found(slug))?;
        Ok(SeatCount {
            count: count_u32(row.try_get("held")?)?,
            max_seats: count_u32(row.try_get("licensed_seats")?)?,
            version: row.try_get("seat_version")?,
        })
    }

    /// Any tenant, deleted ones included: billing asks about the past.
    async fn known_tenant(conn: &mut Conn, slug: &str) -> Result<()> {
        shared::tenant(conn, slug, false).await?.map(|_| ()).ok_or_else(|| tenant_not_found(slug))
    }

    pub(crate) async fn seat_count_at(pool: &DbPool, slug: &str, at: DateTime<Utc>) -> Result<u32> {
        let mut conn = pool.acquire().await?;
        known_tenant(&mut conn, slug).await?;
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM seats WHERE tenant = $1 AND assigned_at <= $2 AND (removed_at IS NULL OR removed_at > $2)",
        )
        .bind(slug)
        .bind(Ts::from(at))
        .fetch_one(&mut *conn)
        .await?;
        count_u32(held)
    }

    pub(crate) async fn seat_usage(pool: &DbPool, slug: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Usage> {
        let holdings = seat_holdings(pool, slug, from, to).await?;
        Ok(usage(&holdings, from, to))
    }

    /// Every holding that touches `[from, to]` (or the instant `from` when the period is empty).
    pub(crate) async fn seat_holdings(
        pool: &DbPool,
        slug: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Holding>> {
        let mut conn = pool.acquire().await?;
        known_tenant(&mut conn, slug).await?;
        // Every holding that touches [min, max]: the period, or the instant `from` when empty.
        let rows = sqlx::query(
            "SELECT assigned_at, removed_at FROM seats \
             WHERE tenant = $1 AND assigned_at <= $3 AND (removed_at IS NULL OR removed_at > $2)",
        )
        .bind(slug)
        .bind(Ts::from(from.min(to)))
        .bind(Ts::from(from.max(to)))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(holding_from_row).collect()
    }
}
