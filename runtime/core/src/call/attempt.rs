//! One attempt, start to end: the deadline check, admission, the body
//! under its timeout, and what the attempt's end means for the call.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

use crate::class::Classify;
use crate::error::Error;
use crate::rate_limit::Admission;
use crate::timeout::AttemptFuture;

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
        let attempt = match self.start_attempt() {
            Ok(attempt) => attempt,
            Err(end) => return end,
        };

        // The happy path admits at once; the rest is boxed off it.
        let permit = match self.admit_fast() {
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
                Err(retry_after) => return self.rate_limit_refused(permit, retry_after),
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
                        Err(full) => return self.bulkhead_full(permit, bulkhead, full),
                    }
                }
            },
        };

        self.attempt_admitted(attempt);
        let timeout = policy.attempt_timeout(self.cut);
        let (finished, pending_since) = AttemptFuture::new(body, &mut self.ctx, timeout).await;
        drop(slot);

        let elapsed = self.attempt_duration(pending_since);
        self.settle_attempt(finished, permit, elapsed, timeout, attempt)
    }

    /// Count the attempt and return its number. The first opens the call's
    /// span; a later one notes its start, and ends the call when the
    /// deadline has passed.
    #[inline]
    fn start_attempt(&mut self) -> Result<u32, ControlFlow<Result<T, E>>> {
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
                    return Err(self.no_time_left());
                }
            }
        }
        Ok(attempt)
    }

    /// The attempt was admitted and its body is about to run: a first
    /// attempt earns the retry budget its deposit, and the attempt's span
    /// opens (when the call has one).
    #[inline]
    fn attempt_admitted(&mut self, attempt: u32) {
        if attempt == 1 {
            if let Some(budget) = &self.policy.provider.budget {
                budget.deposit();
            }
        }

        if !self.ctx.span.is_disabled() {
            self.open_attempt_span(attempt);
        }
    }

    /// How long the attempt took, when the body was pending at least once
    /// (`pending_since`) and something measures it.
    #[inline]
    fn attempt_duration(&mut self, pending_since: Option<Instant>) -> Option<Duration> {
        let policy = self.policy;
        let measure = policy.provider.breaker.measures_duration()
            || policy.telemetry.measures()
            || policy.latency.is_some();
        match pending_since {
            Some(since) if measure => {
                // One clock read serves the breaker, the attempt's and the
                // call's durations.
                let now = Instant::now();
                self.ended_at = Some(now);
                Some(now.saturating_duration_since(since))
            }
            _ => None,
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
