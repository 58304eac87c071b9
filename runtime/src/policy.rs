//! A policy: everything a call site needs, built once and shared.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use crate::adaptive_timeout::{AdaptiveTimeoutConfig, LatencyTracker};
use crate::breaker::BreakerConfig;
use crate::bulkhead::BulkheadConfig;
use crate::call::Call;
use crate::class::Classify;
use crate::error::{ConfigError, Error};
use crate::idempotency::{DedupOptions, IdempotencyStore, Stored};
use crate::rate_limit::RateLimitConfig;
use crate::recovery::RecoveryConfig;
use crate::registry::{Provider, Registry, SharedConfig};
use crate::retry::RetryConfig;
use crate::rng::Rng;
use crate::throttle::ThrottleConfig;

/// The settings of one call site (plain data, `const`-constructible, so the
/// `#[resilient]` macro can put it in a `static`).
///
/// # Default
/// timeout 10 s per attempt, deadline 30 s for the whole call,
/// [`RetryConfig::new`] (3 attempts, exponential 100 ms..5 s, full jitter,
/// budget 0.2), [`BreakerConfig::new`], no bulkhead, no rate limit, not
/// idempotent, jitter seeded from entropy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub(crate) provider: Cow<'static, str>,
    pub(crate) operation: Cow<'static, str>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) adaptive_timeout: Option<AdaptiveTimeoutConfig>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) retry: RetryConfig,
    pub(crate) breaker: Option<BreakerConfig>,
    pub(crate) bulkhead: Option<BulkheadConfig>,
    pub(crate) rate_limit: Option<RateLimitConfig>,
    pub(crate) idempotent: bool,
    pub(crate) hedge: bool,
    pub(crate) recovery: RecoveryConfig,
    pub(crate) throttle: Option<ThrottleConfig>,
    pub(crate) seed: Option<u64>,
    /// A quota shared with other replicas through Redis.
    #[cfg(feature = "redis")]
    pub(crate) shared_quota: Option<crate::shared_quota::SharedQuota>,
}

impl PolicyConfig {
    /// The defaults for `provider` (see [`PolicyConfig`]).
    #[must_use]
    pub const fn new(provider: &'static str) -> Self {
        Self::named(provider, "")
    }

    /// The defaults for `provider`, with the operation name used in
    /// telemetry (the function's name under the macro).
    #[must_use]
    pub const fn named(provider: &'static str, operation: &'static str) -> Self {
        Self {
            provider: Cow::Borrowed(provider),
            operation: Cow::Borrowed(operation),
            timeout: Some(Duration::from_secs(10)),
            adaptive_timeout: None,
            deadline: Some(Duration::from_secs(30)),
            retry: RetryConfig::new(),
            breaker: Some(BreakerConfig::new()),
            bulkhead: None,
            rate_limit: None,
            idempotent: false,
            hedge: false,
            recovery: RecoveryConfig::new(),
            throttle: None,
            seed: None,
            #[cfg(feature = "redis")]
            shared_quota: None,
        }
    }

    /// Per-attempt timeout (`None`: none).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Deadline for the whole call, backoff included (`None`: none).
    #[must_use]
    pub const fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Retry settings ([`RetryConfig::off`] for none).
    #[must_use]
    pub const fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Breaker settings (`None`: the breaker never trips by itself).
    #[must_use]
    pub const fn with_breaker(mut self, breaker: Option<BreakerConfig>) -> Self {
        self.breaker = breaker;
        self
    }

    /// Bulkhead settings (`None`: no bulkhead).
    #[must_use]
    pub const fn with_bulkhead(mut self, bulkhead: Option<BulkheadConfig>) -> Self {
        self.bulkhead = bulkhead;
        self
    }

