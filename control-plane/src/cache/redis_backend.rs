//! The Redis backend: shared by every replica. Each operation is one round trip; the ones that
//! read and then write are Lua scripts, which Redis runs atomically.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisResult};

use super::throttle::Throttle;
use super::{
    Begin, CacheError, IDEMPOTENCY_TTL, IN_FLIGHT_TTL, IdempotencyRecord, RateLimit, RetryAfter, SEAT_COUNT_TTL,
};
use crate::store::SeatCount;

/// Upper bound on any cache operation, reconnection included: past it, the request proceeds
/// without the cache.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);

/// Versions are stored as 20 decimal digits of the version with its sign bit flipped, so that
/// comparing the strings in Lua orders them exactly like the `i64`s (Lua numbers are doubles
/// and would round versions beyond 2^53).
const VERSION_DIGITS: usize = 20;

/// Stores the seat count in ARGV[2] unless the cached entry's version (its first 20 bytes) is
/// the same or newer. A tombstone carries the greatest version, so nothing replaces it.
const OFFER_SEAT_COUNT: &str = r"
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 20) >= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// GCRA (see `gcra.rs`) on the server's clock, so replicas with skewed clocks agree.
/// ARGV: interval and tolerance in microseconds. Returns 0 when allowed, else the wait in µs.
const CHECK_RATE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then
  tat = now
end
local allowed_from = tat - tolerance
if now < allowed_from then
  return allowed_from - now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return 0
";

/// Returns the existing value, or claims the key with the in-flight marker and returns nil.
const IDEMPOTENCY_BEGIN: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Deletes the key only while it is in flight: a finished record must survive a late abandon.
const IDEMPOTENCY_ABANDON: &str = r"
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 1) == 'I' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Stored idempotency values: `I<fingerprint>` while in flight, `D<record JSON>` when done.
const IN_FLIGHT_MARK: u8 = b'I';
const DONE_MARK: u8 = b'D';

#[derive(Clone)]
pub(super) struct RedisCache {
    connection: ConnectionManager,
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    prefix: String,
    offer_seat_count: LuaScript,
    check_rate: LuaScript,
    idempotency_begin: LuaScript,
    idempotency_abandon: LuaScript,
    throttle: Throttle,
}

/// Short timeouts and few retries: a request waiting on a dead Redis is worse than one served
/// from the store.
fn lazy_connection(client: &Client) -> Result<ConnectionManager, CacheError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1));
    Ok(ConnectionManager::new_lazy_with_config(client.clone(), config)?)
}

