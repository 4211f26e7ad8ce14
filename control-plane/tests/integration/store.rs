//! The store's conformance suite: every test runs against PostgreSQL and SQLite, each on a
//! fresh database, through the same public interface.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use control_plane::domain::plan::PlanSpec;
use control_plane::domain::subscription::SubscriptionState;
use control_plane::provision::desired::tenant_json;
use control_plane::slug::Slug;
use control_plane::store::{
    MirroredStatus, NewTenant, ProvisionOp, ProvisioningState, Pruned, SeatAdded, Store, StoreError, TenantChange,
    TenantFilter,
};
use serde_json::json;

/// A store on a fresh database, and what keeps that database alive.
struct Fixture {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

fn unique_name() -> String {
    format!("store_{}", uuid::Uuid::new_v4().simple())
}

async fn postgres() -> Fixture {
    let env = e2e::TestEnv::shared().await;
    let server = env.postgres().await;
    let name = unique_name();
    server.create_database(&name).await.expect("create the test database");
    let store = Store::connect(&server.url(&name)).await.expect("connect");
    store.migrate().await.expect("migrate");
    Fixture { store, _dir: None }
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite:{}", dir.path().join("store.db").display());
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Fixture { store, _dir: Some(dir) }
}

/// Runs each named test function once per engine: `postgres::name` and `sqlite::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture = super::postgres().await;
                    super::$name(&fixture.store).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture = super::sqlite().await;
                    super::$name(&fixture.store).await;
                }
            )*
        }
    };
}

conformance!(
    migrating_twice_is_a_no_op,
    connect_refuses_other_urls,
    plan_versions_keep_tenants_on_theirs,
    slugs_are_unique_forever,
    seat_limit_is_enforced,
    same_user_twice_is_idempotent,
    seat_usage_over_period,
    concurrent_seats_never_exceed_the_licence,
    plan_change_is_refused_when_seats_exceed_and_recorded_when_allowed,
    state_transitions_follow_the_rules,
    resume_returns_to_the_state_before_the_suspension,
    seats_are_one_per_address_in_any_case_and_listed_naturally,
    create_tenant_queues_exactly_one_job,
    concurrent_claimers_never_share_a_job,
    only_the_newest_job_of_a_tenant_runs,
    retried_jobs_wait_and_finished_jobs_mark_the_tenant,
    mirror_status_emits_ready_once,
    events_fan_out_to_subscribed_endpoints,
    billing_pages_through_every_tenant,
    tenants_are_listed_by_cursor_and_filtered,
    the_master_password_is_revealed_once,
);

fn plan(name: &str, max_seats: u32, trial_days: u32) -> PlanSpec {
    serde_json::from_value(json!({
        "name": name,
        "display_name": name.to_uppercase(),
        "price_per_seat_month": {"minor": 2900, "currency": "EUR"},
        "max_seats": max_seats,
        "max_concurrent_users": 10,
        "database_size_limit": "20Gi",
        "test_environment": false,
        "module_policy": "certified_only",
        "backup_retention_days": 30,
        "trial_days": trial_days
    }))
    .unwrap()
}

/// A tenant licensed for 5 seats: the maximum of the `basic` plan most tests use.
fn new_tenant(slug: &str, plan: &str, first_seat: Option<&str>) -> NewTenant {
    NewTenant {
        slug: Slug::parse(slug).unwrap(),
        display_name: format!("{slug} Ltd"),
        owner_email: format!("owner@{slug}.example"),
        plan: plan.to_string(),
        licensed_seats: 5,
        erp_version: "7.0.0".into(),
        first_seat: first_seat.map(str::to_string),
        host: None,
        generated_host: None,
    }
}

/// `new` licensed for `seats`.
fn licensed(new: NewTenant, seats: u32) -> NewTenant {
    NewTenant { licensed_seats: seats, ..new }
}

fn day(d: u32) -> DateTime<Utc> {
    format!("2026-03-{d:02}T00:00:00Z").parse().unwrap()
}

async fn event_types(store: &Store) -> Vec<String> {
    let events = store.recorded_events().await.unwrap();
    events.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

async fn migrating_twice_is_a_no_op(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.plan("basic").await.unwrap().version, 1);
    store.ping().await.unwrap();
}

async fn connect_refuses_other_urls(_: &Store) {
    for url in ["mysql://localhost/db", "", "postgres:/nope", "file.db"] {
        assert!(matches!(Store::connect(url).await, Err(StoreError::BadUrl(_))), "{url}");
    }
}

async fn plan_versions_keep_tenants_on_theirs(store: &Store) {
    let v1 = store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    assert_eq!(v1.version, 1);
    assert!(matches!(store.create_plan(&plan("basic", 9, 0)).await, Err(StoreError::Conflict(_))));
    store.create_tenant(&new_tenant("early", "basic", None)).await.unwrap();

    let v2 = store.revise_plan(&plan("basic", 10, 0)).await.unwrap();
    assert_eq!(v2.version, 2);
    let again = store.revise_plan(&plan("basic", 10, 0)).await.unwrap();
    assert_eq!(again, v2, "an identical revision writes nothing");
    assert_eq!(store.import_plan(&plan("basic", 10, 0)).await.unwrap(), (v2.clone(), false));
    let (created, written) = store.import_plan(&plan("pro", 50, 0)).await.unwrap();
    assert!(written && created.version == 1);
    assert!(matches!(store.revise_plan(&plan("nope", 1, 0)).await, Err(StoreError::NotFound { .. })));

    let early = store.tenant("early").await.unwrap();
    assert_eq!((early.plan_version, store.seat_count("early").await.unwrap().max_seats), (1, 5));
    assert_eq!(store.plan_version("basic", 1).await.unwrap().spec.max_seats, 5);
    let late = store.create_tenant(&new_tenant("late", "basic", None)).await.unwrap();
    assert_eq!(late.plan_version, 2);
    let newest: Vec<_> = store.plans().await.unwrap().into_iter().map(|p| (p.spec.name, p.version)).collect();
    assert_eq!(newest, [("basic".to_string(), 2), ("pro".to_string(), 1)]);

    let retired = store.retire_plan("basic").await.unwrap();
    assert!(retired.retired_at.is_some());
    assert_eq!(store.retire_plan("basic").await.unwrap(), retired, "retiring twice changes nothing");
    match store.create_tenant(&new_tenant("after", "basic", None)).await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("retired"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.add_seat("early", "ada@early.example").await, Ok(SeatAdded::Added(_))));
    assert!(matches!(store.create_tenant(&new_tenant("x", "missing", None)).await, Err(StoreError::NotFound { .. })));
}