    /// Rate-limit settings (`None`: no limit).
    #[must_use]
    pub const fn with_rate_limit(mut self, rate_limit: Option<RateLimitConfig>) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Whether repeating the operation is safe, so that `OutcomeUnknown`
    /// errors (timeouts after send) may be retried.
    #[must_use]
    pub const fn with_idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Keep an attempt cut by its timeout running alongside the retries,
    /// and take whichever answers with success first (hedging on
    /// timeout; see [`Call::attempt_keeping`](crate::Call::attempt_keeping)).
    /// Needs `idempotent`: the kept attempt and its retry may both reach
    /// the provider, under one idempotency key.
    #[must_use]
    pub const fn with_hedge(mut self, hedge: bool) -> Self {
        self.hedge = hedge;
        self
    }

    /// Waiting, cooldown, pacing and quota learning (shared by the
    /// provider's call sites).
    #[must_use]
    pub const fn with_recovery(mut self, recovery: RecoveryConfig) -> Self {
        self.recovery = recovery;
        self
    }

    /// An adaptive attempt timeout (`None`: the fixed `timeout`). The
    /// `timeout` is then its starting value (clamped to its `min..=max`).
    #[must_use]
    pub const fn with_adaptive_timeout(mut self, adaptive: Option<AdaptiveTimeoutConfig>) -> Self {
        self.adaptive_timeout = adaptive;
        self
    }

    /// The adaptive throttle (`None`: none).
    #[must_use]
    pub const fn with_throttle(mut self, throttle: Option<ThrottleConfig>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Seed the jitter for repeatable runs.
    #[must_use]
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The provider's name.
    #[must_use]
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The operation's name (empty when not set).
    #[must_use]
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The per-attempt timeout.
    #[must_use]
    pub const fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The deadline of the whole call.
    #[must_use]
    pub const fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The retry settings.
    #[must_use]
    pub const fn retry(&self) -> &RetryConfig {
        &self.retry
    }

    /// The breaker settings (`None`: never trips by itself).
    #[must_use]
    pub const fn breaker(&self) -> Option<&BreakerConfig> {
        self.breaker.as_ref()
    }

    /// The bulkhead settings.
    #[must_use]
    pub const fn bulkhead(&self) -> Option<&BulkheadConfig> {
        self.bulkhead.as_ref()
    }

    /// The rate-limit settings.
    #[must_use]
    pub const fn rate_limit(&self) -> Option<&RateLimitConfig> {
        self.rate_limit.as_ref()
    }

    /// The quota shared with other replicas through Redis, if any.
    #[cfg(feature = "redis")]
    #[must_use]
    pub const fn shared_quota(&self) -> Option<&crate::shared_quota::SharedQuota> {
        self.shared_quota.as_ref()
    }

    /// Admit every attempt through `quota` too (see [`crate::shared_quota`]).
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_shared_quota(mut self, quota: Option<crate::shared_quota::SharedQuota>) -> Self {
        self.shared_quota = quota;
        self
    }

    /// Whether the operation is safe to repeat.
    #[must_use]
    pub const fn idempotent(&self) -> bool {
        self.idempotent
    }

    /// Whether an attempt cut by its timeout keeps running alongside the
    /// retries (see [`PolicyConfig::with_hedge`]).
    #[must_use]
    pub const fn hedge(&self) -> bool {
        self.hedge
    }

    /// The recovery settings.
    #[must_use]
    pub const fn recovery(&self) -> &RecoveryConfig {
        &self.recovery
    }

    /// The adaptive attempt timeout's settings.
    #[must_use]
    pub const fn adaptive_timeout(&self) -> Option<&AdaptiveTimeoutConfig> {
        self.adaptive_timeout.as_ref()
    }

    /// The adaptive throttle's settings.
    #[must_use]
    pub const fn throttle(&self) -> Option<&ThrottleConfig> {
        self.throttle.as_ref()
    }

    /// The settings shared by every call site of the provider.
    #[must_use]
    pub const fn shared(&self) -> SharedConfig {
        SharedConfig {
            breaker: self.breaker,
            budget: self.retry.budget,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            recovery: self.recovery,
            throttle: self.throttle,
        }
    }

    /// Check every setting.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.provider.is_empty() {
            return Err(ConfigError::new("provider", "must not be empty"));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new("timeout", "must be longer than zero"));
        }
        if self.deadline == Some(Duration::ZERO) {
            return Err(ConfigError::new("deadline", "must be longer than zero"));
        }
        if let (Some(timeout), Some(deadline)) = (self.timeout, self.deadline) {
            if timeout > deadline {
                return Err(ConfigError::new(
                    "timeout",
                    format!("({timeout:?}) is longer than `deadline` ({deadline:?}); the deadline covers all attempts, so raise it or lower the timeout"),
                ));
            }
        }
        if self.hedge && !self.idempotent {
            return Err(ConfigError::new(
                "hedge",
                "needs `idempotent`: a kept attempt and its retry may both reach the provider, so the operation must be safe to repeat (send one idempotency key)",
            ));
        }
        if let Some(adaptive) = &self.adaptive_timeout {
            // A `max` beyond the deadline is not an error: the deadline
            // bounds it (see `Policy::from_config`).
            adaptive.validate()?;
        }
        self.retry.validate()?;
        if let Some(breaker) = &self.breaker {
            breaker.validate()?;
        }
        if let Some(bulkhead) = &self.bulkhead {
            bulkhead.validate()?;
        }
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit.validate()?;
        }
        self.recovery.validate()?;
        if let Some(throttle) = &self.throttle {
            throttle.validate()?;
        }
        Ok(())
    }
}

