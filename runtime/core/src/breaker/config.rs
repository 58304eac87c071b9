//! The breaker's settings and the thresholds derived from them.

use std::time::Duration;

use buttress_settings::{defaults, rules};

use super::window;
use crate::error::ConfigError;

/// The breaker's window: the last N calls, or the calls of the last span of
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last N calls (needs no clock).
    Count(u32),
    /// The calls of the last span of time, in [`TIME_BUCKETS`](super::TIME_BUCKETS) buckets.
    Time(Duration),
}

/// Circuit-breaker settings.
///
/// # Default
/// `failure_rate` 0.5, no slow-call rule, a window of the last 100 calls,
/// `min_calls` 20, no consecutive-failure rule, `open_for` 30 s,
/// `half_open_probes` 3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub(crate) failure_rate: f64,
    pub(crate) slow_rate: Option<f64>,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) window: Window,
    pub(crate) min_calls: u32,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) open_for: Duration,
    pub(crate) probe_interval: Option<Duration>,
    pub(crate) max_probe_interval: Option<Duration>,
    pub(crate) half_open_probes: u32,
}

/// The largest count window.
pub const MAX_COUNT_WINDOW: u32 = rules::MAX_COUNT_WINDOW;
/// The largest number of half-open probes.
pub const MAX_HALF_OPEN_PROBES: u32 = rules::MAX_HALF_OPEN_PROBES;
// A time window needs at least a millisecond per bucket.
const _: () = assert!(rules::MIN_TIME_WINDOW.as_millis() == window::TIME_BUCKETS as u128);

