//! Webhook endpoints and the delivery outbox.

use std::time::Duration;

use sqlx::Row;

use super::codec::{JsonDoc, Ts, corrupt, now};
use super::engine::{after, bounded_error, dialect, per_engine};
use super::{Delivery, Result, StoreError, WebhookEndpoint};

fn endpoint_not_found(id: &str) -> StoreError {
    StoreError::NotFound { what: format!("webhook {id:?}") }
}

fn delivery_not_found(id: i64) -> StoreError {
    StoreError::NotFound { what: format!("delivery {id}") }
}

fn event_list(events: JsonDoc) -> Result<Vec<String>> {
    serde_json::from_value(events.0).map_err(|e| corrupt(format!("webhook events: {e}")).into())
}

per_engine! {
    pub(crate) async fn create_webhook(
        pool: &DbPool,
        url: &str,
        events: &[String],
        sealed_secret: &[u8],
    ) -> Result<WebhookEndpoint> {
        let endpoint = WebhookEndpoint {
            id: uuid::Uuid::now_v7().to_string(),
            url: url.to_string(),
            events: events.to_vec(),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, events, sealed_secret, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&endpoint.id)
        .bind(url)
        .bind(JsonDoc(serde_json::json!(events)))
        .bind(sealed_secret)
        .bind(Ts::from(endpoint.created_at))
        .execute(pool)
        .await?;
        Ok(endpoint)
    }

    pub(crate) async fn webhooks(pool: &DbPool) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(
            "SELECT id, url, events, created_at FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY created_at, id",
        )
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WebhookEndpoint {
                    id: row.try_get("id")?,
                    url: row.try_get("url")?,
                    events: event_list(row.try_get("events")?)?,
                    created_at: row.try_get::<Ts, _>("created_at")?.into(),
                })
            })
            .collect()
    }

    /// Pending deliveries to it are never claimed again.
    pub(crate) async fn delete_webhook(pool: &DbPool, id: &str) -> Result<()> {
        let deleted = sqlx::query("UPDATE webhook_endpoints SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .bind(Ts::from(now()))
            .execute(pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(endpoint_not_found(id));
        }
        Ok(())
    }

    pub(crate) async fn claim_deliveries(pool: &DbPool, limit: u32, lease: Duration) -> Result<Vec<Delivery>> {
        let at = now();
        let mut tx = shared::begin_write(pool).await?;
        let rows = sqlx::query(dialect!(
            pg: "SELECT d.id, d.endpoint_id, w.url, w.sealed_secret, d.event_id, e.type, e.payload, d.attempts \
                 FROM deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id JOIN events e ON e.id = d.event_id \
                 WHERE d.delivered_at IS NULL AND d.dead_at IS NULL AND w.deleted_at IS NULL \
                 AND d.next_attempt_at <= $1 AND (d.locked_until IS NULL OR d.locked_until < $1) \
                 ORDER BY d.id LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
            sqlite: "SELECT d.id, d.endpoint_id, w.url, w.sealed_secret, d.event_id, e.type, e.payload, d.attempts \
                     FROM deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id JOIN events e ON e.id = d.event_id \
                     WHERE d.delivered_at IS NULL AND d.dead_at IS NULL AND w.deleted_at IS NULL \
                     AND d.next_attempt_at <= $1 AND (d.locked_until IS NULL OR d.locked_until < $1) \
                     ORDER BY d.id LIMIT $2",
        ))
        .bind(Ts::from(at))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let locked_until = Ts::from(after(at, lease));
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            sqlx::query("UPDATE deliveries SET locked_until = $2, attempts = attempts + 1 WHERE id = $1")
                .bind(id)
                .bind(locked_until)
                .execute(&mut *tx)
                .await?;
            let payload: JsonDoc = row.try_get("payload")?;
            let attempts: i32 = row.try_get("attempts")?;
            deliveries.push(Delivery {
                id,
                endpoint_id: row.try_get("endpoint_id")?,
                url: row.try_get("url")?,
                sealed_secret: row.try_get("sealed_secret")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("type")?,
                payload: payload.0,
                attempts: attempts + 1,
            });
        }
        tx.commit().await?;
        Ok(deliveries)
    }

    async fn settle(pool: &DbPool, id: i64, query: sqlx::query::Query<'static, Db, <Db as sqlx::Database>::Arguments>) -> Result<()> {
        if query.execute(pool).await?.rows_affected() > 0 {
            return Ok(());
        }
        let known: Option<i64> =
            sqlx::query_scalar("SELECT id FROM deliveries WHERE id = $1").bind(id).fetch_optional(pool).await?;
        // Settling twice (a worker retrying after a lost reply) changes nothing.
        known.map(|_| ()).ok_or_else(|| delivery_not_found(id))
    }

    pub(crate) async fn finish_delivery(pool: &DbPool, id: i64) -> Result<()> {
        let query = sqlx::query(
            "UPDATE deliveries SET delivered_at = $2, locked_until = NULL \
             WHERE id = $1 AND delivered_at IS NULL AND dead_at IS NULL",
        )
        .bind(id)
        .bind(Ts::from(now()));
        settle(pool, id, query).await
    }

    pub(crate) async fn retry_delivery(pool: &DbPool, id: i64, error: &str, delay: Option<Duration>) -> Result<()> {
        let at = now();
        let query = match delay {
            Some(delay) => sqlx::query(
                "UPDATE deliveries SET locked_until = NULL, next_attempt_at = $2, last_error = $3 \
                 WHERE id = $1 AND delivered_at IS NULL AND dead_at IS NULL",
            )
            .bind(id)
            .bind(Ts::from(after(at, delay)))
            .bind(bounded_error(error)),
            None => sqlx::query(
                "UPDATE deliveries SET locked_until = NULL, dead_at = $2, last_error = $3 \
                 WHERE id = $1 AND delivered_at IS NULL AND dead_at IS NULL",
            )
            .bind(id)
            .bind(Ts::from(at))
            .bind(bounded_error(error)),
        };
        settle(pool, id, query).await
    }

    /// Every event document, oldest first (ids are UUIDv7: time-ordered).
    pub(crate) async fn recorded_events(pool: &DbPool) -> Result<Vec<serde_json::Value>> {
        let payloads: Vec<JsonDoc> = sqlx::query_scalar("SELECT payload FROM events ORDER BY id").fetch_all(pool).await?;
        Ok(payloads.into_iter().map(|payload| payload.0).collect())
    }
}
