//! Client-side adaptive throttling: graded admission instead of the
//! breaker's all-or-nothing.
//!
//! The rule of the Google SRE book ("Handling Overload"): over a sliding
//! window, count the requests the client made and the requests the
//! provider accepted; reject a new request locally with probability
//! `max(0, (requests − k × accepts) / (requests + 1))`. While the provider
//! accepts everything nothing is rejected; as it fails, the client sends
//! only about `k` times what gets through, and a recovering provider sees
//! traffic return in proportion to its successes.

use std::time::Duration;

use crate::error::ConfigError;

/// Settings of the adaptive throttle.
///
/// # Default
/// `k` 2.0, `window` 2 minutes (the SRE book's values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleConfig {
    pub(crate) k: f64,
    pub(crate) window: Duration,
}

/// The shortest throttle window.
pub const MIN_THROTTLE_WINDOW: Duration = Duration::from_millis(100);

impl ThrottleConfig {
    /// The defaults: `k` 2.0, a 2-minute window.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            k: 2.0,
            window: Duration::from_secs(120),
        }
    }

    /// The multiplier of accepts: lower rejects sooner (1.1 is aggressive,
    /// 2 is the usual choice). At least 1.
    #[must_use]
    pub const fn with_k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The span over which requests and accepts are counted.
    #[must_use]
    pub const fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// `k`.
    #[must_use]
    pub const fn k(&self) -> f64 {
        self.k
    }

    /// The window.
    #[must_use]
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.k >= 1.0 && self.k.is_finite()) {
            return Err(ConfigError::new(
                "throttle.k",
                format!(
                    "must be a number of at least 1, got {}; 2 is the usual choice",
                    self.k
                ),
            ));
        }
        if self.window < MIN_THROTTLE_WINDOW {
            return Err(ConfigError::new(
                "throttle.window",
                format!(
                    "must span at least {MIN_THROTTLE_WINDOW:?}, got {:?}",
                    self.window
                ),
            ));
        }
        Ok(())
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Placeholder replaced by the adaptive throttle's state.
#[derive(Debug)]
pub struct AdaptiveThrottle {
    config: ThrottleConfig,
}

impl AdaptiveThrottle {
    /// A throttle with these settings.
    #[must_use]
    pub const fn new(config: ThrottleConfig) -> Self {
        Self { config }
    }
}
