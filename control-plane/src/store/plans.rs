//! Plans and their versions.

use super::codec::{JsonDoc, Ts, now};
use super::engine::{PlanRow, is_unique_violation, per_engine, plan_columns, plan_not_found};
use super::{Plan, Result, StoreError};
use crate::domain::plan::PlanSpec;

fn spec_json(spec: &PlanSpec) -> JsonDoc {
    JsonDoc(serde_json::to_value(spec).expect("a plan spec always serialises"))
}

fn plan_exists(name: &str) -> StoreError {
    StoreError::Conflict(format!("plan {name:?} exists"))
}

per_engine! {
    async fn insert(conn: &mut Conn, spec: &PlanSpec, version: i64, retired_at: Option<Ts>) -> Result<Plan> {
        let at = now();
        sqlx::query(
            "INSERT INTO plans (name, version, spec, max_seats, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&spec.name)
        .bind(version)
        .bind(spec_json(spec))
        .bind(i64::from(spec.max_seats))
        .bind(Ts::from(at))
        .bind(retired_at)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("plan {:?} version {version} was written concurrently", spec.name))
            } else {
                e.into()
            }
        })?;
        Ok(Plan { version, spec: spec.clone(), created_at: at, retired_at: retired_at.map(Into::into) })
    }

    pub(crate) async fn create_plan(pool: &DbPool, spec: &PlanSpec) -> Result<Plan> {
        let mut tx = shared::begin_write(pool).await?;
        if shared::newest_plan(&mut tx, &spec.name).await?.is_some() {
            return Err(plan_exists(&spec.name));
        }
        let plan = insert(&mut tx, spec, 1, None).await.map_err(|e| match e {
            StoreError::Conflict(_) => plan_exists(&spec.name),
            other => other,
        })?;
        tx.commit().await?;
        Ok(plan)
    }

    /// `(plan, written)`. A revised retired plan stays retired: revising never reopens a plan.
    pub(crate) async fn revise_plan(pool: &DbPool, spec: &PlanSpec) -> Result<(Plan, bool)> {
        let mut tx = shared::begin_write(pool).await?;
        let current = shared::newest_plan(&mut tx, &spec.name).await?.ok_or_else(|| plan_not_found(&spec.name))?;
        if current.spec == *spec {
            return Ok((current, false));
        }
        let retired_at = current.retired_at.map(Ts::from);
        let plan = insert(&mut tx, spec, current.version + 1, retired_at).await?;
        tx.commit().await?;
        Ok((plan, true))
    }

    pub(crate) async fn import_plan(pool: &DbPool, spec: &PlanSpec) -> Result<(Plan, bool)> {
        match create_plan(pool, spec).await {
            Ok(plan) => Ok((plan, true)),
            Err(StoreError::Conflict(_)) => revise_plan(pool, spec).await,
            Err(other) => Err(other),
        }
    }

    pub(crate) async fn plan(pool: &DbPool, name: &str) -> Result<Plan> {
        let mut conn = pool.acquire().await?;
        shared::newest_plan(&mut conn, name).await?.ok_or_else(|| plan_not_found(name))
    }

    pub(crate) async fn plan_version(pool: &DbPool, name: &str, version: i64) -> Result<Plan> {
        let mut conn = pool.acquire().await?;
        shared::plan_version(&mut conn, name, version).await
    }

    pub(crate) async fn plans(pool: &DbPool) -> Result<Vec<Plan>> {
        let rows: Vec<PlanRow> = sqlx::query_as(concat!(
            "SELECT ", plan_columns!(), " FROM plans p ",
            "WHERE version = (SELECT max(version) FROM plans q WHERE q.name = p.name) ORDER BY name"
        ))
        .fetch_all(pool)
        .await?;
        rows.into_iter().map(Plan::try_from).collect()
    }

    pub(crate) async fn retire_plan(pool: &DbPool, name: &str) -> Result<Plan> {
        let mut tx = shared::begin_write(pool).await?;
        let mut plan = shared::newest_plan(&mut tx, name).await?.ok_or_else(|| plan_not_found(name))?;
        if plan.retired_at.is_some() {
            return Ok(plan);
        }
        let at = now();
        sqlx::query("UPDATE plans SET retired_at = $1 WHERE name = $2 AND version = $3")
            .bind(Ts::from(at))
            .bind(name)
            .bind(plan.version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        plan.retired_at = Some(at);
        Ok(plan)
    }
}
