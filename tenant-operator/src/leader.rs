//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas only
//! one reconciles at a time.
//!
//! The protocol is the one client-go's `leaderelection` package speaks on a Lease, so tools that
//! read Leases (`kubectl get lease`) show the truth:
//!
//! - A candidate reads the Lease and decides with [`decide`]: free (no holder) or expired → take
//!   it over; held by itself → renew; held by another identity → wait and try again after the
//!   retry period.
//! - Expiry is judged as client-go judges it: not from the holder's `renewTime`, which the
//!   holder's clock wrote, but from when *this* candidate last saw the Lease's record change (a
//!   renewal, a new holder), by its own monotonic clock ([`Observer`]). A holder is alive as
//!   long as its record keeps changing; it has expired when this candidate has seen no change
//!   for `leaseDurationSeconds`. Clocks of the replicas may disagree by any amount: a holder
//!   whose clock is an hour behind keeps its Lease as long as it renews, and one whose clock is
//!   an hour ahead loses it a lease duration after it stops. The price: a candidate that has just
//!   started waits a whole lease duration before taking over a Lease left behind, since it has
//!   not seen when the Lease last changed.
//! - Every write is optimistic: a create, or a replace carrying the `resourceVersion` that was
//!   read. Of two candidates writing the same version the apiserver accepts one and answers the
//!   other `409 Conflict`, so two candidates can never both believe they won.
//! - The leader renews every renew interval. It stops its work when it has not renewed for the
//!   *renew deadline* (lease duration minus retry period), i.e. before any other candidate may
//!   consider the Lease expired, or at once when it finds the Lease held by someone else.
//! - On graceful shutdown the leader [releases](LeaderElection::release) the Lease (no holder,
//!   duration 1 s), so a waiting candidate takes over at its next retry instead of after the
//!   lease duration.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Field manager of the Lease writes.
const FIELD_MANAGER: &str = "tenant-operator";
/// Waits between attempts are stretched by up to this fraction, so candidates spread out.
const JITTER: f64 = 0.2;

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid leader election configuration: {0}")]
    Config(String),
    /// Leadership ended: the work has been stopped; the process should exit and start over as a
    /// candidate.
    #[error("lost the leader lease {lease}: {reason}")]
    LostLease { lease: String, reason: String },
    #[error("leader election: Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Timing of the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// How long a Lease stays valid after its last renewal (`leaseDurationSeconds`); whole seconds.
    pub lease_duration: Duration,
    /// How often the leader renews; well under the lease duration.
    pub renew_interval: Duration,
    /// How often a candidate tries to acquire, and the leader retries a failed renewal.
    pub retry_period: Duration,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderConfig {
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: String| Err(Error::Config(message));
        let Self { lease_duration, renew_interval, retry_period } = *self;
        if lease_duration.subsec_nanos() != 0 || lease_duration < Duration::from_secs(2) {
            return invalid(format!("the lease duration must be whole seconds, at least 2 s (is {lease_duration:?})"));
        }
        if lease_duration.as_secs() > i32::MAX as u64 {
            return invalid(format!("the lease duration {lease_duration:?} is too long"));
        }
        if renew_interval.is_zero() || retry_period.is_zero() {
            return invalid("the renew interval and the retry period must be positive".into());
        }
        if renew_interval > lease_duration / 2 {
            return invalid(format!(
                "the renew interval ({renew_interval:?}) must be at most half the lease duration ({lease_duration:?})"
            ));
        }
        if renew_interval + retry_period * 2 > lease_duration {
            return invalid(format!(
                "the renew interval ({renew_interval:?}) plus twice the retry period ({retry_period:?}) must not \
                 exceed the lease duration ({lease_duration:?})"
            ));
        }
        Ok(())
    }

    /// How long a leader keeps working without a successful renewal, counted from the start of the
    /// last successful one: one retry period short of the lease duration, so the work stops before
    /// another candidate may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration.saturating_sub(self.retry_period)
    }

    /// The longest a waiting candidate takes (API latency aside) to take over a Lease whose holder
    /// died right after renewing: up to one jittered retry period until it reads (observes) the
    /// last renewal, the lease duration from then, and up to one more retry period until its next
    /// attempt.
    pub fn max_takeover_delay(&self) -> Duration {
        self.lease_duration + self.retry_period.mul_f64(1.0 + JITTER) * 2
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// What a candidate does about a Lease as it finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The Lease names this candidate: renew it.
    Renew,
    /// Nobody holds the Lease, or its holder let it expire: take it over.
    TakeOver,
    /// Another identity holds the Lease for at least `remaining` more, unless it renews.
    HeldByOther { holder: String, remaining: Duration },
}

