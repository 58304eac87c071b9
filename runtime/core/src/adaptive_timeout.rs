//! A per-attempt timeout that follows the provider's answers.
//!
//! A fixed attempt timeout is right for one latency only. Set short, it cuts
//! a provider that is merely slow (every attempt times out, is retried, and
//! meets its own first attempt still in progress); set long, it waits the
//! whole timeout for an answer that will never come in time (a request stuck
//! after the provider committed it, a lost packet), while a retry under the
//! same idempotency key would have been answered at once.
//!
//! With an [`AdaptiveTimeoutConfig`] the timeout of each attempt is
//!
//! ```text
//! clamp(multiplier × percentile(latencies of the answers of the last second), min, max)
//! ```
//!
//! and the site's configured `timeout` is only the starting value, used
//! until [`MIN_SAMPLES`] answers have been seen in the window.
//!
//! # Why successful answers only
//!
//! An attempt cut by the timeout says only that its latency was *at least*
//! the timeout; counting it at the timeout would let a few hung requests
//! (say 30 % of them stuck for 1.5 s) pull the percentile up to the current
//! timeout and grow it without end. Errors say little about how long a
//! success takes (a provider that is down answers `503` at once, and
//! following those would leave a timeout too short for its recovery).
//! Successful answers alone are used, and the multiplier does the rest:
//!
//! - when the provider gets slower than the timeout, the answers that still
//!   arrive crowd just under it; each one above `timeout ÷ multiplier`
//!   raises the timeout to `multiplier` × its latency at once, so it grows
//!   geometrically, a step per such answer, until it covers the new
//!   latencies (or reaches `max`);
//! - when the provider gets faster, the percentile falls and the timeout
//!   follows within one window;
//! - a share of requests that never answer in time does not move it, so
//!   they are cut at `multiplier` × the latency of the ones that do, and
//!   retried.
//!
//! # Cost
//!
//! Reading the timeout is one atomic load. Recording an answer is one
//! relaxed `fetch_add` (plus, once per [`SLICE`], clearing the slice and
//! recomputing the percentile over the window: about a thousand loads,
//! amortised over every answer of that slice). No lock, no allocation. A
//! body that is ready on its first poll never armed a timer and records
//! nothing.
//!
//! Counts are approximate under contention: an answer recorded while
//! another thread clears the same slice for a new period may be lost. The
//! percentile is read from log-spaced buckets (four per octave), so it is
//! within about 10 % of the exact value.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use buttress_settings::{defaults, rules};

use crate::error::ConfigError;

/// Settings of the adaptive attempt timeout.
///
/// # Default
/// `min` 50 ms, `max` 10 s, `percentile` 0.99, `multiplier` 1.5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveTimeoutConfig {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    pub(crate) percentile: f64,
    pub(crate) multiplier: f64,
}

/// The span of one slice of the window; the window is [`SLICES`] of them.
pub const SLICE: Duration = Duration::from_millis(100);
/// How many slices the window holds (the window is one second).
pub const SLICES: usize = 10;
/// Answers needed in the window before the timeout adapts; until then the
/// configured `timeout` applies.
pub const MIN_SAMPLES: u64 = 20;
/// Cuts in the window, outnumbering the answers, that double the timeout.
pub const MIN_TIMEOUTS: u64 = 3;
/// The largest `multiplier` accepted.
pub const MAX_MULTIPLIER: f64 = rules::MAX_MULTIPLIER;

impl AdaptiveTimeoutConfig {
    /// The defaults: between 50 ms and 10 s, 1.5 × the p99 of answers.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            min: defaults::ADAPTIVE_MIN,
            max: defaults::ADAPTIVE_MAX,
            percentile: defaults::PERCENTILE,
            multiplier: defaults::MULTIPLIER,
        }
    }

    /// The shortest timeout it may choose.
    #[must_use]
    pub const fn with_min(mut self, min: Duration) -> Self {
        self.min = min;
        self
    }

    /// The longest timeout it may choose.
    #[must_use]
    pub const fn with_max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The percentile of answer latencies it follows, in `[0.5, 0.999]`.
    #[must_use]
    pub const fn with_percentile(mut self, percentile: f64) -> Self {
        self.percentile = percentile;
        self
    }

    /// How far above that percentile the timeout sits, in `[1, 10]`.
    #[must_use]
    pub const fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// `min`.
    #[must_use]
    pub const fn min(&self) -> Duration {
        self.min
    }

    /// `max`.
    #[must_use]
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// `percentile`.
    #[must_use]
    pub const fn percentile(&self) -> f64 {
        self.percentile
    }

    /// `multiplier`.
    #[must_use]
    pub const fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |key: &str, rule: rules::Rule| {
            ConfigError::check(&format!("adaptive_timeout.{key}"), rule)
        };
        check("min", rules::positive(self.min))?;
        check("max", rules::adaptive_bounds(self.min, self.max))?;
        check("percentile", rules::percentile(self.percentile))?;
        check("multiplier", rules::multiplier(self.multiplier))
    }
}

