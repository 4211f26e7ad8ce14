//! The cache behaves the same in process and against a real Redis: every behaviour runs both
//! ways (the `both_ways!` macro at the bottom), each Redis test under its own key prefix.

use std::time::{Duration, Instant};

use control_plane::cache::{Begin, Cache, CacheError, IdempotencyRecord, RateLimit, RetryAfter};
use control_plane::store::SeatCount;

fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4())
}

async fn redis_url() -> String {
    e2e::TestEnv::shared().await.redis_url().await
}

async fn redis_cache() -> Cache {
    let cache = Cache::connect_with_prefix(Some(&redis_url().await), &unique_prefix()).await.unwrap();
    cache.ping().await.expect("the test Redis answers");
    cache
}

fn count(count: u32, version: i64) -> SeatCount {
    SeatCount { count, max_seats: 50, version }
}

async fn newer_version_wins(cache: Cache) {
    assert_eq!(cache.seat_count("acme").await, None, "a miss before any offer");
    cache.offer_seat_count("acme", count(5, 5)).await;
    assert_eq!(cache.seat_count("acme").await, Some(count(5, 5)));
    cache.offer_seat_count("acme", count(3, 3)).await;
    assert_eq!(cache.seat_count("acme").await, Some(count(5, 5)), "an older offer is ignored");
    cache.offer_seat_count("acme", count(9, 5)).await;
    assert_eq!(cache.seat_count("acme").await, Some(count(5, 5)), "the same version is not replaced");
    cache.offer_seat_count("acme", count(6, 6)).await;
    assert_eq!(cache.seat_count("acme").await, Some(count(6, 6)));
    assert_eq!(cache.seat_count("globex").await, None, "tenants do not share entries");
    // Versions beyond 2^53 still order exactly (Lua numbers are doubles).
    let big = 1_i64 << 60;
    cache.offer_seat_count("initech", count(1, big + 1)).await;
    cache.offer_seat_count("initech", count(2, big)).await;
    assert_eq!(cache.seat_count("initech").await, Some(count(1, big + 1)));
    cache.offer_seat_count("initech", count(3, big + 2)).await;
    assert_eq!(cache.seat_count("initech").await, Some(count(3, big + 2)));
}

async fn concurrent_offers_end_on_the_newest(cache: Cache) {
    for round in 0..5 {
        let slug = format!("tenant-{round}");
        // Interleaved orders: the newest version arrives first, last or in the middle.
        let mut versions: Vec<i64> = (1..=40).collect();
        versions.rotate_left(round * 9);
        let tasks: Vec<_> = versions
            .into_iter()
            .map(|version| {
                let cache = cache.clone();
                let slug = slug.clone();
                tokio::spawn(async move {
                    cache.offer_seat_count(&slug, count(u32::try_from(version).unwrap(), version)).await;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(cache.seat_count(&slug).await, Some(count(40, 40)), "round {round}");
    }
}

async fn a_forgotten_tenant_is_not_resurrected(cache: Cache) {
    cache.offer_seat_count("acme", count(3, 3)).await;
    cache.forget_seat_count("acme").await;
    assert_eq!(cache.seat_count("acme").await, None);
    cache.offer_seat_count("acme", count(4, 4)).await;
    cache.offer_seat_count("acme", count(4, i64::MAX - 1)).await;
    assert_eq!(cache.seat_count("acme").await, None, "a slow reader's offer after the deletion is ignored");
    // Forgetting a tenant never cached also blocks later offers.
    cache.forget_seat_count("globex").await;
    cache.offer_seat_count("globex", count(1, 1)).await;
    assert_eq!(cache.seat_count("globex").await, None);
}

async fn rate_limit_allows_a_burst_then_refuses_and_refills(cache: Cache) {
    // One request per 100 ms, three at once.
    // One request per 500 ms: wide enough that two calls in a row on a loaded machine still
    // fall within one interval.
    let limit = RateLimit { per_minute: 120, burst: 3 };
    for attempt in 0..3 {
        assert_eq!(cache.check_rate("203.0.113.7", limit).await, Ok(()), "burst request {attempt}");
    }
    let Err(RetryAfter(wait)) = cache.check_rate("203.0.113.7", limit).await else {
        panic!("the fourth request at once must be refused");
    };
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "retry after {wait:?}");
    assert_eq!(cache.check_rate("198.51.100.1", limit).await, Ok(()), "other clients are not affected");
    tokio::time::sleep(wait).await;
    assert_eq!(cache.check_rate("203.0.113.7", limit).await, Ok(()), "refilled after Retry-After");
    assert!(cache.check_rate("203.0.113.7", limit).await.is_err(), "one request per interval");
    // A long pause refills the burst, and no more.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for attempt in 0..3 {
        assert_eq!(cache.check_rate("203.0.113.7", limit).await, Ok(()), "refilled burst request {attempt}");
    }
    assert!(cache.check_rate("203.0.113.7", limit).await.is_err());

    // The signup default: 5 at once, then one per 6 s.
    let signup = RateLimit { per_minute: 10, burst: 5 };
    for _ in 0..5 {
        assert_eq!(cache.check_rate("192.0.2.50", signup).await, Ok(()));
    }
    let refused = cache.check_rate("192.0.2.50", signup).await.expect_err("sixth signup refused");
    assert!(refused.0 > Duration::from_millis(5500) && refused.0 <= Duration::from_secs(6), "{refused:?}");
    assert_eq!(refused.header_seconds(), 6);
}

fn record(fingerprint: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        fingerprint: fingerprint.into(),
        status: 202,
        body: serde_json::json!({"tenant": {"slug": "acme", "seats": 3}, "token": null}),
    }
}

async fn idempotency_records(cache: Cache) {
    let key = "0f8fad5b-d9cb-469f-a165-70867728950e";
    assert_eq!(cache.idempotency_begin("signup", key, "fp-1").await.unwrap(), Begin::Started);
    assert_eq!(cache.idempotency_begin("signup", key, "fp-1").await.unwrap(), Begin::InFlight);
    assert_eq!(cache.idempotency_begin("signup", key, "fp-2").await.unwrap(), Begin::Mismatch);
    assert_eq!(cache.idempotency_begin("other-scope", key, "fp-2").await.unwrap(), Begin::Started, "scopes apart");

    cache.idempotency_finish("signup", key, &record("fp-1")).await.unwrap();
    assert_eq!(cache.idempotency_begin("signup", key, "fp-1").await.unwrap(), Begin::Done(record("fp-1")));
    assert_eq!(cache.idempotency_begin("signup", key, "fp-2").await.unwrap(), Begin::Mismatch);
    cache.idempotency_abandon("signup", key).await.unwrap();
    assert_eq!(
        cache.idempotency_begin("signup", key, "fp-1").await.unwrap(),
        Begin::Done(record("fp-1")),
        "a late abandon leaves a finished record alone"
    );

    // A failed request frees its key for a retry, with any body.
    let failed = "retry-me";
    assert_eq!(cache.idempotency_begin("signup", failed, "fp-1").await.unwrap(), Begin::Started);
    cache.idempotency_abandon("signup", failed).await.unwrap();
    assert_eq!(cache.idempotency_begin("signup", failed, "fp-3").await.unwrap(), Begin::Started);
    cache.idempotency_abandon("signup", "never-used").await.unwrap();

    for bad in ["", "has space", "line\nbreak", &"k".repeat(256)] {
        let error = cache.idempotency_begin("signup", bad, "fp").await.unwrap_err();
        assert!(matches!(error, CacheError::InvalidIdempotencyKey), "{bad:?}: {error}");
    }
    assert!(matches!(cache.idempotency_begin("sign:up", key, "fp").await, Err(CacheError::InvalidScope(_))));
}

macro_rules! both_ways {
    ($($behaviour:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    super::$behaviour(super::Cache::connect(None).await.unwrap()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    super::$behaviour(super::redis_cache().await).await;
                }
            )*
        }
    };
}

