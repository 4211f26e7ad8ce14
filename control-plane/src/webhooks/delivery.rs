//! The delivery worker: claims due deliveries, POSTs them signed, and records the outcome.

use std::error::Error as _;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use tokio::sync::{Notify, watch};

use super::destination::{DestinationResolver, refusal_in};
use super::signature::{EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign};
use crate::secrets::Sealer;
use crate::store::{Delivery, Store};

/// Stored errors are for an operator's eye; a receiver's long error must not bloat the table.
const MAX_ERROR_LEN: usize = 500;

/// Wakes the worker early after a commit that wrote events. Cheap to clone; a poke while the
/// worker is busy is remembered, so none is lost.
#[derive(Debug, Clone, Default)]
pub struct Notifier(Arc<Notify>);

impl Notifier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn notify_one(&self) {
        self.0.notify_one();
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Deliveries claimed at once.
    pub batch_size: u32,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How long claimed deliveries are this worker's; stretched if needed to cover a whole
    /// batch of timeouts, so another replica never sends the same delivery concurrently.
    pub lease: Duration,
    /// Claims again this often when idle: retries come due and other replicas write events.
    pub poll_interval: Duration,
    /// Per attempt, connection included.
    pub timeout: Duration,
    /// Attempts before a delivery is marked dead.
    pub max_attempts: u32,
    /// Wait after the first failure; doubles per attempt up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub notifier: Notifier,
    /// Resolves receivers' names and refuses internal addresses the policy does not allow.
    pub destinations: DestinationResolver,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            batch_size: 32,
            concurrency: 8,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            max_attempts: 12,
            min_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(6 * 60 * 60),
            notifier: Notifier::new(),
            destinations: DestinationResolver::default(),
        }
    }
}

impl WorkerSettings {
    fn effective_lease(&self) -> Duration {
        let rounds = self.batch_size.max(1).div_ceil(u32::try_from(self.concurrency.max(1)).unwrap_or(u32::MAX));
        self.lease.max(self.timeout * rounds + Duration::from_secs(5))
    }

    /// `None` once `attempts` (made so far, this one included) reaches `max_attempts`.
    fn backoff(&self, attempts: i32) -> Option<Duration> {
        let attempts = u32::try_from(attempts).unwrap_or(0).max(1);
        if attempts >= self.max_attempts {
            return None;
        }
        let doubled = self.min_backoff.saturating_mul(1u32 << (attempts - 1).min(30));
        let ceiling = doubled.min(self.max_backoff);
        // Half fixed, half random: failures of many endpoints at once do not retry in lockstep.
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0..=u64::try_from(half.as_millis()).unwrap_or(u64::MAX));
        Some(half + Duration::from_millis(jitter))
    }
}

/// Runs until `shutdown` turns true (or its sender is dropped). Finishes the batch in hand
/// before stopping; anything claimed and not recorded is retried after its lease.
pub async fn run_delivery_worker(
    store: Store,
    sealer: Sealer,
    settings: WorkerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match http_client(&settings) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "webhook delivery disabled: no HTTP client");
            return;
        }
    };
    let worker = Worker { store, sealer, client, settings };
    let lease = worker.settings.effective_lease();
    tracing::info!("webhook delivery worker started");
    while !*shutdown.borrow() {
        let claimed = match worker.store.claim_deliveries(worker.settings.batch_size, lease).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "claiming webhook deliveries failed");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                () = worker.settings.notifier.0.notified() => {}
                () = tokio::time::sleep(worker.settings.poll_interval) => {}
                changed = shutdown.changed() => if changed.is_err() { break },
            }
            continue;
        }
        futures::stream::iter(claimed)
            .for_each_concurrent(worker.settings.concurrency.max(1), |delivery| worker.deliver(delivery))
            .await;
    }
    tracing::info!("webhook delivery worker stopped");
}

struct Worker {
    store: Store,
    sealer: Sealer,
    client: reqwest::Client,
    settings: WorkerSettings,
}

