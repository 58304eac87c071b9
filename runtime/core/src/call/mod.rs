//! The attempt driver: one logical call, attempt by attempt.
//!
//! `#[resilient]` expands to a loop around [`Call::attempt`], re-running the
//! user's body inline on each attempt (so it may borrow `self` and its
//! arguments, even `&mut self`). The order of policies for every attempt,
//! outermost first: deadline → retry (with budget) → breaker → rate limit →
//! bulkhead → per-attempt timeout → body.

use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::bound::PolicyInner;
use crate::class::Classify;
use crate::context::CallContext;
use crate::error::Error;
use crate::idempotency::{Dedup, DedupOptions, IdempotencyStore, Stored};

mod admission;
mod attempt;
mod finish;
mod keep;
mod report;
mod retry;

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
    /// When the latest attempt started, if the clock was read for it: at a
    /// retry's start when the call has a deadline, after a wait in the
    /// recovery gate, or when the body first waited.
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
    /// The driver makes the next attempt as soon as an attempt asks for
    /// one (`#[resilient]`, `Policy::run`): a zero-delay retry then reads
    /// the clock once, when it starts. A manual driver may wait between
    /// attempts, so a first failure fixes the call's start when it ends.
    straight_on: bool,
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
            straight_on: false,
            #[cfg(feature = "redis")]
            shared_quota: None,
            #[cfg(feature = "redis")]
            quota_cost: 1,
            _result: PhantomData,
        }
    }

    /// Mark the call as driven straight on: each `Continue` is followed
    /// at once by the next attempt (see `straight_on`).
    #[inline]
    #[must_use]
    pub(crate) const fn straight_on(mut self) -> Self {
        self.straight_on = true;
        self
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

    /// Mark this call safe (or not) to repeat, whatever its policy says:
    /// an idempotent call retries its `OutcomeUnknown` errors. For callers
    /// that learn it per request (an HTTP method, an `Idempotency-Key`
    /// header), before the first attempt.
    pub fn set_idempotent(&mut self, idempotent: bool) {
        self.ctx.idempotent = idempotent;
    }

    /// Whether the call is treated as safe to repeat.
    #[must_use]
    pub const fn is_idempotent(&self) -> bool {
        self.ctx.idempotent
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

    /// When the latest attempt started, if the clock was read for it: a
    /// retry reads it at its start when the call has a deadline, any
    /// attempt when its body first waits; an attempt ready on its first
    /// poll may not read it at all (then `None`). The first attempt's
    /// start is the call's.
    #[must_use]
    pub fn last_attempt_at(&self) -> Option<Instant> {
        if self.ctx.attempt.get() > 1 {
            self.last_attempt_at
        } else {
            self.last_attempt_at.or_else(|| self.ctx.started.get())
        }
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
}