/// Decides at `now` (this candidate's monotonic clock) on the Lease `spec`, whose record this
/// candidate has seen unchanged since `observed` (see [`Observer`]): another holder's Lease
/// expires `leaseDurationSeconds` after `observed`. The Lease's times (`renewTime`,
/// `acquireTime`), written by other clocks, are not compared with ours. A held Lease without a
/// positive duration counts as expired.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, observed: Instant, now: Instant) -> Decision {
    let holder = spec.and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty());
    match holder {
        None => Decision::TakeOver,
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) => {
            let duration = spec.and_then(|s| s.lease_duration_seconds).and_then(|s| u64::try_from(s).ok());
            let expires = observed + Duration::from_secs(duration.unwrap_or(0));
            if now < expires {
                Decision::HeldByOther { holder: holder.to_string(), remaining: expires - now }
            } else {
                Decision::TakeOver
            }
        }
    }
}

/// When this candidate first saw the Lease's current record, by its own clock: client-go's
/// `observedTime`. The record is the Lease's spec (holder, times, duration, transitions): a
/// holder's renewal changes it, whatever its clock says, while edits of the Lease's metadata
/// do not count as signs of life.
#[derive(Debug, Default, Clone)]
pub struct Observer {
    last: Option<(Option<LeaseSpec>, Instant)>,
}

impl Observer {
    /// Notes that `spec` was read at `now`; returns since when it has been seen unchanged.
    pub fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) -> Instant {
        match &self.last {
            Some((seen, since)) if seen.as_ref() == spec => *since,
            _ => {
                self.last = Some((spec.cloned(), now));
                now
            }
        }
    }
}

/// The spec this candidate writes after deciding `decision` (`Renew` or `TakeOver`) on `current`
/// (`None`: the Lease does not exist yet). Fields it does not own are kept.
pub fn next_spec(
    current: Option<&LeaseSpec>,
    decision: &Decision,
    identity: &str,
    duration_seconds: i32,
    now: Timestamp,
) -> LeaseSpec {
    let mut spec = current.cloned().unwrap_or_default();
    let now = MicroTime(now);
    match (current, decision) {
        (None, _) => {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(0);
        }
        (Some(current), Decision::TakeOver) => {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(current.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        (Some(_), _) => {
            spec.acquire_time.get_or_insert_with(|| now.clone());
        }
    }
    spec.holder_identity = Some(identity.to_string());
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(now);
    spec
}

/// This process's identity: the pod name (`POD_NAME`, from the downward API) when set, else the
/// hostname with a random suffix.
pub fn default_identity() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().or_else(|| std::env::var("HOSTNAME").ok());
    identity_from(std::env::var("POD_NAME").ok(), hostname, rand::rng().random())
}

fn identity_from(pod_name: Option<String>, hostname: Option<String>, suffix: u32) -> String {
    let usable = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(pod) = usable(pod_name) {
        return pod;
    }
    let host = usable(hostname).unwrap_or_else(|| "tenant-operator".to_string());
    format!("{host}-{suffix:08x}")
}

/// One round's result.
enum Outcome {
    /// This candidate holds the Lease, renewed as of the round's start.
    Leading,
    /// Someone else holds it, or (when renewing) this candidate no longer does.
    NotLeading { holder: Option<String>, reason: String },
    /// Another writer changed the Lease between our read and our write: they won this round.
    Conflict,
}

/// A candidate for leadership on one Lease. Cheap to clone; clones share the leader flag.
#[derive(Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    lease_name: String,
    lease_ref: String,
    identity: String,
    config: LeaderConfig,
    leader: watch::Sender<bool>,
    observer: Arc<Mutex<Observer>>,
}

impl std::fmt::Debug for LeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElection")
            .field("lease", &self.lease_ref)
            .field("identity", &self.identity)
            .field("config", &self.config)
            .field("leader", &*self.leader.borrow())
            .finish()
    }
}

