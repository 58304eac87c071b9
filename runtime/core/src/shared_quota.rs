//! A provider quota shared across replicas through Redis: one GCRA limiter
//! per (provider, account) whose state lives in Redis, and a shared
//! cooldown, so that four replicas of a service send what one account may
//! send, and a `Retry-After` seen by one replica pauses them all.
//!
//! Guarantees:
//! - **One round trip per admission.** A Lua script reads Redis's own
//!   `TIME` (the replicas' clocks do not matter), checks the shared
//!   cooldown, and admits, reserves a later slot, or refuses, atomically.
//!   Across every replica, admitted cost never exceeds
//!   `burst + per_second × seconds` over any interval (GCRA on Redis's
//!   clock, microsecond resolution).
//! - **Weighted costs.** A call may cost more than one unit (tokens of an
//!   LLM API, say): [`Call::with_quota_cost`](crate::Call::with_quota_cost)
//!   before the call, [`SharedQuota::correct`] after it when the real cost
//!   is known, and [`SharedQuota::observe_remaining`] to follow a
//!   provider's remaining-quota header.
//! - **Redis trouble is not an outage.** Each request to Redis is bounded
//!   by `timeout` (50 ms by default) and by the call's deadline. When Redis
//!   fails or is slow, admission falls back to a local share of the quota
//!   (`per_second ÷ replicas`, `burst ÷ replicas`, rounded down, at least 1), says so
//!   once in the log and in the `buttress_shared_quota_fallback` gauge, and
//!   tries Redis again after `recheck` (1 s): calls meanwhile go through
//!   the local share at once, without waiting for Redis. When Redis
//!   answers again, the shared limit is used again (and logged). Both
//!   switches start without a burst (the local share's own, the shared
//!   limit's in Redis, which may have been lost or spent meanwhile), so a
//!   switch never sends a burst the account has already used.
//! - **Nothing blocks past a deadline; nothing panics** on any reply:
//!   an unexpected reply counts as a Redis failure.
//!
//! Data model (every key expires once idle): `{prefix}{n}:{provider}:{account}:tat`
//! holds the theoretical arrival time in microseconds on Redis's clock,
//! `…:cool` the end of the shared cooldown; `n` is the provider name's
//! length, so no two (provider, account) pairs share a key.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::connection::redis::Lua;
use crate::error::ConfigError;

/// The default bound of one request to Redis.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// The default wait before Redis is tried again after a failure.
const DEFAULT_RECHECK: Duration = Duration::from_secs(1);
/// The default key prefix.
const DEFAULT_PREFIX: &str = "buttress:quota:";

/// Admission: `{code, micros}`; 0 now, 1 after `micros` (reserved), 2 in a
/// cooldown for `micros`, 3 refused (next slot in `micros`).
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cool = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if cool > now then return {2, cool - now} end
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
local wait = new_tat - now - capacity
if wait > tonumber(ARGV[4]) then return {3, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
if wait > 0 then return {1, wait} end
return {0, 0}
";

/// Shared cooldown: extend `KEYS[1]` to now + `ARGV[1]` µs (never shorten).
const COOL_DOWN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if now + wait > cur then
  redis.call('SET', KEYS[1], string.format('%.0f', now + wait), 'PX', math.ceil(wait / 1000) + 1)
end
return 0
";

/// Move the TAT of `KEYS[1]` by `ARGV[2]` units of `ARGV[1]` µs (a cost
/// correction; never before now), or, with `ARGV[3]` = 1, tighten it so
/// that `ARGV[2]` units remain of a capacity of `ARGV[4]` µs.
const ADJUST: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local units = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat
if ARGV[3] == '1' then
  new_tat = now + tonumber(ARGV[4]) - units * interval
  if new_tat < tat then return 0 end
else
  new_tat = tat + units * interval
end
if new_tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
";

static ADMIT_SCRIPT: Lua = Lua {
    name: "admission",
    source: ADMIT,
    script: LazyLock::new(|| redis::Script::new(ADMIT)),
};
static COOL_DOWN_SCRIPT: Lua = Lua {
    name: "cooldown",
    source: COOL_DOWN,
    script: LazyLock::new(|| redis::Script::new(COOL_DOWN)),
};
static ADJUST_SCRIPT: Lua = Lua {
    name: "adjustment",
    source: ADJUST,
    script: LazyLock::new(|| redis::Script::new(ADJUST)),
};

/// Settings of a [`SharedQuota`].
///
/// # Default
/// 100 units per second, burst 10, 1 replica (the local share is the whole
/// quota), 50 ms per request to Redis, Redis tried again 1 s after a
/// failure, key prefix `buttress:quota:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedQuotaConfig {
    per_second: u32,
    burst: u32,
    replicas: u32,
    timeout: Duration,
    recheck: Duration,
    prefix: String,
}

