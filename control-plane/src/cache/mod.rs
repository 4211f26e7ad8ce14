//! Shared short-lived state: the seat-count cache, signup rate limits and idempotency records.
//!
//! Two backends with the same behaviour, chosen at start-up: Redis when `REDIS_URL` is
//! configured (so every replica sees the same state), in process otherwise (the embedded
//! default). The cache is an accelerator, never a source of truth: when Redis fails, reads miss
//! and the caller goes to the store, and rate limits let requests through.

mod gcra;
mod memory;
mod redis_backend;
mod throttle;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::SeatCount;

/// Key prefix in Redis, so the control plane can share a Redis with other software.
pub const DEFAULT_PREFIX: &str = "tenantry:";

/// How long a cached seat count (or a deleted tenant's tombstone) lives. Bounds memory and the
/// damage of a lost update: a count can never be older than this.
pub const SEAT_COUNT_TTL: Duration = Duration::from_secs(10 * 60);

/// How long a finished request's response is replayed for the same `Idempotency-Key`.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a key stays "in flight". A request normally finishes or abandons its key within
/// a second; this only frees keys of requests whose process died mid-way, so it is short: a
/// retry is held back at most this long. Expiring early is safe: a request that uses the key
/// with a durable effect records it in the store, which finds it and refuses a second commit.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(15);

/// Idempotency keys are client-chosen; the bound keeps them from being a memory sink.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The message deliberately omits the URL: it may carry a password.
    #[error("REDIS_URL is not a valid Redis URL (expected redis://[user:password@]host:port/[db])")]
    InvalidUrl,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected value in the cache under {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "invalid Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters without spaces are allowed"
    )]
    InvalidIdempotencyKey,
    #[error("invalid idempotency scope {0:?}: lowercase letters, digits, '.', '_' and '-' only")]
    InvalidScope(String),
}

/// A token-bucket style limit: `burst` requests at once, refilled at `per_minute`.
/// Zero values are treated as 1 (a limit that allows nothing is a configuration mistake the
/// configuration layer refuses; here it must not divide by zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    /// Time between two requests at the sustained rate.
    pub(crate) fn interval(self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }

    /// How far ahead of now the bucket's theoretical arrival time may run: `burst - 1` intervals.
    pub(crate) fn tolerance(self) -> Duration {
        self.interval() * (self.burst.max(1) - 1)
    }
}

/// The request was refused; the client may try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header, rounded up and at least 1, so a client that
    /// honours it is never refused again for being early.
    pub fn header_seconds(&self) -> u64 {
        let whole = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        whole.max(1)
    }
}

/// A finished request, replayed for a retry with the same key and body. Never holds secrets:
/// the caller strips tokens before recording it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of the request body, so a key reused with another body is detected.
    pub fingerprint: String,
    pub status: u16,
    pub body: serde_json::Value,
}

/// What a request holding an `Idempotency-Key` should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// First use of the key: do the work, then `idempotency_finish` (or `_abandon` on failure).
    Started,
    /// Another request with this key is being processed.
    InFlight,
    /// Already done: replay this response.
    Done(IdempotencyRecord),
    /// The key was used with a different request body.
    Mismatch,
}

/// The cache handle; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Cache {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Redis(redis_backend::RedisCache),
    Memory(memory::MemoryCache),
}

impl Cache {
    /// Redis when a URL is given, in process otherwise.
    pub async fn connect(redis_url: Option<&str>) -> Result<Self, CacheError> {
        Self::connect_with_prefix(redis_url, DEFAULT_PREFIX).await
    }

    /// Like [`Cache::connect`] with every Redis key under `prefix` (tests use one per test).
    /// An unreachable Redis is not an error here: it is logged, and the cache degrades until
    /// Redis answers (see [`Cache::ping`] for readiness).
    pub async fn connect_with_prefix(redis_url: Option<&str>, prefix: &str) -> Result<Self, CacheError> {
        let backend = match redis_url {
            Some(url) => Backend::Redis(redis_backend::RedisCache::connect(url, prefix).await?),
            None => Backend::Memory(memory::MemoryCache::default()),
        };
        Ok(Self { backend })
    }

    /// A handle for one HTTP worker thread: with Redis, a connection of its own (see
    /// `RedisCache::with_own_connection`); in process, the same shared maps.
    pub fn for_worker(&self) -> Self {
        match &self.backend {
            Backend::Redis(redis) => match redis.with_own_connection() {
                Ok(own) => Self { backend: Backend::Redis(own) },
                Err(error) => {
                    tracing::warn!(%error, "a worker shares the first Redis connection");
                    self.clone()
                }
            },
            Backend::Memory(_) => self.clone(),
        }
    }