async fn slugs_are_unique_forever(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_tenant(&new_tenant("acme", "basic", Some("ada@acme.example"))).await.unwrap();
    let taken = store.create_tenant(&new_tenant("acme", "basic", None)).await.unwrap_err();
    assert!(matches!(&taken, StoreError::Conflict(m) if m.contains("\"acme\" is taken")), "{taken}");

    let deleted = store.delete_tenant("acme").await.unwrap();
    assert_eq!(deleted.state, SubscriptionState::Canceled);
    assert!(deleted.deleted_at.is_some());
    assert_eq!(store.delete_tenant("acme").await.unwrap(), deleted, "deleting twice changes nothing");
    assert_eq!(store.tenant("acme").await.unwrap(), deleted);
    assert!(matches!(store.create_tenant(&new_tenant("acme", "basic", None)).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.seat_count("acme").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.add_seat("acme", "bob@acme.example").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.delete_tenant("ghost").await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.seat_count_at("acme", deleted.deleted_at.unwrap()).await.unwrap(), 0, "seats were released");
}

async fn seat_limit_is_enforced(store: &Store) {
    store.create_plan(&plan("small", 3, 0)).await.unwrap();
    let too_many = licensed(new_tenant("big", "small", None), 4);
    let refused = store.create_tenant(&too_many).await.unwrap_err();
    assert!(matches!(refused, StoreError::LicenceAbovePlan { asked: 4, plan_max: 3 }), "{refused}");
    assert!(matches!(store.tenant("big").await, Err(StoreError::NotFound { .. })), "nothing left behind");

    store.create_tenant(&licensed(new_tenant("acme", "small", Some("a@acme.example")), 3)).await.unwrap();
    for email in ["b@acme.example", "c@acme.example"] {
        assert!(matches!(store.add_seat("acme", email).await.unwrap(), SeatAdded::Added(_)));
    }
    let before = store.seat_count("acme").await.unwrap();
    assert_eq!((before.count, before.max_seats), (3, 3));
    let (events, jobs) = (store.recorded_events().await.unwrap().len(), store.pending_provision_jobs().await.unwrap());

    let refused = store.add_seat("acme", "d@acme.example").await.unwrap_err();
    assert!(matches!(refused, StoreError::SeatLimit { licensed: 3, held: 3, plan_max: 3 }), "{refused}");
    assert_eq!(store.seat_count("acme").await.unwrap(), before, "count and version unchanged");
    assert_eq!(store.recorded_events().await.unwrap().len(), events, "no event");
    assert_eq!(store.pending_provision_jobs().await.unwrap(), jobs, "no outbox row");
    assert_eq!(store.seats("acme").await.unwrap().len(), 3);
}

async fn same_user_twice_is_idempotent(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_tenant(&new_tenant("acme", "basic", None)).await.unwrap();
    let SeatAdded::Added(first) = store.add_seat("acme", "ada@acme.example").await.unwrap() else { panic!() };
    let count = store.seat_count("acme").await.unwrap();
    let events = store.recorded_events().await.unwrap().len();
    assert_eq!(store.add_seat("acme", "ada@acme.example").await.unwrap(), SeatAdded::AlreadyHeld(first.clone()));
    assert_eq!(store.seat_count("acme").await.unwrap(), count);
    assert_eq!(store.recorded_events().await.unwrap().len(), events);

    let removed = store.remove_seat("acme", "ada@acme.example").await.unwrap();
    assert!(removed.removed_at.is_some());
    assert!(store.seat_count("acme").await.unwrap().version > count.version);
    assert!(matches!(store.remove_seat("acme", "ada@acme.example").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.add_seat("acme", "ada@acme.example").await.unwrap(), SeatAdded::Added(_)));
    assert_eq!(store.seat_count("acme").await.unwrap().count, 1);
}

async fn seat_usage_over_period(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_tenant(&licensed(new_tenant("acme", "basic", None), 5)).await.unwrap();
    // March 1–11: one seat all along, one for days 3–5, one from day 8 on.
    store.add_seat_at("acme", "a@acme.example", day(1)).await.unwrap();
    store.add_seat_at("acme", "b@acme.example", day(3)).await.unwrap();
    store.remove_seat_at("acme", "b@acme.example", day(5)).await.unwrap();
    store.add_seat_at("acme", "c@acme.example", day(8) + TimeDelta::microseconds(1)).await.unwrap();

    let usage = store.seat_usage("acme", day(1), day(11)).await.unwrap();
    assert_eq!(usage.seat_seconds, (10 + 2 + 3) * 86_400 - 1, "the last seat started 1 µs after day 8");
    assert_eq!((usage.peak, usage.current), (2, 2));
    assert_eq!(store.seat_count_at("acme", day(4)).await.unwrap(), 2);
    assert_eq!(store.seat_count_at("acme", day(5)).await.unwrap(), 1, "removal is exclusive");
    assert_eq!(store.seat_count_at("acme", day(8)).await.unwrap(), 1, "microseconds are kept");
    let clipped = store.seat_usage("acme", day(4), day(6)).await.unwrap();
    assert_eq!((clipped.seat_seconds, clipped.peak), ((2 + 1) * 86_400, 2));
    let empty = store.seat_usage("acme", day(9), day(9)).await.unwrap();
    assert_eq!((empty.seat_seconds, empty.current), (0, 2));
    assert_eq!(store.seat_count("acme").await.unwrap().count, 2);
    assert!(matches!(store.seat_usage("ghost", day(1), day(2)).await, Err(StoreError::NotFound { .. })));
}

async fn concurrent_seats_never_exceed_the_licence(store: &Store) {
    store.create_plan(&plan("basic", 8, 0)).await.unwrap();
    store.create_tenant(&licensed(new_tenant("acme", "basic", None), 5)).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.add_seat("acme", &format!("user{i}@acme.example")).await })
        })
        .collect();
    let (mut added, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(SeatAdded::Added(_)) => added += 1,
            Err(StoreError::SeatLimit { licensed: 5, plan_max: 8, .. }) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((added, refused), (5, 15));
    let count = store.seat_count("acme").await.unwrap();
    assert_eq!((count.count, count.version), (5, 5));
}

