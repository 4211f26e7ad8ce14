//! Leader election against the real local control plane: two candidates on one Lease.

use std::time::Duration;

use e2e::TestEnv;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tenant_operator::leader::{self, LeaderConfig, LeaderElection};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The longest a failover may take.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

/// A short configuration for tests.
fn short() -> LeaderConfig {
    LeaderConfig {
        lease_duration: Duration::from_secs(6),
        renew_interval: Duration::from_secs(2),
        retry_period: Duration::from_secs(1),
    }
}

/// Runs `election` in a task; its work reports on the returned channel when it starts, then runs
/// until stopped.
fn candidate(election: &LeaderElection) -> (JoinHandle<Result<(), leader::Error>>, mpsc::UnboundedReceiver<Instant>) {
    let (started, receiver) = mpsc::unbounded_channel();
    let election = election.clone();
    let task = tokio::spawn(async move {
        election
            .run(move || async move {
                let _ = started.send(Instant::now());
                std::future::pending::<()>().await
            })
            .await
    });
    (task, receiver)
}

async fn work_started(work: &mut mpsc::UnboundedReceiver<Instant>, who: &str) -> Instant {
    tokio::time::timeout(FAILOVER_LIMIT, work.recv())
        .await
        .unwrap_or_else(|_| panic!("{who}'s work did not start within {FAILOVER_LIMIT:?}"))
        .unwrap_or_else(|| panic!("{who}'s task ended"))
}

fn spec(lease: &Lease) -> &LeaseSpec {
    lease.spec.as_ref().expect("a Lease with a spec")
}

fn holder(lease: &Lease) -> Option<&str> {
    spec(lease).holder_identity.as_deref()
}

fn renewed(lease: &Lease) -> Timestamp {
    spec(lease).renew_time.as_ref().expect("renewTime").0
}

#[tokio::test]
async fn leader_election_failover() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let namespace = env.namespace(&client, "leader-failover").await;
    // The short configuration, and the default one the operator runs with, side by side.
    tokio::join!(
        failover(&client, &namespace, "short", short()),
        failover(&client, &namespace, "default", LeaderConfig::default()),
    );
}

async fn failover(client: &Client, namespace: &str, name: &str, config: LeaderConfig) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let duration = config.lease_duration;
    let a = LeaderElection::new(client.clone(), namespace, name, format!("{name}-a")).with_config(config).unwrap();
    let b = LeaderElection::new(client.clone(), namespace, name, format!("{name}-b")).with_config(config).unwrap();

    // A is alone: it creates the Lease and runs its work.
    let (a_task, mut a_work) = candidate(&a);
    work_started(&mut a_work, "A").await;
    assert!(*a.is_leader().borrow());
    let lease = leases.get(name).await.unwrap();
    assert_eq!(holder(&lease), Some(a.identity()));
    assert_eq!(spec(&lease).lease_transitions, Some(0));
    assert_eq!(spec(&lease).lease_duration_seconds, Some(duration.as_secs() as i32));

    // B waits for a whole lease duration (watching A's renewals) and never runs its work.
    let b_candidate_since = Timestamp::now();
    let (b_task, mut b_work) = candidate(&b);
    let past = b_candidate_since + SignedDuration::try_from(duration).unwrap();
    let lease =
        e2e::wait::until(&leases, name, "renewed a lease duration after B started", 2 * duration + FAILOVER_LIMIT, {
            move |lease: Option<&Lease>| lease.is_some_and(|l| renewed(l) >= past)
        })
        .await;
    assert_eq!(holder(&lease), Some(a.identity()), "A keeps the lease while it renews");
    assert!(b_work.try_recv().is_err(), "B ran its work while A held the lease");
    assert!(!*b.is_leader().borrow());
    assert!(!b_task.is_finished());

    // A dies without releasing: B takes over once the lease has expired.
    let a_renewed = renewed(&leases.get(name).await.unwrap());
    a_task.abort();
    assert!(a_task.await.unwrap_err().is_cancelled());
    let died = Instant::now();
    assert!(!*a.is_leader().borrow(), "A's leader flag outlived its run");
    let took_over = work_started(&mut b_work, "B").await;
    let elapsed = took_over - died;
    eprintln!("{name}: B took over {elapsed:?} after A died (lease duration {duration:?})");
    assert!(elapsed < FAILOVER_LIMIT, "{name}: failover took {elapsed:?}");
    assert!(*b.is_leader().borrow());

    let lease = leases.get(name).await.unwrap();
    assert_eq!(holder(&lease), Some(b.identity()));
    assert_eq!(spec(&lease).lease_transitions, Some(1));
    let acquired = spec(&lease).acquire_time.as_ref().expect("acquireTime").0;
    let expired = a_renewed + SignedDuration::try_from(duration).unwrap();
    assert!(acquired >= expired, "{name}: B took over at {acquired}, before A's lease expired at {expired}");

    b_task.abort();
}

