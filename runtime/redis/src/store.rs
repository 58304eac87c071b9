//! [`RedisStore`] (feature `redis`): idempotency keys in Redis, shared by
//! every process and machine that points at the same server.
//!
//! # What it guarantees
//!
//! The semantics are those of [`MemoryStore`](buttress_core::idempotency::MemoryStore), across
//! processes:
//!
//! - **One round trip per operation.** [`claim`](IdempotencyStore::claim),
//!   [`complete`](IdempotencyStore::complete) and
//!   [`release`](IdempotencyStore::release) each run one Lua script on the
//!   server (`EVALSHA`, falling back to `EVAL` once when the server does not
//!   have the script cached yet). Redis runs a script atomically, so of many
//!   concurrent claims of a fresh key — from any number of processes —
//!   exactly one is `Acquired`.
//! - **Leases on the server's clock.** Lease deadlines are computed inside
//!   the scripts from Redis's own `TIME`, so the clocks of the calling
//!   machines do not matter.
//! - **Fencing.** Every claim that takes a key increments its fencing token;
//!   only the holder of the current token can complete or release it, so a
//!   holder whose lease expired (a crashed or paused process) can never
//!   overwrite the result of the caller that took over.
//! - **Bounded waits.** Every request is bounded by a timeout (2 s by
//!   default, [`RedisStore::with_timeout`]); a slow or hung server becomes a
//!   [`StoreError`] of kind [`Unavailable`](StoreErrorKind::Unavailable),
//!   never a hung call. A request that timed out may still have been applied:
//!   a claim then holds the key until its lease expires (duplicates get
//!   `InFlight` meanwhile), a completion may or may not be stored.
//! - **No secrets in errors.** Error messages name the server by its URL
//!   without the password, and never contain the idempotency key.
//!
//! It does not make Redis durable: with asynchronous replication or without
//! persistence, a failover or restart can lose the latest claims and
//! results, and the provider-side idempotency key is then the only
//! protection against a resend. Use a standalone server or a primary
//! (`ConnectionManager` is not cluster-aware; each script touches one key, so
//! a cluster-aware proxy works too).
//!
//! # Data layout
//!
//! One hash per idempotency key, at `{prefix}{key}:{n}` where `n` is the
//! key's length in bytes (default prefix `buttress:idem:`, see
//! [`RedisStore::with_prefix`]): the name `buttress:idem:order-1:7` holds
//! the key `order-1`. Read from its end, a name gives back exactly one
//! prefix and key, so two stores with different prefixes never meet on a
//! name, whatever the keys (with `{prefix}{key}`, the prefix `p:` and the
//! key `tenant:order-1` met the prefix `p:tenant:` and the key `order-1`).
//! The key appears only in that name.
//!
//! Upgrading from the earlier layout (`{prefix}{key}`): old records are no
//! longer found, so a retry of an operation completed before the upgrade
//! is carried out again unless the provider deduplicates it. Upgrade every
//! replica at once during a quiet period, or wait out the TTL with the old
//! version before switching; the old hashes expire by themselves.
//!
//! | field | meaning |
//! |---|---|
//! | `state` | `flight` (claimed), `done` (completed), `free` (released after a failure) |
//! | `fence` | the fencing token, incremented (`HINCRBY`) by every claim that takes the key; kept across releases and lease expiries |
//! | `lease_until` | when the current claim's lease ends, in milliseconds of the server's clock |
//! | `fp` | the argument fingerprint as a decimal string, empty without one |
//! | `record` | the stored result (only while `done`) |
//! | `nonce` | the current claim's own mark (random, per claim), so that the claim sent again after a dropped connection is recognised as the same claim |
//!
//! A claim that takes the key sets its expiry (`PEXPIRE`) to the larger of
//! the TTL and the lease, so the key — and with it the fence — outlives the
//! lease; a completion sets it to the TTL. Once a key has expired, the next
//! claim starts again at fence 1, as for a fresh key: a holder that outlives
//! its lease by more than the key's retention (normally the TTL, hours) could
//! then see its token reissued.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};

use buttress_core::__backend::redis::Lua;

use buttress_core::idempotency::{
    Claim, ClaimRequest, IdempotencyStore, StoreError, StoreErrorKind,
};

/// The default key prefix.
const DEFAULT_PREFIX: &str = "buttress:idem:";

