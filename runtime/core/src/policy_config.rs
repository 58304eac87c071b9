//! The settings of one call site and of one provider: plain data, checked
//! once by [`PolicyConfig::validated`] before anything is built from them.

use std::borrow::Cow;
use std::time::Duration;

use buttress_settings::{defaults, rules};

use crate::adaptive_timeout::AdaptiveTimeoutConfig;
use crate::breaker::BreakerConfig;
use crate::budget::BudgetConfig;
use crate::bulkhead::BulkheadConfig;
use crate::error::ConfigError;
use crate::rate_limit::RateLimitConfig;
use crate::recovery::RecoveryConfig;
use crate::retry::RetryConfig;
use crate::throttle::ThrottleConfig;

/// The settings of one call site (plain data, `const`-constructible, so the
/// `#[resilient]` macro can put it in a `static`). Read it through its
/// getters; write it through the one builder, [`Policy::builder`]
/// (`.into_config()` when a [`Registry::define_policy`] wants the settings
/// rather than a policy). The `const` setters (`with_*`) are what the
/// macro's generated code calls and are hidden from these docs.
///
/// [`Policy::builder`]: crate::Policy::builder
/// [`Registry::define_policy`]: crate::Registry::define_policy
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
            timeout: Some(defaults::TIMEOUT),
            adaptive_timeout: None,
            deadline: Some(defaults::DEADLINE),
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
    #[doc(hidden)]
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Deadline for the whole call, backoff included (`None`: none).
    #[doc(hidden)]
    #[must_use]
    pub const fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Retry settings ([`RetryConfig::off`] for none).
    #[doc(hidden)]
    #[must_use]
    pub const fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Breaker settings (`None`: the breaker never trips by itself).
    #[doc(hidden)]
    #[must_use]
    pub const fn with_breaker(mut self, breaker: Option<BreakerConfig>) -> Self {
        self.breaker = breaker;
        self
    }

    /// Bulkhead settings (`None`: no bulkhead).
    #[doc(hidden)]
    #[must_use]
    pub const fn with_bulkhead(mut self, bulkhead: Option<BulkheadConfig>) -> Self {
        self.bulkhead = bulkhead;
        self
    }

    /// Rate-limit settings (`None`: no limit).
    #[doc(hidden)]
    #[must_use]
    pub const fn with_rate_limit(mut self, rate_limit: Option<RateLimitConfig>) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Whether repeating the operation is safe, so that `OutcomeUnknown`
    /// errors (timeouts after send) may be retried.
    #[doc(hidden)]
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
    #[doc(hidden)]
    #[must_use]
    pub const fn with_hedge(mut self, hedge: bool) -> Self {
        self.hedge = hedge;
        self
    }

    /// Waiting, cooldown, pacing and quota learning (shared by the
    /// provider's call sites).
    #[doc(hidden)]
    #[must_use]
    pub const fn with_recovery(mut self, recovery: RecoveryConfig) -> Self {
        self.recovery = recovery;
        self
    }

    /// An adaptive attempt timeout (`None`: the fixed `timeout`). The
    /// `timeout` is then its starting value (clamped to its `min..=max`).
    #[doc(hidden)]
    #[must_use]
    pub const fn with_adaptive_timeout(mut self, adaptive: Option<AdaptiveTimeoutConfig>) -> Self {
        self.adaptive_timeout = adaptive;
        self
    }

    /// The adaptive throttle (`None`: none).
    #[doc(hidden)]
    #[must_use]
    pub const fn with_throttle(mut self, throttle: Option<ThrottleConfig>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Seed the jitter for repeatable runs.
    #[doc(hidden)]
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
    #[doc(hidden)]
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
        ConfigError::check("provider", rules::provider(&self.provider))?;
        if let Some(timeout) = self.timeout {
            ConfigError::check("timeout", rules::positive(timeout))?;
        }
        if let Some(deadline) = self.deadline {
            ConfigError::check("deadline", rules::positive(deadline))?;
        }
        if let (Some(timeout), Some(deadline)) = (self.timeout, self.deadline) {
            ConfigError::check("timeout", rules::timeout_within_deadline(timeout, deadline))?;
        }
        if self.hedge && !self.idempotent {
            return ConfigError::check("hedge", Err(rules::HEDGE_NEEDS_IDEMPOTENT.into()));
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

/// Settings that passed [`PolicyConfig::validate`]: what binding a call
/// site to its provider takes, so it is checked exactly once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Validated(PolicyConfig);

impl Validated {
    pub(crate) const fn get(&self) -> &PolicyConfig {
        &self.0
    }

    pub(crate) fn into_inner(self) -> PolicyConfig {
        self.0
    }
}

impl PolicyConfig {
    /// These settings, checked.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    pub(crate) fn validated(self) -> Result<Validated, ConfigError> {
        self.validate()?;
        Ok(Validated(self))
    }
}

/// The settings shared by every call site of one provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedConfig {
    /// The breaker, or `None` for `breaker = off` (the breaker still exists
    /// so operators can force it, but never trips by itself).
    pub breaker: Option<BreakerConfig>,
    /// The retry budget, or `None` for `budget = off`.
    pub budget: Option<BudgetConfig>,
    /// The rate limiter, if any.
    pub rate_limit: Option<RateLimitConfig>,
    /// The bulkhead, if any.
    pub bulkhead: Option<BulkheadConfig>,
    /// Waiting, cooldown, pacing and quota learning.
    pub recovery: RecoveryConfig,
    /// The adaptive throttle, if any.
    pub throttle: Option<ThrottleConfig>,
}

impl SharedConfig {
    /// What a provider gets when no call site configured it: the default
    /// breaker and budget, no rate limit, no bulkhead.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            breaker: Some(BreakerConfig::new()),
            budget: Some(BudgetConfig::new()),
            rate_limit: None,
            bulkhead: None,
            recovery: RecoveryConfig::new(),
            throttle: None,
        }
    }
}

impl Default for SharedConfig {
    fn default() -> Self {
        Self::new()
    }
}
