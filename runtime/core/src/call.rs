//! The attempt driver: one logical call, attempt by attempt.
//!
//! `#[resilient]` expands to a loop around [`Call::attempt`], re-running the
//! user's body inline on each attempt (so it may borrow `self` and its
//! arguments, even `&mut self`). The order of policies for every attempt,
//! outermost first: deadline → retry (with budget) → breaker → rate limit →
//! bulkhead → per-attempt timeout → body.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::bound::PolicyInner;
use crate::breaker::{BreakerPermit, PermitKind};
use crate::class::{Classify, ErrorClass};
use crate::context::CallContext;
use crate::error::Error;
use crate::idempotency::{Dedup, DedupOptions, IdempotencyStore, Stored};
use crate::rate_limit::Admission;
use crate::recovery::BlockReason;
use crate::timeout::{AttemptFuture, Finished};

pub use crate::outcome::{CallOutcome, Rejection};

/// One logical call under a [`crate::Policy`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::ops::ControlFlow;
/// use buttress::{Policy, Error};
///
/// let policy = Policy::builder("doc-call").build().unwrap();
/// let mut call = policy.call::<u32, Error>();
/// let result = loop {
///     // The body is a fresh future per attempt; it may borrow freely.
///     if let ControlFlow::Break(result) = call.attempt(async { Ok(7) }).await {
///         break result;
///     }
/// };
/// assert_eq!(result.unwrap(), 7);
/// # }
/// ```
pub struct Call<'p, T, E> {
    /// The policy: borrowed ([`Policy::call`](crate::Policy::call)), or
    /// held by `_owner` (a `#[resilient]` call site's policy, which a reload
    /// may replace while this call runs: it is freed when the last call
    /// holding it ends).
    policy: &'p PolicyInner,
    /// Keeps `policy` alive when the call holds it. Never read: `policy`
    /// points into it.
    _owner: Option<Arc<PolicyInner>>,
    ctx: CallContext,
    previous_delay: Duration,
    /// When the next attempt may start (after a backoff).
    next_attempt_at: Option<Instant>,
    last_error: Option<E>,
    /// When the latest retry started (the first attempt's start is the
    /// call's start); read only on retries, which read the clock anyway.
    last_attempt_at: Option<Instant>,
    /// When the latest attempt that waited ended, if it was measured.
    ended_at: Option<Instant>,
    /// Attempts of this call the adaptive timeout cut: each doubles the
    /// next one's timeout (up to its `max`), as TCP backs off its
    /// retransmission timer.
    cut: u32,
    /// Whether the latest attempt was cut by its timeout.
    timed_out: bool,
    /// An attempt cut by its timeout is still running (see
    /// [`Call::attempt_keeping`]): the call's end is reported only once
    /// it is known whether that attempt's late answer wins.
    keeping: bool,
    outcome: Option<CallOutcome>,
    /// The quota shared with other replicas, and this call's cost in it.
    #[cfg(feature = "redis")]
    shared_quota: Option<crate::shared_quota::SharedQuota>,
    #[cfg(feature = "redis")]
    quota_cost: u32,
    _result: PhantomData<fn() -> T>,
}

/// Implemented by nothing: `#[resilient(rate_limit(shared = …))]` without
/// the `redis` feature names it in its compile error.
#[cfg(not(feature = "redis"))]
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`rate_limit(shared = …)` needs the `redis` feature of buttress",
    label = "a shared quota lives in Redis",
    note = "enable it in Cargo.toml: buttress = {{ version = \"…\", features = [\"redis\"] }}"
)]
pub trait SharedQuotaNeedsTheRedisFeature {}

/// Poll the attempt kept in `kept`, if any: `Ready` with its value when it
/// succeeded; a late failure empties the slot and stays `Pending` (it says
/// nothing the retries do not).
fn poll_kept<F, T, E>(
    kept: &mut std::pin::Pin<&mut Option<F>>,
    cx: &mut std::task::Context<'_>,
) -> Poll<T>
where
    F: Future<Output = Result<T, E>>,
{
    let Some(Poll::Ready(answer)) = kept.as_mut().as_pin_mut().map(|running| running.poll(cx))
    else {
        return Poll::Pending;
    };
    kept.set(None);
    match answer {
        Ok(value) => Poll::Ready(value),
        Err(_) => Poll::Pending,
    }
}

/// Who answered first in [`Call::attempt_keeping`].
enum Raced<T, F> {
    Kept(T),
    Step(F),
}

impl<T, E> std::fmt::Debug for Call<'_, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("provider", &self.policy.config.provider)
            .field("attempt", &self.ctx.attempt.get())
            .finish_non_exhaustive()
    }
}

