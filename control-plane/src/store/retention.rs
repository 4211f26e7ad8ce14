//! Pruning what only the past needs: finished provisioning jobs, settled webhook deliveries,
//! events no delivery waits for, and old signup idempotency keys. Tenants, seats and plan
//! history are never pruned: billing asks about the past.

use chrono::{DateTime, Utc};

use super::codec::Ts;
use super::engine::per_engine;
use super::{Pruned, Result};

per_engine! {
    pub(crate) async fn prune(pool: &DbPool, before: DateTime<Utc>) -> Result<Pruned> {
        let before = Ts::from(before);
        let mut tx = shared::begin_write(pool).await?;
        // Done, or replaced by a newer job for the same tenant before it ran.
        let outbox = sqlx::query(
            "DELETE FROM provision_outbox WHERE (done_at IS NOT NULL AND done_at < $1) \
             OR (superseded AND done_at IS NULL AND created_at < $1)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Delivered or given up on; pending ones stay whatever their age.
        let deliveries = sqlx::query("DELETE FROM deliveries WHERE delivered_at < $1 OR dead_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let events = sqlx::query(
            "DELETE FROM events WHERE created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE deliveries.event_id = events.id)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let signup_keys = sqlx::query("DELETE FROM signup_idempotency WHERE created_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Pruned { outbox, deliveries, events, signup_keys })
    }
}
