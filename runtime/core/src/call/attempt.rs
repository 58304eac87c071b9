//! One attempt, start to end: the deadline check, admission, the body
//! under its timeout, and what the attempt's end means for the call.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::PermitKind;
use crate::class::{Classify, ErrorClass};
use crate::error::Error;
use crate::outcome::{CallOutcome, Rejection};
use crate::rate_limit::Admission;
use crate::timeout::{AttemptFuture, Finished};

use super::Call;

impl<T, E> Call<'_, T, E>
where
    E: Classify + From<Error>,
{
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
            // A retry reads the clock at most once, here, and only to hold
            // it to the deadline: without one, a body ready on its first
            // poll never reads it, and one that waits reads it when it
            // first waits (`AttemptFuture`).
            self.ended_at = None;
            self.last_attempt_at = None;
            if self.ctx.deadline.is_some() {
                let now = self.ctx.now();
                self.last_attempt_at = Some(now);
                if self.ctx.deadline_at(now).is_some_and(|at| now >= at) {
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
                    self.waited();
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
                self.waited();
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
                    let acquired = Box::pin(bulkhead.acquire(limit)).await;
                    self.waited();
                    match acquired {
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
        let (finished, pending_since) =
            AttemptFuture::new(body, &mut self.ctx, timeout, self.last_attempt_at).await;
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
                self.started_when_waited(pending_since);
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
                self.started_when_waited(pending_since);
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

    /// The attempt waited for admission after the clock was read for its
    /// start: the body starts later, and reads the clock itself when it
    /// first waits (its timeout counts from its start, not from before
    /// the wait).
    #[cold]
    fn waited(&mut self) {
        self.last_attempt_at = None;
    }

    /// A failed attempt whose start was not read started when its body
    /// first waited, if it did (what a `429`'s quota learning and a dead
    /// letter see).
    #[inline]
    fn started_when_waited(&mut self, pending_since: Option<Instant>) {
        if self.last_attempt_at.is_none() {
            self.last_attempt_at = pending_since;
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