/// The default bound on one request (and on connecting).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Durations are sent in milliseconds, clamped to about a century: Lua
/// numbers are doubles, and lease deadlines must stay exact integers.
const MAX_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// KEYS[1]: the key's hash. ARGV: lease (ms), retention (ms), fingerprint
/// (decimal, empty for none), the claim's nonce. Replies `{1, fence}`
/// acquired (also to the same claim sent again: same nonce, key still in
/// flight), `{2, ms}` in flight for `ms` more, `{3, record}` completed,
/// `{4}` fingerprint mismatch, `{0, reason}` unreadable contents.
const CLAIM_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'fp', 'record', 'nonce', 'fence')
local state = h[1]
if state == 'flight' and ARGV[4] and ARGV[4] ~= '' and h[5] == ARGV[4] then
  return {1, tonumber(h[6])}
end
if state then
  local mismatch = ARGV[3] ~= '' and h[3] and h[3] ~= '' and h[3] ~= ARGV[3]
  if state == 'done' then
    if mismatch then return {4} end
    if not h[4] then return {0, 'a completed key without a record'} end
    return {3, h[4]}
  elseif state == 'flight' then
    if mismatch then return {4} end
    local lease_until = tonumber(h[2])
    if not lease_until then return {0, 'a claimed key without a lease deadline'} end
    if lease_until > now then return {2, lease_until - now} end
  elseif state ~= 'free' then
    return {0, 'a key in an unknown state'}
  end
end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('HSET', KEYS[1], 'state', 'flight',
  'lease_until', string.format('%.0f', now + tonumber(ARGV[1])), 'fp', ARGV[3], 'nonce', ARGV[4])
redis.call('HDEL', KEYS[1], 'record')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, fence}
";

/// KEYS[1]: the key's hash. ARGV: fence, record, TTL (ms). Replies 1 when
/// stored, 0 when `fence` no longer holds the key (also to a completion
/// sent again after the first was stored: the store then reports the
/// record as not stored, the safe side; it is, once).
const COMPLETE_LUA: &str = r"
local h = redis.call('HMGET', KEYS[1], 'state', 'fence')
if h[1] ~= 'flight' or h[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'record', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// KEYS[1]: the key's hash. ARGV: fence. Replies 1 when released, 0 when
/// `fence` no longer holds the key.
const RELEASE_LUA: &str = r"
local h = redis.call('HMGET', KEYS[1], 'state', 'fence')
if h[1] ~= 'flight' or h[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'free')
return 1
";

static CLAIM: Lua = Lua {
    name: "claim",
    source: CLAIM_LUA,
    script: LazyLock::new(|| Script::new(CLAIM_LUA)),
};
static COMPLETE: Lua = Lua {
    name: "complete",
    source: COMPLETE_LUA,
    script: LazyLock::new(|| Script::new(COMPLETE_LUA)),
};
static RELEASE: Lua = Lua {
    name: "release",
    source: RELEASE_LUA,
    script: LazyLock::new(|| Script::new(RELEASE_LUA)),
};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).min(MAX_MS)
}

struct Shared {
    /// The server's URL without its password.
    endpoint: String,
    round_trips: AtomicU64,
}

