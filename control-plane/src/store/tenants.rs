//! Tenants: creation, changes of plan, state and details, deletion, and plan history.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::codec::{JsonDoc, Ts, now};
use super::engine::{
    TenantRow, is_unique_violation, per_engine, plan_not_found, provisioning_as_str, tenant_columns, tenant_not_found,
};
use super::{
    NewTenant, Page, Plan, PlanChange, ProvisionOp, ProvisioningState, Result, SEATS_CHANGED, SUBSCRIPTION_CHANGED,
    SignupKey, StoreError, TENANT_CREATED, TENANT_SUSPENDED, Tenant, TenantChange, TenantFilter, page_limit,
};
use crate::domain::subscription::SubscriptionState;
use crate::provision::desired::tenant_json;
use tenantry_contract::version::ErpVersion;

fn slug_taken(slug: &str) -> StoreError {
    StoreError::Conflict(format!("slug {slug:?} is taken"))
}

/// The production version a tenant has: the newer of what it was last given and what its
/// production environment reports running (they differ while a change is rolling out).
fn production_version(tenant: &Tenant) -> Option<ErpVersion> {
    let given = tenant.erp_version.parse::<ErpVersion>().ok();
    let running = tenant
        .environments
        .as_array()
        .into_iter()
        .flatten()
        .find(|env| env["name"] == "production")
        .and_then(|env| env["version"].as_str()?.parse::<ErpVersion>().ok());
    given.max(running)
}

fn check_no_downgrade(tenant: &Tenant, wanted: &str) -> Result<()> {
    match (production_version(tenant), wanted.parse::<ErpVersion>()) {
        (Some(current), Ok(wanted)) if wanted < current => {
            Err(StoreError::VersionDowngrade { current: current.to_string(), wanted: wanted.to_string() })
        }
        _ => Ok(()),
    }
}

fn tenant_data(tenant: &Tenant) -> serde_json::Value {
    serde_json::to_value(tenant).expect("a tenant always serialises")
}

/// The tenant, with what its subscription was and is now.
fn subscription_changed(before: &Tenant, after: &Tenant) -> serde_json::Value {
    let mut data = tenant_data(after);
    let side = |t: &Tenant| json!({"plan": t.plan, "plan_version": t.plan_version, "state": t.state});
    data["from"] = side(before);
    data["to"] = side(after);
    data
}

/// A plan that takes new tenants: the newest version, not retired.
fn open_plan(plan: Option<Plan>, name: &str) -> Result<Plan> {
    let plan = plan.ok_or_else(|| plan_not_found(name))?;
    if plan.retired_at.is_some() {
        return Err(StoreError::Conflict(format!("plan {name:?} is retired and takes no new tenants")));
    }
    Ok(plan)
}

fn check_licensed_seats(licensed: u32, plan: &Plan) -> Result<()> {
    if licensed == 0 || licensed > plan.spec.max_seats {
        return Err(StoreError::LicenceAbovePlan { asked: licensed, plan_max: plan.spec.max_seats });
    }
    Ok(())
}

fn initial_state(plan: &Plan, at: DateTime<Utc>) -> (SubscriptionState, Option<DateTime<Utc>>) {
    match plan.spec.trial_days {
        0 => (SubscriptionState::Active, None),
        days => (SubscriptionState::Trialing, Some(at + TimeDelta::days(i64::from(days)))),
    }
}