impl<T, E> Call<'static, T, E>
where
    E: Classify + From<Error>,
{
    /// A call that holds its policy: the policy lives as long as the call,
    /// even if its call site moves on to another one meanwhile.
    #[inline]
    pub(crate) fn holding(policy: Arc<PolicyInner>) -> Self {
        // SAFETY: the reference points into the `Arc`'s allocation, which
        // does not move and lives as long as `_owner`, a private field of
        // the call dropped with it. Nothing borrowed from `policy` leaves
        // the call: its `'static` lifetime is used only by permits that the
        // call's own methods take and release (never returned, stored
        // elsewhere or moved into spawned tasks), and no method hands out a
        // reference with the call's lifetime parameter.
        let borrowed: &'static PolicyInner = unsafe { &*Arc::as_ptr(&policy) };
        Self::with_owner(borrowed, Some(policy))
    }
}

impl<'p, T, E> Call<'p, T, E>
where
    E: Classify + From<Error>,
{
    pub(crate) const fn new(policy: &'p PolicyInner) -> Self {
        Self::with_owner(policy, None)
    }

    /// The policy the call runs under (for the models).
    #[cfg(all(test, buttress_loom))]
    pub(crate) const fn policy_inner(&self) -> &PolicyInner {
        self.policy
    }

    /// The policy the call holds, if it holds it (for the models).
    #[cfg(all(test, buttress_loom))]
    pub(crate) fn policy_arc(&self) -> Arc<PolicyInner> {
        self._owner
            .clone()
            .expect("a call site's call holds its policy")
    }

    #[inline(always)]
    const fn with_owner(policy: &'p PolicyInner, owner: Option<Arc<PolicyInner>>) -> Self {
        Self {
            policy,
            _owner: owner,
            ctx: CallContext::new(policy.config.deadline, policy.config.idempotent),
            previous_delay: Duration::ZERO,
            next_attempt_at: None,
            last_error: None,
            last_attempt_at: None,
            ended_at: None,
            cut: 0,
            timed_out: false,
            keeping: false,
            outcome: None,
            #[cfg(feature = "redis")]
            shared_quota: None,
            #[cfg(feature = "redis")]
            quota_cost: 1,
            _result: PhantomData,
        }
    }

    /// Admit this call's attempts through `quota`, shared with the other
    /// replicas through Redis, instead of the policy's (if any); see
    /// [`crate::shared_quota`]. `#[resilient(rate_limit(shared = …))]`
    /// does this.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_shared_quota(mut self, quota: &crate::shared_quota::SharedQuota) -> Self {
        self.set_shared_quota(quota);
        self
    }

    /// Set the call's shared quota (see [`Call::with_shared_quota`]):
    /// a [`SharedQuota`](crate::shared_quota::SharedQuota), an `Option`
    /// of one (`None` leaves the policy's), or a reference or `Arc`.
    #[cfg(feature = "redis")]
    pub fn set_shared_quota<Q: crate::shared_quota::AsSharedQuota + ?Sized>(&mut self, quota: &Q) {
        if let Some(quota) = quota.as_shared_quota() {
            self.shared_quota = Some(quota.clone());
        }
    }

    /// Without the `redis` feature there is no shared quota: a clear
    /// compile error says so.
    #[cfg(not(feature = "redis"))]
    #[doc(hidden)]
    pub fn set_shared_quota<Q: SharedQuotaNeedsTheRedisFeature + ?Sized>(&mut self, _quota: &Q) {}

    /// Set what each attempt costs in the shared quota (see
    /// [`Call::with_quota_cost`]).
    #[cfg(feature = "redis")]
    pub fn set_quota_cost(&mut self, cost: u32) {
        self.quota_cost = cost;
    }

    #[cfg(not(feature = "redis"))]
    #[doc(hidden)]
    pub fn set_quota_cost(&mut self, _cost: u32) {}

    /// The shared quota this call's attempts go through: its own, or the
    /// policy's.
    #[cfg(feature = "redis")]
    fn quota(&self) -> Option<crate::shared_quota::SharedQuota> {
        self.shared_quota
            .as_ref()
            .or(self.policy.config.shared_quota.as_ref())
            .cloned()
    }

    /// What each attempt of this call costs in the shared quota (default
    /// 1: a request; tokens for an LLM API, say). Correct it after the
    /// call with [`SharedQuota::correct`](crate::shared_quota::SharedQuota::correct)
    /// once the real cost is known.
    #[cfg(feature = "redis")]
    #[must_use]
    pub const fn with_quota_cost(mut self, cost: u32) -> Self {
        self.quota_cost = cost;
        self
    }

    /// Give the call an idempotency key, the same on every attempt and
    /// readable in the body through [`crate::idempotency_key`].
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.set_key(key);
        self
    }

    /// Set the call's idempotency key (see [`Call::with_key`]).
    pub fn set_key(&mut self, key: impl Into<Arc<str>>) {
        self.ctx.key = std::cell::OnceCell::from(key.into());
    }

    /// The call's idempotency key, generating one for an idempotent call.
    #[must_use]
    pub fn key(&self) -> Option<&Arc<str>> {
        self.ctx.key()
    }

    /// The idempotency layer, outermost: claim the call's key in `store`
    /// (generating a key if the call has none). `Continue` carries the claim
    /// to [`Dedup::finish`] after the attempts; `Break` carries the call's
    /// answer without calling the provider (a replayed result, `InFlight`,
    /// `KeyReused`, `Store`).
    pub async fn claim<'s, S: IdempotencyStore>(
        &mut self,
        store: &'s S,
        options: &DedupOptions,
    ) -> ControlFlow<Result<T, E>, Dedup<'s, S>>
    where
        T: Stored,
    {
        let key = Arc::clone(self.ctx.key.get_or_init(crate::idempotency::generate_key));
        match Dedup::begin::<T>(
            store,
            self.policy.provider.name(),
            key,
            self.policy.config.deadline,
            options,
        )
        .await
        {
            Ok(dedup) => ControlFlow::Continue(dedup),
            Err(answer) => {
                if let Err(e) = &answer {
                    tracing::debug!(
                        provider = e.provider(),
                        reason = e.reason(),
                        "call answered by the idempotency layer: {e}"
                    );
                    if matches!(e, Error::InFlight { .. }) {
                        self.refused("in_flight");
                    }
                }
                ControlFlow::Break(self.finish(CallOutcome::Deduplicated, answer.map_err(E::from)))
            }
        }
    }

    pub(crate) fn ctx_mut(&mut self) -> &mut CallContext {
        &mut self.ctx
    }

    /// The provider's name.
    #[must_use]
    pub fn provider(&self) -> &str {
        self.policy.provider.name()
    }

    /// The operation's name (the function's name under `#[resilient]`).
    #[must_use]
    pub fn operation(&self) -> &str {
        &self.policy.config.operation
    }

    /// Attempts started so far.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.ctx.attempt.get()
    }

    /// How the call ended; `None` while it goes on.
    #[must_use]
    pub const fn outcome(&self) -> Option<CallOutcome> {
        self.outcome
    }

    /// When the call started, if the clock was read: a call whose first
    /// attempt completed on its first poll never reads it (then `None`).
    #[must_use]
    pub fn started_at(&self) -> Option<Instant> {
        self.ctx.started.get()
    }

    /// When the latest attempt started, if the clock was read (a retry
    /// always reads it; a first attempt is the call's start).
    #[must_use]
    pub fn last_attempt_at(&self) -> Option<Instant> {
        self.last_attempt_at.or_else(|| self.ctx.started.get())
    }

    /// The call's correlation id: the caller's (see
    /// [`Call::set_correlation_id`] and [`crate::with_correlation_id`]), or
    /// one generated on first use (a UUIDv7), the same for every attempt.
    pub fn correlation_id(&self) -> &Arc<str> {
        self.ctx.correlation_id()
    }

    /// Give the call a correlation id (an incoming request's, say), readable
    /// in the body through [`crate::correlation_id`].
    pub fn set_correlation_id(&mut self, id: impl Into<Arc<str>>) {
        self.ctx.correlation = std::cell::OnceCell::from(id.into());
    }

    fn provider_name(&self) -> Arc<str> {
        Arc::clone(self.policy.provider.name())
    }

    /// Sleep the backoff scheduled by the previous attempt, if any. Call it
    /// before building the next attempt's body when building it has side
    /// effects ([`Policy::run`](crate::Policy::run) does); otherwise
    /// [`attempt`](Self::attempt) sleeps it first.
    pub async fn backoff(&mut self) {
        if let Some(at) = self.next_attempt_at.take() {
            Box::pin(tokio::time::sleep_until(at)).await;
        }
    }

    /// As [`attempt`](Self::attempt), but an attempt cut by its timeout is
    /// not cancelled when the policy hedges
    /// ([`PolicyConfig::with_hedge`](crate::PolicyConfig::with_hedge)) and
    /// the call is idempotent: it goes on in `kept` while the retries run,
    /// and whichever answers with success first is the call's result (the
    /// others are dropped). Until the deadline, a kept attempt may still
    /// answer after the retries gave up (attempts or budget spent, a
    /// refusal); a provider's final answer (a `Permanent` error) is not
    /// overruled. One attempt is kept at a time, the earliest cut; a
    /// later retry cut by its timeout is cancelled as usual.
    ///
    /// `kept` is a pinned slot the caller keeps across the attempts of one
    /// call (`#[resilient(hedge)]` and [`Policy::run`](crate::Policy::run)
    /// do this); nothing is allocated. Inside a kept attempt, after its
    /// cut, the context accessors ([`crate::attempt`],
    /// [`crate::idempotency_key`], ...) answer `None`: read them before
    /// the first `.await` of the body.
    pub async fn attempt_keeping<F>(
        &mut self,
        mut kept: std::pin::Pin<&mut Option<F>>,
        body: F,
    ) -> ControlFlow<Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        if !(self.policy.config.hedge && self.ctx.idempotent) {
            return self.attempt(body).await;
        }
        if kept.is_none() {
            // This attempt runs in the slot, so it can stay there if cut.
            kept.set(Some(body));
            let flow = match kept.as_mut().as_pin_mut() {
                Some(running) => self.attempt(running).await,
                None => unreachable!("the slot was just filled"),
            };
            if !(flow.is_continue() && self.timed_out) {
                kept.set(None);
            }
            return flow;
        }
        // An earlier attempt is still running: race it with this one.
        self.keeping = true;
        let raced = {
            let body = std::pin::pin!(body);
            let step = self.attempt(body);
            let mut step = std::pin::pin!(step);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(value) = poll_kept(&mut kept, cx) {
                    return Poll::Ready(Raced::Kept(value));
                }
                step.as_mut().poll(cx).map(Raced::Step)
            })
            .await
        };
        self.keeping = false;
        match raced {
            // The retry in progress was dropped; the call ends now.
            Raced::Kept(value) => ControlFlow::Break(self.late_success(value)),
            Raced::Step(ControlFlow::Continue(())) => ControlFlow::Continue(()),
            Raced::Step(ControlFlow::Break(result)) => {
                let held_back = result.is_err();
                let result = match (result, kept.as_mut().as_pin_mut()) {
                    (Err(error), Some(running))
                        if !matches!(self.outcome, Some(CallOutcome::NotRetryable(_))) =>
                    {
                        self.wait_for_kept(running, error).await
                    }
                    (result, _) => result,
                };
                kept.set(None);
                if held_back && (self.policy.telemetry.measures() || !self.ctx.span.is_disabled()) {
                    // The end `finish` held back.
                    let outcome = self.outcome.unwrap_or(CallOutcome::Ok);
                    self.report_end(outcome, result.as_ref().err().map(Classify::class));
                }
                ControlFlow::Break(result)
            }
        }
    }

    /// [`backoff`](Self::backoff) while an attempt kept by
    /// [`attempt_keeping`](Self::attempt_keeping) runs: `Some` with the
    /// call's result when that attempt answers with success first.
    pub async fn backoff_keeping<F>(
        &mut self,
        mut kept: std::pin::Pin<&mut Option<F>>,
    ) -> Option<Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let at = self.next_attempt_at?;
        if kept.is_none() {
            self.backoff().await;
            return None;
        }
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(at));
        let answer = std::future::poll_fn(|cx| {
            if let Poll::Ready(value) = poll_kept(&mut kept, cx) {
                return Poll::Ready(Some(value));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await;
        self.next_attempt_at = None;
        answer.map(|value| self.late_success(value))
    }

    /// The kept attempt answered with success first: the call's result.
    fn late_success(&mut self, value: T) -> Result<T, E> {
        self.ended_at = None;
        self.finish(CallOutcome::Ok, Ok(value))
    }

    /// The retries gave up with `error` while a kept attempt still runs:
    /// wait for it until the deadline (not at all without one).
    #[cold]
    async fn wait_for_kept<F>(&mut self, running: std::pin::Pin<&mut F>, error: E) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let Some(deadline) = self.ctx.deadline_at(self.ctx.now()) else {
            return Err(error);
        };
        let answer = tokio::time::timeout_at(deadline, running).await;
        self.ended_at = None;
        match answer {
            Ok(Ok(value)) => {
                self.outcome = Some(CallOutcome::Ok);
                Ok(value)
            }
            _ => Err(error),
        }
    }

    /// Make one attempt with `body`. `Break` carries the call's result;
    /// `Continue` means "call again with a fresh body": the next call to
    /// `attempt` first sleeps the backoff.
    ///
    /// The body is not polled when the attempt is rejected (breaker open,
    /// rate limit or bulkhead past the deadline).
    pub async fn attempt<F>(&mut self, body: F) -> ControlFlow<Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let policy = self.policy;
        let provider = &*policy.provider;
        if self.next_attempt_at.is_some() {
            self.backoff().await;
        }
        let attempt = self.ctx.attempt.get() + 1;
        self.ctx.attempt.set(attempt);
        self.timed_out = false;

        if attempt == 1 {
            self.open_span();
        } else {
            let now = self.ctx.now();
            self.last_attempt_at = Some(now);
            self.ended_at = None;
            if let Some(left) = self.ctx.remaining_at(now) {
                if left.is_zero() {
                    return self.no_time_left();
                }
            }
        }

        // The happy path: no throttle, an idle gate, a closed breaker.
        // (A provider with a throttle keeps its gate active for good.)
        let fast = if provider.gate.is_active() {
            None
        } else {
            provider.breaker.try_acquire().ok()
        };
        let permit = match fast {
            Some(permit) => permit,
            None => match Box::pin(self.admit_slow(attempt)).await {
                Ok(permit) => permit,
                Err(end) => return end,
            },
        };

        if let Some(limiter) = &provider.limiter {
            let ctx = &self.ctx;
            match limiter.acquire(|| ctx.remaining_at(ctx.now()).unwrap_or(Duration::MAX)) {
                Ok(Admission::Now) => {}
                Ok(Admission::After(wait)) => {
                    // Rare paths are boxed so the attempt future stays small
                    // (it is moved on every call); waiting dwarfs the allocation.
                    Box::pin(tokio::time::sleep(wait)).await;
                }
                Err(retry_after) => {
                    drop(permit);
                    return self.reject(
                        Rejection::RateLimit,
                        Error::RateLimited {
                            provider: self.provider_name(),
                            retry_after,
                        },
                    );
                }
            }
        }

        #[cfg(feature = "redis")]
        {
            // Lent out of the call for the admission (no clone per attempt).
            let own = self.shared_quota.take();
            if let Some(quota) = own.as_ref().or(policy.config.shared_quota.as_ref()) {
                let admitted = Box::pin(self.admit_shared(quota)).await;
                self.shared_quota = own;
                if let Err(end) = admitted {
                    drop(permit);
                    return end;
                }
            }
        }

        let slot = match &provider.bulkhead {
            None => None,
            Some(bulkhead) => match bulkhead.try_acquire() {
                Some(slot) => Some(slot),
                None => {
                    let limit = self.ctx.deadline_at(self.ctx.now());
                    match Box::pin(bulkhead.acquire(limit)).await {
                        Ok(slot) => Some(slot),
                        Err(full) => {
                            drop(permit);
                            return self.reject(
                                Rejection::Bulkhead,
                                Error::BulkheadFull {
                                    provider: self.provider_name(),
                                    max_concurrent: bulkhead.config().max_concurrent(),
                                    waited: full.waited,
                                },
                            );
                        }
                    }
                }
            },
        };

        if attempt == 1 {
            if let Some(budget) = &provider.budget {
                budget.deposit();
            }
        }

        if !self.ctx.span.is_disabled() {
            self.open_attempt_span(attempt);
        }
        let timeout = policy.attempt_timeout(self.cut);
        let (finished, pending_since) = AttemptFuture::new(body, &mut self.ctx, timeout).await;
        drop(slot);

        let measure = provider.breaker.measures_duration()
            || policy.telemetry.measures()
            || policy.latency.is_some();
        let elapsed = match pending_since {
            Some(since) if measure => {
                // One clock read serves the breaker, the attempt's and the
                // call's durations.
                let now = Instant::now();
                self.ended_at = Some(now);
                Some(now.saturating_duration_since(since))
            }
            _ => None,
        };
        let trips = provider.breaker_trips;
        let probe = permit.kind() == PermitKind::Probe;
        if let (Some(tracker), Finished::Done(Ok(_)), Some(elapsed), Some(now)) =
            (&policy.latency, &finished, elapsed, self.ended_at)
        {
            // A successful answer: what the adaptive timeout follows.
            tracker.record(elapsed, now);
        }
        match finished {
            Finished::Done(Ok(value)) => {
                if trips {
                    provider.breaker.record(permit, false, elapsed);
                } else {
                    drop(permit);
                }
                self.attempt_resolved(probe, Some(true));
                self.attempt_ended(None, elapsed);
                ControlFlow::Break(self.finish(CallOutcome::Ok, Ok(value)))
            }
            Finished::Done(Err(error)) => {
                let class = error.class();
                // A provider that rate-limits is not failing: with quota
                // learning on, its 429s pace the calls instead of opening
                // the breaker (which would stop them all).
                let paced = class == ErrorClass::RateLimited
                    && (provider.gate.config().learn_quota() || provider.gate.config().wait());
                if trips && !paced {
                    provider
                        .breaker
                        .record(permit, class.is_provider_failure(), elapsed);
                } else {
                    drop(permit);
                }
                self.attempt_resolved(probe, Some(!class.is_provider_failure()));
                self.attempt_ended(Some(class), elapsed);
                let retry_after = error.retry_after();
                // Only the provider's own answers pause it: a nested
                // wrapper's local rejection (Permanent) carries a wait too.
                if class == ErrorClass::RateLimited
                    || (retry_after.is_some() && class != ErrorClass::Permanent)
                {
                    self.provider_pushed_back(class, retry_after);
                }
                self.after_failure(error, class, retry_after, probe)
            }
            Finished::TimedOut => {
                self.timed_out = true;
                if let Some(tracker) = &policy.latency {
                    tracker.record_timeout(self.ended_at.unwrap_or_else(Instant::now));
                    self.cut += 1;
                }
                // The breaker judges the provider against the configured
                // timeout: an adaptive timeout that cut sooner did so for
                // the caller's latency, and the provider is not blamed
                // for it (nor credited). A provider that hangs still trips
                // the breaker: with most attempts cut, the adaptive timeout
                // doubles until it reaches the configured one.
                let blamed = match (&policy.latency, timeout) {
                    (Some(tracker), Some(used)) => {
                        let configured = policy.config.timeout.unwrap_or(Duration::MAX);
                        used >= configured.min(tracker.config().max())
                    }
                    _ => true,
                };
                if trips && blamed {
                    provider.breaker.record(permit, true, elapsed);
                } else {
                    drop(permit);
                }
                self.attempt_resolved(probe, blamed.then_some(false));
                self.attempt_ended(Some(ErrorClass::OutcomeUnknown), elapsed);
                let error = E::from(Error::Timeout {
                    provider: self.provider_name(),
                    timeout: timeout.unwrap_or_default(),
                    attempt,
                });
                self.after_failure(error, ErrorClass::OutcomeUnknown, None, probe)
            }
            Finished::DeadlineCut => {
                // The provider was not given its full timeout: not its fault.
                drop(permit);
                self.attempt_resolved(probe, None);
                self.attempt_ended(Some(ErrorClass::OutcomeUnknown), elapsed);
                let error = E::from(Error::DeadlineExceeded {
                    provider: self.provider_name(),
                    deadline: policy.config.deadline.unwrap_or_default(),
                    attempts: attempt,
                });
                ControlFlow::Break(self.finish(CallOutcome::DeadlineExceeded, Err(error)))
            }
        }
    }

    /// Admission off the happy path: the adaptive throttle, then the
    /// breaker, then (when the gate is active or the breaker refused) the
    /// gate.
    #[cold]
    #[inline(never)]
    async fn admit_slow(
        &mut self,
        attempt: u32,
    ) -> Result<BreakerPermit<'p>, ControlFlow<Result<T, E>>> {
        let policy = self.policy;
        let provider: &'p crate::registry::Provider = &policy.provider;
        if let Some(throttle) = &provider.throttle {
            if !throttle.admit(&policy.rng) {
                return Err(self.reject(
                    Rejection::Throttled,
                    Error::Throttled {
                        provider: self.provider_name(),
                    },
                ));
            }
        }
        if !provider.gate.is_active() {
            match provider.breaker.try_acquire() {
                Ok(permit) => return Ok(permit),
                Err(_) => provider.gate.activate(),
            }
        }
        self.admit_through_gate(attempt).await
    }

    /// The gate's slow path: wait (if the policy waits) until the provider
    /// can take this attempt, or end the call.
    async fn admit_through_gate(
        &mut self,
        attempt: u32,
    ) -> Result<BreakerPermit<'p>, ControlFlow<Result<T, E>>> {
        let provider: &'p crate::registry::Provider = &self.policy.provider;
        let now = self.ctx.now();
        let deadline = self.ctx.deadline_at(now);
        let admitted = Box::pin(provider.gate.admit_with(
            &provider.breaker,
            deadline,
            attempt == 1,
            self.keeping,
        ))
        .await;
        match admitted {
            Ok(permit) => {
                // The attempt starts now, after any wait: what a 429's
                // quota learning and the attempt's telemetry must see.
                self.last_attempt_at = Some(Instant::now());
                Ok(permit)
            }
            Err(blocked) => {
                let now = Instant::now();
                if attempt > 1 && deadline.is_some_and(|d| now >= d) {
                    return Err(self.no_time_left());
                }
                let retry_in = blocked.retry_in(now);
                let provider = self.provider_name();
                let (why, error) = match blocked.reason {
                    BlockReason::CircuitOpen | BlockReason::QueueFull => (
                        if blocked.reason == BlockReason::QueueFull {
                            Rejection::QueueFull
                        } else {
                            Rejection::CircuitOpen
                        },
                        Error::CircuitOpen { provider, retry_in },
                    ),
                    BlockReason::Cooldown | BlockReason::Pace | BlockReason::Quota => (
                        if blocked.reason == BlockReason::Cooldown {
                            Rejection::Cooldown
                        } else {
                            Rejection::RateLimit
                        },
                        Error::RateLimited {
                            provider,
                            retry_after: retry_in.unwrap_or_default(),
                        },
                    ),
                };
                Err(self.reject(why, error))
            }
        }
    }

    /// Admission through the quota shared with the other replicas: wait
    /// for a reserved slot or a shared cooldown inside the deadline, or end
    /// the call. A shared cooldown also pauses this process's callers.
    #[cfg(feature = "redis")]
    #[cold]
    #[inline(never)]
    async fn admit_shared(
        &mut self,
        quota: &crate::shared_quota::SharedQuota,
    ) -> Result<(), ControlFlow<Result<T, E>>> {
        use crate::shared_quota::SharedAdmission;
        // A slot is worth reserving only if the attempt can still run its
        // course after it: a slot at the deadline's edge would be spent on
        // a request cut short (and the provider's quota with it).
        let margin = self.policy.attempt_timeout(self.cut).unwrap_or_default();
        loop {
            let time_left = self
                .ctx
                .remaining_at(self.ctx.now())
                .unwrap_or(crate::clock::FOREVER);
            let max_wait = time_left.saturating_sub(margin);
            match quota
                .admit_before(self.quota_cost, max_wait, time_left)
                .await
            {
                SharedAdmission::Now => return Ok(()),
                SharedAdmission::After(wait) => {
                    tokio::time::sleep(wait).await;
                    return Ok(());
                }
                SharedAdmission::Cooldown(wait) => {
                    self.policy.provider.gate.cool_down(wait);
                    let left = self
                        .ctx
                        .remaining_at(self.ctx.now())
                        .unwrap_or(crate::clock::FOREVER);
                    if wait >= left {
                        return Err(self.reject(
                            Rejection::Cooldown,
                            Error::RateLimited {
                                provider: self.provider_name(),
                                retry_after: wait,
                            },
                        ));
                    }
                    tokio::time::sleep(wait).await;
                }
                SharedAdmission::Refused(retry_after) => {
                    return Err(self.reject(
                        Rejection::RateLimit,
                        Error::RateLimited {
                            provider: self.provider_name(),
                            retry_after,
                        },
                    ));
                }
            }
        }
    }

    /// An admitted attempt is over: tell the throttle whether the provider
    /// accepted it (`None`: it was cut short, which says nothing), and wake
    /// the gate's waiters after a probe, whose outcome may have closed or
    /// reopened the breaker.
    #[inline]
    fn attempt_resolved(&self, probe: bool, accepted: Option<bool>) {
        let provider = &self.policy.provider;
        if let (Some(throttle), Some(accepted)) = (&provider.throttle, accepted) {
            throttle.record(accepted);
        }
        if probe {
            provider.gate.wake();
        }
    }

    /// The provider pushed back (a `429`, or any answer with
    /// `Retry-After`): pause every caller, and learn the quota from `429`s.
    #[cold]
    fn provider_pushed_back(&self, class: ErrorClass, retry_after: Option<Duration>) {
        let gate = &self.policy.provider.gate;
        if let Some(wait) = retry_after {
            gate.cool_down(wait);
            #[cfg(feature = "redis")]
            if let Some(quota) = self.quota() {
                // Tell the other replicas without holding this call back.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = quota.cool_down(wait).await;
                    });
                }
            }
        }
        if class == ErrorClass::RateLimited {
            let sent_at = self.last_attempt_at().unwrap_or_else(Instant::now);
            gate.rate_limited(sent_at, retry_after);
        }
    }

    /// Open the call's span (a no-op without an interested subscriber).
    #[inline(always)]
    fn open_span(&mut self) {
        if tracing::level_enabled!(tracing::Level::INFO) {
            self.open_span_enabled();
        }
    }

    #[inline(never)]
    fn open_span_enabled(&mut self) {
        let config = &self.policy.config;
        let span = tracing::info_span!(
            "buttress.call",
            provider = &*config.provider,
            operation = &*config.operation,
            correlation_id = tracing::field::Empty,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("correlation_id", &**self.ctx.correlation_id());
            self.ctx.span = span;
        }
    }

    #[cold]
    #[inline(never)]
    fn open_attempt_span(&mut self, attempt: u32) {
        let backoff_ms = if attempt > 1 {
            u64::try_from(self.previous_delay.as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        };
        self.ctx.attempt_span = tracing::info_span!(
            parent: &self.ctx.span,
            "buttress.attempt",
            attempt,
            backoff_ms,
            breaker_state = self.policy.provider.breaker.state().as_str(),
            "error.class" = tracing::field::Empty,
        );
    }

    /// Report the end of an attempt (`class` `None` for a success).
    #[inline]
    fn attempt_ended(&mut self, class: Option<ErrorClass>, took: Option<Duration>) {
        let policy = self.policy;
        policy.telemetry.attempt_ended(class, took);
        if !self.ctx.attempt_span.is_disabled() {
            let span = std::mem::replace(&mut self.ctx.attempt_span, tracing::Span::none());
            span.record("error.class", crate::telemetry::class_label(class));
        }
    }

    /// End the call with `result`.
    #[inline]
    fn finish(&mut self, outcome: CallOutcome, result: Result<T, E>) -> Result<T, E> {
        self.outcome = Some(outcome);
        if self.keeping && result.is_err() {
            // Reported by `attempt_keeping` once the kept attempt settles.
            return result;
        }
        if self.policy.telemetry.measures() || !self.ctx.span.is_disabled() {
            self.report_end(outcome, result.as_ref().err().map(Classify::class));
        }
        result
    }

    #[inline(never)]
    fn report_end(&mut self, outcome: CallOutcome, error: Option<ErrorClass>) {
        let policy = self.policy;
        let took = self.ctx.started.get().map(|since| {
            self.ended_at
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(since)
        });
        let label = crate::telemetry::call_label(outcome, error.is_none());
        policy.telemetry.call_ended(label, took);
        let span = &self.ctx.span;
        if !span.is_disabled() {
            span.record("attempts", self.ctx.attempt.get());
            span.record("outcome", outcome.as_str());
            match error {
                Some(class) => {
                    span.record("error.type", class.as_str());
                    span.record("otel.status_code", "ERROR");
                }
                None => {
                    span.record("otel.status_code", "OK");
                }
            }
        }
    }

    /// Count a local refusal (of the call or of a retry) in telemetry and
    /// tell the hooks.
    #[cold]
    fn refused(&self, reason: &'static str) {
        let policy = self.policy;
        policy.telemetry.rejected(reason);
        crate::events::emit(&crate::events::PolicyEvent::Rejected {
            provider: &policy.config.provider,
            operation: &policy.config.operation,
            reason,
        });
    }

    /// The deadline passed before the next attempt could start.
    #[cold]
    fn no_time_left(&mut self) -> ControlFlow<Result<T, E>> {
        self.refused("deadline");
        let error = self.give_up();
        ControlFlow::Break(self.finish(CallOutcome::DeadlineExceeded, Err(error)))
    }

    /// The deadline left no room for another attempt: the last provider
    /// error, or `DeadlineExceeded` if there was none.
    fn give_up(&mut self) -> E {
        self.last_error.take().unwrap_or_else(|| {
            E::from(Error::DeadlineExceeded {
                provider: self.provider_name(),
                deadline: self.policy.config.deadline.unwrap_or_default(),
                attempts: self.ctx.attempt.get().saturating_sub(1),
            })
        })
    }

    #[cold]
    fn reject(&mut self, why: Rejection, error: Error) -> ControlFlow<Result<T, E>> {
        self.refused(why.as_str());
        {
            let _in_call = self.ctx.span.enter();
            tracing::debug!(
                provider = error.provider(),
                reason = error.reason(),
                attempt = self.ctx.attempt.get(),
                "call rejected locally: {error}"
            );
        }
        ControlFlow::Break(self.finish(CallOutcome::Rejected(why), Err(E::from(error))))
    }

    /// Decide whether to retry; if so, keep the error as the last one and
    /// schedule the next attempt after the backoff.
    ///
    /// A failed half-open probe spends no retry-budget token: the breaker's
    /// probe interval already bounds probes (one per interval, however long
    /// the outage), and a budget drained by probes would fail the held
    /// calls the probes exist to bring back.
    fn after_failure(
        &mut self,
        error: E,
        class: ErrorClass,
        retry_after: Option<Duration>,
        probe: bool,
    ) -> ControlFlow<Result<T, E>> {
        let policy = self.policy;
        let retry = &policy.config.retry;
        let attempt = self.ctx.attempt.get();
        if !class.is_retryable(self.ctx.idempotent) {
            return ControlFlow::Break(self.finish(CallOutcome::NotRetryable(class), Err(error)));
        }
        if attempt >= retry.max_attempts {
            return ControlFlow::Break(self.finish(CallOutcome::AttemptsExhausted, Err(error)));
        }
        let _in_call = self.ctx.span.clone();
        let _in_call = _in_call.enter();
        let mut delay =
            retry
                .backoff
                .delay(retry.jitter, attempt, self.previous_delay, &policy.rng);
        if let Some(wait) = retry_after {
            delay = delay.max(wait);
        }
        let now = self.ctx.now();
        if let Some(left) = self.ctx.remaining_at(now) {
            if delay >= left {
                tracing::debug!(
                    provider = &**policy.provider.name(),
                    attempt,
                    delay = ?delay,
                    "no retry: the next attempt could not start before the deadline"
                );
                self.refused("deadline");
                return ControlFlow::Break(self.finish(CallOutcome::DeadlineExceeded, Err(error)));
            }
        }
        if let Some(budget) = policy.provider.budget.as_ref().filter(|_| !probe) {
            if !budget.try_withdraw() {
                let exhausted = Error::BudgetExhausted {
                    provider: self.provider_name(),
                };
                tracing::warn!(
                    provider = &**policy.provider.name(),
                    reason = exhausted.reason(),
                    attempt,
                    "{exhausted}"
                );
                self.refused("budget");
                return ControlFlow::Break(self.finish(CallOutcome::BudgetExhausted, Err(error)));
            }
        }
        tracing::debug!(
            provider = &**policy.provider.name(),
            attempt,
            class = class.as_str(),
            delay = ?delay,
            "retrying"
        );
        if policy.provider.budget.is_some() {
            // Retries stay within the budget's promise at every time scale,
            // not only on average: the gate paces them (a user who turned
            // the budget off asked for unthrottled retries).
            policy.provider.gate.retrying();
        }
        policy.telemetry.retried();
        crate::events::emit(&crate::events::PolicyEvent::RetryScheduled {
            provider: &policy.config.provider,
            operation: &policy.config.operation,
            attempt,
            class,
            delay,
        });
        self.previous_delay = delay;
        self.last_error = Some(error);
        if !delay.is_zero() {
            self.next_attempt_at = Some(crate::clock::later(now, delay));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_future_is_send() {
        fn is_send<T: Send>(_: &T) {}
        let policy = crate::Policy::builder("send-check").build().unwrap();
        let mut call = policy.call::<(), Error>();
        is_send(&call.attempt(async { Ok(()) }));
    }
}
