//! The provisioning outbox (desired Tenants waiting to be applied) and the status mirrored back
//! from the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;

use super::codec::{JsonDoc, Ts, now};
use super::engine::{after, bounded_error, dialect, op_from_str, per_engine, provisioning_as_str, tenant_not_found};
use super::{MirroredStatus, ProvisionJob, ProvisionOp, ProvisioningState, Result, StoreError, TENANT_READY, Tenant};

/// Claim transactions on PostgreSQL take this transaction-scoped advisory lock, so two
/// claimers never both decide a tenant has no job in flight and apply two of its versions at
/// once, in either order. Claims are short; rows are still taken `FOR UPDATE SKIP LOCKED` so a
/// claim never waits on a finishing worker.
const CLAIM_LOCK_KEY: i64 = 0x7465_6e61_6e74_7279; // "tenantry"

fn job_not_found(id: i64) -> StoreError {
    StoreError::NotFound { what: format!("provisioning job {id}") }
}

per_engine! {
    pub(crate) async fn claim_provision_jobs(pool: &DbPool, limit: u32, lease: Duration) -> Result<Vec<ProvisionJob>> {
        let at = now();
        let mut tx = shared::begin_write(pool).await?;
        if BACKEND == crate::store::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLAIM_LOCK_KEY).execute(&mut *tx).await?;
        }
        // Due jobs of tenants with no job in flight: one tenant's versions are applied in order.
        let candidates = sqlx::query(dialect!(
            pg: "SELECT id, tenant, op, object, attempts FROM provision_outbox o \
                 WHERE done_at IS NULL AND NOT superseded AND next_attempt_at <= $1 \
                 AND (locked_until IS NULL OR locked_until < $1) \
                 AND NOT EXISTS (SELECT 1 FROM provision_outbox f WHERE f.tenant = o.tenant AND f.id <> o.id \
                     AND f.done_at IS NULL AND NOT f.superseded AND f.locked_until >= $1) \
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            sqlite: "SELECT id, tenant, op, object, attempts FROM provision_outbox o \
                     WHERE done_at IS NULL AND NOT superseded AND next_attempt_at <= $1 \
                     AND (locked_until IS NULL OR locked_until < $1) \
                     AND NOT EXISTS (SELECT 1 FROM provision_outbox f WHERE f.tenant = o.tenant AND f.id <> o.id \
                         AND f.done_at IS NULL AND NOT f.superseded AND f.locked_until >= $1) \
                     ORDER BY id LIMIT $2",
        ))
        .bind(Ts::from(at))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;

        // Only a tenant's newest desired object matters; older pending ones are superseded.
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        for row in &candidates {
            let tenant: String = row.try_get("tenant")?;
            if newest.contains_key(&tenant) {
                continue;
            }
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT max(id) FROM provision_outbox WHERE tenant = $1 AND done_at IS NULL AND NOT superseded",
            )
            .bind(&tenant)
            .fetch_one(&mut *tx)
            .await?;
            let Some(id) = id else { continue };
            sqlx::query(
                "UPDATE provision_outbox SET superseded = TRUE, locked_until = NULL \
                 WHERE tenant = $1 AND id < $2 AND done_at IS NULL AND NOT superseded",
            )
            .bind(&tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            newest.insert(tenant, id);
        }

        let locked_until = Ts::from(after(at, lease));
        let mut jobs = Vec::new();
        for row in &candidates {
            let id: i64 = row.try_get("id")?;
            let tenant: String = row.try_get("tenant")?;
            if newest.get(&tenant) != Some(&id) {
                continue;
            }
            sqlx::query("UPDATE provision_outbox SET locked_until = $2, attempts = attempts + 1 WHERE id = $1")
                .bind(id)
                .bind(locked_until)
                .execute(&mut *tx)
                .await?;
            let op: String = row.try_get("op")?;
            let object: JsonDoc = row.try_get("object")?;
            let attempts: i32 = row.try_get("attempts")?;
            jobs.push(ProvisionJob { id, tenant, op: op_from_str(&op)?, object: object.0, attempts: attempts + 1 });
        }
        tx.commit().await?;
        Ok(jobs)
    }

    pub(crate) async fn finish_provision_job(pool: &DbPool, id: i64) -> Result<()> {
        let mut tx = shared::begin_write(pool).await?;
        let row = sqlx::query(
            "UPDATE provision_outbox SET done_at = $2, locked_until = NULL WHERE id = $1 AND done_at IS NULL \
             RETURNING tenant, op",
        )
        .bind(id)
        .bind(Ts::from(now()))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let known: Option<i64> = sqlx::query_scalar("SELECT id FROM provision_outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            // Finishing twice (a worker retrying after a lost reply) changes nothing.
            return known.map(|_| ()).ok_or_else(|| job_not_found(id));
        };
        let tenant: String = row.try_get("tenant")?;
        let op: String = row.try_get("op")?;
        let update = match op_from_str(&op)? {
            // The mirrored status is newer news than "applied": only a waiting tenant moves.
            ProvisionOp::Apply => sqlx::query("UPDATE tenants SET provisioning = $2 WHERE slug = $1 AND provisioning = $3")
                .bind(&tenant)
                .bind(provisioning_as_str(ProvisioningState::Applied))
                .bind(provisioning_as_str(ProvisioningState::Waiting)),
            ProvisionOp::Delete => sqlx::query("UPDATE tenants SET provisioning = $2 WHERE slug = $1")
                .bind(&tenant)
                .bind(provisioning_as_str(ProvisioningState::Deleted)),
        };
        update.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn retry_provision_job(pool: &DbPool, id: i64, error: &str, delay: Duration) -> Result<()> {
        let at = now();
        let updated = sqlx::query(
            "UPDATE provision_outbox SET locked_until = NULL, next_attempt_at = $2, last_error = $3 \
             WHERE id = $1 AND done_at IS NULL",
        )
        .bind(id)
        .bind(Ts::from(after(at, delay)))
        .bind(bounded_error(error))
        .execute(pool)
        .await?
        .rows_affected();
        if updated == 0 {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT id FROM provision_outbox WHERE id = $1").bind(id).fetch_optional(pool).await?;
            return known.map(|_| ()).ok_or_else(|| job_not_found(id));
        }
        Ok(())
    }

    pub(crate) async fn pending_provision_jobs(pool: &DbPool) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM provision_outbox WHERE done_at IS NULL AND NOT superseded")
            .fetch_one(pool)
            .await?)
    }

    pub(crate) async fn mirror_status(pool: &DbPool, slug: &str, status: &MirroredStatus) -> Result<bool> {
        let at = now();
        let mut tx = shared::begin_write(pool).await?;
        let before = shared::tenant(&mut tx, slug, true).await?.ok_or_else(|| tenant_not_found(slug))?;
        // A deleted tenant's record is final; the cluster's last words about it change nothing.
        if before.deleted_at.is_some() {
            return Ok(false);
        }
        let after = Tenant {
            provisioning: status.provisioning,
            url: status.url.clone(),
            conditions: status.conditions.clone(),
            environments: status.environments.clone(),
            ..before.clone()
        };
        if after == before {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE tenants SET provisioning = $2, url = $3, conditions = $4, environments = $5 WHERE slug = $1",
        )
            .bind(slug)
            .bind(provisioning_as_str(after.provisioning))
            .bind(after.url.as_deref())
            .bind(JsonDoc(after.conditions.clone()))
            .bind(JsonDoc(after.environments.clone()))
            .execute(&mut *tx)
            .await?;
        let became_ready =
            after.provisioning == ProvisioningState::Ready && before.provisioning != ProvisioningState::Ready;
        if became_ready {
            let data = serde_json::to_value(&after).expect("a tenant always serialises");
            shared::emit(&mut tx, TENANT_READY, data, at).await?;
        }
        tx.commit().await?;
        Ok(became_ready)
    }
}