impl RedisCache {
    pub(super) async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = Client::open(url).map_err(|_| CacheError::InvalidUrl)?;
        let connection = lazy_connection(&client)?;
        let cache = Self {
            connection,
            shared: Arc::new(Shared {
                client,
                prefix: prefix.to_owned(),
                offer_seat_count: LuaScript::new(OFFER_SEAT_COUNT),
                check_rate: LuaScript::new(CHECK_RATE),
                idempotency_begin: LuaScript::new(IDEMPOTENCY_BEGIN),
                idempotency_abandon: LuaScript::new(IDEMPOTENCY_ABANDON),
                throttle: Throttle::new(),
            }),
        };
        if let Err(error) = cache.ping().await {
            tracing::warn!(%error, "redis is not reachable yet; the cache runs degraded until it is");
        }
        Ok(cache)
    }

    /// The same cache over a connection of its own, which connects on first use from the
    /// caller's runtime: each HTTP worker thread gets one, so a request's round trip never
    /// crosses to another thread's connection task.
    pub(super) fn with_own_connection(&self) -> Result<Self, CacheError> {
        Ok(Self { connection: lazy_connection(&self.shared.client)?, shared: self.shared.clone() })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        let mut key = String::with_capacity(self.shared.prefix.len() + kind.len() + name.len());
        key.push_str(&self.shared.prefix);
        key.push_str(kind);
        key.push_str(name);
        key
    }

    async fn run<T>(&self, operation: impl Future<Output = RedisResult<T>>) -> Result<T, CacheError> {
        match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CacheError::Timeout(OPERATION_TIMEOUT)),
        }
    }

    /// Runs a script by its SHA-1 (one round trip), sending its text only when this Redis has
    /// not seen it yet (first use, or after a restart or `SCRIPT FLUSH`).
    async fn eval<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &str,
        add_arguments: impl Fn(&mut Cmd),
    ) -> Result<T, CacheError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("EVALSHA");
        command.arg(&script.sha1).arg(1).arg(key);
        add_arguments(&mut command);
        match self.run(command.query_async(&mut connection)).await {
            Err(CacheError::Redis(error)) if error.code() == Some("NOSCRIPT") => {
                let mut command = redis::cmd("EVAL");
                command.arg(script.code).arg(1).arg(key);
                add_arguments(&mut command);
                self.run(command.query_async(&mut connection)).await
            }
            other => other,
        }
    }

    pub(super) async fn ping(&self) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let pong: String = self.run(redis::cmd("PING").query_async(&mut connection)).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(CacheError::Corrupt { key: "PING".into(), reason: format!("unexpected reply {pong:?}") })
        }
    }

    pub(super) async fn seat_count(&self, slug: &str) -> Option<SeatCount> {
        if self.shared.throttle.paused() {
            return None;
        }
        let key = self.key("seats:", slug);
        let mut connection = self.connection.clone();
        let reply: Option<Vec<u8>> = match self.run(redis::cmd("GET").arg(&key).query_async(&mut connection)).await {
            Ok(reply) => reply,
            Err(error) => {
                self.shared.throttle.failed("seat_count", &error);
                return None;
            }
        };
        match decode_seat_entry(reply.as_deref()?) {
            Ok(count) => count,
            Err(reason) => {
                tracing::warn!(key, reason, "ignoring an unreadable cached seat count");
                None
            }
        }
    }

    pub(super) async fn offer_seat_count(&self, slug: &str, count: SeatCount) {
        let version = encode_version(count.version);
        let value = format!("{version}:{}:{}", count.count, count.max_seats);
        self.put_seat_entry("offer_seat_count", slug, &version, &value).await;
    }

    pub(super) async fn forget_seat_count(&self, slug: &str) {
        let version = encode_version(i64::MAX);
        let value = format!("{version}:-");
        self.put_seat_entry("forget_seat_count", slug, &version, &value).await;
    }

    async fn put_seat_entry(&self, operation: &'static str, slug: &str, version: &str, value: &str) {
        let key = self.key("seats:", slug);
        let stored = self
            .eval::<i64>(&self.shared.offer_seat_count, &key, |command| {
                command.arg(version).arg(value).arg(millis(SEAT_COUNT_TTL));
            })
            .await;
        match stored {
            Ok(_) => self.shared.throttle.recovered(),
            Err(error) => self.shared.throttle.failed(operation, &error),
        }
    }

    pub(super) async fn check_rate(&self, key: &str, limit: RateLimit) -> Result<(), RetryAfter> {
        if self.shared.throttle.paused() {
            return Ok(());
        }
        let key = self.key("rate:", key);
        let decision = self
            .eval::<i64>(&self.shared.check_rate, &key, |command| {
                command.arg(micros(limit.interval())).arg(micros(limit.tolerance()));
            })
            .await;
        match decision {
            Ok(0) => Ok(()),
            Ok(wait) => Err(RetryAfter(Duration::from_micros(wait.unsigned_abs()))),
            Err(error) => {
                // Fail open: a limiter outage must not turn into a signup outage.
                self.shared.throttle.failed("check_rate", &error);
                Ok(())
            }
        }
    }

    pub(super) async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Begin, CacheError> {
        let name = self.idempotency_key(scope, key);
        let mut marker = Vec::with_capacity(1 + fingerprint.len());
        marker.push(IN_FLIGHT_MARK);
        marker.extend_from_slice(fingerprint.as_bytes());
        let existing: Option<Vec<u8>> = self
            .eval(&self.shared.idempotency_begin, &name, |command| {
                command.arg(&marker).arg(millis(IN_FLIGHT_TTL));
            })
            .await?;
        let Some(existing) = existing else {
            return Ok(Begin::Started);
        };
        match existing.split_first() {
            Some((&IN_FLIGHT_MARK, theirs)) if theirs == fingerprint.as_bytes() => Ok(Begin::InFlight),
            Some((&IN_FLIGHT_MARK, _)) => Ok(Begin::Mismatch),
            Some((&DONE_MARK, json)) => {
                let record: IdempotencyRecord = serde_json::from_slice(json)
                    .map_err(|error| CacheError::Corrupt { key: name.clone(), reason: error.to_string() })?;
                Ok(if record.fingerprint == fingerprint { Begin::Done(record) } else { Begin::Mismatch })
            }
            _ => Err(CacheError::Corrupt { key: name, reason: "neither in flight nor done".into() }),
        }
    }

    pub(super) async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), CacheError> {
        let name = self.idempotency_key(scope, key);
        let mut value = vec![DONE_MARK];
        serde_json::to_writer(&mut value, record)
            .map_err(|error| CacheError::Corrupt { key: name.clone(), reason: error.to_string() })?;
        let mut connection = self.connection.clone();
        let command = redis::cmd("SET").arg(&name).arg(value).arg("PX").arg(millis(IDEMPOTENCY_TTL)).to_owned();
        self.run(command.query_async::<()>(&mut connection)).await
    }

    pub(super) async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<(), CacheError> {
        let name = self.idempotency_key(scope, key);
        self.eval::<i64>(&self.shared.idempotency_abandon, &name, |_| {}).await.map(drop)
    }

    fn idempotency_key(&self, scope: &str, key: &str) -> String {
        self.key("idem:", &format!("{scope}:{key}"))
    }
}

