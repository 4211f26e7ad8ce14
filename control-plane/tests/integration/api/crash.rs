//! A signup whose process dies between its commit and its answer: the client's retry with the
//! same `Idempotency-Key` must find the committed tenant, whatever the cache kept.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use control_plane::cache::Cache;
use control_plane::failpoint;
use serde_json::{Value, json};

use crate::harness::{TestApp, new_postgres_database, redis_cache, unique};

// What the test hands the process it kills.
const DATABASE_VAR: &str = "TENANTRY_TEST_SIGNUP_CRASH_DATABASE";
/// The Redis key prefix the dead process used; absent for the in-process cache.
const REDIS_PREFIX_VAR: &str = "TENANTRY_TEST_SIGNUP_CRASH_REDIS_PREFIX";
const KEY: &str = "crash-c5-420";
const TIMEOUT: Duration = Duration::from_secs(90);
/// What `std::process::abort` dies of (Linux).
const SIGABRT: i32 = 6;

fn body() -> Value {
    json!({"company_name": "Crash Corp", "admin_email": "ada@crash.test", "plan": "starter", "seats": 2})
}

async fn cache(redis_prefix: Option<&str>) -> Cache {
    match redis_prefix {
        Some(prefix) => redis_cache(prefix).await,
        None => Cache::in_process(),
    }
}

async fn signup(app: &TestApp, body: Value) -> reqwest::Response {
    let request = app.http.post(format!("{}/v1/signup", app.url)).header("Idempotency-Key", KEY).json(&body);
    request.send().await.unwrap()
}

async fn retried_after_a_crash(database: &str, redis_prefix: Option<&str>) {
    // A separate process serves the signup and dies right after its commit, before answering.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg(crate::harness::test_name(module_path!(), "signup_crash_child"))
        .args(["--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(DATABASE_VAR, database)
        .envs(redis_prefix.map(|prefix| (REDIS_PREFIX_VAR, prefix)))
        .env(failpoint::VAR, failpoint::AFTER_SIGNUP_COMMIT)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("the child died in time").unwrap();
    assert_eq!(status.signal(), Some(SIGABRT), "the child was killed by the failpoint: {status:?}");
    if let Some(prefix) = redis_prefix {
        // The dead process left its in-flight marker (the state), which expires soon.
        let left = marker_ttl(&format!("{prefix}idem:signup:{KEY}")).await;
        assert!((1..=15_000).contains(&left), "the marker is there and lives at most 15 s: {left} ms");
    }

    // A new server on the same database and cache gets the client's retry.
    let app = TestApp::start_on(cache(redis_prefix).await, &[("DATABASE_URL", database)]).await;
    let retry = signup(&app, body()).await;
    assert_eq!(retry.status(), 202, "the retry replays the committed signup");
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["tenant"]["slug"], "crash-corp", "{retry}");
    assert_eq!(retry["tenant"]["owner_email"], "ada@crash.test");
    assert_eq!(retry["token"], Value::Null, "a token is never returned twice");

    let mut other = body();
    other["seats"] = 3.into();
    let reused = signup(&app, other).await;
    assert_eq!(reused.status(), 422, "the key with another body");
    let reused: Value = reused.json().await.unwrap();
    assert_eq!(reused["code"], "idempotency_key_reused", "{reused}");

    let again: Value = signup(&app, body()).await.json().await.unwrap();
    assert_eq!(again["tenant"]["slug"], "crash-corp");
    let tenants = app.get("/v1/tenants", &app.provider).await;
    let slugs: Vec<&str> =
        tenants.body["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["crash-corp"], "one tenant, no second one for the retries");
    app.stop().await;
}

/// Milliseconds `key` has left in the test environment's Redis (negative: none or no TTL).
async fn marker_ttl(key: &str) -> i64 {
    let url = e2e::TestEnv::shared().await.redis_url().await;
    let mut redis = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PTTL").arg(key).query_async(&mut redis).await.unwrap()
}

#[tokio::test]
async fn signup_retried_after_a_crash_is_not_duplicated_postgres_redis() {
    let database = new_postgres_database().await;
    retried_after_a_crash(&database, Some(&format!("{}:", unique("crash")))).await;
}

#[tokio::test]
async fn signup_retried_after_a_crash_is_not_duplicated_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("control-plane.db").display());
    retried_after_a_crash(&database, None).await;
}

/// The process the crash tests kill: not a test of its own (ignored; run only by them).
#[tokio::test]
#[ignore = "run by signup_retried_after_a_crash_is_not_duplicated_* in a process of its own"]
async fn signup_crash_child() {
    let database = std::env::var(DATABASE_VAR).expect("run by the crash tests only");
    let redis_prefix = std::env::var(REDIS_PREFIX_VAR).ok();
    let app = TestApp::start_on(cache(redis_prefix.as_deref()).await, &[("DATABASE_URL", &database)]).await;
    // Returns only if the failpoint did not fire; the parent then sees a clean exit and fails.
    let answered = tokio::time::timeout(TIMEOUT, signup(&app, body())).await;
    eprintln!("the signup was answered, so the failpoint did not fire: {answered:?}");
}