async fn plan_change_is_refused_when_seats_exceed_and_recorded_when_allowed(store: &Store) {
    store.create_plan(&plan("big", 10, 0)).await.unwrap();
    store.create_plan(&plan("small", 2, 0)).await.unwrap();
    store.create_tenant(&licensed(new_tenant("acme", "big", Some("a@acme.example")), 4)).await.unwrap();
    store.add_seat("acme", "b@acme.example").await.unwrap();
    store.add_seat("acme", "c@acme.example").await.unwrap();
    let plan_only = TenantChange { plan: Some("small".into()), ..TenantChange::default() };
    let refused = store.change_tenant("acme", &plan_only).await.unwrap_err();
    assert!(matches!(refused, StoreError::PlanTooSmall { max: 2, held: 3 }), "{refused}");
    let to_small = TenantChange { licensed_seats: Some(2), ..plan_only.clone() };
    let refused = store.change_tenant("acme", &to_small).await.unwrap_err();
    assert!(matches!(refused, StoreError::PlanTooSmall { max: 2, held: 3 }), "{refused}");
    assert!(store.plan_history("acme").await.unwrap().is_empty());
    assert_eq!(store.tenant("acme").await.unwrap().plan, "big");

    store.remove_seat("acme", "c@acme.example").await.unwrap();
    let refused = store.change_tenant("acme", &plan_only).await.unwrap_err();
    assert!(matches!(refused, StoreError::PlanBelowLicence { max: 2, licensed: 4 }), "{refused}");
    let _ = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap();
    let jobs_before = store.pending_provision_jobs().await.unwrap();
    let changed = store.change_tenant("acme", &to_small).await.unwrap();
    assert_eq!((changed.plan.as_str(), changed.plan_version), ("small", 1));
    let history = store.plan_history("acme").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].from_plan.as_str(), history[0].to_plan.as_str()), ("big", "small"));
    assert_eq!(store.seat_count("acme").await.unwrap().max_seats, 2);
    assert_eq!(store.pending_provision_jobs().await.unwrap(), jobs_before + 1, "the new desired Tenant is queued");
    let events = store.recorded_events().await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "subscription.changed");
    assert_eq!(
        (last["data"]["from"]["plan"].as_str(), last["data"]["to"]["plan"].as_str()),
        (Some("big"), Some("small"))
    );
    assert!(matches!(
        store.add_seat("acme", "c@acme.example").await,
        Err(StoreError::SeatLimit { licensed: 2, held: 2, plan_max: 2 })
    ));
    let retired = TenantChange { plan: Some("big".into()), ..TenantChange::default() };
    store.retire_plan("big").await.unwrap();
    assert!(matches!(store.change_tenant("acme", &retired).await, Err(StoreError::Conflict(_))));
}