impl Worker {
    async fn deliver(&self, delivery: Delivery) {
        let recorded = match self.attempt(&delivery).await {
            Ok(()) => {
                tracing::debug!(delivery = delivery.id, event = %delivery.event_id, "webhook delivered");
                self.store.finish_delivery(delivery.id).await
            }
            Err(Failure::Refused(reason)) => {
                // Not retried: the destination stays refused until the policy changes.
                tracing::warn!(
                    delivery = delivery.id,
                    endpoint = %delivery.endpoint_id,
                    event = %delivery.event_id,
                    %reason,
                    "webhook destination refused; not delivered"
                );
                self.store.retry_delivery(delivery.id, &format!("refused: {reason}"), None).await
            }
            Err(Failure::Failed(failure)) => {
                let retry = self.settings.backoff(delivery.attempts);
                match retry {
                    Some(after) => tracing::info!(
                        delivery = delivery.id,
                        endpoint = %delivery.endpoint_id,
                        event = %delivery.event_id,
                        attempts = delivery.attempts,
                        retry_in = ?after,
                        error = %failure,
                        "webhook delivery failed; will retry"
                    ),
                    None => tracing::warn!(
                        delivery = delivery.id,
                        endpoint = %delivery.endpoint_id,
                        event = %delivery.event_id,
                        attempts = delivery.attempts,
                        error = %failure,
                        "webhook delivery failed; giving up"
                    ),
                }
                self.store.retry_delivery(delivery.id, &failure, retry).await
            }
        };
        if let Err(error) = recorded {
            tracing::warn!(delivery = delivery.id, %error, "recording a webhook outcome failed; retried after the lease");
        }
    }

    /// One POST; `Err` carries a description for the delivery's `last_error`, which never
    /// contains the secret, the signature or the receiver's response body.
    async fn attempt(&self, delivery: &Delivery) -> Result<(), Failure> {
        let url = reqwest::Url::parse(&delivery.url).map_err(|error| Failure::Failed(format!("bad URL: {error}")))?;
        // A literal address is connected to without resolving: checked here. Names are checked
        // on what they resolve to, by the client's resolver.
        self.settings
            .destinations
            .policy()
            .check_literal(&url)
            .map_err(|refused| Failure::Refused(refused.to_string()))?;
        let secret = self
            .sealer
            .unseal(&delivery.sealed_secret)
            .map_err(|error| Failure::Failed(format!("endpoint secret unusable: {error}")))?;
        let body = serde_json::to_vec(&delivery.payload)
            .map_err(|error| Failure::Failed(format!("payload not serialisable: {error}")))?;
        let mut signature = HeaderValue::try_from(sign(&secret, Utc::now().timestamp(), &body))
            .map_err(|_| Failure::Failed("signature is not a valid header".to_owned()))?;
        signature.set_sensitive(true);
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, &delivery.event_id)
            .header(EVENT_TYPE_HEADER, &delivery.event_type)
            .body(body)
            .send()
            .await
            .map_err(|error| match refusal_in(&error) {
                Some(refused) => Failure::Refused(refused.to_string()),
                None => Failure::Failed(truncate(error_chain(&error.without_url()))),
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(Failure::Failed(format!("endpoint answered HTTP {status}; redirects are not followed")))
        } else {
            Err(Failure::Failed(format!("endpoint answered HTTP {status}")))
        }
    }
}

/// Why an attempt did not deliver.
enum Failure {
    /// The destination is internal and not allowed: recorded, never retried.
    Refused(String),
    /// Retried with backoff.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(reason) => write!(f, "refused: {reason}"),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

fn http_client(settings: &WorkerSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        // A redirect is a failure to fix at registration, not something to follow blindly with
        // a signed body (nor a way around the destination check).
        .redirect(reqwest::redirect::Policy::none())
        // Every connection goes where the resolver checked, never through a proxy from the
        // environment (which would be connected to instead of the receiver).
        .no_proxy()
        .dns_resolver(Arc::new(settings.destinations.clone()))
        .user_agent(concat!("Tenantry-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The error with its causes ("error sending request: connection refused"), which reqwest's
/// `Display` alone hides.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_then_gives_up() {
        let settings = WorkerSettings::default();
        for (attempts, full) in [(1, 10), (2, 20), (3, 40), (4, 80), (11, 10 * 1024)] {
            let full = Duration::from_secs(full);
            for _ in 0..20 {
                let wait = settings.backoff(attempts).expect("still retrying");
                assert!(
                    wait >= full / 2 && wait <= full,
                    "attempt {attempts}: {wait:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        assert_eq!(settings.backoff(12), None);
        assert_eq!(settings.backoff(13), None);
        let patient = WorkerSettings { max_attempts: u32::MAX, ..WorkerSettings::default() };
        // 10 s doubled 12 times is past the 6 h cap (11 times, 20,480 s, is not yet).
        for attempts in [13, 40, i32::MAX] {
            let wait = patient.backoff(attempts).expect("still retrying");
            assert!(wait >= patient.max_backoff / 2 && wait <= patient.max_backoff, "capped: {wait:?}");
        }
    }

    #[test]
    fn the_lease_covers_a_batch_of_timeouts() {
        let settings = WorkerSettings { batch_size: 32, concurrency: 4, ..WorkerSettings::default() };
        assert_eq!(settings.effective_lease(), Duration::from_secs(85));
        assert_eq!(WorkerSettings::default().effective_lease(), Duration::from_secs(60));
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let cut = truncate("é".repeat(400));
        assert!(cut.len() <= MAX_ERROR_LEN + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }
}