/// An [`IdempotencyStore`] in Redis: deduplicates one logical operation
/// across processes and machines, with the semantics of
/// [`MemoryStore`](buttress_core::idempotency::MemoryStore).
///
/// - Each claim, completion and release is **one request**: a Lua script
///   that Redis runs atomically (`EVALSHA`, plus one `EVAL` the first time
///   the server lacks the script), so of many concurrent claims of a fresh
///   key, from any number of processes, exactly one is `Acquired`.
/// - Leases are timed on the **server's clock** (`TIME` inside the script);
///   the callers' clocks do not matter.
/// - **Fencing tokens** survive releases and lease expiries, so a holder
///   whose lease expired cannot overwrite its successor's result.
/// - Every request is bounded by a **timeout** (2 s, [`with_timeout`](Self::with_timeout));
///   an unreachable or hung server is a [`StoreError`] of kind
///   [`Unavailable`](StoreErrorKind::Unavailable) that names the server
///   (without its password) and what to check; a reply the store cannot
///   read is [`Corrupt`](StoreErrorKind::Corrupt). Errors never contain the
///   idempotency key.
///
/// Each key is one hash at `{prefix}{key}:{length of key in bytes}`
/// (default prefix `buttress:idem:`; read from its end, a name gives back
/// exactly one prefix and key, so stores with different prefixes never meet
/// on a name, whatever the keys; records written under the earlier
/// `{prefix}{key}` layout are not found: upgrade every replica at once, or
/// let the old version run out the TTL first), with the fields `state` (`flight`, `done` or `free`), `fence`,
/// `lease_until` (server milliseconds), `fp` (the fingerprint in decimal,
/// empty without one), `record` (the stored result) and `nonce` (the
/// current claim's mark, for a claim sent again); it expires after
/// the larger of the TTL and the lease once claimed, after the TTL once
/// completed. Redis's durability is the limit: a failover with asynchronous
/// replication, or a restart without persistence, can lose recent claims and
/// results, and the provider-side idempotency key is then the protection.
///
/// Cheap to clone: clones share the connection (a [`ConnectionManager`],
/// which reconnects by itself after the server went away) and the
/// [request count](Self::round_trips).
///
/// ```no_run
/// # async fn demo() -> Result<(), buttress::idempotency::StoreError> {
/// use buttress::idempotency::RedisStore;
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/")
///     .await?
///     .with_prefix("payments:idem:");
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    shared: Arc<Shared>,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("endpoint", &self.shared.endpoint)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("round_trips", &self.round_trips())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connect to the Redis server at `url` (`redis://[user:password@]host:port/db`,
    /// `rediss://` for TLS if the `redis` crate was built with it), waiting
    /// at most 2 s per connection attempt.
    ///
    /// # Errors
    /// A [`StoreError`] of kind [`Unavailable`](StoreErrorKind::Unavailable)
    /// when the URL is invalid or the server cannot be reached; its message
    /// names the server (without the password) and what to check.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (connection, endpoint) =
            buttress_core::__backend::redis::connect(url, DEFAULT_TIMEOUT, "the idempotency store")
                .await
                .map_err(|m| StoreError::new(StoreErrorKind::Unavailable, m))?;
        Ok(Self {
            connection,
            shared: Arc::new(Shared {
                endpoint,
                round_trips: AtomicU64::new(0),
            }),
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Put every key under `prefix` (default `buttress:idem:`), e.g. one
    /// prefix per application sharing a server. Stores with different
    /// prefixes never see each other's keys.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Bound each request to Redis by `timeout` (default 2 s), including the
    /// wait for a reconnection; past it the operation fails with
    /// [`Unavailable`](StoreErrorKind::Unavailable).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Requests sent to Redis by this store (and its clones) so far: one per
    /// claim, completion or release, plus one more the first time a script
    /// has to be sent in full (`EVAL`) because the server did not have it
    /// cached. A request is counted when it is issued, so one that failed
    /// for want of a connection counts too.
    #[must_use]
    pub fn round_trips(&self) -> u64 {
        self.shared.round_trips.load(Ordering::Relaxed)
    }

    /// `{prefix}{key}:{key.len()}`: decoded from its end, one name gives
    /// one (prefix, key) pair, so different prefixes never share a name.
    fn key_name(&self, key: &str) -> String {
        use std::fmt::Write as _;
        let mut name = String::with_capacity(self.prefix.len() + key.len() + 8);
        name.push_str(&self.prefix);
        name.push_str(key);
        let _ = write!(name, ":{}", key.len());
        name
    }

    /// Run `lua` on the key: `EVALSHA`, then `EVAL` if the server does not
    /// have the script, all within the timeout.
    async fn eval(&self, lua: &Lua, key: &str, args: &[&[u8]]) -> Result<Value, StoreError> {
        let name = self.key_name(key);
        let keys = [name.as_bytes()];
        let mut connection = self.connection.clone();
        let round_trips = &self.shared.round_trips;
        let exchange = async {
            match buttress_core::__backend::redis::eval(
                &mut connection,
                lua,
                &keys,
                args,
                round_trips,
            )
            .await
            {
                // The connection had died (a restart while it sat idle):
                // the manager reconnects, and sending again is safe: a claim
                // recognises its own mark, a completion or a release sent
                // twice changes nothing the first did (a completion that
                // had landed is reported as not stored, the safe side).
                Err(e) if buttress_core::__backend::redis::worth_resending(&e) => {
                    buttress_core::__backend::redis::eval(
                        &mut connection,
                        lua,
                        &keys,
                        args,
                        round_trips,
                    )
                    .await
                }
                answer => answer,
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.failure(lua.name, &e)),
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "Redis at {} did not answer the {} request within {:?}; check that the server is up, reachable and not overloaded (the request may still have been applied)",
                    self.shared.endpoint, lua.name, self.timeout
                ),
            )),
        }
    }

    /// [`claim`](IdempotencyStore::claim) with the claim's mark given:
    /// the same claim sent twice (a resend after a dropped connection)
    /// gets `Acquired` with the same fence both times. Not public API: for
    /// the tests of that resend.
    #[doc(hidden)]
    pub async fn claim_marked(
        &self,
        request: ClaimRequest<'_>,
        nonce: &str,
    ) -> Result<Claim, StoreError> {
        let lease = millis(request.lease);
        let retention = millis(request.ttl).max(lease).max(1);
        let fingerprint = request
            .fingerprint
            .map(|f| f.to_string())
            .unwrap_or_default();
        let reply = self
            .eval(
                &CLAIM,
                request.key,
                &[
                    lease.to_string().as_bytes(),
                    retention.to_string().as_bytes(),
                    fingerprint.as_bytes(),
                    nonce.as_bytes(),
                ],
            )
            .await?;
        self.parse_claim(reply)
    }

    fn failure(&self, operation: &str, e: &RedisError) -> StoreError {
        let endpoint = &self.shared.endpoint;
        let unavailable = |hint: &str| {
            StoreError::new(
                StoreErrorKind::Unavailable,
                format!("Redis at {endpoint} failed the {operation} request: {e}; {hint}"),
            )
        };
        match e.kind() {
            ErrorKind::Io => unavailable(
                "check that Redis is running and reachable at that address (the connection is re-established on the next request)",
            ),
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
                unavailable("check the URL's user and password, and that the user may run EVAL, EVALSHA and the hash commands")
            }
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly,
            ) => unavailable("check that the URL points at a writable primary that has finished loading"),
            ErrorKind::Server(
                ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::CrossSlot,
            ) => unavailable("the URL points at a Redis Cluster node; use a standalone server, a primary, or a cluster-aware proxy"),
            ErrorKind::Server(_) | ErrorKind::Extension
                if matches!(e.code(), Some("OOM" | "BUSY" | "NOSCRIPT")) =>
            {
                unavailable("the server is out of memory, busy running another script, or lost its script cache")
            }
            ErrorKind::Server(_)
            | ErrorKind::Extension
            | ErrorKind::Parse
            | ErrorKind::UnexpectedReturnType => StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "Redis at {endpoint} rejected the {operation} script: {e}; is another program writing keys under the prefix {:?}?",
                    self.prefix
                ),
            ),
            _ => unavailable("check the Redis URL and the server"),
        }
    }

    fn corrupt(&self, operation: &str, what: &str) -> StoreError {
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "Redis at {} answered the {operation} request with {what}; is another program (or another version) writing keys under the prefix {:?}?",
                self.shared.endpoint, self.prefix
            ),
        )
    }

    fn parse_claim(&self, reply: Value) -> Result<Claim, StoreError> {
        let Value::Array(items) = reply else {
            return Err(self.corrupt("claim", "a reply that is not an array"));
        };
        let number = |value: Option<&Value>| match value {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        match (number(items.first()), items.get(1)) {
            (Some(1), fence) => match number(fence) {
                Some(fence) if fence >= 1 => Ok(Claim::Acquired { fence }),
                _ => Err(self.corrupt("claim", "an invalid fencing token")),
            },
            (Some(2), left) => match number(left) {
                Some(ms) => Ok(Claim::InFlight {
                    lease_left: Some(Duration::from_millis(ms)),
                }),
                None => Err(self.corrupt("claim", "an invalid lease")),
            },
            (Some(3), Some(Value::BulkString(record))) => Ok(Claim::Completed {
                record: record.clone(),
            }),
            (Some(4), _) => Ok(Claim::Mismatch),
            (Some(0), Some(Value::BulkString(reason))) => {
                Err(self.corrupt("claim", &String::from_utf8_lossy(reason)))
            }
            _ => Err(self.corrupt("claim", "a reply of an unknown shape")),
        }
    }

    fn parse_flag(&self, operation: &str, reply: &Value) -> Result<bool, StoreError> {
        match reply {
            Value::Int(1) => Ok(true),
            Value::Int(0) => Ok(false),
            _ => Err(self.corrupt(operation, "a reply that is neither 0 nor 1")),
        }
    }
}

