//! Admission of an attempt: the breaker (through the recovery gate off the
//! happy path), the adaptive throttle, the rate limit, the quota shared
//! with other replicas and the bulkhead; a refusal ends the call.

use std::ops::ControlFlow;

use tokio::time::Instant;

use crate::breaker::BreakerPermit;
use crate::class::Classify;
use crate::error::Error;
use crate::recovery::BlockReason;

use super::{Call, Rejection};

impl<'p, T, E> Call<'p, T, E>
where
    E: Classify + From<Error>,
{
    /// Admission off the happy path: the adaptive throttle, then the
    /// breaker, then (when the gate is active or the breaker refused) the
    /// gate.
    #[cold]
    #[inline(never)]
    pub(super) async fn admit_slow(
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
    pub(super) async fn admit_shared(
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
}