async fn state_transitions_follow_the_rules(store: &Store) {
    store.create_plan(&plan("trial", 5, 14)).await.unwrap();
    let tenant = store.create_tenant(&new_tenant("acme", "trial", None)).await.unwrap();
    assert_eq!(tenant.state, SubscriptionState::Trialing);
    assert_eq!(tenant.trial_ends_at, Some(tenant.created_at + TimeDelta::days(14)));
    assert_eq!(tenant.provisioning, ProvisioningState::Waiting);

    let to = |state| TenantChange { state: Some(state), ..TenantChange::default() };
    assert_eq!(
        store.change_tenant("acme", &to(SubscriptionState::Active)).await.unwrap().state,
        SubscriptionState::Active
    );
    let jobs = store.pending_provision_jobs().await.unwrap();
    let suspended = store.change_tenant("acme", &to(SubscriptionState::Suspended)).await.unwrap();
    assert_eq!(suspended.state, SubscriptionState::Suspended);
    assert_eq!(store.pending_provision_jobs().await.unwrap(), jobs + 1, "the ERP is scaled down");
    let types = event_types(store).await;
    assert_eq!(types[types.len() - 2..], ["subscription.changed", "tenant.suspended"]);

    let events = types.len();
    assert_eq!(store.change_tenant("acme", &to(SubscriptionState::Suspended)).await.unwrap(), suspended);
    assert_eq!(store.change_tenant("acme", &TenantChange::default()).await.unwrap(), suspended);
    assert_eq!(event_types(store).await.len(), events, "a change that changes nothing writes nothing");
    let refused = store.change_tenant("acme", &to(SubscriptionState::Trialing)).await.unwrap_err();
    assert!(matches!(refused, StoreError::Transition(_)), "{refused}");

    let renamed = TenantChange { display_name: Some("Acme".into()), ..to(SubscriptionState::Active) };
    let resumed = store.change_tenant("acme", &renamed).await.unwrap();
    assert_eq!((resumed.state, resumed.display_name.as_str()), (SubscriptionState::Active, "Acme"));
    assert!(resumed.updated_at >= suspended.updated_at);
    assert_eq!(store.tenant("acme").await.unwrap(), resumed);

    store.delete_tenant("acme").await.unwrap();
    assert!(matches!(
        store.change_tenant("acme", &to(SubscriptionState::Active)).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn resume_returns_to_the_state_before_the_suspension(store: &Store) {
    store.create_plan(&plan("trial", 5, 14)).await.unwrap();
    let trial = store.create_tenant(&new_tenant("acme", "trial", None)).await.unwrap();
    let suspend = TenantChange { state: Some(SubscriptionState::Suspended), ..TenantChange::default() };
    let resume = TenantChange { resume: true, ..TenantChange::default() };
    let refused = store.change_tenant("acme", &resume).await.unwrap_err();
    assert!(matches!(refused, StoreError::NotSuspended { state: SubscriptionState::Trialing }), "{refused}");

    let suspended = store.change_tenant("acme", &suspend).await.unwrap();
    assert_eq!(
        (suspended.state, suspended.resumes_as),
        (SubscriptionState::Suspended, Some(SubscriptionState::Trialing))
    );
    assert_eq!(store.tenant("acme").await.unwrap().resumes_as, Some(SubscriptionState::Trialing), "kept in the store");
    let again = store.change_tenant("acme", &suspend).await.unwrap();
    assert_eq!(again, suspended, "suspending twice keeps what the first suspension interrupted");
    let resumed = store.change_tenant("acme", &resume).await.unwrap();
    assert_eq!(
        (resumed.state, resumed.trial_ends_at, resumed.resumes_as),
        (SubscriptionState::Trialing, trial.trial_ends_at, None)
    );
    assert_eq!(store.tenant("acme").await.unwrap(), resumed);

    // An explicit activation of a suspended tenant is an activation.
    store.change_tenant("acme", &suspend).await.unwrap();
    let activate = TenantChange { state: Some(SubscriptionState::Active), ..TenantChange::default() };
    let active = store.change_tenant("acme", &activate).await.unwrap();
    assert_eq!((active.state, active.resumes_as), (SubscriptionState::Active, None));
}

async fn seats_are_one_per_address_in_any_case_and_listed_naturally(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_tenant(&licensed(new_tenant("acme", "basic", Some("Ada@acme.example")), 5)).await.unwrap();
    let SeatAdded::AlreadyHeld(held) = store.add_seat("acme", "ada@ACME.example").await.unwrap() else {
        panic!("the same address in another case is the same seat")
    };
    assert_eq!(held.email, "Ada@acme.example", "kept as first given");
    for email in ["user10@acme.example", "user2@acme.example", "User1@acme.example"] {
        store.add_seat("acme", email).await.unwrap();
    }
    let emails: Vec<String> = store.seats("acme").await.unwrap().into_iter().map(|seat| seat.email).collect();
    assert_eq!(emails, ["Ada@acme.example", "User1@acme.example", "user2@acme.example", "user10@acme.example"]);
    store.remove_seat("acme", "USER2@acme.example").await.unwrap();
    assert_eq!(store.seat_count("acme").await.unwrap().count, 3);
}

async fn create_tenant_queues_exactly_one_job(store: &Store) {
    let basic = store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    let tenant = store.create_tenant(&new_tenant("acme", "basic", Some("ada@acme.example"))).await.unwrap();
    assert_eq!(tenant.state, SubscriptionState::Active);
    assert_eq!(store.pending_provision_jobs().await.unwrap(), 1);
    let jobs = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].tenant.as_str(), jobs[0].op, jobs[0].attempts), ("acme", ProvisionOp::Apply, 1));
    assert_eq!(jobs[0].object, tenant_json(&tenant, &basic));
    assert_eq!(jobs[0].object["metadata"]["name"], "acme");
    assert_eq!(event_types(store).await, ["tenant.created", "seats.changed"]);
    let count = store.seat_count("acme").await.unwrap();
    assert_eq!((count.count, count.version), (1, 1));

    let apply = jobs[0].id;
    let deleted = store.delete_tenant("acme").await.unwrap();
    let jobs = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap();
    assert!(jobs.is_empty(), "the apply job is in flight; the delete waits for it");
    store.finish_provision_job(apply).await.unwrap();
    let jobs = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].op, ProvisionOp::Delete);
    assert_eq!(jobs[0].object, tenant_json(&deleted, &basic));
    store.finish_provision_job(jobs[0].id).await.unwrap();
    assert_eq!(store.tenant("acme").await.unwrap().provisioning, ProvisioningState::Deleted);
}

async fn concurrent_claimers_never_share_a_job(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    for i in 0..30 {
        store.create_tenant(&new_tenant(&format!("t{i:02}"), "basic", None)).await.unwrap();
    }
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = store.claim_provision_jobs(3, Duration::from_secs(60)).await.unwrap();
                    if jobs.is_empty() {
                        return mine;
                    }
                    mine.extend(jobs.into_iter().map(|job| job.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (30, 30), "every job claimed exactly once");
}

async fn only_the_newest_job_of_a_tenant_runs(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_tenant(&new_tenant("acme", "basic", None)).await.unwrap();
    for seats in [2, 3] {
        let change = TenantChange { licensed_seats: Some(seats), ..TenantChange::default() };
        store.change_tenant("acme", &change).await.unwrap();
    }
    assert_eq!(store.pending_provision_jobs().await.unwrap(), 3);
    let jobs = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].object["spec"]["seats"], 3);
    assert_eq!(store.pending_provision_jobs().await.unwrap(), 1, "the older two are superseded");

    // A lease that ran out (a crashed worker) lets the job be claimed again.
    store.retry_provision_job(jobs[0].id, "connection reset", Duration::ZERO).await.unwrap();
    let again = store.claim_provision_jobs(10, Duration::ZERO).await.unwrap();
    assert_eq!((again[0].id, again[0].attempts), (jobs[0].id, 2));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let after_lease = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!((after_lease[0].id, after_lease[0].attempts), (jobs[0].id, 3));
}