per_engine! {
    pub(crate) async fn create_tenant(pool: &DbPool, new: &NewTenant, key: Option<&SignupKey>) -> Result<Tenant> {
        let at = now();
        let slug = new.slug.as_str();
        let mut tx = shared::begin_write(pool).await?;
        if let Some(key) = key {
            // First, so that a concurrent signup with the same key waits here for this one's
            // outcome (PostgreSQL holds the key's index entry) instead of racing it.
            sqlx::query(
                "INSERT INTO signup_idempotency (idempotency_key, fingerprint, tenant, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&key.key)
            .bind(&key.fingerprint)
            .bind(slug)
            .bind(Ts::from(at))
            .execute(&mut *tx)
            .await
            .map_err(|e| if is_unique_violation(&e) { StoreError::IdempotencyKeyUsed } else { e.into() })?;
        }
        let plan = open_plan(shared::newest_plan(&mut tx, &new.plan).await?, &new.plan)?;
        check_licensed_seats(new.licensed_seats, &plan)?;
        if shared::tenant(&mut tx, slug, false).await?.is_some() {
            return Err(slug_taken(slug));
        }
        if let Some(generated) = &new.generated_host
            && shared::host_holder(&mut tx, generated).await?.is_some()
        {
            // The slug's own address was given to another tenant by hand.
            return Err(slug_taken(slug));
        }
        if let Some(host) = &new.host
            && shared::host_holder(&mut tx, host).await?.is_some()
        {
            return Err(StoreError::HostTaken(host.clone()));
        }
        let (state, trial_ends_at) = initial_state(&plan, at);
        let tenant = Tenant {
            slug: slug.to_string(),
            display_name: new.display_name.clone(),
            owner_email: new.owner_email.clone(),
            plan: plan.spec.name.clone(),
            plan_version: plan.version,
            state,
            erp_version: new.erp_version.clone(),
            licensed_seats: new.licensed_seats,
            provisioning: ProvisioningState::Waiting,
            url: None,
            conditions: json!([]),
            environments: json!([]),
            trial_ends_at,
            created_at: at,
            updated_at: at,
            deleted_at: None,
            host: new.host.clone(),
            resumes_as: None,
        };
        sqlx::query(
            "INSERT INTO tenants (slug, display_name, owner_email, plan, plan_version, state, erp_version, \
             licensed_seats, provisioning, url, conditions, trial_ends_at, created_at, updated_at, seat_version, \
             host) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12, $12, $13, $14)",
        )
        .bind(slug)
        .bind(&tenant.display_name)
        .bind(&tenant.owner_email)
        .bind(&tenant.plan)
        .bind(tenant.plan_version)
        .bind(tenant.state.as_str())
        .bind(&tenant.erp_version)
        .bind(i64::from(tenant.licensed_seats))
        .bind(provisioning_as_str(tenant.provisioning))
        .bind(JsonDoc(tenant.conditions.clone()))
        .bind(trial_ends_at.map(Ts::from))
        .bind(Ts::from(at))
        .bind(i64::from(new.first_seat.is_some()))
        .bind(new.host.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(|e| match &new.host {
            // Two tenants given one host at once: the unique index refuses the second.
            Some(host) if is_unique_violation(&e) && e.to_string().contains("host") => {
                StoreError::HostTaken(host.clone())
            }
            _ if is_unique_violation(&e) => slug_taken(slug),
            _ => e.into(),
        })?;
        if let Some(email) = &new.first_seat {
            sqlx::query("INSERT INTO seats (tenant, email, email_key, assigned_at) VALUES ($1, $2, $3, $4)")
                .bind(slug)
                .bind(email)
                .bind(crate::store::seats::email_key(email))
                .bind(Ts::from(at))
                .execute(&mut *tx)
                .await?;
        }
        shared::enqueue_provision(&mut tx, slug, ProvisionOp::Apply, tenant_json(&tenant, &plan), at).await?;
        shared::emit(&mut tx, TENANT_CREATED, tenant_data(&tenant), at).await?;
        if let Some(email) = &new.first_seat {
            let data = json!({"tenant": slug, "email": email, "change": "added", "count": 1});
            shared::emit(&mut tx, SEATS_CHANGED, data, at).await?;
        }
        tx.commit().await?;
        Ok(tenant)
    }

    /// The fingerprint and tenant of the signup committed under `key`, if any.
    pub(crate) async fn signup_by_key(pool: &DbPool, key: &str) -> Result<Option<(String, Tenant)>> {
        let mut conn = pool.acquire().await?;
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT fingerprint, tenant FROM signup_idempotency WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
        let Some((fingerprint, slug)) = row else { return Ok(None) };
        let tenant = shared::tenant(&mut conn, &slug, false).await?.ok_or_else(|| tenant_not_found(&slug))?;
        Ok(Some((fingerprint, tenant)))
    }

    pub(crate) async fn tenant(pool: &DbPool, slug: &str) -> Result<Tenant> {
        let mut conn = pool.acquire().await?;
        shared::tenant(&mut conn, slug, false).await?.ok_or_else(|| tenant_not_found(slug))
    }

    pub(crate) async fn tenants(pool: &DbPool, filter: &TenantFilter) -> Result<Page<Tenant>> {
        let limit = page_limit(filter.limit);
        let rows: Vec<TenantRow> = sqlx::query_as(concat!(
            "SELECT ", tenant_columns!(), " FROM tenants WHERE deleted_at IS NULL ",
            "AND ($1 IS NULL OR plan = $1) AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR slug > $3) ",
            "ORDER BY slug LIMIT $4"
        ))
        .bind(filter.plan.as_deref())
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.after.as_deref())
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows.into_iter().map(Tenant::try_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::cut(items, limit, |t| t.slug.clone()))
    }

    pub(crate) async fn change_tenant(pool: &DbPool, slug: &str, change: &TenantChange) -> Result<Tenant> {
        let at = now();
        let mut tx = shared::begin_write(pool).await?;
        let before = shared::live_tenant_for_update(&mut tx, slug).await?;
        if change.only_if_state.is_some_and(|expected| expected != before.state) {
            return Ok(before);
        }
        let old_plan = shared::plan_version(&mut tx, &before.plan, before.plan_version).await?;
        let mut after = before.clone();
        let mut plan = old_plan.clone();

        if let Some(name) = &change.plan {
            let newest = shared::newest_plan(&mut tx, name).await?;
            let target = newest.ok_or_else(|| plan_not_found(name))?;
            if (target.spec.name.as_str(), target.version) != (before.plan.as_str(), before.plan_version) {
                let target = open_plan(Some(target), name)?;
                let held = shared::held_seats(&mut tx, slug).await?;
                let licensed = change.licensed_seats.unwrap_or(before.licensed_seats);
                let max = target.spec.max_seats;
                if held > max {
                    return Err(StoreError::PlanTooSmall { max, held });
                }
                if licensed > max {
                    return Err(StoreError::PlanBelowLicence { max, licensed });
                }
                after.plan = target.spec.name.clone();
                after.plan_version = target.version;
                plan = target;
            }
        }
        if let Some(licensed) = change.licensed_seats
            && licensed != before.licensed_seats
        {
            check_licensed_seats(licensed, &plan)?;
            // The licence bounds the seats held: it cannot be lowered below them.
            let held = shared::held_seats(&mut tx, slug).await?;
            if licensed < held {
                return Err(StoreError::LicenceBelowHeld { asked: licensed, held });
            }
            after.licensed_seats = licensed;
        }
        if change.resume {
            if before.state != SubscriptionState::Suspended {
                return Err(StoreError::NotSuspended { state: before.state });
            }
            after.state = SubscriptionState::on_resume(before.resumes_as, before.trial_ends_at, at);
        } else if let Some(to) = change.state {
            after.state = before.state.transition(to)?;
        }
        // A suspension remembers the state it interrupted; any move out of it forgets it.
        after.resumes_as = match after.state {
            SubscriptionState::Suspended if before.state == SubscriptionState::Suspended => before.resumes_as,
            SubscriptionState::Suspended => Some(before.state),
            _ => None,
        };
        if let Some(name) = &change.display_name {
            after.display_name = name.clone();
        }
        if let Some(email) = &change.owner_email {
            after.owner_email = email.clone();
        }
        if let Some(version) = &change.erp_version {
            check_no_downgrade(&before, version)?;
            after.erp_version = version.clone();
        }
        if let Some(host) = &change.host {
            if let Some(host) = host
                && before.host.as_ref() != Some(host)
                && shared::host_holder(&mut tx, host).await?.is_some_and(|holder| holder != slug)
            {
                return Err(StoreError::HostTaken(host.clone()));
            }
            after.host = host.clone();
        }
        if after == before {
            return Ok(before);
        }
        after.updated_at = at;
        sqlx::query(
            "UPDATE tenants SET display_name = $2, owner_email = $3, plan = $4, plan_version = $5, state = $6, \
             erp_version = $7, licensed_seats = $8, updated_at = $9, host = $10, resumes_as = $11 WHERE slug = $1",
        )
        .bind(slug)
        .bind(&after.display_name)
        .bind(&after.owner_email)
        .bind(&after.plan)
        .bind(after.plan_version)
        .bind(after.state.as_str())
        .bind(&after.erp_version)
        .bind(i64::from(after.licensed_seats))
        .bind(Ts::from(at))
        .bind(after.host.as_deref())
        .bind(after.resumes_as.map(|state| state.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &after.host {
            Some(host) if is_unique_violation(&e) => StoreError::HostTaken(host.clone()),
            _ => e.into(),
        })?;

        let plan_changed = (after.plan.as_str(), after.plan_version) != (before.plan.as_str(), before.plan_version);
        if plan_changed || after.licensed_seats != before.licensed_seats {
            // The seat count carries the licensed seats: a newer version makes caches take it.
            sqlx::query("UPDATE tenants SET seat_version = seat_version + 1 WHERE slug = $1")
                .bind(slug)
                .execute(&mut *tx)
                .await?;
        }
        if plan_changed {
            sqlx::query(
                "INSERT INTO plan_changes (tenant, from_plan, from_version, to_plan, to_version, changed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(slug)
            .bind(&before.plan)
            .bind(before.plan_version)
            .bind(&after.plan)
            .bind(after.plan_version)
            .bind(Ts::from(at))
            .execute(&mut *tx)
            .await?;
        }
        let desired = tenant_json(&after, &plan);
        if desired != tenant_json(&before, &old_plan) {
            shared::enqueue_provision(&mut tx, slug, ProvisionOp::Apply, desired, at).await?;
        }
        if plan_changed || after.state != before.state {
            shared::emit(&mut tx, SUBSCRIPTION_CHANGED, subscription_changed(&before, &after), at).await?;
        }
        if after.state == SubscriptionState::Suspended && before.state != SubscriptionState::Suspended {
            shared::emit(&mut tx, TENANT_SUSPENDED, tenant_data(&after), at).await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    pub(crate) async fn delete_tenant(pool: &DbPool, slug: &str) -> Result<Tenant> {
        let at = now();
        let mut tx = shared::begin_write(pool).await?;
        let before = shared::tenant(&mut tx, slug, true).await?.ok_or_else(|| tenant_not_found(slug))?;
        if before.deleted_at.is_some() {
            return Ok(before);
        }
        let plan = shared::plan_version(&mut tx, &before.plan, before.plan_version).await?;
        let released = sqlx::query("UPDATE seats SET removed_at = $2 WHERE tenant = $1 AND removed_at IS NULL")
            .bind(slug)
            .bind(Ts::from(at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE tenants SET state = $2, deleted_at = $3, updated_at = $3, seat_version = seat_version + $4 \
             WHERE slug = $1",
        )
        .bind(slug)
        .bind(SubscriptionState::Canceled.as_str())
        .bind(Ts::from(at))
        .bind(i64::from(released > 0))
        .execute(&mut *tx)
        .await?;
        let after = Tenant { state: SubscriptionState::Canceled, deleted_at: Some(at), updated_at: at, ..before.clone() };
        shared::enqueue_provision(&mut tx, slug, ProvisionOp::Delete, tenant_json(&after, &plan), at).await?;
        shared::emit(&mut tx, SUBSCRIPTION_CHANGED, subscription_changed(&before, &after), at).await?;
        tx.commit().await?;
        Ok(after)
    }

    pub(crate) async fn plan_history(pool: &DbPool, slug: &str) -> Result<Vec<PlanChange>> {
        let mut conn = pool.acquire().await?;
        if shared::tenant(&mut conn, slug, false).await?.is_none() {
            return Err(tenant_not_found(slug));
        }
        let rows = sqlx::query(
            "SELECT from_plan, from_version, to_plan, to_version, changed_at FROM plan_changes \
             WHERE tenant = $1 ORDER BY id",
        )
        .bind(slug)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                Ok(PlanChange {
                    from_plan: row.try_get("from_plan")?,
                    from_version: row.try_get("from_version")?,
                    to_plan: row.try_get("to_plan")?,
                    to_version: row.try_get("to_version")?,
                    changed_at: row.try_get::<Ts, _>("changed_at")?.into(),
                })
            })
            .collect()
    }

    /// Claims the one showing of the master password: `true` for the first caller only.
    pub(crate) async fn claim_password_reveal(pool: &DbPool, slug: &str) -> Result<bool> {
        let mut conn = pool.acquire().await?;
        let claimed = sqlx::query(
            "UPDATE tenants SET password_revealed_at = $2 \
             WHERE slug = $1 AND deleted_at IS NULL AND password_revealed_at IS NULL",
        )
        .bind(slug)
        .bind(Ts::from(now()))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if claimed == 0 && shared::tenant(&mut conn, slug, false).await?.is_none_or(|t| t.deleted_at.is_some()) {
            return Err(tenant_not_found(slug));
        }
        Ok(claimed == 1)
    }

    /// Gives the claim back when the password could not be shown after all.
    pub(crate) async fn release_password_reveal(pool: &DbPool, slug: &str) -> Result<()> {
        sqlx::query("UPDATE tenants SET password_revealed_at = NULL WHERE slug = $1")
            .bind(slug)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Whether the master password was shown already.
    pub(crate) async fn password_revealed(pool: &DbPool, slug: &str) -> Result<bool> {
        let row: Option<(Option<Ts>,)> =
            sqlx::query_as("SELECT password_revealed_at FROM tenants WHERE slug = $1 AND deleted_at IS NULL")
                .bind(slug)
                .fetch_optional(pool)
                .await?;
        match row {
            Some((revealed,)) => Ok(revealed.is_some()),
            None => Err(tenant_not_found(slug)),
        }
    }
}
