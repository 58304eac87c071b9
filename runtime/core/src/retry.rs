//! Retry: how many attempts, how long to wait between them.
//!
//! Guarantees, enforced by the call driver ([`crate::Call`]):
//! - at most `max_attempts` attempts per logical call;
//! - only retryable classes are retried (`Transient`, `RateLimited`, and
//!   `OutcomeUnknown` for idempotent calls); `Permanent` never;
//! - the next attempt never starts sooner than a provider's `retry_after`;
//! - a retry that could not start before the deadline is not made;
//! - each retry spends one token of the provider's [retry budget](crate::budget);
//! - a zero delay does not touch the timer at all.

use std::time::Duration;

use crate::budget::BudgetConfig;
use buttress_settings::{defaults, rules};

use crate::error::ConfigError;
use crate::rng::Rng;

/// The delay schedule between attempts, before jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// The same delay every time.
    Constant(Duration),
    /// `base × 2^(n−1)` after the n-th failed attempt, capped at `max`.
    Exponential {
        /// Delay after the first failure.
        base: Duration,
        /// Largest delay.
        max: Duration,
    },
    /// AWS's "decorrelated jitter": a random delay in `[base, 3 × previous]`,
    /// capped at `max`. It is random by construction, so the [`Jitter`]
    /// setting does not apply to it.
    Decorrelated {
        /// Smallest delay, and the first "previous" delay.
        base: Duration,
        /// Largest delay.
        max: Duration,
    },
}

impl Backoff {
    /// `exponential(base, max)`.
    #[must_use]
    pub const fn exponential(base: Duration, max: Duration) -> Self {
        Self::Exponential { base, max }
    }

    /// `constant(delay)`.
    #[must_use]
    pub const fn constant(delay: Duration) -> Self {
        Self::Constant(delay)
    }

    /// `decorrelated(base, max)`.
    #[must_use]
    pub const fn decorrelated(base: Duration, max: Duration) -> Self {
        Self::Decorrelated { base, max }
    }

    /// The delay before the attempt after failed attempt number `failed`
    /// (1-based), given the previous delay actually slept (`previous`,
    /// zero before the first retry), with `jitter` applied.
    #[inline]
    pub fn delay(&self, jitter: Jitter, failed: u32, previous: Duration, rng: &Rng) -> Duration {
        match *self {
            Self::Constant(d) => jitter.apply(d, rng),
            Self::Exponential { base, max } => {
                let shift = failed.saturating_sub(1).min(31);
                let raw = base.saturating_mul(1u32 << shift).min(max);
                jitter.apply(raw, rng)
            }
            Self::Decorrelated { base, max } => {
                let previous = if previous.is_zero() { base } else { previous };
                rng.duration_between(base, previous.saturating_mul(3))
                    .min(max)
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::Constant(_) => Ok(()),
            Self::Exponential { base, max } | Self::Decorrelated { base, max } => {
                ConfigError::check("backoff", rules::backoff(base, max))
            }
        }
    }
}

/// Randomisation of the backoff delay, so that clients that failed together
/// do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The delay as computed.
    None,
    /// Uniform in `[0, delay]`: the least total work under contention.
    Full,
    /// `delay / 2` plus uniform in `[0, delay / 2]`.
    Equal,
}

impl Jitter {
    /// Apply this jitter to `delay`.
    #[inline]
    pub fn apply(self, delay: Duration, rng: &Rng) -> Duration {
        match self {
            _ if delay.is_zero() => delay,
            Self::None => delay,
            Self::Full => rng.duration_between(Duration::ZERO, delay),
            Self::Equal => {
                let half = delay / 2;
                half + rng.duration_between(Duration::ZERO, delay - half)
            }
        }
    }
}

/// Retry settings of a policy.
///
/// # Default
/// 3 attempts, `exponential(100ms, 5s)`, full jitter, a retry budget of ratio
/// 0.2 with a reserve of 10 tokens per provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) budget: Option<BudgetConfig>,
}

impl RetryConfig {
    /// The defaults (see [`RetryConfig`]).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            max_attempts: defaults::MAX_ATTEMPTS,
            backoff: Backoff::exponential(defaults::BACKOFF_BASE, defaults::BACKOFF_MAX),
            jitter: Jitter::Full,
            budget: Some(BudgetConfig::new()),
        }
    }

    /// No retries: one attempt, no budget.
    #[must_use]
    pub const fn off() -> Self {
        Self {
            max_attempts: 1,
            backoff: Backoff::Constant(Duration::ZERO),
            jitter: Jitter::None,
            budget: None,
        }
    }

    /// Total attempts, the first included (at least 1).
    #[must_use]
    pub const fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The delay schedule.
    #[must_use]
    pub const fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The jitter applied to constant and exponential backoff.
    #[must_use]
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The provider's retry budget, or `None` for no budget.
    #[must_use]
    pub const fn with_budget(mut self, budget: Option<BudgetConfig>) -> Self {
        self.budget = budget;
        self
    }

    /// Total attempts allowed.
    #[must_use]
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay schedule.
    #[must_use]
    pub const fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The jitter.
    #[must_use]
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The retry budget, if any.
    #[must_use]
    pub const fn budget(&self) -> Option<BudgetConfig> {
        self.budget
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check("retry.max_attempts", rules::max_attempts(self.max_attempts))?;
        self.backoff.validate().map_err(|e| e.within("retry"))?;
        if let Some(budget) = &self.budget {
            budget.validate().map_err(|e| e.within("retry"))?;
        }
        Ok(())
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_doubles_and_caps() {
        let rng = Rng::seeded(0);
        let b = Backoff::exponential(100 * MS, 1000 * MS);
        let delays: Vec<_> = (1..=6)
            .map(|n| b.delay(Jitter::None, n, Duration::ZERO, &rng))
            .collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.delay(Jitter::None, 500, Duration::ZERO, &rng), 1000 * MS);
    }

    #[test]
    fn jitters_bound_the_delay() {
        let rng = Rng::seeded(3);
        for _ in 0..1000 {
            let full = Jitter::Full.apply(100 * MS, &rng);
            assert!(full <= 100 * MS);
            let equal = Jitter::Equal.apply(100 * MS, &rng);
            assert!(equal >= 50 * MS && equal <= 100 * MS, "{equal:?}");
        }
    }

    #[test]
    fn decorrelated_stays_between_base_and_max() {
        let rng = Rng::seeded(5);
        let b = Backoff::decorrelated(10 * MS, 500 * MS);
        let mut prev = Duration::ZERO;
        for n in 1..200 {
            let d = b.delay(Jitter::None, n, prev, &rng);
            assert!(d >= 10 * MS && d <= 500 * MS, "{d:?}");
            assert!(d <= (if prev.is_zero() { 10 * MS } else { prev }) * 3);
            prev = d;
        }
    }

    #[test]
    fn invalid_settings_are_typed_errors() {
        let e = RetryConfig::new()
            .with_max_attempts(0)
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "retry.max_attempts: must be at least 1 (1 means no retries), got 0"
        );
        let e = RetryConfig::new()
            .with_backoff(Backoff::exponential(2 * MS, MS))
            .validate()
            .unwrap_err();
        assert_eq!(e.path(), "retry.backoff");
    }
}