impl Default for SharedQuotaConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedQuotaConfig {
    /// The defaults (see [`SharedQuotaConfig`]).
    #[must_use]
    pub fn new() -> Self {
        Self {
            per_second: 100,
            burst: 10,
            replicas: 1,
            timeout: DEFAULT_TIMEOUT,
            recheck: DEFAULT_RECHECK,
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    /// The account's sustained quota, in units (requests, or tokens) per
    /// second, across every replica.
    #[must_use]
    pub const fn with_per_second(mut self, per_second: u32) -> Self {
        self.per_second = per_second;
        self
    }

    /// Units admitted at once after a quiet period, across every replica.
    #[must_use]
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// How many replicas share the quota: while Redis is unavailable, each
    /// admits `1 / replicas` of it.
    #[must_use]
    pub const fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// The bound of one request to Redis (default 50 ms).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long after a failure Redis is tried again (default 1 s).
    #[must_use]
    pub const fn with_recheck(mut self, recheck: Duration) -> Self {
        self.recheck = recheck;
        self
    }

    /// The key prefix (default `buttress:quota:`).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// `per_second`.
    #[must_use]
    pub const fn per_second(&self) -> u32 {
        self.per_second
    }

    /// `burst`.
    #[must_use]
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// `replicas`.
    #[must_use]
    pub const fn replicas(&self) -> u32 {
        self.replicas
    }

    /// `timeout`.
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `recheck`.
    #[must_use]
    pub const fn recheck(&self) -> Duration {
        self.recheck
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting, its limits and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("per_second", self.per_second),
            ("burst", self.burst),
            ("replicas", self.replicas),
        ] {
            if value == 0 {
                return Err(ConfigError::new(
                    format!("rate_limit.shared.{key}"),
                    "must be at least 1, got 0",
                ));
            }
        }
        if self.per_second > 1_000_000 {
            return Err(ConfigError::new(
                "rate_limit.shared.per_second",
                format!(
                    "must be between 1 and 1000000 (one unit per microsecond, the resolution of Redis's clock), got {}",
                    self.per_second
                ),
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "rate_limit.shared.timeout",
                format!("must be between 1 ns and 60 s, got {:?}", self.timeout),
            ));
        }
        if self.recheck > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "rate_limit.shared.recheck",
                format!("must be at most 1 h, got {:?}", self.recheck),
            ));
        }
        Ok(())
    }
}

/// What the shared quota decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedAdmission {
    /// Go now.
    Now,
    /// A slot is reserved; go after waiting this long.
    After(Duration),
    /// The provider asked every replica to pause (a shared cooldown) for
    /// this long; nothing was reserved.
    Cooldown(Duration),
    /// No slot within the wait allowed; the next one is this far away.
    /// Nothing was reserved.
    Refused(Duration),
}

/// A provider's quota (and cooldown) shared through Redis by every replica.
/// Cheap to clone: clones share the connection, the local share and the
/// counters. See the [module docs](self).
///
/// ```no_run
/// # async fn f() -> Result<(), buttress::ConfigError> {
/// use buttress::shared_quota::{SharedQuota, SharedQuotaConfig};
/// let quota = SharedQuota::new(
///     "redis://127.0.0.1:6379/",
///     "payments",
///     "account-42",
///     SharedQuotaConfig::new().with_per_second(30).with_burst(10).with_replicas(4),
/// )?;
/// # let _ = quota; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedQuota {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Arc<str>,
    account: Arc<str>,
    endpoint: String,
    /// The URL as given (with its password): not shown anywhere. `None`
    /// for a local-only quota.
    url: Option<String>,
    connection: OnceCell<ConnectionManager>,
    config: SharedQuotaConfig,
    tat_key: String,
    cool_key: String,
    /// Microseconds between units, and the burst's capacity in µs.
    interval_us: u64,
    capacity_us: u64,
    /// The local share while Redis is unavailable.
    local: LocalGcra,
    fallback: AtomicBool,
    /// Nanoseconds since `origin` before which Redis is not tried again.
    retry_at: AtomicU64,
    origin: Instant,
    round_trips: AtomicU64,
    fallbacks: AtomicU64,
    /// The latest slot this replica reserved on the shared limit, in
    /// nanoseconds since `origin`: its local share starts after it.
    shared_reserved_until: AtomicU64,
}