impl IdempotencyStore for RedisStore {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        // This claim's own mark, so that the claim sent again after a
        // dropped connection is recognised as this one (`Acquired` with the
        // same fence), not taken for another holder's.
        let nonce = uuid::Uuid::now_v7().simple().to_string();
        self.claim_marked(request, &nonce).await
    }

    async fn complete(
        &self,
        key: &str,
        fence: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl = millis(ttl).max(1);
        let reply = self
            .eval(
                &COMPLETE,
                key,
                &[
                    fence.to_string().as_bytes(),
                    record,
                    ttl.to_string().as_bytes(),
                ],
            )
            .await?;
        self.parse_flag("complete", &reply)
    }

    async fn release(&self, key: &str, fence: u64) -> Result<(), StoreError> {
        let reply = self
            .eval(&RELEASE, key, &[fence.to_string().as_bytes()])
            .await?;
        self.parse_flag("release", &reply).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use buttress_core::__backend::redis::redact;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(
            redact("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact("rediss://app:hunter2@cache:6380"),
            "rediss://app:***@cache:6380"
        );
        assert_eq!(redact("redis://app@cache/1"), "redis://app@cache/1");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=hunter2"),
            "redis+unix:///run/redis.sock"
        );
        assert!(!redact("nonsense:hunter2@x").contains("hunter2"));
    }
}