impl AdaptiveTimeoutConfig {
    /// `d` brought into `[min, max]`; never panics, even on settings that
    /// [`validate`](Self::validate) would refuse (`max` wins over `min`).
    fn bound(&self, d: Duration) -> Duration {
        d.max(self.min).min(self.max)
    }
}

impl Default for AdaptiveTimeoutConfig {
    fn default() -> Self {
        Self::new()
    }
}

// Buckets of microseconds: 0..4 one each, then four per octave up to
// 2^27 µs (about 134 s); longer answers land in the last bucket.
const BUCKETS: usize = 104;

fn bucket_of(latency: Duration) -> usize {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if us < 4 {
        return us as usize;
    }
    let octave = 63 - u64::from(us.leading_zeros()); // ≥ 2
    let sub = (us >> (octave - 2)) & 3;
    usize::try_from(4 * (octave - 1) + sub)
        .unwrap_or(BUCKETS - 1)
        .min(BUCKETS - 1)
}

/// The lowest latency of bucket `index`, in microseconds.
fn bucket_floor(index: usize) -> u64 {
    if index < 4 {
        return index as u64;
    }
    let octave = index as u64 / 4 + 1;
    let sub = index as u64 % 4;
    (4 + sub) << (octave - 2)
}

/// The middle of bucket `index`, in microseconds.
fn bucket_middle(index: usize) -> u64 {
    let low = bucket_floor(index);
    let high = bucket_floor(index + 1);
    low + (high - low) / 2
}

struct Slice {
    /// The slice's period plus one (0: never used).
    period: AtomicU64,
    counts: [AtomicU32; BUCKETS],
    /// Attempts the timeout cut in this slice.
    timeouts: AtomicU32,
}

/// The state behind an [`AdaptiveTimeoutConfig`]: a one-second window of
/// answer latencies and the timeout derived from it. One per call site.
pub struct LatencyTracker {
    config: AdaptiveTimeoutConfig,
    initial: Duration,
    origin: Instant,
    /// The timeout in use, in nanoseconds (0: the initial one).
    current: AtomicU64,
    slices: Box<[Slice]>,
}

impl std::fmt::Debug for LatencyTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyTracker")
            .field("config", &self.config)
            .field("timeout", &self.timeout())
            .finish_non_exhaustive()
    }
}

