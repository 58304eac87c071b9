//! An attempt's end: what the breaker, the latency tracker, the throttle
//! and the gate are told about it, and whether the call ends or retries.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::{BreakerPermit, PermitKind};
use crate::class::{Classify, ErrorClass};
use crate::error::Error;
use crate::timeout::Finished;

use super::{Call, CallOutcome};

impl<'p, T, E> Call<'p, T, E>
where
    E: Classify + From<Error>,
{
    /// The attempt `attempt`, admitted with `permit` under `timeout`, ended
    /// with `finished` after `elapsed` (if measured): tell the breaker, the
    /// latency tracker, the throttle and the gate, and end the call or
    /// schedule a retry.
    #[inline]
    pub(super) fn settle_attempt(
        &mut self,
        finished: Finished<Result<T, E>>,
        permit: BreakerPermit<'p>,
        elapsed: Option<Duration>,
        timeout: Option<Duration>,
        attempt: u32,
    ) -> ControlFlow<Result<T, E>> {
        let policy = self.policy;
        let trips = policy.provider.breaker_trips;
        let probe = permit.kind() == PermitKind::Probe;
        if let (Some(tracker), Finished::Done(Ok(_)), Some(elapsed), Some(now)) =
            (&policy.latency, &finished, elapsed, self.ended_at)
        {
            // A successful answer: what the adaptive timeout follows.
            tracker.record(elapsed, now);
        }
        match finished {
            Finished::Done(Ok(value)) => self.succeeded(value, permit, trips, probe, elapsed),
            Finished::Done(Err(error)) => self.failed(error, permit, trips, probe, elapsed),
            Finished::TimedOut => {
                self.cut_by_timeout(permit, trips, probe, elapsed, timeout, attempt)
            }
            Finished::DeadlineCut => self.deadline_cut(permit, probe, elapsed, attempt),
        }
    }

    /// The body answered with success: the call's result.
    #[inline]
    fn succeeded(
        &mut self,
        value: T,
        permit: BreakerPermit<'p>,
        trips: bool,
        probe: bool,
        elapsed: Option<Duration>,
    ) -> ControlFlow<Result<T, E>> {
        if trips {
            self.policy.provider.breaker.record(permit, false, elapsed);
        } else {
            drop(permit);
        }
        self.attempt_resolved(probe, Some(true));
        self.attempt_ended(None, elapsed);
        ControlFlow::Break(self.finish(CallOutcome::Ok, Ok(value)))
    }

    /// The body answered with `error`: the breaker judges it by its class,
    /// a provider's push-back pauses its callers, and the call retries or
    /// ends.
    #[inline]
    fn failed(
        &mut self,
        error: E,
        permit: BreakerPermit<'p>,
        trips: bool,
        probe: bool,
        elapsed: Option<Duration>,
    ) -> ControlFlow<Result<T, E>> {
        let provider = &*self.policy.provider;
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

    /// The attempt's timeout (`timeout`) cut it: the adaptive timeout
    /// backs off, the breaker blames the provider only for the configured
    /// timeout, and the call retries or ends.
    #[inline]
    fn cut_by_timeout(
        &mut self,
        permit: BreakerPermit<'p>,
        trips: bool,
        probe: bool,
        elapsed: Option<Duration>,
        timeout: Option<Duration>,
        attempt: u32,
    ) -> ControlFlow<Result<T, E>> {
        let policy = self.policy;
        let provider = &*policy.provider;
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

    /// The call's deadline cut the attempt: the call ends.
    #[inline]
    fn deadline_cut(
        &mut self,
        permit: BreakerPermit<'p>,
        probe: bool,
        elapsed: Option<Duration>,
        attempt: u32,
    ) -> ControlFlow<Result<T, E>> {
        // The provider was not given its full timeout: not its fault.
        drop(permit);
        self.attempt_resolved(probe, None);
        self.attempt_ended(Some(ErrorClass::OutcomeUnknown), elapsed);
        let error = E::from(Error::DeadlineExceeded {
            provider: self.provider_name(),
            deadline: self.policy.config.deadline.unwrap_or_default(),
            attempts: attempt,
        });
        ControlFlow::Break(self.finish(CallOutcome::DeadlineExceeded, Err(error)))
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
