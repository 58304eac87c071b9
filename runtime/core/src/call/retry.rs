//! Between attempts: whether the call retries after a failure, and the
//! backoff before the next attempt.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::class::{Classify, ErrorClass};
use crate::error::Error;

use super::{Call, CallOutcome};

impl<'p, T, E> Call<'p, T, E>
where
    E: Classify + From<Error>,
{
    /// Sleep the backoff scheduled by the previous attempt, if any. Call it
    /// before building the next attempt's body when building it has side
    /// effects ([`Policy::run`](crate::Policy::run) does); otherwise
    /// [`attempt`](Self::attempt) sleeps it first.
    pub async fn backoff(&mut self) {
        if let Some(at) = self.next_attempt_at.take() {
            Box::pin(tokio::time::sleep_until(at)).await;
        }
    }

    /// Decide whether to retry; if so, keep the error as the last one and
    /// schedule the next attempt after the backoff.
    ///
    /// A failed half-open probe spends no retry-budget token: the breaker's
    /// probe interval already bounds probes (one per interval, however long
    /// the outage), and a budget drained by probes would fail the held
    /// calls the probes exist to bring back.
    pub(super) fn after_failure(
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
        if attempt >= retry.max_attempts.min(self.attempt_limit) {
            return ControlFlow::Break(self.finish(CallOutcome::AttemptsExhausted, Err(error)));
        }
        let _in_call = self.ctx.span.clone();
        let _in_call = _in_call.enter();
        let mut delay = match retry.backoff {
            // No backoff: nothing to compute or draw.
            crate::retry::Backoff::Constant(d) if d.is_zero() => d,
            backoff => backoff.delay(retry.jitter, attempt, self.previous_delay, &policy.rng),
        };
        if let Some(wait) = retry_after {
            delay = delay.max(wait);
        }
        // A delay is scheduled from the attempt's end (read once: the end
        // of a measured attempt is reused). A zero delay needs no clock when
        // the driver goes straight on: the next attempt holds itself to the
        // deadline when it starts. A driver that may wait first has the
        // call's start fixed now, so that its wait counts.
        let now = if !delay.is_zero() {
            Some(self.ended_at.unwrap_or_else(|| self.ctx.now()))
        } else if !self.straight_on
            && self.ctx.deadline.is_some()
            && self.ctx.started.get().is_none()
        {
            Some(self.ctx.now())
        } else {
            None
        };
        if let Some((now, at)) = now.and_then(|now| Some((now, self.ctx.deadline_at(now)?))) {
            if crate::clock::later(now, delay) >= at {
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
        if let Some(now) = now.filter(|_| !delay.is_zero()) {
            self.next_attempt_at = Some(crate::clock::later(now, delay));
        }
        ControlFlow::Continue(())
    }
}
