//! The peer client: the lab's charge, built from published crates the way
//! their documentation shows, with buttress's settings wherever the crates
//! can express them.
//!
//! The stack, outermost first:
//!
//! 1. an overall deadline of [`DEADLINE`] (`tokio::time::timeout`);
//! 2. [`tower::retry::Retry`] with [`PeerRetryPolicy`]: at most
//!    [`MAX_ATTEMPTS`] attempts, a [`TpsBudget`] with its default settings
//!    (10 s window, 10 retries per second in reserve, 20 % of successes),
//!    deposited on every success and withdrawn on every retry as tower's
//!    budget documentation shows, and exponential backoff from
//!    [`BACKOFF_BASE`] to [`BACKOFF_MAX`] with full jitter;
//! 3. the circuit breaker of `tower-resilience`: opening after
//!    [`BREAKER_CONSECUTIVE_FAILURES`] failures in a row, open for
//!    [`BREAKER_OPEN_FOR`], then [`BREAKER_HALF_OPEN_PROBES`] probes;
//! 4. [`tower::limit::ConcurrencyLimit`] of [`CONCURRENCY_LIMIT`] attempts
//!    in flight;
//! 5. [`tower::timeout::Timeout`] of [`ATTEMPT_TIMEOUT`] per attempt;
//! 6. the HTTP call: a `service_fn` over `reqwest::Client`.
//!
//! What counts as a failure (for the retry policy and the breaker alike,
//! see [`is_retryable`]) is what tower users usually write: connection
//! errors, per-attempt timeouts, `5xx`, `409` (the provider's "this
//! idempotency key is still in progress") and `429`; other `4xx` are final
//! and do not count against the provider. An open breaker's refusal is
//! final too: it is not retried.
//!
//! Every attempt of one charge sends the same `Idempotency-Key`
//! ([`ChargeRequest::idempotency_key`]): the retry layer resends a clone of
//! the request, key included.
//!
//! Where this differs from the buttress client, because the crates have no
//! way to say it:
//!
//! - tower's retry has no notion of `Retry-After`: a `429` is retried after
//!   the usual jittered backoff, however long the provider asked to wait.
//! - tower's [`ExponentialBackoffMaker`](tower::retry::backoff::ExponentialBackoffMaker)
//!   adds jitter on top of the exponential delay (`base + U[0, base ×
//!   jitter]`) rather than drawing the whole delay (`U[0, base]`), and its
//!   backoffs are clones of one random generator, so every operation
//!   would draw the same sequence. The full jitter is computed here
//!   instead, with tower's own [`HasherRng`] seeded afresh per operation.
//! - `tower-resilience`'s breaker takes one failure model: a failure rate
//!   over a window, or failures in a row, not both. The buttress client's
//!   breaker has both (5 in a row, or 90 % over 500 ms once 10 calls were
//!   seen); in the lab's incidents the streak trips first, so the peer
//!   uses the streak.
//! - `tower-resilience`'s half-open state closes after
//!   [`BREAKER_HALF_OPEN_PROBES`] successful probes and reopens on the
//!   first failed one.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, RetryLayer};
use tower::util::rng::{HasherRng, Rng};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_resilience::circuitbreaker::{CircuitBreakerError, CircuitBreakerLayer, CircuitState};

use super::http_client;
use super::payments::{with_operation, Charge, ChargeRequest};

/// The overall deadline of one charge, retries and backoff included.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The timeout of each attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);
/// Attempts per charge, the first one included.
pub const MAX_ATTEMPTS: u32 = 5;
/// The backoff's cap before the first retry; it doubles on every retry.
pub const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// The backoff's largest cap.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Attempts in flight at once. Generous on purpose: at the lab's 50 charges
/// per second with 500 ms attempts, even five attempts per charge keep
/// well under 256 in flight, so the limit never queues a call and the
/// comparison stays about retries and the breaker. It is there because
/// tower's documentation pairs retries with a bound on what is in flight,
/// and it guards against a runaway caller.
pub const CONCURRENCY_LIMIT: usize = 256;
/// The breaker opens after this many failures in a row.
pub const BREAKER_CONSECUTIVE_FAILURES: usize = 10;
/// How long the breaker stays open before letting probes through.
pub const BREAKER_OPEN_FOR: Duration = Duration::from_millis(50);
/// Probes let through while half-open.
pub const BREAKER_HALF_OPEN_PROBES: usize = 1;