impl LatencyTracker {
    /// A tracker starting at `initial` (clamped to the configured range).
    #[must_use]
    pub fn new(config: AdaptiveTimeoutConfig, initial: Duration) -> Self {
        let slices = (0..SLICES)
            .map(|_| Slice {
                period: AtomicU64::new(0),
                counts: std::array::from_fn(|_| AtomicU32::new(0)),
                timeouts: AtomicU32::new(0),
            })
            .collect();
        Self {
            config,
            initial: config.bound(initial),
            origin: Instant::now(),
            current: AtomicU64::new(0),
            slices,
        }
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &AdaptiveTimeoutConfig {
        &self.config
    }

    /// The timeout the next attempt gets.
    #[inline]
    #[must_use]
    pub fn timeout(&self) -> Duration {
        match self.current.load(Ordering::Relaxed) {
            0 => self.initial,
            ns => Duration::from_nanos(ns),
        }
    }

    /// Record the latency of a successful answer that arrived at `now`.
    pub fn record(&self, latency: Duration, now: Instant) {
        if let Some(slice) = self.slice_at(now) {
            slice.counts[bucket_of(latency)].fetch_add(1, Ordering::Relaxed);
        }
        // Growth does not wait for the next slice: an answer that came in
        // above `timeout ÷ multiplier` raises the timeout to `multiplier` ×
        // its latency at once, so a provider slowing down is followed
        // within a few answers, not a few windows. (The next slice's
        // recomputation brings it back down if that answer was a fluke.)
        let grown = self.config.bound(scaled(latency, self.config.multiplier));
        if grown > self.timeout() {
            self.current.fetch_max(nanos(grown), Ordering::Relaxed);
        }
    }

    /// Record an attempt the timeout cut at `now`.
    pub fn record_timeout(&self, now: Instant) {
        if let Some(slice) = self.slice_at(now) {
            slice.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The slice for `now`, cleared (and the timeout recomputed from the
    /// window before it) when `now` starts a new period; `None` for a late
    /// record whose slice was already reused.
    fn slice_at(&self, now: Instant) -> Option<&Slice> {
        let period =
            u64::try_from(now.saturating_duration_since(self.origin).as_nanos() / SLICE.as_nanos())
                .unwrap_or(u64::MAX - 1);
        let tag = period + 1;
        let slice = &self.slices[(period % SLICES as u64) as usize];
        let seen = slice.period.load(Ordering::Acquire);
        if seen == tag {
            return Some(slice);
        }
        if seen > tag {
            return None;
        }
        if slice
            .period
            .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            for count in &slice.counts {
                count.store(0, Ordering::Relaxed);
            }
            slice.timeouts.store(0, Ordering::Relaxed);
            self.recompute(tag);
        }
        Some(slice)
    }

    /// Derive the timeout from the slices of the window ending at `tag`.
    fn recompute(&self, tag: u64) {
        let oldest = tag.saturating_sub(SLICES as u64 - 1);
        let mut counts = [0u64; BUCKETS];
        let mut total = 0u64;
        let mut timeouts = 0u64;
        for slice in self.slices.iter() {
            let p = slice.period.load(Ordering::Acquire);
            if p < oldest || p > tag || p == 0 {
                continue;
            }
            for (sum, count) in counts.iter_mut().zip(slice.counts.iter()) {
                let n = u64::from(count.load(Ordering::Relaxed));
                *sum += n;
                total += n;
            }
            timeouts += u64::from(slice.timeouts.load(Ordering::Relaxed));
        }
        if timeouts >= MIN_TIMEOUTS && timeouts >= total {
            // Most attempts are cut: the answers that still arrive are the
            // lucky few, and cannot say how far the provider slowed down.
            // Back off as TCP does after a retransmission timeout: double,
            // once per slice for as long as it lasts. A few cuts suffice,
            // so that a provider that stopped answering is soon given the
            // configured timeout again, and judged by the breaker on it,
            // even under light traffic.
            let doubled = self.timeout().saturating_mul(2).min(self.config.max);
            self.current.store(nanos(doubled), Ordering::Relaxed);
            return;
        }
        if total < MIN_SAMPLES {
            return;
        }
        // The smallest bucket holding the percentile's rank.
        let rank = ((self.config.percentile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        let mut index = BUCKETS - 1;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                index = i;
                break;
            }
        }
        let at = Duration::from_micros(bucket_middle(index));
        let timeout = self.config.bound(scaled(at, self.config.multiplier));
        self.current.store(nanos(timeout), Ordering::Relaxed);
    }
}

/// `d × m`, saturating (never panics, whatever `m`: NaN or negative give
/// zero, overflow gives `Duration::MAX`).
fn scaled(d: Duration, m: f64) -> Duration {
    let secs = d.as_secs_f64() * m;
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// `d` in nanoseconds, at least 1 (0 means "the initial timeout").
fn nanos(d: Duration) -> u64 {
    crate::clock::saturating_nanos(d).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_cover_their_values() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            15,
            16,
            100,
            1_000,
            40_000,
            1_500_000,
            100_000_000,
        ] {
            let d = Duration::from_micros(us);
            let b = bucket_of(d);
            assert!(b >= last, "{us}");
            last = b;
            assert!(bucket_floor(b) <= us, "{us}: floor {}", bucket_floor(b));
            if b < BUCKETS - 1 {
                assert!(
                    us < bucket_floor(b + 1),
                    "{us}: next {}",
                    bucket_floor(b + 1)
                );
                // Four per octave: a bucket spans at most a quarter of its floor.
                assert!(bucket_floor(b + 1) - bucket_floor(b) <= bucket_floor(b).max(4) / 4 + 1);
            }
        }
        assert_eq!(bucket_of(Duration::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_defaults_are_valid_and_mistakes_are_named() {
        assert!(AdaptiveTimeoutConfig::new().validate().is_ok());
        let bad = [
            (
                AdaptiveTimeoutConfig::new().with_min(Duration::ZERO),
                "adaptive_timeout.min",
            ),
            (
                AdaptiveTimeoutConfig::new()
                    .with_min(Duration::from_secs(2))
                    .with_max(Duration::from_secs(1)),
                "adaptive_timeout.max",
            ),
            (
                AdaptiveTimeoutConfig::new().with_percentile(1.0),
                "adaptive_timeout.percentile",
            ),
            (
                AdaptiveTimeoutConfig::new().with_percentile(f64::NAN),
                "adaptive_timeout.percentile",
            ),
            (
                AdaptiveTimeoutConfig::new().with_multiplier(0.9),
                "adaptive_timeout.multiplier",
            ),
            (
                AdaptiveTimeoutConfig::new().with_multiplier(f64::INFINITY),
                "adaptive_timeout.multiplier",
            ),
        ];
        for (config, key) in bad {
            let err = config.validate().unwrap_err();
            assert_eq!(err.path(), key, "{config:?}");
        }
    }
}