    /// The in-process backend.
    pub fn in_process() -> Self {
        Self { backend: Backend::Memory(memory::MemoryCache::default()) }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "in-process",
        }
    }

    /// One round trip to Redis (always fine in process), for `/readyz`.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &self.backend {
            Backend::Redis(redis) => redis.ping().await,
            Backend::Memory(_) => Ok(()),
        }
    }

    /// The cached seat count of a tenant; `None` on a miss, for a deleted tenant, or when Redis
    /// fails (logged): the caller then reads the store and offers what it read.
    pub async fn seat_count(&self, slug: &str) -> Option<SeatCount> {
        match &self.backend {
            Backend::Redis(redis) => redis.seat_count(slug).await,
            Backend::Memory(memory) => memory.seat_count(slug),
        }
    }

    /// Caches `count` unless a count with the same or a newer `version` is cached (or the tenant
    /// was forgotten). Writers offer the count of their own commit, readers offer what they read;
    /// since the newer version always wins, a slow reader cannot overwrite a later write.
    pub async fn offer_seat_count(&self, slug: &str, count: SeatCount) {
        match &self.backend {
            Backend::Redis(redis) => redis.offer_seat_count(slug, count).await,
            Backend::Memory(memory) => memory.offer_seat_count(slug, count),
        }
    }

    /// The tenant is deleted: leaves a tombstone that outranks every version, so a reader that
    /// read the count before the deletion cannot bring it back.
    pub async fn forget_seat_count(&self, slug: &str) {
        match &self.backend {
            Backend::Redis(redis) => redis.forget_seat_count(slug).await,
            Backend::Memory(memory) => memory.forget_seat_count(slug),
        }
    }

    /// Counts one request of client `key` against `limit`. With Redis unreachable the request is
    /// allowed (and a warning logged): signups must not stop because the limiter's store did.
    pub async fn check_rate(&self, key: &str, limit: RateLimit) -> Result<(), RetryAfter> {
        match &self.backend {
            Backend::Redis(redis) => redis.check_rate(key, limit).await,
            Backend::Memory(memory) => memory.check_rate(key, limit),
        }
    }

    /// Claims `key` in `scope` for a request whose body hashes to `fingerprint`. Errors (Redis
    /// down) are returned: the caller chooses between refusing and going ahead without replay.
    pub async fn idempotency_begin(&self, scope: &str, key: &str, fingerprint: &str) -> Result<Begin, CacheError> {
        check_idempotency_key(scope, key)?;
        match &self.backend {
            Backend::Redis(redis) => redis.idempotency_begin(scope, key, fingerprint).await,
            Backend::Memory(memory) => Ok(memory.idempotency_begin(scope, key, fingerprint)),
        }
    }

    /// Records the response to replay for [`IDEMPOTENCY_TTL`].
    pub async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), CacheError> {
        check_idempotency_key(scope, key)?;
        match &self.backend {
            Backend::Redis(redis) => redis.idempotency_finish(scope, key, record).await,
            Backend::Memory(memory) => {
                memory.idempotency_finish(scope, key, record);
                Ok(())
            }
        }
    }

    /// The request failed without effect: frees an in-flight key so the client may retry.
    /// A finished record is left alone.
    pub async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<(), CacheError> {
        check_idempotency_key(scope, key)?;
        match &self.backend {
            Backend::Redis(redis) => redis.idempotency_abandon(scope, key).await,
            Backend::Memory(memory) => {
                memory.idempotency_abandon(scope, key);
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("backend", &self.backend_name()).finish()
    }
}

/// The scope never contains ':' so `<scope>:<key>` names one pair only; the key excludes
/// spaces and control characters so it is safe in keys and logs.
fn check_idempotency_key(scope: &str, key: &str) -> Result<(), CacheError> {
    let scope_ok = !scope.is_empty()
        && scope.len() <= 64
        && scope.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !scope_ok {
        return Err(CacheError::InvalidScope(scope.to_owned()));
    }
    let key_ok = !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic());
    if !key_ok {
        return Err(CacheError::InvalidIdempotencyKey);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).header_seconds(), 1);
        assert_eq!(RetryAfter(Duration::ZERO).header_seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(6000)).header_seconds(), 6);
        assert_eq!(RetryAfter(Duration::from_millis(6001)).header_seconds(), 7);
    }

    #[test]
    fn rate_limit_intervals() {
        let limit = RateLimit { per_minute: 10, burst: 5 };
        assert_eq!(limit.interval(), Duration::from_secs(6));
        assert_eq!(limit.tolerance(), Duration::from_secs(24));
        let degenerate = RateLimit { per_minute: 0, burst: 0 };
        assert_eq!(degenerate.interval(), Duration::from_secs(60));
        assert_eq!(degenerate.tolerance(), Duration::ZERO);
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert!(check_idempotency_key("signup", "0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
        assert!(matches!(check_idempotency_key("signup", ""), Err(CacheError::InvalidIdempotencyKey)));
        assert!(matches!(check_idempotency_key("signup", "a b"), Err(CacheError::InvalidIdempotencyKey)));
        assert!(matches!(check_idempotency_key("signup", "a\nb"), Err(CacheError::InvalidIdempotencyKey)));
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
        assert!(matches!(check_idempotency_key("signup", &long), Err(CacheError::InvalidIdempotencyKey)));
        assert!(matches!(check_idempotency_key("sign:up", "k"), Err(CacheError::InvalidScope(_))));
        assert!(matches!(check_idempotency_key("", "k"), Err(CacheError::InvalidScope(_))));
    }
}