/// Builds a [`Policy`] without the macro.
///
/// ```
/// use std::time::Duration;
/// use buttress::{Policy, retry::{Backoff, Jitter, RetryConfig}};
///
/// let policy = Policy::builder("maps")
///     .timeout(Duration::from_millis(500))
///     .deadline(Duration::from_secs(3))
///     .retry(RetryConfig::new().with_max_attempts(4).with_jitter(Jitter::Equal))
///     .build()
///     .expect("valid policy");
/// assert_eq!(policy.provider(), "maps");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder {
    config: PolicyConfig,
}

impl PolicyBuilder {
    /// Set the operation name.
    pub fn operation(mut self, operation: impl Into<Cow<'static, str>>) -> Self {
        self.config.operation = operation.into();
        self
    }

    /// Per-attempt timeout.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// No per-attempt timeout.
    pub const fn no_timeout(mut self) -> Self {
        self.config.timeout = None;
        self
    }

    /// Deadline for the whole call.
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// No overall deadline.
    pub const fn no_deadline(mut self) -> Self {
        self.config.deadline = None;
        self
    }

    /// Retry settings.
    pub const fn retry(mut self, retry: RetryConfig) -> Self {
        self.config.retry = retry;
        self
    }

    /// Breaker settings.
    pub const fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.config.breaker = Some(breaker);
        self
    }

    /// No automatic breaker.
    pub const fn no_breaker(mut self) -> Self {
        self.config.breaker = None;
        self
    }

    /// A bulkhead.
    pub const fn bulkhead(mut self, bulkhead: BulkheadConfig) -> Self {
        self.config.bulkhead = Some(bulkhead);
        self
    }

    /// A rate limit.
    pub const fn rate_limit(mut self, rate_limit: RateLimitConfig) -> Self {
        self.config.rate_limit = Some(rate_limit);
        self
    }

    /// Admit every attempt through `quota`, shared with the other replicas
    /// through Redis (after the local rate limit, if any); see
    /// [`crate::shared_quota`].
    #[cfg(feature = "redis")]
    pub fn shared_quota(mut self, quota: crate::shared_quota::SharedQuota) -> Self {
        self.config.shared_quota = Some(quota);
        self
    }

    /// Recovery settings ([`RecoveryConfig::fail_fast`] to fail fast).
    pub const fn recovery(mut self, recovery: RecoveryConfig) -> Self {
        self.config.recovery = recovery;
        self
    }

    /// An adaptive attempt timeout, starting from the `timeout`.
    pub const fn adaptive_timeout(mut self, adaptive: AdaptiveTimeoutConfig) -> Self {
        self.config.adaptive_timeout = Some(adaptive);
        self
    }

    /// An adaptive throttle.
    pub const fn throttle(mut self, throttle: ThrottleConfig) -> Self {
        self.config.throttle = Some(throttle);
        self
    }

    /// Mark the operation safe to repeat.
    pub const fn idempotent(mut self, idempotent: bool) -> Self {
        self.config.idempotent = idempotent;
        self
    }

    /// Hedge on timeout (see [`PolicyConfig::with_hedge`]).
    pub const fn hedge(mut self, hedge: bool) -> Self {
        self.config.hedge = hedge;
        self
    }

    /// Seed the jitter.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// The settings so far.
    #[must_use]
    pub const fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Validate and register with the [global registry](Registry::global).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn build(self) -> Result<Policy, ConfigError> {
        self.build_in(Registry::global())
    }

    /// Validate and register with `registry`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn build_in(self, registry: &Registry) -> Result<Policy, ConfigError> {
        Policy::from_config(self.config, registry)
    }
}