/// What `#[resilient(rate_limit(shared = EXPR))]` accepts: a
/// [`SharedQuota`], an `Option` of one (`None`: no shared quota for this
/// call), or a reference or `Arc` to either.
#[diagnostic::on_unimplemented(
    message = "`rate_limit(shared = …)` takes a `buttress::shared_quota::SharedQuota`, not `{Self}`",
    label = "not a shared quota",
    note = "make one with `SharedQuota::new(redis_url, provider, account, SharedQuotaConfig::new()…)`, keep it in a field or static, and pass it here (an `Option<SharedQuota>` or an `Arc` of one works too)"
)]
pub trait AsSharedQuota {
    /// The quota, if any.
    fn as_shared_quota(&self) -> Option<&SharedQuota>;
}

impl AsSharedQuota for SharedQuota {
    fn as_shared_quota(&self) -> Option<&SharedQuota> {
        Some(self)
    }
}

impl AsSharedQuota for Option<SharedQuota> {
    fn as_shared_quota(&self) -> Option<&SharedQuota> {
        self.as_ref()
    }
}

impl<T: AsSharedQuota + ?Sized> AsSharedQuota for &T {
    fn as_shared_quota(&self) -> Option<&SharedQuota> {
        (**self).as_shared_quota()
    }
}

impl<T: AsSharedQuota + ?Sized> AsSharedQuota for Arc<T> {
    fn as_shared_quota(&self) -> Option<&SharedQuota> {
        (**self).as_shared_quota()
    }
}

/// Two handles are equal when they name the same quota: the same Redis
/// server, provider, account and settings (clones are equal; so are two
/// handles a reloaded configuration file made alike).
impl PartialEq for SharedQuota {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.inner, &*other.inner);
        Arc::ptr_eq(&self.inner, &other.inner)
            || (a.url == b.url
                && a.provider == b.provider
                && a.account == b.account
                && a.config == b.config)
    }
}

impl std::fmt::Debug for SharedQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQuota")
            .field("provider", &self.inner.provider)
            .field("account", &self.inner.account)
            .field("redis", &self.inner.endpoint)
            .field("config", &self.inner.config)
            .field("fallback", &self.in_fallback())
            .finish_non_exhaustive()
    }
}

impl SharedQuota {
    /// A shared quota for `provider`'s `account` in the Redis server at
    /// `url`. No I/O: the connection is made on the first admission (and
    /// re-made after failures), so a replica starts even while Redis is
    /// down, on its local share.
    ///
    /// # Errors
    /// A [`ConfigError`] for an invalid URL or settings.
    pub fn new(
        url: &str,
        provider: &str,
        account: &str,
        config: SharedQuotaConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let endpoint = crate::connection::redis::redact(url);
        redis::Client::open(url).map_err(|e| {
            ConfigError::new(
                "rate_limit.shared.url",
                format!("invalid Redis URL {endpoint}: {e}; expected redis://[user:password@]host:port/db"),
            )
        })?;
        Ok(Self::build(
            Some(url.to_owned()),
            endpoint,
            provider,
            account,
            config,
        ))
    }

