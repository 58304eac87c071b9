//! The rows: each library's stack around a body, configured as its own
//! documentation recommends (the README links the pages followed).
//!
//! Where a library cannot express part of a row (backon, failsafe and
//! recloser have no timeout), the attempt runs under
//! `tokio::time::timeout` ([`timed`]), as their documentation suggests for
//! the rest of an async stack.

use std::future::Future;
use std::time::Duration;

use backon::{
    BackoffBuilder, ConstantBuilder, DefaultSleeper, ExponentialBuilder, Retryable, Sleeper,
};
use buttress::resilient;
use tower::retry::backoff::{Backoff, ExponentialBackoffMaker, MakeBackoff};
use tower::util::rng::HasherRng;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

use crate::bodies::{arm_flaky, flaky, ready, timed, yield_once, FAILURES};
use crate::{BenchError, FnRow, NamedRow, Out, Row, DEADLINE, TIMEOUT};

/// The attempts of every retrying stack: the first and two retries.
pub const MAX_ATTEMPTS: u32 = FAILURES + 1;

/// A limiter's rate that never limits (as `full_stack` in
/// `runtime/benches/common`): about 2.1 × 10⁹ calls a second.
pub const NEVER_LIMITS: u32 = u32::MAX / 2;

/// The bulkhead's (and tower's concurrency limit's) bound.
pub const MAX_CONCURRENT: usize = 1024;

// ---------------------------------------------------------------------------
// buttress: `#[resilient]` as users write it. One function (one call site,
// one provider) per body, as in `runtime/benches/common`.

/// An empty `#[resilient]`: timeout 10 s, deadline 30 s, 3 attempts under
/// a retry budget, count-window breaker.
#[resilient(provider = "peers-default-ready")]
pub async fn buttress_default_ready() -> Out {
    ready().await
}

#[resilient(provider = "peers-default-yield")]
pub async fn buttress_default_yield() -> Out {
    yield_once().await
}

/// The defaults plus a bulkhead and a rate limiter that never limits.
#[resilient(
    provider = "peers-full-ready",
    bulkhead(max_concurrent = 1024),
    rate_limit(per_second = 2147483647, burst = 2147483647)
)]
pub async fn buttress_full_ready() -> Out {
    ready().await
}

#[resilient(
    provider = "peers-full-yield",
    bulkhead(max_concurrent = 1024),
    rate_limit(per_second = 2147483647, burst = 2147483647)
)]
pub async fn buttress_full_yield() -> Out {
    yield_once().await
}

/// Three attempts, zero backoff, no budget, no breaker (timeout 10 s and
/// deadline 30 s as by default).
#[resilient(
    provider = "peers-retry",
    retry(max_attempts = 3, backoff = constant("0ms"), budget = off),
    breaker = off
)]
pub async fn buttress_retry() -> Out {
    flaky().await
}

// ---------------------------------------------------------------------------
// tower: `ServiceBuilder`, its `Retry` with a policy of our own (tower has
// none built in), called as tower's docs show for one owner of a service:
// `svc.ready().await?.call(req)` on the same service every call (no clone
// per call; a `Buffer` or a clone per request would add to it).

/// A tower service as a row: `ready().await?.call(())` per call.
#[derive(Debug)]
pub struct TowerRow<S>(pub S);

impl<S> Row for TowerRow<S>
where
    S: Service<(), Response = u64>,
{
    async fn call(&mut self) -> Out {
        match self.0.ready().await {
            Ok(svc) => svc.call(()).await.map_err(|_| BenchError::Rejected),
            Err(_) => Err(BenchError::Rejected),
        }
    }
}

/// tower's retry policy: retry errors, at most `retries` times, after the
/// backoff's next delay. tower clones the policy for every request, so each
/// call starts with the full count and a fresh backoff session.
#[derive(Debug, Clone)]
pub struct RetryErrors<B> {
    retries: u32,
    backoff: B,
}

