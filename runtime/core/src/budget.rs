//! Retry budget: retries may add only a bounded fraction of extra load.
//!
//! A token bucket in the style of gRPC retry throttling. It starts full at
//! its cap (default 10 tokens); every first attempt deposits `ratio` tokens
//! (default 0.2) up to the cap; every retry withdraws one whole token and is
//! not made when none is left. Time alone does not refill it. So in a total
//! outage, retries add at most `cap + ratio × calls` provider calls, however
//! many call sites and attempts are configured.
//!
//! The state is one `AtomicU64` of milli-tokens. A deposit into a full bucket
//! (the healthy steady state) is a single relaxed load, no write.

use crate::sync::atomic::{AtomicU64, Ordering};

use buttress_settings::{defaults, rules};

use crate::error::ConfigError;

const MILLI: u64 = 1000;

/// Settings of a provider's retry budget.
///
/// # Default
/// `ratio` 0.2, `cap` 10 tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    pub(crate) ratio: f64,
    pub(crate) cap: u32,
}

impl BudgetConfig {
    /// The defaults: ratio 0.2, cap 10.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            ratio: defaults::BUDGET_RATIO,
            cap: defaults::BUDGET_CAP,
        }
    }

    /// Tokens deposited by every first attempt: the long-run fraction of
    /// extra load retries may add. In `[0, 1]`.
    #[must_use]
    pub const fn with_ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// The bucket's size and starting level: the burst of retries allowed
    /// before first attempts must refill it. At least 1.
    #[must_use]
    pub const fn with_cap(mut self, cap: u32) -> Self {
        self.cap = cap;
        self
    }

    /// The deposit ratio.
    #[must_use]
    pub const fn ratio(&self) -> f64 {
        self.ratio
    }

    /// The cap, in tokens.
    #[must_use]
    pub const fn cap(&self) -> u32 {
        self.cap
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check("budget.ratio", rules::budget_ratio(self.ratio))?;
        ConfigError::check("budget.cap", rules::budget_cap(self.cap))
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A provider's retry budget (shared by every call site of the provider).
#[derive(Debug)]
pub struct RetryBudget {
    milli_tokens: AtomicU64,
    cap: u64,
    deposit: u64,
}

impl RetryBudget {
    /// A full budget with these settings.
    #[must_use]
    pub fn new(config: BudgetConfig) -> Self {
        let cap = u64::from(config.cap) * MILLI;
        Self {
            milli_tokens: AtomicU64::new(cap),
            cap,
            deposit: (config.ratio * MILLI as f64).round() as u64,
        }
    }

    /// Record a first attempt: deposit `ratio` tokens, up to the cap.
    #[inline]
    pub fn deposit(&self) {
        let current = self.milli_tokens.load(Ordering::Relaxed);
        if current >= self.cap || self.deposit == 0 {
            return;
        }
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < self.cap).then(|| (t + self.deposit).min(self.cap))
            });
    }

    /// Take one token for a retry. `false` when the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        self.milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                t.checked_sub(MILLI)
            })
            .is_ok()
    }

    /// Tokens currently available (fractional).
    #[must_use]
    pub fn tokens(&self) -> f64 {
        self.milli_tokens.load(Ordering::Relaxed) as f64 / MILLI as f64
    }

    /// Refill to the cap (operators, after an incident).
    pub fn refill(&self) {
        self.milli_tokens.store(self.cap, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_full_and_bounds_retries() {
        let budget = RetryBudget::new(BudgetConfig::new());
        // A total outage: 100 logical calls, each wanting retries.
        let mut retries = 0;
        for _ in 0..100 {
            budget.deposit();
            while budget.try_withdraw() {
                retries += 1;
            }
        }
        // cap + ratio × calls, at most.
        assert!(retries <= 10 + 20, "{retries}");
        assert_eq!(retries, 10 + 19); // the first deposit lands in a full bucket
    }

    #[test]
    fn deposits_stop_at_the_cap() {
        let budget = RetryBudget::new(BudgetConfig::new().with_cap(2));
        assert!(budget.try_withdraw());
        for _ in 0..100 {
            budget.deposit();
        }
        assert!((budget.tokens() - 2.0).abs() < f64::EPSILON);
    }

    #[test]
    fn invalid_ratio_is_reported() {
        let e = BudgetConfig::new().with_ratio(1.5).validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "budget.ratio: must be in [0, 1], got 1.5: it is the extra load retries may add"
        );
    }
}