#[tokio::test]
async fn leader_releases_on_shutdown() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let namespace = env.namespace(&client, "leader-release").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let name = "operator";
    // A long lease, so that only a release explains a quick takeover.
    let config = LeaderConfig {
        lease_duration: Duration::from_secs(20),
        renew_interval: Duration::from_secs(5),
        retry_period: Duration::from_secs(1),
    };
    let a = LeaderElection::new(client.clone(), &namespace, name, "a").with_config(config).unwrap();
    let b = LeaderElection::new(client.clone(), &namespace, name, "b").with_config(config).unwrap();

    let (shutdown, shutdown_requested) = oneshot::channel::<()>();
    let (a_started, mut a_work) = mpsc::unbounded_channel();
    let a_task = tokio::spawn({
        let a = a.clone();
        async move {
            let work = move || async move {
                let _ = a_started.send(Instant::now());
                std::future::pending::<()>().await
            };
            a.run_until(work, async move {
                let _ = shutdown_requested.await;
            })
            .await
        }
    });
    work_started(&mut a_work, "A").await;

    let (b_task, mut b_work) = candidate(&b);
    // B is a candidate for as long as A takes to renew once (several of B's retries).
    let first = renewed(&leases.get(name).await.unwrap());
    let lease = e2e::wait::until(&leases, name, "renewed by A", 2 * config.lease_duration, {
        move |lease: Option<&Lease>| lease.is_some_and(|l| renewed(l) > first)
    })
    .await;
    assert_eq!(holder(&lease), Some("a"));
    assert!(b_work.try_recv().is_err(), "B ran its work while A held the lease");
    assert!(!*b.is_leader().borrow());

    shutdown.send(()).unwrap();
    let released = Instant::now();
    assert!(matches!(a_task.await.unwrap(), Ok(None)), "A stops on shutdown");
    assert!(!*a.is_leader().borrow());
    let took_over = work_started(&mut b_work, "B").await;
    let elapsed = took_over - released;
    eprintln!("B took over {elapsed:?} after A released (lease duration {:?})", config.lease_duration);
    assert!(elapsed < Duration::from_secs(5), "after a release B took {elapsed:?}");

    let lease = leases.get(name).await.unwrap();
    assert_eq!(holder(&lease), Some("b"));
    assert_eq!(spec(&lease).lease_transitions, Some(1));
    assert_eq!(spec(&lease).lease_duration_seconds, Some(20));

    b_task.abort();
}

#[tokio::test]
async fn leader_stops_its_work_when_the_lease_is_taken() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let namespace = env.namespace(&client, "leader-lost").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let name = "operator";
    let a = LeaderElection::new(client.clone(), &namespace, name, "a").with_config(short()).unwrap();

    /// Reports when the work is dropped.
    struct Stopped(Option<oneshot::Sender<()>>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = self.0.take().map(|s| s.send(()));
        }
    }
    let (started, mut a_work) = mpsc::unbounded_channel();
    let (stopped, work_stopped) = oneshot::channel();
    let a_task = tokio::spawn({
        let a = a.clone();
        async move {
            a.run(move || async move {
                let _stopped = Stopped(Some(stopped));
                let _ = started.send(Instant::now());
                std::future::pending::<()>().await
            })
            .await
        }
    });
    work_started(&mut a_work, "A").await;

    // Someone else writes the Lease (as a candidate with a skewed clock might).
    let mut lease = leases.get(name).await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases.replace(name, &Default::default(), &lease).await.unwrap();
    let taken = Instant::now();

    let result = tokio::time::timeout(FAILOVER_LIMIT, a_task).await.expect("A noticed").unwrap();
    assert!(matches!(result, Err(leader::Error::LostLease { .. })), "{result:?}");
    work_stopped.await.expect("the work was dropped");
    assert!(!*a.is_leader().borrow());
    let noticed = taken.elapsed();
    assert!(noticed <= short().renew_interval + Duration::from_secs(2), "A noticed after {noticed:?}");
    // A stopped without writing: the Lease still names the intruder.
    assert_eq!(holder(&leases.get(name).await.unwrap()), Some("intruder"));
}

