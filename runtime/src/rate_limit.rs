//! Rate limit: a GCRA limiter on one atomic word, like `governor`.
//!
//! Guarantees: over any interval, admitted calls never exceed
//! `burst + per_second × seconds`; every attempt (retries included) takes a
//! slot, since a provider's quota counts them all. A call that finds no free
//! slot reserves the next one and waits for it, spending its deadline; when
//! that wait would pass the deadline, the call is rejected with
//! [`crate::Error::RateLimited`] and reserves nothing.
//!
//! The state is the theoretical arrival time (TAT) in nanoseconds since the
//! limiter's creation: one load and one compare-and-swap per admission.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;

/// Rate-limit settings.
///
/// # Default
/// 100 calls per second, burst 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
}

impl RateLimitConfig {
    /// The defaults (see [`RateLimitConfig`]).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            per_second: 100,
            burst: 10,
        }
    }

    /// Sustained calls per second (at least 1).
    #[must_use]
    pub const fn with_per_second(mut self, per_second: u32) -> Self {
        self.per_second = per_second;
        self
    }

    /// Calls admitted at once after a quiet period (at least 1).
    #[must_use]
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// `per_second`.
    #[must_use]
    pub const fn per_second(&self) -> u32 {
        self.per_second
    }

    /// `burst`.
    #[must_use]
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] when a value is zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.per_second == 0 {
            return Err(ConfigError::new(
                "rate_limit.per_second",
                "must be at least 1, got 0",
            ));
        }
        if self.burst == 0 {
            return Err(ConfigError::new(
                "rate_limit.burst",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
#[repr(align(64))]
struct Tat(AtomicU64);

/// What the limiter decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go now.
    Now,
    /// A slot is reserved; go after waiting this long.
    After(Duration),
}

/// A provider's rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    /// Written by every call: on its own cache line.
    tat: Tat,
    interval: u64,
    tolerance: u64,
    base: Instant,
}

impl RateLimiter {
    /// A limiter with a full burst available.
    #[must_use]
    pub fn new(config: RateLimitConfig) -> Self {
        let interval = 1_000_000_000 / u64::from(config.per_second.max(1));
        Self {
            config,
            tat: Tat(AtomicU64::new(0)),
            interval: interval.max(1),
            tolerance: interval.max(1) * u64::from(config.burst.max(1) - 1),
            base: Instant::now(),
        }
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Admit a call at `now`, reserving a future slot if the wait fits in
    /// `max_wait`.
    ///
    /// # Errors
    /// The wait needed, when it is longer than `max_wait` (nothing is
    /// reserved then).
    #[inline]
    pub fn acquire_at(&self, now: Instant, max_wait: Duration) -> Result<Admission, Duration> {
        self.acquire_with(now, || max_wait)
    }

    /// Like [`acquire_at`](Self::acquire_at), computing `max_wait` only
    /// when the call would have to wait (so the caller works out its time
    /// budget only then).
    ///
    /// # Errors
    /// The wait needed, when it is longer than `max_wait` (nothing is
    /// reserved then).
    #[inline]
    pub fn acquire_with(
        &self,
        now: Instant,
        max_wait: impl FnOnce() -> Duration,
    ) -> Result<Admission, Duration> {
        let elapsed = now.saturating_duration_since(self.base);
        let now = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        let tat = &self.tat.0;
        let mut current = tat.load(Ordering::Acquire);
        let mut max_wait = Some(max_wait);
        let mut allowed = Duration::ZERO;
        loop {
            let start = current.max(now);
            let wait = (start - now).saturating_sub(self.tolerance);
            if wait > 0 {
                if let Some(compute) = max_wait.take() {
                    allowed = compute();
                }
                if Duration::from_nanos(wait) > allowed {
                    return Err(Duration::from_nanos(wait));
                }
            }
            match tat.compare_exchange_weak(
                current,
                start + self.interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if wait == 0 => return Ok(Admission::Now),
                Ok(_) => return Ok(Admission::After(Duration::from_nanos(wait))),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let limiter = RateLimiter::new(RateLimitConfig::new().with_per_second(10).with_burst(3));
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.acquire_at(now, Duration::ZERO), Ok(Admission::Now));
        }
        assert_eq!(
            limiter.acquire_at(now, Duration::ZERO),
            Err(Duration::from_millis(100))
        );
        assert_eq!(
            limiter.acquire_at(now, Duration::from_secs(1)),
            Ok(Admission::After(Duration::from_millis(100)))
        );
        assert_eq!(
            limiter.acquire_at(now, Duration::from_secs(1)),
            Ok(Admission::After(Duration::from_millis(200)))
        );
        let later = now + Duration::from_millis(300);
        assert_eq!(
            limiter.acquire_at(later, Duration::ZERO),
            Ok(Admission::Now)
        );
        assert!(limiter.acquire_at(later, Duration::ZERO).is_err());
    }
}