    /// A quota that never talks to Redis: each replica admits its local
    /// share (`1 / replicas` of the quota), as when Redis is unavailable.
    /// What a deployment without Redis can do; the lab's comparison row.
    ///
    /// # Errors
    /// A [`ConfigError`] for invalid settings.
    pub fn local_only(
        provider: &str,
        account: &str,
        config: SharedQuotaConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(
            None,
            "(local only)".to_owned(),
            provider,
            account,
            config,
        ))
    }

    fn build(
        url: Option<String>,
        endpoint: String,
        provider: &str,
        account: &str,
        config: SharedQuotaConfig,
    ) -> Self {
        let base = format!("{}{}:{provider}:{account}", config.prefix, provider.len());
        let interval_us = (1_000_000 / u64::from(config.per_second)).max(1);
        let capacity_us = interval_us.saturating_mul(u64::from(config.burst));
        let replicas = config.replicas;
        // Rounded down: the replicas together never exceed the quota.
        let origin = Instant::now();
        let local = LocalGcra::new(
            (config.per_second / replicas).max(1),
            (config.burst / replicas).max(1),
            origin,
        );
        Self {
            inner: Arc::new(Inner {
                provider: Arc::from(provider),
                account: Arc::from(account),
                endpoint,
                url,
                connection: OnceCell::new(),
                tat_key: format!("{base}:tat"),
                cool_key: format!("{base}:cool"),
                interval_us,
                capacity_us,
                local,
                fallback: AtomicBool::new(false),
                retry_at: AtomicU64::new(0),
                origin,
                round_trips: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
                shared_reserved_until: AtomicU64::new(0),
                config,
            }),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &SharedQuotaConfig {
        &self.inner.config
    }

    /// The provider.
    #[must_use]
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The account.
    #[must_use]
    pub fn account(&self) -> &str {
        &self.inner.account
    }

    /// Whether admission is on the local share now (Redis failed).
    #[must_use]
    pub fn in_fallback(&self) -> bool {
        self.inner.fallback.load(Ordering::Relaxed)
    }

    /// Requests sent to Redis so far (one per admission, cooldown or
    /// correction; one more when a script had to be sent in full).
    #[must_use]
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// How many times admission fell back to the local share.
    #[must_use]
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Ordering::Relaxed)
    }

    /// The Redis key names: (the TAT, the cooldown).
    #[must_use]
    pub fn keys(&self) -> (&str, &str) {
        (&self.inner.tat_key, &self.inner.cool_key)
    }

    /// Admit a call of `cost` units that may wait at most `max_wait` for
    /// its slot (a reserved slot is returned as [`SharedAdmission::After`];
    /// the caller sleeps). The request to Redis takes at most `timeout`.
    pub async fn admit(&self, cost: u32, max_wait: Duration) -> SharedAdmission {
        self.admit_before(cost, max_wait, crate::clock::FOREVER)
            .await
    }

    /// As [`admit`](Self::admit), for a call with `time_left` before its
    /// deadline: the request to Redis takes at most that long too (then
    /// the local share decides).
    pub async fn admit_before(
        &self,
        cost: u32,
        max_wait: Duration,
        time_left: Duration,
    ) -> SharedAdmission {
        let inner = &*self.inner;
        let cost = cost.max(1);
        if inner.url.is_none()
            || (self.in_fallback() && self.nanos_now() < inner.retry_at.load(Ordering::Relaxed))
        {
            return inner.local.admit(cost, max_wait);
        }
        let bound = inner
            .config
            .timeout
            .min(time_left.max(Duration::from_millis(1)));
        if self.in_fallback() {
            // Back from the local share: Redis may have lost the limiter's
            // state (a restart without persistence, a failover) while the
            // replicas spent the account's burst on their local shares, so
            // the shared limit starts again without its burst, and after
            // the slots the local share has already promised.
            let promised_us = inner.local.reserved_for().as_micros();
            let promised = promised_us.div_ceil(u128::from(inner.interval_us.max(1)));
            let units = -i128::try_from(promised).unwrap_or(i128::MAX);
            if let Err(why) = self.tighten(units, bound).await {
                self.failed(&why);
                return inner.local.admit(cost, max_wait);
            }
        }
        let wait_us = u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX);
        let args = [
            inner.interval_us.to_string(),
            inner.capacity_us.to_string(),
            cost.to_string(),
            // Lua numbers are doubles: keep the bound exact.
            wait_us.min(1 << 52).to_string(),
        ];
        let keys = [inner.tat_key.as_str(), inner.cool_key.as_str()];
        match self.eval(&ADMIT_SCRIPT, &keys, &args, bound).await {
            Ok(value) => match decode(&value) {
                Some((code, micros)) => {
                    self.rejoined();
                    let d = Duration::from_micros(micros);
                    match code {
                        0 => SharedAdmission::Now,
                        1 => {
                            let at = self
                                .nanos_now()
                                .saturating_add(crate::clock::saturating_nanos(d));
                            inner.shared_reserved_until.fetch_max(at, Ordering::Relaxed);
                            SharedAdmission::After(d)
                        }
                        2 => SharedAdmission::Cooldown(d),
                        _ => SharedAdmission::Refused(d),
                    }
                }
                None => {
                    self.failed(&format!("an unexpected reply {value:?}"));
                    inner.local.admit(cost, max_wait)
                }
            },
            Err(why) => {
                self.failed(&why);
                inner.local.admit(cost, max_wait)
            }
        }
    }

    /// Pause every replica for `wait` (a provider's `Retry-After`); never
    /// shortens a longer pause. Also pauses the local share.
    ///
    /// # Errors
    /// A message when Redis could not be told (the local share still
    /// pauses).
    pub async fn cool_down(&self, wait: Duration) -> Result<(), String> {
        let inner = &*self.inner;
        inner.local.cool_down(wait);
        if inner.url.is_none() {
            return Ok(());
        }
        let micros = u64::try_from(wait.as_micros())
            .unwrap_or(u64::MAX)
            .min(1 << 52);
        let result = self
            .eval(
                &COOL_DOWN_SCRIPT,
                &[inner.cool_key.as_str()],
                &[micros.to_string()],
                inner.config.timeout,
            )
            .await;
        result
            .map(|_| self.rejoined())
            .inspect_err(|why| self.failed(why))
    }

    /// Correct the cost of an admitted call by `delta` units once its real
    /// cost is known (positive: it cost more; negative: less, and the
    /// difference is given back).
    ///
    /// # Errors
    /// A message when Redis could not be told.
    pub async fn correct(&self, delta: i64) -> Result<(), String> {
        let inner = &*self.inner;
        if delta == 0 {
            return Ok(());
        }
        inner.local.correct(delta);
        if inner.url.is_none() {
            return Ok(());
        }
        let args = [
            inner.interval_us.to_string(),
            delta.to_string(),
            "0".to_owned(),
            "0".to_owned(),
        ];
        self.eval(
            &ADJUST_SCRIPT,
            &[inner.tat_key.as_str()],
            &args,
            inner.config.timeout,
        )
        .await
        .map(|_| self.rejoined())
        .inspect_err(|why| self.failed(why))
    }

    /// Follow a provider's remaining-quota header: at most `remaining`
    /// units are admitted at once from now on (it only ever tightens).
    ///
    /// # Errors
    /// A message when Redis could not be told.
    pub async fn observe_remaining(&self, remaining: u64) -> Result<(), String> {
        if self.inner.url.is_none() {
            return Ok(());
        }
        self.tighten(
            i128::from(remaining.min(1 << 40)),
            self.inner.config.timeout,
        )
        .await
        .map(|_| self.rejoined())
        .inspect_err(|why| self.failed(why))
    }

    /// Move the shared TAT so that at most `units` remain of the burst
    /// (negative: none, and that many slots are already promised); it
    /// only ever tightens.
    async fn tighten(&self, units: i128, bound: Duration) -> Result<Value, String> {
        let inner = &*self.inner;
        let args = [
            inner.interval_us.to_string(),
            units.to_string(),
            "1".to_owned(),
            inner.capacity_us.to_string(),
        ];
        self.eval(&ADJUST_SCRIPT, &[inner.tat_key.as_str()], &args, bound)
            .await
    }

    /// Connect to Redis now (within `timeout`) rather than on the first
    /// admission: `false` when it is not reachable, and admission then
    /// starts on the local share (logged) until `recheck` has passed.
    /// `true` for a local-only quota.
    pub async fn connect(&self) -> bool {
        if self.inner.url.is_none() {
            return true;
        }
        match tokio::time::timeout(self.inner.config.timeout, self.connection()).await {
            Ok(Ok(_)) => {
                self.rejoined();
                true
            }
            Ok(Err(why)) => {
                self.failed(&why);
                false
            }
            Err(_) => {
                self.failed(&format!(
                    "no connection within {:?}",
                    self.inner.config.timeout
                ));
                false
            }
        }
    }

    /// The connection, made on first use.
    async fn connection(&self) -> Result<&ConnectionManager, String> {
        let inner = &*self.inner;
        let Some(url) = &inner.url else {
            return Err("local only".to_owned());
        };
        inner
            .connection
            .get_or_try_init(|| async {
                crate::connection::redis::connect(url, inner.config.timeout, "the shared quota")
                    .await
                    .map(|(c, _)| c)
            })
            .await
    }

    fn nanos_now(&self) -> u64 {
        crate::clock::saturating_nanos(Instant::now().duration_since(self.inner.origin))
    }

    /// Run `script` within `bound`: `EVALSHA`, then `EVAL` if the server
    /// does not have it. Connects first if needed.
    async fn eval(
        &self,
        lua: &Lua,
        keys: &[&str],
        args: &[String],
        bound: Duration,
    ) -> Result<Value, String> {
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
        let exchange = async {
            let mut connection = self.connection().await?.clone();
            crate::connection::redis::eval(
                &mut connection,
                lua,
                &keys,
                &args,
                &self.inner.round_trips,
            )
            .await
            .map_err(|e| format!("the {} request failed: {e}", lua.name))
        };
        match tokio::time::timeout(bound, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {bound:?}")),
        }
    }

    /// Redis failed: fall back to the local share (logged once per
    /// fallback) and try Redis again after `recheck`.
    fn failed(&self, why: &str) {
        let inner = &*self.inner;
        let again = self
            .nanos_now()
            .saturating_add(crate::clock::saturating_nanos(inner.config.recheck));
        inner.retry_at.store(again, Ordering::Relaxed);
        if !inner.fallback.swap(true, Ordering::AcqRel) {
            inner.fallbacks.fetch_add(1, Ordering::Relaxed);
            // The shared limit may have spent the account's burst, and
            // this replica's calls may still hold slots reserved on it: the
            // local share starts after those, without a burst of its own.
            let reserved = inner.shared_reserved_until.load(Ordering::Relaxed);
            inner.local.drain(reserved);
            tracing::warn!(
                provider = &*inner.provider,
                account = &*inner.account,
                redis = %inner.endpoint,
                replicas = inner.config.replicas,
                "shared quota: Redis failed ({why}); admitting on the local share (1/{} of the quota) until it answers again",
                inner.config.replicas
            );
            self.fallback_metric(true);
        }
    }

    /// Redis answered: back on the shared limit (logged once).
    fn rejoined(&self) {
        let inner = &*self.inner;
        if inner.fallback.swap(false, Ordering::AcqRel) {
            tracing::info!(
                provider = &*inner.provider,
                account = &*inner.account,
                redis = %inner.endpoint,
                "shared quota: Redis answers again; back on the shared limit"
            );
            self.fallback_metric(false);
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn fallback_metric(&self, on: bool) {
        #[cfg(feature = "metrics")]
        {
            let provider = self.inner.provider.to_string();
            metrics::gauge!("buttress_shared_quota_fallback", "provider" => provider.clone())
                .set(if on { 1.0 } else { 0.0 });
            if on {
                metrics::counter!("buttress_shared_quota_fallbacks_total", "provider" => provider)
                    .increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = on;
    }
}

/// `{code, micros}` from the admission script, or `None` for anything else.
fn decode(value: &Value) -> Option<(i64, u64)> {
    let Value::Array(items) = value else {
        return None;
    };
    let [Value::Int(code), Value::Int(micros)] = items.as_slice() else {
        return None;
    };
    ((0..=3).contains(code) && *micros >= 0).then(|| (*code, u64::try_from(*micros).unwrap_or(0)))
}

/// The local share: a weighted GCRA on one atomic word (nanoseconds since
/// `origin`), with its own cooldown.
#[derive(Debug)]
struct LocalGcra {
    tat: AtomicU64,
    cool_until: AtomicU64,
    interval: u64,
    capacity: u64,
    origin: Instant,
}

impl LocalGcra {
    fn new(per_second: u32, burst: u32, origin: Instant) -> Self {
        let interval = (1_000_000_000 / u64::from(per_second.max(1))).max(1);
        Self {
            tat: AtomicU64::new(0),
            cool_until: AtomicU64::new(0),
            interval,
            capacity: interval.saturating_mul(u64::from(burst.max(1))),
            origin,
        }
    }

    fn now(&self) -> u64 {
        crate::clock::saturating_nanos(Instant::now().duration_since(self.origin))
    }

    fn admit(&self, cost: u32, max_wait: Duration) -> SharedAdmission {
        let now = self.now();
        let cool = self.cool_until.load(Ordering::Relaxed);
        if cool > now {
            return SharedAdmission::Cooldown(Duration::from_nanos(cool - now));
        }
        let max_wait = crate::clock::saturating_nanos(max_wait);
        let step = self.interval.saturating_mul(u64::from(cost));
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now).saturating_add(step);
            let wait = new_tat.saturating_sub(now).saturating_sub(self.capacity);
            if wait > max_wait {
                return SharedAdmission::Refused(Duration::from_nanos(wait));
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if wait == 0 => return SharedAdmission::Now,
                Ok(_) => return SharedAdmission::After(Duration::from_nanos(wait)),
                Err(current) => tat = current,
            }
        }
    }

    /// Spend the burst, and admit nothing before `after` (nanoseconds
    /// since the origin, which the quota shares): from then on, one slot
    /// per interval.
    fn drain(&self, after: u64) {
        let start = self.now().max(after);
        self.tat
            .fetch_max(start.saturating_add(self.capacity), Ordering::AcqRel);
    }

    /// How far ahead the slots already reserved reach.
    fn reserved_for(&self) -> Duration {
        let tat = self.tat.load(Ordering::Acquire);
        Duration::from_nanos(tat.saturating_sub(self.now()).saturating_sub(self.capacity))
    }

    fn cool_down(&self, wait: Duration) {
        let until = self
            .now()
            .saturating_add(crate::clock::saturating_nanos(wait));
        self.cool_until.fetch_max(until, Ordering::Relaxed);
    }

    fn correct(&self, delta: i64) {
        let step = self.interval.saturating_mul(delta.unsigned_abs());
        let now = self.now();
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |tat| {
                let base = tat.max(now);
                Some(if delta > 0 {
                    base.saturating_add(step)
                } else {
                    base.saturating_sub(step).max(now)
                })
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_local_share_is_a_weighted_gcra() {
        let local = LocalGcra::new(10, 3, Instant::now());
        for _ in 0..3 {
            assert_eq!(local.admit(1, Duration::ZERO), SharedAdmission::Now);
        }
        assert_eq!(
            local.admit(1, Duration::ZERO),
            SharedAdmission::Refused(Duration::from_millis(100))
        );
        assert_eq!(
            local.admit(2, Duration::from_secs(1)),
            SharedAdmission::After(Duration::from_millis(200))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        // Given back: the 200 ms reserved, then it is all free again.
        local.correct(-2);
        assert_eq!(local.admit(3, Duration::ZERO), SharedAdmission::Now);
        local.cool_down(Duration::from_millis(500));
        assert!(matches!(
            local.admit(1, Duration::MAX),
            SharedAdmission::Cooldown(_)
        ));
    }

    #[test]
    fn replies_other_than_the_scripts_are_refused() {
        assert_eq!(
            decode(&Value::Array(vec![Value::Int(1), Value::Int(5)])),
            Some((1, 5))
        );
        assert_eq!(
            decode(&Value::Array(vec![Value::Int(9), Value::Int(5)])),
            None
        );
        assert_eq!(
            decode(&Value::Array(vec![Value::Int(0), Value::Int(-1)])),
            None
        );
        assert_eq!(decode(&Value::Nil), None);
        assert_eq!(decode(&Value::Array(vec![Value::Int(0)])), None);
    }

    #[test]
    fn bad_settings_say_what_and_the_limits() {
        let e = SharedQuotaConfig::new()
            .with_replicas(0)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("replicas"), "{e}");
        let e = SharedQuotaConfig::new()
            .with_per_second(2_000_000)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("between 1 and 1000000"), "{e}");
        let e = SharedQuota::new("http://x", "p", "a", SharedQuotaConfig::new()).unwrap_err();
        assert!(e.to_string().contains("invalid Redis URL"), "{e}");
    }
}
