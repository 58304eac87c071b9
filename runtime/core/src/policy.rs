//! A policy: everything a call site needs, built once and shared; and the
//! builder that makes one without the macro.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use crate::adaptive_timeout::AdaptiveTimeoutConfig;
use crate::bound::PolicyInner;
use crate::breaker::BreakerConfig;
use crate::bulkhead::BulkheadConfig;
use crate::call::Call;
use crate::class::Classify;
use crate::error::{ConfigError, Error};
use crate::idempotency::{DedupOptions, IdempotencyStore, Stored};
use crate::policy_config::PolicyConfig;
use crate::rate_limit::RateLimitConfig;
use crate::recovery::RecoveryConfig;
use crate::registry::{Provider, Registry};
use crate::retry::RetryConfig;
use crate::throttle::ThrottleConfig;

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

    /// The settings, unchecked, for [`Registry::define_policy`] (which
    /// checks them).
    #[must_use]
    pub fn into_config(self) -> PolicyConfig {
        self.config
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

impl From<PolicyBuilder> for PolicyConfig {
    fn from(builder: PolicyBuilder) -> Self {
        builder.config
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
        Ok(Self {
            inner: Arc::new(PolicyInner::bind(config.validated()?, registry)),
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

    /// A call whose driver makes each next attempt as soon as it is asked
    /// for (`Policy::run`, `#[resilient(policy = EXPR)]`).
    #[inline]
    pub(crate) fn call_straight_on<T, E>(&self) -> Call<'_, T, E>
    where
        E: Classify + From<Error>,
    {
        Call::new_straight_on(&self.inner)
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
        drive(self.call_straight_on::<T, E>(), operation).await
    }

    /// Run `operation` as [`run`](Self::run) does and, if the call fails
    /// (after its retries, or refused), answer with `fallback(error)`
    /// instead: what `#[resilient(fallback = f)]` does. The fallback runs
    /// outside the policy (no timeout, retry or breaker of its own), once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use buttress::{Classify, Policy};
    /// use buttress::retry::RetryConfig;
    ///
    /// #[derive(Debug, Classify)]
    /// enum QuoteError {
    ///     #[classify(transient)]
    ///     Unavailable,
    ///     #[classify(delegate)]
    ///     Resilience(buttress::Error),
    /// }
    /// impl From<buttress::Error> for QuoteError {
    ///     fn from(e: buttress::Error) -> Self { QuoteError::Resilience(e) }
    /// }
    ///
    /// let policy = Policy::builder("doc-fallback")
    ///     .retry(RetryConfig::off())
    ///     .build()
    ///     .unwrap();
    /// let price: Result<f64, QuoteError> = policy
    ///     .run_or_else(
    ///         || async { Err(QuoteError::Unavailable) },
    ///         |_error| async { Ok(41.5) }, // the last known price
    ///     )
    ///     .await;
    /// assert_eq!(price.unwrap(), 41.5);
    /// # }
    /// ```
    pub async fn run_or_else<T, E, F, Fut, G, GFut>(
        &self,
        operation: F,
        fallback: G,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
        G: FnOnce(E) -> GFut,
        GFut: Future<Output = Result<T, E>>,
    {
        match self.run(operation).await {
            Ok(value) => Ok(value),
            Err(error) => fallback(error).await,
        }
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
        let mut call = self.call_straight_on::<T, E>().with_key(key);
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
