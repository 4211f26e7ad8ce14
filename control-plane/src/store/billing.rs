//! What billing systems read: every tenant's seats at an instant, and usage over a period.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::codec::Ts;
use super::engine::{count_u32, per_engine};
use super::seats::holding_from_row;
use super::{Page, Result, TenantSeatCount, TenantUsage, page_limit};
use crate::domain::seats::{Holding, usage};

per_engine! {
    pub(crate) async fn billing_seats(
        pool: &DbPool,
        at: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<TenantSeatCount>> {
        let limit = page_limit(limit);
        let rows = sqlx::query(
            "SELECT t.slug, (SELECT count(*) FROM seats s WHERE s.tenant = t.slug AND s.assigned_at <= $1 \
             AND (s.removed_at IS NULL OR s.removed_at > $1)) AS held \
             FROM tenants t WHERE t.created_at <= $1 AND (t.deleted_at IS NULL OR t.deleted_at > $1) \
             AND ($2 IS NULL OR t.slug > $2) ORDER BY t.slug LIMIT $3",
        )
        .bind(Ts::from(at))
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(|row| Ok(TenantSeatCount { tenant: row.try_get("slug")?, count: count_u32(row.try_get("held")?)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::cut(items, limit, |item| item.tenant.clone()))
    }

    pub(crate) async fn billing_usage(
        pool: &DbPool,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<TenantUsage>> {
        let limit = page_limit(limit);
        let (lo, hi) = (Ts::from(from.min(to)), Ts::from(from.max(to)));
        let mut conn = pool.acquire().await?;
        let slugs: Vec<String> = sqlx::query_scalar(
            "SELECT slug FROM tenants WHERE created_at < $2 AND (deleted_at IS NULL OR deleted_at > $1) \
             AND ($3 IS NULL OR slug > $3) ORDER BY slug LIMIT $4",
        )
        .bind(lo)
        .bind(hi)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let page = Page::cut(slugs, limit, Clone::clone);
        let (Some(first), Some(last)) = (page.items.first(), page.items.last()) else {
            return Ok(Page { items: Vec::new(), next: None });
        };
        // The page is a contiguous slug range: one query for its ledger, grouped here.
        let mut holdings: BTreeMap<&str, Vec<Holding>> = page.items.iter().map(|s| (s.as_str(), Vec::new())).collect();
        let rows = sqlx::query(
            "SELECT tenant, assigned_at, removed_at FROM seats WHERE tenant >= $1 AND tenant <= $2 \
             AND assigned_at <= $4 AND (removed_at IS NULL OR removed_at > $3)",
        )
        .bind(first)
        .bind(last)
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            let tenant: String = row.try_get("tenant")?;
            if let Some(list) = holdings.get_mut(tenant.as_str()) {
                list.push(holding_from_row(row)?);
            }
        }
        let items = holdings
            .into_iter()
            .map(|(tenant, list)| TenantUsage { tenant: tenant.to_string(), usage: usage(&list, from, to) })
            .collect();
        Ok(Page { items, next: page.next })
    }
}