/// Plays a holder `identity` whose clock is `skew` off ours: it writes the Lease (renewTime by
/// its clock) every retry period of `config` until `stop`, and returns when its last renewal was
/// written.
async fn skewed_holder(
    leases: Api<Lease>,
    name: String,
    identity: &'static str,
    skew: SignedDuration,
    config: LeaderConfig,
    mut stop: oneshot::Receiver<()>,
) -> Instant {
    let mut last_renewal = None;
    loop {
        let their_now = MicroTime(Timestamp::now() + skew);
        let current = leases.get_opt(&name).await.unwrap();
        let spec = LeaseSpec {
            holder_identity: Some(identity.into()),
            lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
            acquire_time: current.as_ref().and_then(|l| spec(l).acquire_time.clone()).or(Some(their_now.clone())),
            renew_time: Some(their_now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
                    spec: Some(spec),
                };
                leases.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                lease.spec = Some(spec);
                leases.replace(&name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => last_renewal = Some(Instant::now()),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => panic!("{identity}: writing the Lease: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.retry_period) => {}
            _ = &mut stop => return last_renewal.expect("the holder renewed at least once"),
        }
    }
}

/// Expiry is judged by the candidate's own clock from when it saw the Lease change, not from
/// the holder's renewTime: a holder whose clock is an hour behind (its renewals look expired by
/// our wall clock) keeps the Lease while it renews; one whose clock is an hour ahead (its last
/// renewal looks valid for an hour) loses it a lease duration after it stops.
#[tokio::test]
async fn leader_expiry_ignores_clock_skew() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let namespace = env.namespace(&client, "leader-skew").await;
    let hour = SignedDuration::from_hours(1);
    tokio::join!(
        holder_with_skew(&client, &namespace, "behind", -hour),
        holder_with_skew(&client, &namespace, "ahead", hour),
    );
}

async fn holder_with_skew(client: &Client, namespace: &str, name: &str, skew: SignedDuration) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let config = short();
    let duration = config.lease_duration;
    let (stop, stopped) = oneshot::channel();
    let skewed = tokio::spawn(skewed_holder(leases.clone(), name.to_string(), "skewed", skew, config, stopped));
    e2e::wait::until(&leases, name, "held by the skewed holder", FAILOVER_LIMIT, |lease: Option<&Lease>| {
        lease.is_some_and(|l| holder(l) == Some("skewed"))
    })
    .await;

    // Two lease durations of renewals: the candidate waits all along.
    let b = LeaderElection::new(client.clone(), namespace, name, format!("{name}-b")).with_config(config).unwrap();
    let (b_task, mut b_work) = candidate(&b);
    tokio::time::sleep(2 * duration).await;
    assert!(b_work.try_recv().is_err(), "{name}: B took over while the holder (clock {skew} off) renewed");
    assert!(!b_task.is_finished());
    assert_eq!(holder(&leases.get(name).await.unwrap()), Some("skewed"));

    // The holder stops: B takes over a lease duration after it last saw a renewal, by its clock.
    stop.send(()).unwrap();
    let last_renewal = skewed.await.unwrap();
    let took_over = work_started(&mut b_work, "B").await;
    let after = took_over - last_renewal;
    eprintln!("{name}: B took over {after:?} after the last renewal (lease duration {duration:?})");
    assert!(after >= duration - Duration::from_millis(500), "{name}: B took over {after:?} after the last renewal");
    assert!(after <= config.max_takeover_delay() + Duration::from_secs(2), "{name}: B took {after:?}");
    assert_eq!(holder(&leases.get(name).await.unwrap()), Some(b.identity()));
    b_task.abort();
}