impl LeaderElection {
    /// A candidate `identity` (see [`default_identity`]) for the Lease `namespace/lease_name`, with
    /// the default [`LeaderConfig`].
    pub fn new(client: Client, namespace: &str, lease_name: &str, identity: impl Into<String>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_string(),
            lease_ref: format!("{namespace}/{lease_name}"),
            identity: identity.into(),
            config: LeaderConfig::default(),
            leader: watch::Sender::new(false),
            observer: Arc::default(),
        }
    }

    /// Replaces the timing; fails when it is inconsistent (see [`LeaderConfig::validate`]).
    pub fn with_config(mut self, config: LeaderConfig) -> Result<Self, Error> {
        config.validate()?;
        self.config = config;
        Ok(self)
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// Whether this candidate currently leads (holds the Lease and keeps renewing it), as a
    /// watch: `*rx.borrow()` now, `rx.changed()` / `rx.wait_for(..)` for changes.
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Waits until this candidate holds the Lease, then runs `work()` while renewing the Lease in
    /// the background, and returns what the work returns.
    ///
    /// When leadership is lost (no renewal within [`LeaderConfig::renew_deadline`], or the Lease
    /// found held by another identity or deleted) the work future is dropped and
    /// [`Error::LostLease`] returned; the process should then exit and restart as a candidate.
    /// Dropping the work must stop it: tasks it spawned should be owned by it (e.g. a `JoinSet`).
    ///
    /// Dropping the returned future stops both the wait and the work but leaves the Lease to
    /// expire; call [`release`](Self::release) afterwards (or use [`run_until`](Self::run_until))
    /// to hand it over at once. API errors while waiting are logged and retried. Run one `run` at a
    /// time per identity.
    pub async fn run<F, Fut>(&self, work: F) -> Result<Fut::Output, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future,
    {
        let _flag = LeaderFlag(&self.leader);
        let renewed = self.acquire().await;
        self.leader.send_replace(true);
        info!(lease = %self.lease_ref, identity = %self.identity, "leader election: became leader");
        let mut renewer = AbortOnDrop(tokio::spawn(self.clone().keep_renewing(renewed)));
        let result = tokio::select! {
            biased;
            lost = &mut renewer.0 => Err(lost.unwrap_or_else(|e| self.lost(format!("the renewal task failed: {e}")))),
            output = work() => Ok(output),
        };
        match &result {
            Ok(_) => info!(lease = %self.lease_ref, "leader election: the work ended; no longer renewing"),
            Err(e) => warn!(lease = %self.lease_ref, error = %e, "leader election: stopped the work"),
        }
        result
    }

    /// [`run`](Self::run) until `shutdown` completes; then the wait or the work is dropped first and
    /// the Lease released, so the next leader never overlaps with this one. Returns `Ok(None)` on
    /// shutdown. The Lease is also released when the work ends by itself.
    pub async fn run_until<F, Fut, S>(&self, work: F, shutdown: S) -> Result<Option<Fut::Output>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future,
        S: Future<Output = ()>,
    {
        let result = tokio::select! {
            result = self.run(work) => result.map(Some),
            () = shutdown => Ok(None),
        };
        if result.is_ok()
            && let Err(e) = self.release().await
        {
            warn!(lease = %self.lease_ref, error = %e, "leader election: could not release the lease; it will expire");
        }
        result
    }

    /// Hands the Lease over if this candidate holds it: clears `holderIdentity` and sets a 1 s
    /// duration, so any waiting candidate takes over at its next retry. Call it only after the
    /// work has stopped (the future returned by [`run`](Self::run) dropped). Returns whether the
    /// Lease was held and released.
    pub async fn release(&self) -> Result<bool, Error> {
        self.leader.send_replace(false);
        let params = post_params();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else { return Ok(false) };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            match self.api.replace(&self.lease_name, &params, &lease).await {
                Ok(_) => {
                    info!(lease = %self.lease_ref, identity = %self.identity, "leader election: released the lease");
                    return Ok(true);
                }
                Err(kube::Error::Api(status)) if status.code == 409 && attempts < 3 => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Tries every retry period until this candidate holds the Lease; returns when the successful
    /// round started (the renew deadline counts from there).
    async fn acquire(&self) -> Instant {
        let mut last_holder = None;
        loop {
            let started = Instant::now();
            match tokio::time::timeout(self.config.renew_deadline(), self.round(false)).await {
                Ok(Ok(Outcome::Leading)) => return started,
                Ok(Ok(Outcome::NotLeading { holder, reason })) => {
                    if holder != last_holder {
                        info!(lease = %self.lease_ref, identity = %self.identity, %reason, "leader election: waiting");
                        last_holder = holder;
                    }
                }
                Ok(Ok(Outcome::Conflict)) => {
                    debug!(lease = %self.lease_ref, "leader election: another candidate won this round");
                }
                Ok(Err(e)) => warn!(lease = %self.lease_ref, error = %e, "leader election: acquiring failed; retrying"),
                Err(_) => warn!(lease = %self.lease_ref, "leader election: acquiring timed out; retrying"),
            }
            tokio::time::sleep(jittered(self.config.retry_period)).await;
        }
    }

    /// Renews every renew interval (retrying failures every retry period) and returns why
    /// leadership ended; it never returns while leadership lasts.
    async fn keep_renewing(self, mut renewed: Instant) -> Error {
        let mut next = renewed + self.config.renew_interval;
        loop {
            tokio::time::sleep_until(next).await;
            let deadline = renewed + self.config.renew_deadline();
            let started = Instant::now();
            if started >= deadline {
                return self.lost(format!("not renewed for {:?}", self.config.renew_deadline()));
            }
            let retry = (started + self.config.retry_period).min(deadline);
            match tokio::time::timeout(deadline - started, self.round(true)).await {
                Ok(Ok(Outcome::Leading)) => {
                    debug!(lease = %self.lease_ref, "leader election: renewed");
                    renewed = started;
                    next = started + self.config.renew_interval;
                }
                Ok(Ok(Outcome::NotLeading { reason, .. })) => return self.lost(reason),
                Ok(Ok(Outcome::Conflict)) => {
                    warn!(lease = %self.lease_ref, "leader election: the lease changed while renewing; retrying");
                    next = retry;
                }
                Ok(Err(e)) => {
                    warn!(lease = %self.lease_ref, error = %e, "leader election: renewing failed; retrying");
                    next = retry;
                }
                Err(_) => return self.lost(format!("not renewed for {:?}", self.config.renew_deadline())),
            }
        }
    }

    /// Reads the Lease, decides, and writes it optimistically. When `renewing`, only a Lease that
    /// still names this candidate is written.
    async fn round(&self, renewing: bool) -> Result<Outcome, kube::Error> {
        let current = self.api.get_opt(&self.lease_name).await?;
        let observed_now = Instant::now();
        let observed = self.observe(current.as_ref().and_then(|l| l.spec.as_ref()), observed_now);
        let now = Timestamp::now();
        let duration = self.config.lease_duration_seconds();
        let params = post_params();
        let Some(mut lease) = current else {
            if renewing {
                return Ok(Outcome::NotLeading { holder: None, reason: "the lease was deleted".into() });
            }
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.lease_name.clone()), ..ObjectMeta::default() },
                spec: Some(next_spec(None, &Decision::TakeOver, &self.identity, duration, now)),
            };
            return match self.api.create(&params, &lease).await {
                Ok(created) => {
                    self.observe(created.spec.as_ref(), observed_now);
                    info!(lease = %self.lease_ref, identity = %self.identity, "leader election: created the lease");
                    Ok(Outcome::Leading)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Outcome::Conflict),
                Err(e) => Err(e),
            };
        };
        if lease.metadata.resource_version.is_none() {
            // A replace without a version would be unconditional.
            return Ok(Outcome::Conflict);
        }
        let decision = decide(lease.spec.as_ref(), &self.identity, observed, observed_now);
        let previous = lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
        match &decision {
            Decision::HeldByOther { holder, remaining } => {
                let reason = format!("held by {holder}, for at least {}s more", remaining.as_secs());
                return Ok(Outcome::NotLeading { holder: Some(holder.clone()), reason });
            }
            Decision::TakeOver if renewing => {
                let reason = match &previous {
                    Some(holder) => format!("the lease expired and names {holder}"),
                    None => "the lease was released".to_string(),
                };
                return Ok(Outcome::NotLeading { holder: previous, reason });
            }
            Decision::TakeOver | Decision::Renew => {}
        }
        lease.spec = Some(next_spec(lease.spec.as_ref(), &decision, &self.identity, duration, now));
        match self.api.replace(&self.lease_name, &params, &lease).await {
            Ok(written) => {
                self.observe(written.spec.as_ref(), observed_now);
                if decision == Decision::TakeOver {
                    let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
                    let previous = previous.as_deref().unwrap_or("nobody");
                    info!(lease = %self.lease_ref, identity = %self.identity, %previous, transitions,
                        "leader election: took over the lease");
                }
                Ok(Outcome::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Outcome::Conflict),
            Err(e) => Err(e),
        }
    }

    /// See [`Observer::observe`].
    fn observe(&self, spec: Option<&LeaseSpec>, now: Instant) -> Instant {
        self.observer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).observe(spec, now)
    }

    fn lost(&self, reason: String) -> Error {
        Error::LostLease { lease: self.lease_ref.clone(), reason }
    }
}