async fn retried_jobs_wait_and_finished_jobs_mark_the_tenant(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_tenant(&new_tenant("acme", "basic", None)).await.unwrap();
    let job = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap().remove(0);
    assert!(store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap().is_empty(), "leased");
    store.retry_provision_job(job.id, "the cluster is unreachable", Duration::from_millis(400)).await.unwrap();
    assert!(store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap().is_empty(), "not due yet");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let retried = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap().remove(0);
    assert_eq!((retried.id, retried.attempts), (job.id, 2));

    store.finish_provision_job(job.id).await.unwrap();
    store.finish_provision_job(job.id).await.unwrap();
    assert_eq!(store.tenant("acme").await.unwrap().provisioning, ProvisioningState::Applied);
    assert_eq!(store.pending_provision_jobs().await.unwrap(), 0);
    assert!(store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap().is_empty());
    assert!(matches!(store.finish_provision_job(9999).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.retry_provision_job(9999, "x", Duration::ZERO).await, Err(StoreError::NotFound { .. })));
}

async fn mirror_status_emits_ready_once(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_tenant(&new_tenant("acme", "basic", None)).await.unwrap();
    let status = |provisioning| MirroredStatus {
        provisioning,
        url: Some("https://acme.erp.example".into()),
        conditions: json!([{"type": "Ready", "status": "True"}]),
        environments: json!([{"name": "production", "version": "7.0.59", "ready": true}]),
    };
    assert!(!store.mirror_status("acme", &status(ProvisioningState::Provisioning)).await.unwrap());
    assert!(store.mirror_status("acme", &status(ProvisioningState::Ready)).await.unwrap());
    assert!(!store.mirror_status("acme", &status(ProvisioningState::Ready)).await.unwrap());
    let tenant = store.tenant("acme").await.unwrap();
    assert_eq!(tenant.provisioning, ProvisioningState::Ready);
    assert_eq!(tenant.url.as_deref(), Some("https://acme.erp.example"));
    assert_eq!(tenant.conditions[0]["type"], "Ready");
    let ready = store.recorded_events().await.unwrap().into_iter().filter(|e| e["type"] == "tenant.ready").count();
    assert_eq!(ready, 1);
    assert!(matches!(
        store.mirror_status("ghost", &status(ProvisioningState::Ready)).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn events_fan_out_to_subscribed_endpoints(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    let all = store.create_webhook("https://all.example/hook", &[], b"sealed-1").await.unwrap();
    let seats =
        store.create_webhook("https://seats.example/hook", &["seats.changed".into()], b"sealed-2").await.unwrap();
    store.create_webhook("https://ready.example/hook", &["tenant.ready".into()], b"sealed-3").await.unwrap();
    let gone = store.create_webhook("https://gone.example/hook", &[], b"sealed-4").await.unwrap();
    store.delete_webhook(&gone.id).await.unwrap();
    assert!(matches!(store.delete_webhook(&gone.id).await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.webhooks().await.unwrap().len(), 3);
    assert_eq!(store.webhooks().await.unwrap()[1].events, ["seats.changed"]);

    store.create_tenant(&new_tenant("acme", "basic", Some("ada@acme.example"))).await.unwrap();
    let deliveries = store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap();
    let mut got: Vec<_> = deliveries.iter().map(|d| (d.url.as_str(), d.event_type.as_str())).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            ("https://all.example/hook", "seats.changed"),
            ("https://all.example/hook", "tenant.created"),
            ("https://seats.example/hook", "seats.changed"),
        ]
    );
    let created = deliveries.iter().find(|d| d.event_type == "tenant.created").unwrap();
    assert_eq!((created.endpoint_id.as_str(), created.sealed_secret.as_slice()), (all.id.as_str(), &b"sealed-1"[..]));
    assert_eq!(created.payload["id"], created.event_id.as_str());
    assert_eq!(created.payload["type"], "tenant.created");
    assert_eq!(created.payload["data"]["slug"], "acme");
    let to_seats = deliveries.iter().find(|d| d.endpoint_id == seats.id).unwrap();
    assert_eq!(
        to_seats.payload["data"],
        json!({"tenant": "acme", "email": "ada@acme.example", "change": "added", "count": 1})
    );
    assert!(store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap().is_empty(), "leased");

    store.finish_delivery(deliveries[0].id).await.unwrap();
    store.retry_delivery(deliveries[1].id, "503", None).await.unwrap();
    store.retry_delivery(deliveries[2].id, "timeout", Some(Duration::ZERO)).await.unwrap();
    let again = store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (deliveries[2].id, 2));

    store.retry_delivery(again[0].id, "timeout", Some(Duration::ZERO)).await.unwrap();
    store.delete_webhook(&again[0].endpoint_id).await.unwrap();
    assert!(store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap().is_empty(), "endpoint deleted");
    assert!(matches!(store.finish_delivery(9999).await, Err(StoreError::NotFound { .. })));
}

async fn billing_pages_through_every_tenant(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    let before = Utc::now() - TimeDelta::seconds(1);
    for (i, slug) in ["acme", "beta", "core", "dyna", "echo"].iter().enumerate() {
        store.create_tenant(&new_tenant(slug, "basic", None)).await.unwrap();
        for n in 0..=i {
            store.add_seat(slug, &format!("u{n}@{slug}.example")).await.unwrap();
        }
    }
    store.delete_tenant("core").await.unwrap();
    let at = Utc::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    store.add_seat("acme", "late@acme.example").await.unwrap();

    let mut counts = Vec::new();
    let mut after = None;
    loop {
        let page = store.billing_seats(at, after.as_deref(), 2).await.unwrap();
        assert!(page.items.len() <= 2);
        counts.extend(page.items.into_iter().map(|item| (item.tenant, item.count)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected = [("acme", 1), ("beta", 2), ("dyna", 4), ("echo", 5)].map(|(s, n)| (s.to_string(), n));
    assert_eq!(counts, expected, "core was deleted before `at`; acme's late seat came after");
    assert!(store.billing_seats(before, None, 10).await.unwrap().items.is_empty(), "none existed yet");

    let first = store.billing_usage(before, Utc::now(), None, 3).await.unwrap();
    let slugs: Vec<_> = first.items.iter().map(|item| item.tenant.as_str()).collect();
    assert_eq!((slugs, first.next.as_deref()), (vec!["acme", "beta", "core"], Some("core")));
    assert_eq!(first.items[2].usage.peak, 3, "core held 3 seats before it was deleted");
    assert_eq!(first.items[2].usage.current, 0);
    assert_eq!(first.items[0].usage.current, 2);
    let second = store.billing_usage(before, Utc::now(), first.next.as_deref(), 3).await.unwrap();
    let slugs: Vec<_> = second.items.iter().map(|item| (item.tenant.as_str(), item.usage.peak)).collect();
    assert_eq!((slugs, second.next), (vec![("dyna", 4), ("echo", 5)], None));
    assert!(second.items.iter().all(|item| item.usage.seat_seconds >= 0));
}

async fn tenants_are_listed_by_cursor_and_filtered(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_plan(&plan("pro", 50, 0)).await.unwrap();
    for (slug, plan) in [("acme", "basic"), ("beta", "pro"), ("core", "basic"), ("dyna", "pro"), ("echo", "basic")] {
        store.create_tenant(&new_tenant(slug, plan, None)).await.unwrap();
    }
    store.delete_tenant("core").await.unwrap();
    let suspend = TenantChange { state: Some(SubscriptionState::Suspended), ..TenantChange::default() };
    store.change_tenant("dyna", &suspend).await.unwrap();

    let list = |plan: Option<&str>, state, after: Option<&str>, limit| TenantFilter {
        plan: plan.map(str::to_string),
        state,
        after: after.map(str::to_string),
        limit,
    };
    let slugs = |page: &control_plane::store::Page<control_plane::store::Tenant>| {
        page.items.iter().map(|t| t.slug.clone()).collect::<Vec<_>>()
    };
    let first = store.tenants(&list(None, None, None, 2)).await.unwrap();
    assert_eq!((slugs(&first), first.next.as_deref()), (vec!["acme".to_string(), "beta".into()], Some("beta")));
    let second = store.tenants(&list(None, None, first.next.as_deref(), 2)).await.unwrap();
    assert_eq!((slugs(&second), second.next.as_deref()), (vec!["dyna".to_string(), "echo".into()], None));
    let basic = store.tenants(&list(Some("basic"), None, None, 10)).await.unwrap();
    assert_eq!(slugs(&basic), ["acme", "echo"]);
    let suspended = store.tenants(&list(None, Some(SubscriptionState::Suspended), None, 10)).await.unwrap();
    assert_eq!(slugs(&suspended), ["dyna"]);
    let none = store.tenants(&list(Some("basic"), Some(SubscriptionState::Suspended), None, 10)).await.unwrap();
    assert!(none.items.is_empty() && none.next.is_none());
}

async fn the_master_password_is_revealed_once(store: &Store) {
    store.create_plan(&plan("basic", 5, 0)).await.unwrap();
    store.create_tenant(&new_tenant("secretive", "basic", None)).await.unwrap();
    assert!(!store.password_revealed("secretive").await.unwrap());
    let claims = futures::future::join_all((0..8).map(|_| store.claim_password_reveal("secretive"))).await;
    let won = claims.into_iter().map(Result::unwrap).filter(|claimed| *claimed).count();
    assert_eq!(won, 1, "exactly one caller may show it");
    assert!(store.password_revealed("secretive").await.unwrap());
    // Showing failed (the cluster did not answer): the claim is given back and can be made again.
    store.release_password_reveal("secretive").await.unwrap();
    assert!(store.claim_password_reveal("secretive").await.unwrap());
    assert!(!store.claim_password_reveal("secretive").await.unwrap());
    assert!(matches!(store.claim_password_reveal("nobody").await, Err(StoreError::NotFound { .. })));
    store.delete_tenant("secretive").await.unwrap();
    assert!(matches!(store.password_revealed("secretive").await, Err(StoreError::NotFound { .. })));
}

/// The provider console's queries (`store/console.rs`), run on both engines like the rest.
mod provider_console {
    use control_plane::domain::money::Money;

    use super::*;

    conformance!(console_search_filters_sorts_and_pages, console_totals_price_each_tenant_by_its_version);

    fn state(to: SubscriptionState) -> TenantChange {
        TenantChange { state: Some(to), ..TenantChange::default() }
    }

    async fn seat_all(store: &Store, slug: &str, count: usize) {
        for n in 0..count {
            store.add_seat(slug, &format!("user{n}@{slug}.example")).await.unwrap();
        }
    }

    async fn console_search_filters_sorts_and_pages(store: &Store) {
        store.create_plan(&plan("basic", 5, 0)).await.unwrap();
        store.create_plan(&plan("pro", 50, 0)).await.unwrap();
        for (slug, plan) in [("acme", "basic"), ("beta", "pro"), ("core", "basic"), ("dyna", "pro"), ("echo", "basic")]
        {
            store.create_tenant(&new_tenant(slug, plan, None)).await.unwrap();
        }
        let pct = NewTenant { display_name: "100%_Off Co".into(), ..new_tenant("pct", "pro", None) };
        store.create_tenant(&pct).await.unwrap();
        let zulu = NewTenant { display_name: "Alpha Zulu".into(), ..new_tenant("zulu", "basic", None) };
        store.create_tenant(&zulu).await.unwrap();
        seat_all(store, "dyna", 3).await;
        seat_all(store, "beta", 1).await;
        seat_all(store, "core", 2).await;
        store.change_tenant("echo", &state(SubscriptionState::Suspended)).await.unwrap();
        store.delete_tenant("core").await.unwrap();

        macro_rules! found {
            ($search:expr) => {{
                let search = $search.run().await.unwrap();
                (search.tenants.iter().map(|row| row.tenant.slug.clone()).collect::<Vec<_>>(), search)
            }};
        }

        let (all, search) = found!(store.tenant_search());
        assert_eq!(all, ["acme", "beta", "dyna", "echo", "pct", "zulu"], "live tenants by slug");
        assert_eq!((search.total, search.page, search.pages), (6, 1, 1));
        let dyna = &search.tenants[2];
        assert_eq!((dyna.seats_held, dyna.max_seats), (3, 50));

        // Pages: a page beyond the last gives the last, 0 the first.
        let (second, search) = found!(store.tenant_search().page(2, 2));
        assert_eq!(
            (second, search.total, search.page, search.pages),
            (vec!["dyna".to_string(), "echo".into()], 6, 2, 3)
        );
        let (last, search) = found!(store.tenant_search().page(9, 2));
        assert_eq!((last, search.page), (vec!["pct".to_string(), "zulu".into()], 3));
        assert_eq!(found!(store.tenant_search().page(0, 2)).1.page, 1);

        // Sorting in SQL, ties by slug.
        let order = |key: &'static str, descending: bool| store.tenant_search().sort(key, descending);
        assert_eq!(found!(order("seats", true)).0, ["dyna", "beta", "acme", "echo", "pct", "zulu"]);
        assert_eq!(found!(order("seats", false)).0, ["acme", "echo", "pct", "zulu", "beta", "dyna"]);
        assert_eq!(found!(order("name", false)).0, ["pct", "acme", "zulu", "beta", "dyna", "echo"]);
        assert_eq!(found!(order("state", true)).0, ["echo", "acme", "beta", "dyna", "pct", "zulu"]);
        assert_eq!(found!(order("created", true)).0, ["zulu", "pct", "echo", "dyna", "beta", "acme"]);
        assert_eq!(found!(order("plan", true)).0, ["beta", "dyna", "pct", "acme", "echo", "zulu"]);
        assert_eq!(found!(order("slug", true)).0, ["zulu", "pct", "echo", "dyna", "beta", "acme"]);
        assert_eq!(found!(order("name; DROP TABLE tenants", false)).0, all, "unknown keys keep the slug order");
        let (page, _) = found!(order("seats", true).page(2, 4));
        assert_eq!(page, ["pct", "zulu"], "sorting applies before paging");

        // Search: slug, display name or owner email, any case, wildcards literal.
        for (text, expected) in [
            ("ACM", vec!["acme"]),
            ("alpha", vec!["zulu"]),
            ("OWNER@BETA.", vec!["beta"]),
            ("%", vec!["pct"]),
            ("_", vec!["pct"]),
            ("0%_o", vec!["pct"]),
            ("\\", vec![]),
            ("core", vec![]),
            ("  ", vec!["acme", "beta", "dyna", "echo", "pct", "zulu"]),
        ] {
            assert_eq!(found!(store.tenant_search().matching(text)).0, expected, "{text:?}");
        }
        let (none, search) = found!(store.tenant_search().matching("nothing"));
        assert_eq!((none.len(), search.total, search.page, search.pages), (0, 0, 1, 1));

        // Filters; deleted tenants only under canceled.
        assert_eq!(found!(store.tenant_search().on_plan("pro")).0, ["beta", "dyna", "pct"]);
        assert_eq!(found!(store.tenant_search().on_plan("basic").matching("ZULU")).0, ["zulu"]);
        assert_eq!(found!(store.tenant_search().in_state(SubscriptionState::Suspended)).0, ["echo"]);
        let (canceled, search) = found!(store.tenant_search().in_state(SubscriptionState::Canceled));
        assert_eq!(canceled, ["core"]);
        assert!(search.tenants[0].tenant.deleted_at.is_some());
        assert_eq!(search.tenants[0].seats_held, 0, "deletion released its seats");
        assert_eq!(found!(store.tenant_search().in_state(SubscriptionState::Active).on_plan("pro")).1.total, 3);
    }

    async fn console_totals_price_each_tenant_by_its_version(store: &Store) {
        let eur = "EUR".parse().unwrap();
        let usd = "USD".parse().unwrap();
        store.create_plan(&plan("basic", 10, 0)).await.unwrap(); // 29.00 EUR
        store.create_plan(&plan("tryout", 10, 14)).await.unwrap();
        let mut dollar = plan("dollar", 10, 0);
        dollar.price_per_seat_month = Money::new(500, usd).unwrap();
        store.create_plan(&dollar).await.unwrap();
        store.create_plan(&plan("idle", 10, 0)).await.unwrap();
        for (slug, plan) in [
            ("acme", "basic"),
            ("beta", "basic"),
            ("core", "basic"),
            ("echo", "basic"),
            ("try", "tryout"),
            ("usd", "dollar"),
        ] {
            store.create_tenant(&new_tenant(slug, plan, None)).await.unwrap();
        }
        seat_all(store, "acme", 2).await;
        seat_all(store, "beta", 1).await;
        seat_all(store, "core", 4).await;
        seat_all(store, "echo", 1).await;
        seat_all(store, "try", 2).await;
        seat_all(store, "usd", 3).await;
        store.change_tenant("beta", &state(SubscriptionState::PastDue)).await.unwrap();
        store.change_tenant("echo", &state(SubscriptionState::Suspended)).await.unwrap();
        store.delete_tenant("core").await.unwrap();
        let mut dearer = plan("basic", 10, 0);
        dearer.price_per_seat_month.minor = 3500;
        assert_eq!(store.revise_plan(&dearer).await.unwrap().version, 2);
        store.create_tenant(&new_tenant("fox", "basic", None)).await.unwrap();
        seat_all(store, "fox", 1).await;

        let totals = store.plan_totals().await.unwrap();
        assert_eq!(
            totals.plans.keys().collect::<Vec<_>>(),
            ["basic", "dollar", "idle", "tryout"],
            "every plan, by name"
        );
        let figures = |name: &str| {
            let plan = &totals.plans[name];
            (plan.tenants, plan.seats_held, plan.trialing_seats, plan.mrr.clone())
        };
        // Active and past-due seats at their own version's price: (2 + 1) × 29.00 + 1 × 35.00.
        assert_eq!(figures("basic"), (4, 5, 0, vec![Money::new(12_200, eur).unwrap()]));
        assert_eq!(figures("tryout"), (1, 2, 2, vec![]));
        assert_eq!(figures("dollar"), (1, 3, 0, vec![Money::new(1_500, usd).unwrap()]));
        assert_eq!(figures("idle"), (0, 0, 0, vec![]));
        let all = &totals.all;
        assert_eq!((all.tenants, all.seats_held, all.trialing_seats), (6, 10, 2));
        assert_eq!(
            all.mrr,
            [Money::new(12_200, eur).unwrap(), Money::new(1_500, usd).unwrap()],
            "one sum per currency"
        );
    }
}

mod retention {
    use super::*;

    conformance!(pruning_removes_settled_history_and_keeps_pending_work);

    async fn pruning_removes_settled_history_and_keeps_pending_work(store: &Store) {
        store.create_plan(&plan("basic", 5, 0)).await.unwrap();
        let hook = store.create_webhook("https://billing.example/hook", &[], b"sealed").await.unwrap();
        store.create_tenant(&new_tenant("acme", "basic", Some("ada@acme.example"))).await.unwrap();
        let later = || chrono::Utc::now() + chrono::TimeDelta::hours(1);

        // Everything is pending: a job to apply, two events each waiting for its delivery.
        assert_eq!(store.prune(later()).await.unwrap(), Pruned::default());
        assert_eq!(store.pending_provision_jobs().await.unwrap(), 1);
        assert_eq!(event_types(store).await, ["tenant.created", "seats.changed"]);

        let jobs = store.claim_provision_jobs(10, Duration::from_secs(60)).await.unwrap();
        store.finish_provision_job(jobs[0].id).await.unwrap();
        let deliveries = store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(deliveries.len(), 2);
        assert!(deliveries.iter().all(|d| d.endpoint_id == hook.id));
        store.finish_delivery(deliveries[0].id).await.unwrap();
        store.retry_delivery(deliveries[1].id, "HTTP 500", None).await.unwrap(); // given up: dead

        // Settled, but not before the cut-off: kept.
        assert_eq!(store.prune(chrono::Utc::now() - chrono::TimeDelta::hours(1)).await.unwrap(), Pruned::default());
        assert_eq!(event_types(store).await.len(), 2);

        let pruned = store.prune(later()).await.unwrap();
        assert_eq!(pruned, Pruned { outbox: 1, deliveries: 2, events: 2, signup_keys: 0 });
        assert!(event_types(store).await.is_empty());
        // What billing needs is never pruned.
        assert_eq!(store.tenant("acme").await.unwrap().slug, "acme");
        assert_eq!(store.seat_count("acme").await.unwrap().count, 1);

        // New work after a prune is delivered as before.
        store.add_seat("acme", "bob@acme.example").await.unwrap();
        assert_eq!(event_types(store).await, ["seats.changed"]);
        assert_eq!(store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap().len(), 1);
        assert_eq!(store.prune(later()).await.unwrap().events, 0, "its delivery is pending");
    }
}

mod signup_keys {
    use super::*;
    use control_plane::store::SignupKey;

    conformance!(a_signup_key_commits_once_with_its_tenant);

    async fn a_signup_key_commits_once_with_its_tenant(store: &Store) {
        store.create_plan(&plan("basic", 5, 0)).await.unwrap();
        let key = SignupKey { key: "0f8fad5b-d9cb-469f-a165-70867728950e".into(), fingerprint: "fp-1".into() };
        // Concurrent signups under one key, each trying its own slug: one commits.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move {
                    store.create_signup_tenant(&new_tenant(&format!("acme-{i}"), "basic", None), &key).await
                })
            })
            .collect();
        let (mut created, mut refused) = (Vec::new(), 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(tenant) => created.push(tenant.slug),
                Err(StoreError::IdempotencyKeyUsed) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((created.len(), refused), (1, 7), "{created:?}");
        let listed = store.tenants(&TenantFilter { limit: 100, ..TenantFilter::default() }).await.unwrap();
        assert_eq!(listed.items.iter().map(|t| t.slug.clone()).collect::<Vec<_>>(), created);
        let (fingerprint, tenant) = store.signup_by_key(&key.key).await.unwrap().expect("the key is recorded");
        assert_eq!((fingerprint.as_str(), tenant.slug.as_str()), ("fp-1", created[0].as_str()));

        // A signup that fails records nothing: its key is free for the retry.
        let other = SignupKey { key: "k-2".into(), fingerprint: "fp-2".into() };
        let failed = store.create_signup_tenant(&new_tenant("ghost", "no-such-plan", None), &other).await;
        assert!(matches!(failed, Err(StoreError::NotFound { .. })), "{failed:?}");
        assert!(store.signup_by_key("k-2").await.unwrap().is_none());

        // Keys go with the settled history.
        let pruned = store.prune(chrono::Utc::now() + chrono::TimeDelta::hours(1)).await.unwrap();
        assert_eq!(pruned.signup_keys, 1);
        assert!(store.signup_by_key(&key.key).await.unwrap().is_none());
    }
}
