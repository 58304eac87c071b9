//! The settings of recovery at the provider's pace.

use std::time::Duration;

use buttress_settings::{defaults, rules};

use crate::error::ConfigError;

/// How calls behave while a provider cannot take them (its breaker is open,
/// it asked for a pause with `Retry-After`, or admission is paced after an
/// incident), and how traffic comes back.
///
/// # Default
/// `wait` on (calls wait for recovery inside their deadline, sending
/// nothing meanwhile), `max_waiting` 1024 calls, `pace` 1.5 (while paced,
/// the provider receives at most 1.5 × the rate at which new calls arrive,
/// retries and held calls included), `min_rate` 10 calls per second (the
/// release rate when few new calls arrive), `slow_start` 1 s (pacing goes
/// on this long after the provider recovered, and while calls still wait),
/// `learn_quota` on (a `429` lowers the admitted rate, which then grows
/// back while no `429` comes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecoveryConfig {
    pub(crate) wait: bool,
    pub(crate) max_waiting: u32,
    pub(crate) pace: f64,
    pub(crate) min_rate: f64,
    pub(crate) slow_start: Duration,
    pub(crate) learn_quota: bool,
}

/// The largest `max_waiting`.
pub const MAX_WAITING: u32 = rules::MAX_WAITING;
/// The largest `pace`.
pub const MAX_PACE: f64 = rules::MAX_PACE;

impl RecoveryConfig {
    /// The defaults (see [`RecoveryConfig`]).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            wait: defaults::WAIT,
            max_waiting: defaults::MAX_WAITING,
            pace: defaults::PACE,
            min_rate: defaults::MIN_RATE,
            slow_start: defaults::SLOW_START,
            learn_quota: defaults::LEARN_QUOTA,
        }
    }

    /// Fail fast: a call that meets an open breaker or a cooldown is
    /// rejected at once, nothing is paced, no quota is learned. The
    /// provider-wide cooldown still holds (a rejected call says how long).
    #[must_use]
    pub const fn fail_fast() -> Self {
        let mut config = Self::new();
        config.wait = false;
        config.learn_quota = false;
        config
    }

    /// Whether calls wait for recovery inside their deadline.
    #[must_use]
    pub const fn with_wait(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }

    /// How many calls may wait at once; a call beyond it is rejected.
    #[must_use]
    pub const fn with_max_waiting(mut self, max_waiting: u32) -> Self {
        self.max_waiting = max_waiting;
        self
    }

    /// While paced, the provider receives at most `pace` × the arrival
    /// rate of new calls (in `[1, 100]`).
    #[must_use]
    pub const fn with_pace(mut self, pace: f64) -> Self {
        self.pace = pace;
        self
    }

    /// The lowest release rate while paced, in calls per second (> 0).
    #[must_use]
    pub const fn with_min_rate(mut self, per_second: f64) -> Self {
        self.min_rate = per_second;
        self
    }

    /// How long pacing goes on after the provider recovered.
    #[must_use]
    pub const fn with_slow_start(mut self, slow_start: Duration) -> Self {
        self.slow_start = slow_start;
        self
    }

    /// Whether `429`s teach the admitted rate (AIMD).
    #[must_use]
    pub const fn with_learn_quota(mut self, learn: bool) -> Self {
        self.learn_quota = learn;
        self
    }

    /// `wait`.
    #[must_use]
    pub const fn wait(&self) -> bool {
        self.wait
    }

    /// `max_waiting`.
    #[must_use]
    pub const fn max_waiting(&self) -> u32 {
        self.max_waiting
    }

    /// `pace`.
    #[must_use]
    pub const fn pace(&self) -> f64 {
        self.pace
    }

    /// `min_rate`, per second.
    #[must_use]
    pub const fn min_rate(&self) -> f64 {
        self.min_rate
    }

    /// `slow_start`.
    #[must_use]
    pub const fn slow_start(&self) -> Duration {
        self.slow_start
    }

    /// `learn_quota`.
    #[must_use]
    pub const fn learn_quota(&self) -> bool {
        self.learn_quota
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check =
            |key: &str, rule: rules::Rule| ConfigError::check(&format!("recovery.{key}"), rule);
        check("max_waiting", rules::max_waiting(self.max_waiting))?;
        check("pace", rules::pace(self.pace))?;
        check("min_rate", rules::min_rate(self.min_rate))
    }
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self::new()
    }
}