fn post_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PostParams::default() }
}

fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + rand::rng().random_range(0.0..JITTER))
}

/// Lowers the leader flag when `run` ends, however it ends.
struct LeaderFlag<'a>(&'a watch::Sender<bool>);

impl Drop for LeaderFlag<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// Aborts the task when dropped (a dropped `JoinHandle` would detach it).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "operator-a";
    const OTHER: &str = "operator-b";

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn held(holder: Option<&str>, renewed: Option<i64>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: renewed.map(|s| MicroTime(at(s))),
            acquire_time: Some(MicroTime(at(0))),
            lease_duration_seconds: duration,
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    /// A moment of this candidate's monotonic clock, `second`s after the start of a test.
    fn local(start: Instant, second: u64) -> Instant {
        start + Duration::from_secs(second)
    }

    #[test]
    fn a_missing_or_free_lease_is_taken_over() {
        let t = Instant::now();
        let (seen, now) = (local(t, 99), local(t, 100));
        assert_eq!(decide(None, ME, seen, now), Decision::TakeOver);
        assert_eq!(decide(Some(&LeaseSpec::default()), ME, seen, now), Decision::TakeOver);
        assert_eq!(decide(Some(&held(None, Some(99), Some(15))), ME, seen, now), Decision::TakeOver);
        assert_eq!(decide(Some(&held(Some(""), Some(99), Some(15))), ME, seen, now), Decision::TakeOver);
    }

    #[test]
    fn my_lease_is_renewed_even_when_late() {
        let t = Instant::now();
        assert_eq!(decide(Some(&held(Some(ME), Some(95), Some(15))), ME, local(t, 0), local(t, 100)), Decision::Renew);
    }

    #[test]
    fn another_holder_is_respected_for_its_duration_after_we_saw_it_change() {
        let t = Instant::now();
        let lease = held(Some(OTHER), Some(90), Some(15));
        let seen = local(t, 90);
        let waiting =
            |remaining| Decision::HeldByOther { holder: OTHER.into(), remaining: Duration::from_secs(remaining) };
        assert_eq!(decide(Some(&lease), ME, seen, local(t, 90)), waiting(15));
        assert_eq!(decide(Some(&lease), ME, seen, local(t, 104)), waiting(1));
        assert_eq!(decide(Some(&lease), ME, seen, local(t, 105)), Decision::TakeOver);
        assert_eq!(decide(Some(&lease), ME, seen, local(t, 500)), Decision::TakeOver);
        // The Lease's own duration counts, not ours.
        let long = held(Some(OTHER), Some(90), Some(60));
        assert!(matches!(decide(Some(&long), ME, seen, local(t, 140)), Decision::HeldByOther { .. }));
        assert_eq!(decide(Some(&long), ME, seen, local(t, 150)), Decision::TakeOver);
        // Without a positive duration nothing proves the holder alive.
        assert_eq!(decide(Some(&held(Some(OTHER), Some(90), None)), ME, seen, local(t, 90)), Decision::TakeOver);
        assert_eq!(decide(Some(&held(Some(OTHER), Some(90), Some(-5))), ME, seen, local(t, 90)), Decision::TakeOver);
    }

    #[test]
    fn expiry_counts_from_when_the_record_last_changed_whatever_its_times_say() {
        let t = Instant::now();
        let mut observer = Observer::default();
        // The holder's clock is a day behind ours: its renewTime is long past by our wall clock.
        let day = 86_400;
        let renewed_at = |second: i64| held(Some(OTHER), Some(second - day), Some(15));
        assert_eq!(observer.observe(Some(&renewed_at(0)), local(t, 0)), local(t, 0));
        // Read again unchanged: still seen since the first read.
        assert_eq!(observer.observe(Some(&renewed_at(0)), local(t, 10)), local(t, 0));
        // It renews: a new record, seen from now on; it keeps the Lease as long as it does.
        for second in [5, 10, 15, 20] {
            let seen = observer.observe(Some(&renewed_at(second)), local(t, second as u64 + 1));
            assert!(matches!(
                decide(Some(&renewed_at(second)), ME, seen, local(t, second as u64 + 2)),
                Decision::HeldByOther { .. }
            ));
        }
        // It stops renewing: taken over a lease duration after its last change was seen.
        let seen = observer.observe(Some(&renewed_at(20)), local(t, 30));
        assert_eq!(seen, local(t, 21));
        assert!(matches!(decide(Some(&renewed_at(20)), ME, seen, local(t, 35)), Decision::HeldByOther { .. }));
        assert_eq!(decide(Some(&renewed_at(20)), ME, seen, local(t, 36)), Decision::TakeOver);
        // A holder whose clock is a day ahead: its renewTime is far in our future, and yet it
        // expires a lease duration after we last saw it change.
        let ahead = held(Some(OTHER), Some(2 * day), Some(15));
        let seen = observer.observe(Some(&ahead), local(t, 40));
        assert_eq!(decide(Some(&ahead), ME, seen, local(t, 55)), Decision::TakeOver);
    }

    #[test]
    fn creating_starts_at_zero_transitions() {
        let spec = next_spec(None, &Decision::TakeOver, ME, 15, at(100));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
    }

    #[test]
    fn taking_over_counts_a_transition_and_resets_acquire_time() {
        let current = held(Some(OTHER), Some(50), Some(15));
        let spec = next_spec(Some(&current), &Decision::TakeOver, ME, 15, at(100));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
        // A released lease (no holder) counts as a transition too.
        let released = held(None, Some(90), Some(1));
        assert_eq!(next_spec(Some(&released), &Decision::TakeOver, ME, 15, at(100)).lease_transitions, Some(4));
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions() {
        let current = LeaseSpec { preferred_holder: Some(OTHER.into()), ..held(Some(ME), Some(90), Some(10)) };
        let spec = next_spec(Some(&current), &Decision::Renew, ME, 15, at(100));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.preferred_holder.as_deref(), Some(OTHER), "fields we do not own are kept");
    }

    #[test]
    fn the_default_config_is_valid_and_fails_over_within_30_seconds() {
        let config = LeaderConfig::default();
        config.validate().unwrap();
        assert_eq!(config.renew_deadline(), Duration::from_secs(13));
        assert!(config.renew_deadline() < config.lease_duration);
        assert!(config.max_takeover_delay() < Duration::from_secs(20), "{:?}", config.max_takeover_delay());
    }

    #[test]
    fn inconsistent_configs_are_refused() {
        let secs = Duration::from_secs;
        let config =
            |lease, renew, retry| LeaderConfig { lease_duration: lease, renew_interval: renew, retry_period: retry };
        config(secs(6), secs(2), secs(1)).validate().unwrap();
        for bad in [
            config(Duration::from_millis(6500), secs(2), secs(1)),
            config(secs(1), Duration::from_millis(300), Duration::from_millis(100)),
            config(secs(6), secs(4), secs(1)),
            config(secs(6), secs(3), secs(2)),
            config(secs(6), Duration::ZERO, secs(1)),
            config(secs(6), secs(2), Duration::ZERO),
        ] {
            assert!(matches!(bad.validate(), Err(Error::Config(_))), "{bad:?}");
        }
    }

    #[test]
    fn identity_is_the_pod_name_else_hostname_with_suffix() {
        assert_eq!(identity_from(Some("op-7d9f-x2".into()), Some("node".into()), 1), "op-7d9f-x2");
        assert_eq!(identity_from(Some(" ".into()), Some("node\n".into()), 0xab), "node-000000ab");
        assert_eq!(identity_from(None, None, 0xab), "tenant-operator-000000ab");
    }
}