/// What the whole stack answers for one attempt: the breaker's error around
/// tower's boxed errors (a per-attempt timeout, a `reqwest::Error`).
pub type StackError = CircuitBreakerError<BoxError>;

/// Why a charge failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The overall deadline passed before an attempt succeeded.
    #[error("the {DEADLINE:?} deadline passed")]
    Deadline,
    /// The circuit breaker refused the attempt: nothing was sent.
    #[error("the circuit breaker is open; the attempt was not sent")]
    CircuitOpen,
    /// The last attempt's error: a final one, or the attempts or the budget
    /// were spent.
    #[error(transparent)]
    Failed(BoxError),
}

impl PeerError {
    /// The client refused to send (an open breaker) rather than the provider
    /// failing.
    #[must_use]
    pub const fn is_rejected_locally(&self) -> bool {
        matches!(self, Self::CircuitOpen)
    }
}

/// Whether an attempt's error is worth a retry, and counts against the
/// provider in the breaker: a per-attempt timeout, a connection or transport
/// error, `5xx`, `409` or `429`.
#[must_use]
pub fn is_retryable(error: &BoxError) -> bool {
    if error.is::<tower::timeout::error::Elapsed>() {
        return true;
    }
    match error.downcast_ref::<reqwest::Error>() {
        Some(error) => match error.status() {
            Some(status) => {
                status.is_server_error()
                    || status == http::StatusCode::CONFLICT
                    || status == http::StatusCode::TOO_MANY_REQUESTS
            }
            None => error.is_connect() || error.is_timeout() || error.is_request(),
        },
        None => false,
    }
}

/// The retry policy: retryable errors (see [`is_retryable`]) are retried
/// while attempts and budget remain, after a fully jittered exponential
/// backoff.
///
/// tower clones the policy for every request, so a clone starts its own
/// session: it keeps the shared budget and the attempt count (1 in the
/// template) and seeds a new random generator, so concurrent operations do
/// not draw the same delays.
#[derive(Debug)]
pub struct PeerRetryPolicy {
    budget: Arc<TpsBudget>,
    attempts: u32,
    rng: HasherRng,
}

impl PeerRetryPolicy {
    /// A policy spending `budget`, for a request about to make its first
    /// attempt.
    #[must_use]
    pub fn new(budget: Arc<TpsBudget>) -> Self {
        Self {
            budget,
            attempts: 1,
            rng: HasherRng::new(),
        }
    }

    /// The delay before retry `retry` (1 for the first): uniform in
    /// `[0, min(BACKOFF_MAX, BACKOFF_BASE × 2^(retry-1)))`.
    fn backoff(&mut self, retry: u32) -> Duration {
        let cap = BACKOFF_BASE
            .checked_mul(1 << retry.saturating_sub(1).min(16))
            .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX));
        cap.mul_f64(self.rng.next_f64())
    }
}

impl Clone for PeerRetryPolicy {
    fn clone(&self) -> Self {
        Self {
            budget: Arc::clone(&self.budget),
            attempts: self.attempts,
            rng: HasherRng::new(),
        }
    }
}

impl Policy<ChargeRequest, Charge, StackError> for PeerRetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _request: &mut ChargeRequest,
        result: &mut Result<Charge, StackError>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(CircuitBreakerError::OpenCircuit) => None,
            Err(CircuitBreakerError::Inner(error)) => {
                if !is_retryable(error) || self.attempts >= MAX_ATTEMPTS || !self.budget.withdraw()
                {
                    return None;
                }
                let delay = self.backoff(self.attempts);
                self.attempts += 1;
                Some(tokio::time::sleep(delay))
            }
        }
    }

    fn clone_request(&mut self, request: &ChargeRequest) -> Option<ChargeRequest> {
        Some(request.clone())
    }
}

/// A charges client built from tower and tower-resilience (see the module
/// docs). Its budget and breaker belong to this client alone.
#[derive(Clone)]
pub struct PeerClient {
    service: BoxCloneSyncService<ChargeRequest, Charge, StackError>,
    opens: Arc<AtomicU64>,
}

