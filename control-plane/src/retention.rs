//! Keeps the work tables small: every hour, what was settled longer ago than the configured
//! retention (`history_retention`, 30 days by default) is deleted — finished provisioning jobs,
//! settled webhook deliveries and their events (see [`Store::prune`]). Every replica runs it;
//! the deletes are idempotent, so two at once do no harm.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::watch;

use crate::store::Store;

/// How often old rows are looked for.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

pub async fn run_retention(store: Store, retention: Duration, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let Ok(retention) = TimeDelta::from_std(retention) else {
        tracing::warn!(?retention, "history retention too long to compute; nothing is pruned");
        return;
    };
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
        match store.prune(Utc::now() - retention).await {
            Ok(pruned) if pruned == Default::default() => {}
            Ok(pruned) => tracing::info!(
                outbox = pruned.outbox,
                deliveries = pruned.deliveries,
                events = pruned.events,
                signup_keys = pruned.signup_keys,
                "pruned settled history"
            ),
            Err(error) => tracing::warn!(%error, "pruning settled history failed; trying again later"),
        }
    }
}