both_ways!(
    newer_version_wins,
    concurrent_offers_end_on_the_newest,
    a_forgotten_tenant_is_not_resurrected,
    rate_limit_allows_a_burst_then_refuses_and_refills,
    idempotency_records,
);

#[tokio::test]
async fn backends_are_named() {
    assert_eq!(Cache::connect(None).await.unwrap().backend_name(), "in-process");
    assert_eq!(redis_cache().await.backend_name(), "redis");
}

#[tokio::test]
async fn replicas_share_the_redis_cache() {
    let url = redis_url().await;
    let prefix = unique_prefix();
    let first = Cache::connect_with_prefix(Some(&url), &prefix).await.unwrap();
    let second = Cache::connect_with_prefix(Some(&url), &prefix).await.unwrap();
    first.offer_seat_count("acme", count(2, 2)).await;
    assert_eq!(second.seat_count("acme").await, Some(count(2, 2)));
    second.offer_seat_count("acme", count(1, 1)).await;
    assert_eq!(first.seat_count("acme").await, Some(count(2, 2)), "the version check spans replicas");
    let limit = RateLimit { per_minute: 1, burst: 1 };
    assert_eq!(first.check_rate("203.0.113.9", limit).await, Ok(()));
    assert!(second.check_rate("203.0.113.9", limit).await.is_err(), "the limit spans replicas");
    assert_eq!(first.idempotency_begin("signup", "k", "fp").await.unwrap(), Begin::Started);
    assert_eq!(second.idempotency_begin("signup", "k", "fp").await.unwrap(), Begin::InFlight);
    let other = Cache::connect_with_prefix(Some(&url), &unique_prefix()).await.unwrap();
    assert_eq!(other.seat_count("acme").await, None, "prefixes keep deployments apart");
}

#[tokio::test]
async fn unreachable_redis_degrades_without_failing() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let cache =
        Cache::connect_with_prefix(Some(&url), &unique_prefix()).await.expect("connecting never waits for Redis");
    assert_eq!(cache.backend_name(), "redis");
    assert!(cache.ping().await.is_err(), "readiness reports the outage");

    let started = Instant::now();
    cache.offer_seat_count("acme", count(1, 1)).await;
    assert_eq!(cache.seat_count("acme").await, None, "reads miss and go to the store");
    cache.forget_seat_count("acme").await;
    let strict = RateLimit { per_minute: 1, burst: 1 };
    for _ in 0..5 {
        assert_eq!(cache.check_rate("203.0.113.7", strict).await, Ok(()), "the limiter fails open");
    }
    assert!(cache.idempotency_begin("signup", "k", "fp").await.is_err(), "the caller decides");
    assert!(cache.idempotency_finish("signup", "k", &record("fp")).await.is_err());
    assert!(cache.idempotency_abandon("signup", "k").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(8), "bounded waits: {:?}", started.elapsed());

    // Once paused after a failure, reads skip Redis: a burst of reads costs nothing.
    let reads = Instant::now();
    for _ in 0..100 {
        assert_eq!(cache.seat_count("acme").await, None);
    }
    assert!(reads.elapsed() < Duration::from_millis(500), "{:?}", reads.elapsed());
}

#[tokio::test]
async fn bad_redis_urls_are_refused_without_echoing_them() {
    for url in ["not a url", "http://example.com/", "redis://:hunter2@[::1"] {
        let error = Cache::connect(Some(url)).await.expect_err(url);
        assert!(matches!(error, CacheError::InvalidUrl), "{url}: {error}");
        assert!(!error.to_string().contains("hunter2"));
    }
}