impl fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClient")
            .field("breaker_opens", &self.breaker_opens())
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client of the provider at `base` (`http://127.0.0.1:1234`).
    #[must_use]
    pub fn new(base: &str) -> Self {
        Self::with_client(http_client(), base)
    }

    /// A client of the provider at `base` over an existing reqwest client.
    ///
    /// # Panics
    /// Never: the breaker's settings are valid constants.
    #[must_use]
    pub fn with_client(http: reqwest::Client, base: &str) -> Self {
        let url: Arc<str> = format!("{}/v1/charges", base.trim_end_matches('/')).into();
        let send = tower::service_fn(move |request: ChargeRequest| {
            let http = http.clone();
            let url = Arc::clone(&url);
            async move {
                let builder = http
                    .post(&*url)
                    .header("Idempotency-Key", &request.idempotency_key)
                    .json(&serde_json::json!({
                        "amount": request.amount,
                        "currency": request.currency,
                        "customer": request.customer,
                    }));
                let response = with_operation(builder, request.operation)
                    .send()
                    .await?
                    .error_for_status()?;
                response.json::<Charge>().await
            }
        });

        let opens = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&opens);
        let breaker = CircuitBreakerLayer::builder()
            .name("payments-peer")
            .consecutive_failures(BREAKER_CONSECUTIVE_FAILURES)
            .wait_duration_in_open(BREAKER_OPEN_FOR)
            .permitted_calls_in_half_open(BREAKER_HALF_OPEN_PROBES)
            .on_state_transition(move |_, to| {
                if to == CircuitState::Open {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .failure_classifier(|result: &Result<Charge, BoxError>| {
                matches!(result, Err(error) if is_retryable(error))
            })
            .build()
            .expect("the breaker's settings are valid");

        let budget = Arc::new(TpsBudget::default());
        let service = ServiceBuilder::new()
            .layer(RetryLayer::new(PeerRetryPolicy::new(budget)))
            .layer(breaker)
            .concurrency_limit(CONCURRENCY_LIMIT)
            .timeout(ATTEMPT_TIMEOUT)
            .service(send);
        Self {
            service: BoxCloneSyncService::new(service),
            opens,
        }
    }

    /// Create a charge, at most once per [`ChargeRequest::idempotency_key`].
    ///
    /// # Errors
    /// [`PeerError::Deadline`] when [`DEADLINE`] passed first,
    /// [`PeerError::CircuitOpen`] when the breaker refused the (first or a
    /// later) attempt, otherwise the last attempt's error.
    pub async fn create_charge(&self, request: &ChargeRequest) -> Result<Charge, PeerError> {
        let call = self.service.clone().oneshot(request.clone());
        match tokio::time::timeout(DEADLINE, call).await {
            Err(_) => Err(PeerError::Deadline),
            Ok(Ok(charge)) => Ok(charge),
            Ok(Err(CircuitBreakerError::OpenCircuit)) => Err(PeerError::CircuitOpen),
            Ok(Err(CircuitBreakerError::Inner(error))) => Err(PeerError::Failed(error)),
        }
    }

    /// How many times this client's breaker opened.
    #[must_use]
    pub fn breaker_opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_fully_jittered_under_a_doubling_cap() {
        let mut policy = PeerRetryPolicy::new(Arc::new(TpsBudget::default()));
        for retry in 1..=6 {
            let cap = BACKOFF_BASE
                .saturating_mul(1 << (retry - 1))
                .min(BACKOFF_MAX);
            let delays: Vec<Duration> = (0..200).map(|_| policy.backoff(retry)).collect();
            assert!(delays.iter().all(|d| *d < cap), "retry {retry}: {delays:?}");
            // Full jitter: delays spread over the whole range, down to near 0.
            assert!(delays.iter().any(|d| *d < cap / 10), "retry {retry}");
            assert!(delays.iter().any(|d| *d > cap * 9 / 10), "retry {retry}");
        }
    }

    #[test]
    fn each_operation_draws_its_own_delays() {
        let template = PeerRetryPolicy::new(Arc::new(TpsBudget::default()));
        let (mut a, mut b) = (template.clone(), template.clone());
        let draws = |p: &mut PeerRetryPolicy| (0..8).map(|_| p.backoff(3)).collect::<Vec<_>>();
        assert_ne!(draws(&mut a), draws(&mut b));
        assert_eq!(a.attempts, 1);
    }
}