impl BreakerConfig {
    /// The defaults (see [`BreakerConfig`]).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            failure_rate: defaults::FAILURE_RATE,
            slow_rate: None,
            slow_call: None,
            window: Window::Count(defaults::WINDOW),
            min_calls: defaults::MIN_CALLS,
            consecutive_failures: None,
            open_for: defaults::OPEN_FOR,
            probe_interval: None,
            max_probe_interval: None,
            half_open_probes: defaults::HALF_OPEN_PROBES,
        }
    }

    /// Failure rate in `(0, 1]` at which the breaker opens.
    #[must_use]
    pub const fn with_failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Open when this fraction of calls in the window took longer than
    /// `slow_call`.
    #[must_use]
    pub const fn with_slow_calls(mut self, slow_rate: f64, slow_call: Duration) -> Self {
        self.slow_rate = Some(slow_rate);
        self.slow_call = Some(slow_call);
        self
    }

    /// The sliding window.
    #[must_use]
    pub const fn with_window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// Calls needed in the window before a rate can open the breaker.
    #[must_use]
    pub const fn with_min_calls(mut self, min_calls: u32) -> Self {
        self.min_calls = min_calls;
        self
    }

    /// Open after this many failures in a row, whatever the rate.
    #[must_use]
    pub const fn with_consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(failures);
        self
    }

    /// How long the breaker stays open before probing.
    #[must_use]
    pub const fn with_open_for(mut self, open_for: Duration) -> Self {
        self.open_for = open_for;
        self
    }

    /// How long the breaker stays open after a failed probe (the first
    /// open period is `open_for`). Each further failed probe in a row
    /// doubles it, up to [`with_max_probe_interval`](Self::with_max_probe_interval).
    /// Default: `open_for`.
    #[must_use]
    pub const fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = Some(interval);
        self
    }

    /// The longest open period after failed probes. Default: the probe
    /// interval (no growth).
    #[must_use]
    pub const fn with_max_probe_interval(mut self, interval: Duration) -> Self {
        self.max_probe_interval = Some(interval);
        self
    }

    /// How many probes half-open admits (and needs to succeed to close).
    #[must_use]
    pub const fn with_half_open_probes(mut self, probes: u32) -> Self {
        self.half_open_probes = probes;
        self
    }

    /// The failure-rate threshold.
    #[must_use]
    pub const fn failure_rate(&self) -> f64 {
        self.failure_rate
    }

    /// The slow-call rule: `(slow_rate, slow_call)`.
    #[must_use]
    pub const fn slow_calls(&self) -> Option<(f64, Duration)> {
        match (self.slow_rate, self.slow_call) {
            (Some(rate), Some(call)) => Some((rate, call)),
            _ => None,
        }
    }

    /// The window.
    #[must_use]
    pub const fn window(&self) -> Window {
        self.window
    }

    /// `min_calls`.
    #[must_use]
    pub const fn min_calls(&self) -> u32 {
        self.min_calls
    }

    /// `consecutive_failures`.
    #[must_use]
    pub const fn consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
    }

    /// `open_for`.
    #[must_use]
    pub const fn open_for(&self) -> Duration {
        self.open_for
    }

    /// The open period after the first failed probe (`open_for` unless set).
    #[must_use]
    pub const fn probe_interval(&self) -> Duration {
        match self.probe_interval {
            Some(d) => d,
            None => self.open_for,
        }
    }

    /// The longest open period after failed probes.
    #[must_use]
    pub const fn max_probe_interval(&self) -> Duration {
        match self.max_probe_interval {
            Some(d) => d,
            None => self.probe_interval(),
        }
    }

    /// `half_open_probes`.
    #[must_use]
    pub const fn half_open_probes(&self) -> u32 {
        self.half_open_probes
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check =
            |key: &str, rule: rules::Rule| ConfigError::check(&format!("breaker.{key}"), rule);
        check("failure_rate", rules::rate(self.failure_rate))?;
        match (self.slow_rate, self.slow_call) {
            (Some(rate), _) => {
                check("slow_rate", rules::rate(rate))?;
                let Some(slow_call) = self.slow_call else {
                    return check("slow_rate", Err(rules::SLOW_RATE_NEEDS_SLOW_CALL.into()));
                };
                // Zero would count every call as slow.
                check("slow_call", rules::positive(slow_call))?;
            }
            (None, Some(_)) => {
                return check("slow_call", Err(rules::SLOW_CALL_NEEDS_SLOW_RATE.into()));
            }
            (None, None) => {}
        }
        match self.window {
            Window::Count(n) => {
                check("window", rules::count_window(n))?;
                check("min_calls", rules::min_calls_in_window(self.min_calls, n))?;
            }
            Window::Time(span) => check("window", rules::time_window(span))?,
        }
        check("min_calls", rules::at_least_one(self.min_calls))?;
        if let Some(n) = self.consecutive_failures {
            check("consecutive_failures", rules::at_least_one(n))?;
        }
        check("open_for", rules::positive(self.open_for))?;
        if let Some(d) = self.probe_interval {
            check("probe_interval", rules::positive(d))?;
        }
        if let Some(d) = self.max_probe_interval {
            check("max_probe_interval", rules::positive(d))?;
        }
        check(
            "max_probe_interval",
            rules::max_probe_interval(self.max_probe_interval(), self.probe_interval()),
        )?;
        check(
            "half_open_probes",
            rules::half_open_probes(self.half_open_probes),
        )
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::new()
    }
}

pub(super) const BILLION: u64 = 1_000_000_000;

/// A rate threshold as an integer numerator over [`BILLION`], so that the
/// inclusive comparison `failures / calls >= rate` is exact for the rates
/// people write: `0.3` (stored as 0.299999…) opens at 3 of 10, and
/// `2.0 / 3.0` at 2 of 3. A value within a millionth of a part of a whole
/// number of parts is that number; anything else rounds down, which only
/// matters for windows of more than a billion calls.
pub(super) fn parts_per_billion(rate: f64) -> u64 {
    let scaled = rate.clamp(0.0, 1.0) * BILLION as f64;
    let nearest = scaled.round();
    let parts = if (scaled - nearest).abs() < 1e-3 {
        nearest
    } else {
        scaled.floor()
    };
    (parts as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_exact_for_written_rates() {
        assert_eq!(parts_per_billion(0.3), 300_000_000);
        assert_eq!(parts_per_billion(0.57), 570_000_000);
        assert_eq!(parts_per_billion(2.0 / 3.0), 666_666_666);
        assert_eq!(parts_per_billion(1.0), BILLION);
        // 2 of 3 reaches a 2/3 threshold; 3 of 10 reaches 0.3.
        assert!(2 * BILLION >= parts_per_billion(2.0 / 3.0) * 3);
        assert!(3 * BILLION >= parts_per_billion(0.3) * 10);
        assert!(2 * BILLION < parts_per_billion(0.3) * 10);
    }
}