struct LuaScript {
    code: &'static str,
    sha1: String,
}

impl LuaScript {
    fn new(code: &'static str) -> Self {
        // Redis names scripts by SHA-1; it is an identifier here, not a security measure.
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, code.as_bytes());
        let sha1 = digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
        Self { code, sha1 }
    }
}

fn encode_version(version: i64) -> String {
    format!("{:0width$}", version.cast_unsigned() ^ (1 << 63), width = VERSION_DIGITS)
}

fn decode_version(digits: &[u8]) -> Option<i64> {
    if digits.len() != VERSION_DIGITS {
        return None;
    }
    let biased: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((biased ^ (1 << 63)).cast_signed())
}

/// `<version>:<count>:<max_seats>`, or `<version>:-` for a deleted tenant (→ `None`).
fn decode_seat_entry(bytes: &[u8]) -> Result<Option<SeatCount>, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    let mut fields = text.split(':');
    let version = fields.next().and_then(|v| decode_version(v.as_bytes())).ok_or("bad version")?;
    let count = fields.next().ok_or("no count")?;
    if count == "-" {
        return Ok(None);
    }
    let count = count.parse().map_err(|_| "bad count")?;
    let max_seats = fields.next().ok_or("no max_seats")?.parse().map_err(|_| "bad max_seats")?;
    if fields.next().is_some() {
        return Err("trailing fields");
    }
    Ok(Some(SeatCount { count, max_seats, version }))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_versions_sort_like_the_numbers() {
        let versions = [i64::MIN, -1_000_000, -1, 0, 1, 2, 9, 10, 1 << 53, (1 << 53) + 1, i64::MAX - 1, i64::MAX];
        for pair in versions.windows(2) {
            let (a, b) = (encode_version(pair[0]), encode_version(pair[1]));
            assert_eq!(a.len(), VERSION_DIGITS);
            assert!(a < b, "{} < {} but {a} >= {b}", pair[0], pair[1]);
        }
        for version in versions {
            assert_eq!(decode_version(encode_version(version).as_bytes()), Some(version));
        }
    }

    #[test]
    fn seat_entries_round_trip() {
        let count = SeatCount { count: 7, max_seats: 50, version: 123 };
        let encoded = format!("{}:7:50", encode_version(123));
        assert_eq!(decode_seat_entry(encoded.as_bytes()), Ok(Some(count)));
        let tombstone = format!("{}:-", encode_version(i64::MAX));
        assert_eq!(decode_seat_entry(tombstone.as_bytes()), Ok(None));
        for bad in
            ["", "12:7:50", "junk", &format!("{}:x:50", encode_version(1)), &format!("{}:7:50:1", encode_version(1))]
        {
            assert!(decode_seat_entry(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