impl<B> RetryErrors<B> {
    pub fn new(retries: u32, backoff: B) -> Self {
        RetryErrors { retries, backoff }
    }
}

impl<B, Res, E> tower::retry::Policy<(), Res, E> for RetryErrors<B>
where
    B: Backoff,
{
    type Future = B::Future;

    fn retry(&mut self, _: &mut (), result: &mut Result<Res, E>) -> Option<B::Future> {
        match result {
            Err(_) if self.retries > 0 => {
                self.retries -= 1;
                Some(self.backoff.next_backoff())
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, _: &()) -> Option<()> {
        Some(())
    }
}

/// A tower backoff of zero: the retry follows at once.
#[derive(Debug, Clone, Copy)]
pub struct NoBackoff;

impl Backoff for NoBackoff {
    type Future = std::future::Ready<()>;

    fn next_backoff(&mut self) -> Self::Future {
        std::future::ready(())
    }
}

/// tower's exponential backoff, with buttress's default bounds (100 ms to
/// 5 s) and full jitter range.
pub fn tower_backoff() -> impl Backoff + Clone {
    ExponentialBackoffMaker::new(
        Duration::from_millis(100),
        Duration::from_secs(5),
        1.0,
        HasherRng::default(),
    )
    .expect("valid backoff bounds")
    .make_backoff()
}

/// Rate limit (never limits) → concurrency limit 1024 → retry (2 retries,
/// exponential backoff) → timeout 10 s per attempt → the body.
///
/// The limits sit outside the retry: tower's `RateLimit` is not `Clone`,
/// which `Retry` needs of what it wraps, and `Retry` clones its inner
/// service for every request, which for a `ConcurrencyLimit` allocates a
/// new semaphore future. So here they bound calls, not attempts.
pub fn tower_stack<F, Fut>(body: F) -> impl Service<(), Response = u64, Error = BoxError>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Out> + Send + 'static,
{
    ServiceBuilder::new()
        .rate_limit(u64::from(NEVER_LIMITS), Duration::from_secs(1))
        .concurrency_limit(MAX_CONCURRENT)
        .retry(RetryErrors::new(MAX_ATTEMPTS - 1, tower_backoff()))
        .timeout(TIMEOUT)
        .service_fn(move |()| body())
}

/// Retry (2 retries, no backoff) → timeout 10 s per attempt → the body.
pub fn tower_retry<F, Fut>(body: F) -> impl Service<(), Response = u64, Error = BoxError>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Out> + Send + 'static,
{
    ServiceBuilder::new()
        .retry(RetryErrors::new(MAX_ATTEMPTS - 1, NoBackoff))
        .timeout(TIMEOUT)
        .service_fn(move |()| body())
}

// ---------------------------------------------------------------------------
// backon: `body.retry(builder).when(…)`, each attempt under
// `tokio::time::timeout` (backon has no timeout).

#[derive(Debug, Clone, Copy)]
pub struct Backon<F, B, S> {
    body: F,
    backoff: B,
    sleeper: S,
}

impl<F, B, S> Backon<F, B, S> {
    pub fn new(body: F, backoff: B, sleeper: S) -> Self {
        Backon {
            body,
            backoff,
            sleeper,
        }
    }
}

impl<F, Fut, B, S> Row for Backon<F, B, S>
where
    F: Fn() -> Fut + Copy,
    Fut: Future<Output = Out>,
    B: BackoffBuilder + Copy,
    S: Sleeper + Copy,
{
    async fn call(&mut self) -> Out {
        let body = self.body;
        (move || timed(body))
            .retry(self.backoff)
            .sleep(self.sleeper)
            .when(BenchError::is_retryable)
            .await
    }
}

/// backon's default: exponential from 1 s, factor 2, 3 retries, no jitter.
pub fn backon_default() -> ExponentialBuilder {
    ExponentialBuilder::default()
}

/// Zero delay, 2 retries.
pub fn backon_no_delay() -> ConstantBuilder {
    ConstantBuilder::default()
        .with_delay(Duration::ZERO)
        .with_max_times((MAX_ATTEMPTS - 1) as usize)
}

/// A backon sleeper (its `.sleep(…)` hook) that skips zero delays and
/// sleeps on tokio otherwise. backon's default sleeper,
/// `tokio::time::sleep`, waits for the timer's next millisecond tick even
/// for a zero delay (the `retry_timer` group measures that).
pub async fn skip_zero_sleep(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

// ---------------------------------------------------------------------------
// failsafe: `failsafe::futures::CircuitBreaker` with `Config::new()`'s
// defaults (success rate over a time window, or else consecutive
// failures; equal-jittered backoff), around the attempt under
// `tokio::time::timeout` (failsafe has no timeout), so that a timeout
// counts as a failure.

#[derive(Debug)]
pub struct Failsafe<C, F> {
    breaker: C,
    body: F,
}

pub fn failsafe<F>(body: F) -> Failsafe<impl failsafe::futures::CircuitBreaker, F> {
    Failsafe {
        breaker: failsafe::Config::new().build(),
        body,
    }
}

impl<C, F, Fut> Row for Failsafe<C, F>
where
    C: failsafe::futures::CircuitBreaker,
    F: Fn() -> Fut + Copy,
    Fut: Future<Output = Out>,
{
    async fn call(&mut self) -> Out {
        match self.breaker.call(timed(self.body)).await {
            Ok(value) => Ok(value),
            Err(failsafe::Error::Inner(e)) => Err(e),
            Err(failsafe::Error::Rejected) => Err(BenchError::Rejected),
        }
    }
}

// ---------------------------------------------------------------------------
// recloser: `AsyncRecloser::from(Recloser::default())` (error rate 0.5
// over 100 calls, 10 half-open calls, open 30 s), around the attempt under
// `tokio::time::timeout` (recloser has no timeout).

#[derive(Debug)]
pub struct Recloser<F> {
    breaker: recloser::AsyncRecloser,
    body: F,
}

pub fn recloser<F>(body: F) -> Recloser<F> {
    Recloser {
        breaker: recloser::AsyncRecloser::from(recloser::Recloser::default()),
        body,
    }
}

impl<F, Fut> Row for Recloser<F>
where
    F: Fn() -> Fut + Copy,
    Fut: Future<Output = Out>,
{
    async fn call(&mut self) -> Out {
        match self.breaker.call(timed(self.body)).await {
            Ok(value) => Ok(value),
            Err(recloser::Error::Inner(e)) => Err(e),
            Err(recloser::Error::Rejected) => Err(BenchError::Rejected),
        }
    }
}

// ---------------------------------------------------------------------------
// seatbelt: its recommended order, Retry → Breaker → Timeout → operation
// (fallback left out), with `layered`'s tuple stack and `tick`'s tokio
// clock, as its examples do. Defaults wherever seatbelt has them.

/// A seatbelt service as a row: `execute(())` per call.
#[derive(Debug)]
pub struct SeatbeltRow<S>(pub S);

impl<S> Row for SeatbeltRow<S>
where
    S: layered::Service<(), Out = Out>,
{
    async fn call(&mut self) -> Out {
        self.0.execute(()).await
    }
}

/// How the seatbelt layers classify an output.
fn seatbelt_recovery(output: &Out) -> seatbelt::RecoveryInfo {
    match output {
        Err(e) if e.is_retryable() => seatbelt::RecoveryInfo::retry(),
        _ => seatbelt::RecoveryInfo::never(),
    }
}

/// Retry (defaults: 3 retries, exponential from 10 ms with jitter) →
/// breaker (defaults) → timeout 10 s → the body. Builds a tokio clock, so
/// it runs inside a runtime.
pub fn seatbelt_stack<F, Fut>(body: F) -> impl layered::Service<(), Out = Out>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Out> + Send + 'static,
{
    use layered::{Execute, Stack};
    use seatbelt::breaker::Breaker;
    use seatbelt::retry::Retry;
    use seatbelt::timeout::Timeout;

    let clock = tick::Clock::new_tokio();
    let context = seatbelt::ResilienceContext::new(&clock).name("peers");
    (
        Retry::layer("retry", &context)
            .clone_input()
            .recovery_with(|output: &Out, _| seatbelt_recovery(output)),
        Breaker::layer("breaker", &context)
            .recovery_with(|output: &Out, _| seatbelt_recovery(output))
            .rejected_input_error(|_, _| BenchError::Rejected),
        Timeout::layer("timeout", &context)
            .timeout_error(|_| BenchError::Timeout)
            .timeout(TIMEOUT),
        Execute::new(move |()| body()),
    )
        .into_service()
}

/// Retry (2 retries, constant zero delay, no jitter) → timeout 10 s → the
/// body; no breaker.
pub fn seatbelt_retry<F, Fut>(body: F) -> impl layered::Service<(), Out = Out>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Out> + Send + 'static,
{
    use layered::{Execute, Stack};
    use seatbelt::retry::{Backoff, Retry};
    use seatbelt::timeout::Timeout;

    let clock = tick::Clock::new_tokio();
    let context = seatbelt::ResilienceContext::new(&clock).name("peers-retry");
    (
        Retry::layer("retry", &context)
            .clone_input()
            .recovery_with(|output: &Out, _| seatbelt_recovery(output))
            .max_retry_attempts(MAX_ATTEMPTS - 1)
            .backoff(Backoff::Constant)
            .base_delay(Duration::ZERO)
            .use_jitter(false),
        Timeout::layer("timeout", &context)
            .timeout_error(|_| BenchError::Timeout)
            .timeout(TIMEOUT),
        Execute::new(move |()| body()),
    )
        .into_service()
}

// ---------------------------------------------------------------------------
// tower-resilience: the composition guide's "External API clients /
// Standard Stack": time limiter 30 s (whole call) → retry (3 attempts,
// exponential from 100 ms) → circuit breaker (failure rate 0.5, defaults
// otherwise) → time limiter 10 s (per attempt) → the body. The retry skips
// the breaker's open-circuit rejections, as its breaker docs recommend.

type TrAttemptError = tower_resilience::circuitbreaker::CircuitBreakerError<
    tower_resilience::timelimiter::TimeLimiterError<BenchError>,
>;

pub fn tower_resilience_stack<F, Fut>(body: F) -> impl Service<(), Response = u64>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Out> + Send + 'static,
{
    use tower::Layer;
    use tower_resilience::circuitbreaker::CircuitBreakerLayer;
    use tower_resilience::retry::RetryLayer;
    use tower_resilience::timelimiter::TimeLimiterLayer;

    let per_attempt = TimeLimiterLayer::builder()
        .timeout_duration(TIMEOUT)
        .build();
    let breaker = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .build()
        .expect("a valid breaker");
    let retry = RetryLayer::<(), u64, TrAttemptError>::builder()
        .max_attempts(MAX_ATTEMPTS as usize)
        .exponential_backoff(Duration::from_millis(100))
        .retry_on(|e: &TrAttemptError| !e.is_circuit_open())
        .build();
    let deadline = TimeLimiterLayer::builder()
        .timeout_duration(DEADLINE)
        .build();

    let service = tower::service_fn(move |()| body());
    deadline.layer(retry.layer(breaker.layer(per_attempt.layer(service))))
}

/// Retry (3 attempts, fixed zero backoff) → time limiter 10 s per attempt
/// → the body; no breaker.
pub fn tower_resilience_retry<F, Fut>(body: F) -> impl Service<(), Response = u64>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Out> + Send + 'static,
{
    use tower::Layer;
    use tower_resilience::retry::RetryLayer;
    use tower_resilience::timelimiter::{TimeLimiterError, TimeLimiterLayer};

    let per_attempt = TimeLimiterLayer::builder()
        .timeout_duration(TIMEOUT)
        .build();
    let retry = RetryLayer::<(), u64, TimeLimiterError<BenchError>>::builder()
        .max_attempts(MAX_ATTEMPTS as usize)
        .fixed_backoff(Duration::ZERO)
        .build();

    let service = tower::service_fn(move |()| body());
    retry.layer(per_attempt.layer(service))
}

// ---------------------------------------------------------------------------
// The groups.

/// The happy-path rows around `body`, baseline first.
pub fn happy<B, BF, D, DF, U, UF>(body: B, default: D, full: U) -> Vec<NamedRow>
where
    B: Fn() -> BF + Copy + Send + Sync + 'static,
    BF: Future<Output = Out> + Send + 'static,
    D: Fn() -> DF + 'static,
    DF: Future<Output = Out>,
    U: Fn() -> UF + 'static,
    UF: Future<Output = Out>,
{
    vec![
        NamedRow::new("tokio_timeout", FnRow(move || timed(body))),
        NamedRow::new("buttress_default", FnRow(default)),
        NamedRow::new("buttress_full", FnRow(full)),
        NamedRow::new("tower_stack", TowerRow(tower_stack(body))),
        NamedRow::new(
            "backon",
            Backon::new(body, backon_default(), DefaultSleeper::default()),
        ),
        NamedRow::new("failsafe", failsafe(body)),
        NamedRow::new("recloser", recloser(body)),
        NamedRow::new("seatbelt", SeatbeltRow(seatbelt_stack(body))),
        NamedRow::new("tower_resilience", TowerRow(tower_resilience_stack(body))),
    ]
}

/// A row of the `retry` group: [`arm_flaky`] before every call, so each
/// call's body fails twice and then succeeds.
#[derive(Debug)]
pub struct Armed<R>(pub R);

impl<R: Row> Row for Armed<R> {
    async fn call(&mut self) -> Out {
        arm_flaky();
        self.0.call().await
    }
}

/// The baseline of the `retry` group: a plain loop of up to three attempts,
/// each under `tokio::time::timeout`, retrying at once.
pub async fn tokio_timeout_loop() -> Out {
    let mut attempt = 1;
    loop {
        match timed(flaky).await {
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => attempt += 1,
            result => break result,
        }
    }
}

/// The retrying stacks around [`flaky`], zero backoff, baseline first:
/// those whose zero backoff does not wait for a timer.
pub fn retry() -> Vec<NamedRow> {
    vec![
        NamedRow::new("tokio_timeout", Armed(FnRow(tokio_timeout_loop))),
        NamedRow::new("buttress_retry", Armed(FnRow(buttress_retry))),
        NamedRow::new("tower_retry", Armed(TowerRow(tower_retry(flaky)))),
        NamedRow::new(
            "backon_retry",
            Armed(Backon::new(flaky, backon_no_delay(), skip_zero_sleep)),
        ),
        NamedRow::new("seatbelt_retry", Armed(SeatbeltRow(seatbelt_retry(flaky)))),
    ]
}

/// The baseline of the `retry_timer` group: [`tokio_timeout_loop`] with a
/// `tokio::time::sleep(Duration::ZERO)` before each retry.
pub async fn tokio_sleep_zero_loop() -> Out {
    let mut attempt = 1;
    loop {
        match timed(flaky).await {
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(Duration::ZERO).await;
                attempt += 1;
            }
            result => break result,
        }
    }
}

/// The retrying stacks whose zero backoff still sleeps on tokio's timer,
/// which waits for its next millisecond tick: backon with its default
/// sleeper, and tower-resilience, whose retry always sleeps.
pub fn retry_timer() -> Vec<NamedRow> {
    vec![
        NamedRow::new("tokio_sleep_zero", Armed(FnRow(tokio_sleep_zero_loop))),
        NamedRow::new(
            "backon_retry",
            Armed(Backon::new(
                flaky,
                backon_no_delay(),
                DefaultSleeper::default(),
            )),
        ),
        NamedRow::new(
            "tower_resilience_retry",
            Armed(TowerRow(tower_resilience_retry(flaky))),
        ),
    ]
}
