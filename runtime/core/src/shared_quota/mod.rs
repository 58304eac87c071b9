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
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::error::ConfigError;

mod config;
mod exchange;
mod local;
mod scripts;

pub use config::SharedQuotaConfig;

use local::LocalGcra;
use scripts::{decode, ADJUST_SCRIPT, ADMIT_SCRIPT, COOL_DOWN_SCRIPT};

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

    fn nanos_now(&self) -> u64 {
        crate::clock::saturating_nanos(Instant::now().duration_since(self.inner.origin))
    }
}