pub(crate) struct PolicyInner {
    pub(crate) config: PolicyConfig,
    pub(crate) provider: Arc<Provider>,
    pub(crate) rng: Rng,
    pub(crate) telemetry: crate::telemetry::SiteTelemetry,
    pub(crate) latency: Option<LatencyTracker>,
}

/// Policies alive in the process (each `Policy` built, until the last
/// clone and the last call holding it are gone).
static LIVE_POLICIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many policies are alive in the process: built and not yet freed
/// (every clone and every call holding one gone). A call site's replaced
/// policy is freed once its last call ends, so this stays flat however
/// often a configuration is reloaded.
#[must_use]
pub fn live_policies() -> usize {
    LIVE_POLICIES.load(std::sync::atomic::Ordering::Relaxed)
}

impl Drop for PolicyInner {
    fn drop(&mut self) {
        LIVE_POLICIES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PolicyInner {
    /// The timeout of the next attempt of a call whose adaptive timeout
    /// already cut `cut` of its attempts: the fixed one, or the adaptive
    /// one doubled per cut (up to its `max`), as TCP backs off its
    /// retransmission timer.
    #[inline]
    pub(crate) fn attempt_timeout(&self, cut: u32) -> Option<Duration> {
        match &self.latency {
            None => self.config.timeout,
            Some(tracker) if cut == 0 => Some(tracker.timeout()),
            Some(tracker) => Some(
                tracker
                    .timeout()
                    .saturating_mul(1 << cut.min(16))
                    .min(tracker.config().max()),
            ),
        }
    }
}

/// A validated policy bound to its provider's shared state. Cheap to clone.
///
/// Run operations under it with [`Policy::run`], or drive the attempt loop
/// yourself with [`Policy::call`] (what `#[resilient]` expands to).
#[derive(Clone)]
pub struct Policy {
    pub(crate) inner: Arc<PolicyInner>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// A builder for `provider`'s policy, starting from the defaults.
    pub fn builder(provider: impl Into<Cow<'static, str>>) -> PolicyBuilder {
        let mut config = PolicyConfig::new("");
        config.provider = provider.into();
        PolicyBuilder { config }
    }

    /// Validate `config` and bind it to its provider in `registry`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn from_config(config: PolicyConfig, registry: &Registry) -> Result<Self, ConfigError> {
        config.validate()?;
        let provider = registry.register(&config.provider, &config.shared());
        let rng = config.seed.map_or_else(Rng::from_entropy, Rng::seeded);
        let latency = config.adaptive_timeout.map(|adaptive| {
            // No attempt outlasts the deadline: it bounds the adaptive
            // timeout's `max` (the default 10 s, say, under a 5 s deadline).
            let adaptive = match config.deadline {
                Some(deadline) if adaptive.max > deadline => {
                    adaptive.with_max(deadline.max(adaptive.min))
                }
                _ => adaptive,
            };
            LatencyTracker::new(adaptive, config.timeout.unwrap_or(adaptive.max))
        });
        LIVE_POLICIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            inner: Arc::new(PolicyInner {
                config,
                provider,
                rng,
                telemetry: crate::telemetry::SiteTelemetry::default(),
                latency,
            }),
        })
    }

    /// The provider's name.
    #[must_use]
    pub fn provider(&self) -> &str {
        &self.inner.config.provider
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &PolicyConfig {
        &self.inner.config
    }

    /// The timeout the next attempt gets: the fixed `timeout`, or the
    /// adaptive one as it stands now.
    #[must_use]
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.inner.attempt_timeout(0)
    }

    /// The provider's shared state (breaker, budget, limiter, bulkhead).
    #[must_use]
    pub fn shared(&self) -> &Arc<Provider> {
        &self.inner.provider
    }

    /// Start one logical call; drive it with [`Call::attempt`].
    pub fn call<T, E>(&self) -> Call<'_, T, E>
    where
        E: Classify + From<Error>,
    {
        Call::new(&self.inner)
    }

    /// Run `operation` under this policy: each attempt calls it afresh.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use buttress::{Policy, Error};
    /// let policy = Policy::builder("doc-run").seed(1).build().unwrap();
    /// let answer: Result<u32, Error> = policy.run(|| async { Ok(42) }).await;
    /// assert_eq!(answer.unwrap(), 42);
    /// # }
    /// ```
    pub async fn run<T, E, F, Fut>(&self, operation: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
    {
        drive(self.call::<T, E>(), operation).await
    }

    /// Run `operation` at most once per `key` across every caller sharing
    /// `store`: a completed key replays its stored result, a key in flight
    /// elsewhere answers [`Error::InFlight`], a key reused with another
    /// fingerprint [`Error::KeyReused`]. The call is treated as idempotent
    /// (its `OutcomeUnknown` errors are retried), and the body reads the key
    /// with [`crate::idempotency_key`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use buttress::{Error, Policy};
    /// use buttress::idempotency::{DedupOptions, MemoryStore};
    ///
    /// let policy = Policy::builder("doc-dedup").build().unwrap();
    /// let store = MemoryStore::new();
    /// let mut effects = 0;
    /// for _ in 0..3 {
    ///     let receipt: Result<String, Error> = policy
    ///         .run_idempotent(&store, "order-7", &DedupOptions::new(), || {
    ///             effects += 1;
    ///             async { Ok(String::from("charged")) }
    ///         })
    ///         .await;
    ///     assert_eq!(receipt.unwrap(), "charged");
    /// }
    /// assert_eq!(effects, 1);
    /// # }
    /// ```
    pub async fn run_idempotent<T, E, S, F, Fut>(
        &self,
        store: &S,
        key: impl Into<Arc<str>>,
        options: &DedupOptions,
        operation: F,
    ) -> Result<T, E>
    where
        S: IdempotencyStore,
        T: Stored,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
    {
        let mut call = self.call::<T, E>().with_key(key);
        call.ctx_mut().idempotent = true;
        let dedup = match call.claim(store, options).await {
            ControlFlow::Continue(dedup) => dedup,
            ControlFlow::Break(answer) => return answer,
        };
        let result = drive(call, operation).await;
        dedup.finish(&result).await;
        result
    }
}

/// The attempt loop over a closure: each attempt builds its body after the
/// backoff.
async fn drive<T, E, F, Fut>(mut call: Call<'_, T, E>, mut operation: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error>,
{
    // An attempt cut by its timeout stays here while the retries run, when
    // the policy hedges (see `Call::attempt_keeping`).
    let mut kept = std::pin::pin!(None);
    loop {
        if let Some(result) = call.backoff_keeping(kept.as_mut()).await {
            return result;
        }
        if let ControlFlow::Break(result) = call.attempt_keeping(kept.as_mut(), operation()).await {
            return result;
        }
    }
}
