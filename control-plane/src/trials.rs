//! Trials end: a trialing tenant whose `trial_ends_at` has passed becomes `past_due` (its ERP
//! keeps running; the provider's billing decides whether to activate or suspend it). Every
//! replica may run this; the move happens under the tenant's row lock and only from `trialing`,
//! so it never undoes an activation made meanwhile.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::domain::subscription::SubscriptionState;
use crate::store::{Result, Store, StoreError, TenantChange, TenantFilter};

const PAGE: u32 = 200;

/// Moves every trial that ended by `now` to `past_due` (with a `subscription.changed` event);
/// returns how many moved.
pub async fn expire_due_trials(store: &Store, now: DateTime<Utc>) -> Result<u32> {
    let mut moved = 0;
    let mut after = None;
    loop {
        let filter = TenantFilter {
            state: Some(SubscriptionState::Trialing),
            after: after.clone(),
            limit: PAGE,
            ..Default::default()
        };
        let page = store.tenants(&filter).await?;
        for tenant in &page.items {
            if tenant.trial_ends_at.is_none_or(|ends| ends > now) {
                continue;
            }
            let change = TenantChange {
                state: Some(SubscriptionState::PastDue),
                only_if_state: Some(SubscriptionState::Trialing),
                ..TenantChange::default()
            };
            match store.change_tenant(&tenant.slug, &change).await {
                Ok(changed) if changed.state == SubscriptionState::PastDue => {
                    tracing::info!(tenant = %tenant.slug, "trial ended: past due");
                    moved += 1;
                }
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(moved),
        }
    }
}

/// Checks every `interval` until `shutdown`; `notify` is poked after trials moved (their events
/// wait for webhook delivery).
pub async fn run_trial_expiry(
    store: Store,
    interval: Duration,
    webhooks: crate::webhooks::Notifier,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match expire_due_trials(&store, Utc::now()).await {
            Ok(0) => {}
            Ok(_) => webhooks.notify_one(),
            Err(error) => tracing::warn!(%error, "checking for ended trials failed; trying again later"),
        }
    }
}
