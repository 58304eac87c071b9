//! Rate limit: a GCRA limiter on one atomic word, like `governor`.
//!
//! Guarantees: over any interval, admitted calls never exceed
//! `burst + per_second × (seconds + lag)`, where `lag` is how far the clock
//! read on admission may run behind the true time (0 with
//! [`LimiterClock::Precise`]; under two scheduler ticks, 2–8 ms, with the
//! default [`LimiterClock::Coarse`]); every attempt (retries included) takes a
//! slot, since a provider's quota counts them all. A call that finds no free
//! slot reserves the next one and waits for it, spending its deadline; when
//! that wait would pass the deadline, the call is rejected with
//! [`crate::Error::RateLimited`] and reserves nothing.
//!
//! The state is the theoretical arrival time (TAT) in nanoseconds since the
//! limiter's creation: one coarse clock read, one load and one
//! compare-and-swap per admission; the precise clock is read only when a
//! call has to wait.

use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use buttress_settings::{defaults, rules};

use crate::error::ConfigError;

/// Rate-limit settings.
///
/// # Default
/// 100 calls per second, burst 10, the coarse clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
    pub(crate) clock: LimiterClock,
}

impl RateLimitConfig {
    /// The defaults (see [`RateLimitConfig`]).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            per_second: defaults::PER_SECOND,
            burst: defaults::BURST,
            clock: LimiterClock::Coarse,
        }
    }

    /// The clock read on each admission (see [`LimiterClock`]).
    #[must_use]
    pub const fn with_clock(mut self, clock: LimiterClock) -> Self {
        self.clock = clock;
        self
    }

    /// `clock`.
    #[must_use]
    pub const fn clock(&self) -> LimiterClock {
        self.clock
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
        ConfigError::check(
            "rate_limit.per_second",
            rules::at_least_one(self.per_second),
        )?;
        ConfigError::check("rate_limit.burst", rules::at_least_one(self.burst))
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

/// The clock a limiter reads when it admits a call.
///
/// # Default
/// [`LimiterClock::Coarse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LimiterClock {
    /// The kernel's coarse monotonic clock where there is one (Linux:
    /// `CLOCK_MONOTONIC_COARSE`, a few nanoseconds to read, advancing once
    /// per scheduler tick, 1–4 ms, by whole ticks, so it runs up to two
    /// ticks behind the true time: 7.4 ms at most over 20 million reads on
    /// a 4 ms-tick VM). A call is taken to arrive at the coarse reading, so
    /// over any window the limiter admits at most
    /// `burst + per_second × (seconds + lag)` — at 100 calls/s and 8 ms of
    /// lag, less than one extra call; much less than the jitter with which
    /// the network delivers the calls to the provider anyway. Waits are
    /// computed on the precise clock, so a call that has to wait starts
    /// exactly at its slot. Elsewhere this is the precise clock.
    #[default]
    Coarse,
    /// The precise monotonic clock on every admission: exact GCRA, at the
    /// price of a full clock read per call (tens of nanoseconds on virtual
    /// machines).
    Precise,
    /// tokio's clock (`tokio::time::Instant::now()`), which a test on a
    /// paused clock (`start_paused`, `tokio::time::advance`) drives: exact
    /// GCRA on the same time the test's sleeps and timeouts follow. Chosen
    /// per limiter, so it changes nothing outside the policy that asks for
    /// it. In production it costs what [`LimiterClock::Precise`] costs.
    Tokio,
}

impl LimiterClock {
    /// The clock named `name` in settings: `coarse`, `precise` or `tokio`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "coarse" => Some(Self::Coarse),
            "precise" => Some(Self::Precise),
            "tokio" => Some(Self::Tokio),
            _ => None,
        }
    }
}

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
    /// Written by every call: on its own cache line.
    tat: Tat,
    /// Nanoseconds between admissions, and the burst's allowance; atomics
    /// so that a reload changes them in place, keeping the reservations.
    interval: AtomicU64,
    tolerance: AtomicU64,
    per_second: AtomicU32,
    burst: AtomicU32,
    clock: LimiterClock,
    /// The limiter's time origin, on tokio's clock (for explicit instants).
    base: Instant,
    /// The same origin on the OS clock, in nanoseconds.
    base_nanos: u64,
}

impl RateLimiter {
    /// A limiter with a full burst available.
    #[must_use]
    pub fn new(config: RateLimitConfig) -> Self {
        let (interval, tolerance) = Self::spacing(config);
        Self {
            tat: Tat(AtomicU64::new(0)),
            interval: AtomicU64::new(interval),
            tolerance: AtomicU64::new(tolerance),
            per_second: AtomicU32::new(config.per_second),
            burst: AtomicU32::new(config.burst),
            clock: config.clock,
            base: Instant::now(),
            base_nanos: clock::precise_nanos().unwrap_or(0),
        }
    }

    /// `(interval, tolerance)` in nanoseconds for `config`.
    fn spacing(config: RateLimitConfig) -> (u64, u64) {
        let interval = (1_000_000_000 / u64::from(config.per_second.max(1))).max(1);
        let tolerance = interval.saturating_mul(u64::from(config.burst.max(1) - 1));
        (interval, tolerance)
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> RateLimitConfig {
        RateLimitConfig {
            per_second: self.per_second.load(Ordering::Relaxed),
            burst: self.burst.load(Ordering::Relaxed),
            clock: self.clock,
        }
    }

    /// Take new settings in place, keeping the reservations made so far (so
    /// a reload neither refills the burst nor forgets the calls already
    /// admitted). `false`, changing nothing, when the clock differs: a new
    /// limiter is needed then.
    pub fn reconfigure(&self, config: RateLimitConfig) -> bool {
        if config.clock != self.clock {
            return false;
        }
        let (interval, tolerance) = Self::spacing(config);
        self.interval.store(interval, Ordering::Relaxed);
        self.tolerance.store(tolerance, Ordering::Relaxed);
        self.per_second.store(config.per_second, Ordering::Relaxed);
        self.burst.store(config.burst, Ordering::Relaxed);
        true
    }

    /// Admit a call now, on the limiter's clock (see [`LimiterClock`]),
    /// reserving a future slot if the wait fits in `max_wait`, which is
    /// computed only when the call would have to wait (so the caller works
    /// out its time budget only then).
    ///
    /// # Errors
    /// The wait needed, when it is longer than `max_wait` (nothing is
    /// reserved then).
    #[inline]
    pub fn acquire(&self, max_wait: impl FnOnce() -> Duration) -> Result<Admission, Duration> {
        let (now, precise) = match self.clock {
            LimiterClock::Coarse => match clock::coarse_nanos() {
                Some(nanos) => (nanos.saturating_sub(self.base_nanos), false),
                None => (self.since_base(Instant::now()), true),
            },
            LimiterClock::Precise => (self.now_precise(), true),
            LimiterClock::Tokio => (self.since_base(Instant::now()), true),
        };
        self.admit(now, precise, max_wait)
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
    /// when the call would have to wait.
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
        self.admit(self.since_base(now), true, max_wait)
    }

    fn since_base(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.base);
        elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()))
    }

    #[cold]
    fn now_precise(&self) -> u64 {
        match clock::precise_nanos() {
            Some(nanos) => nanos.saturating_sub(self.base_nanos),
            None => self.since_base(Instant::now()),
        }
    }

    /// GCRA at `now` (nanoseconds since `base`). A coarse `now` (`precise`
    /// false) is a lower bound of the time: good enough to admit (the call
    /// is taken to arrive at the last tick), replaced by a precise reading
    /// before a wait is computed.
    #[inline]
    fn admit(
        &self,
        mut now: u64,
        mut precise: bool,
        max_wait: impl FnOnce() -> Duration,
    ) -> Result<Admission, Duration> {
        let tat = &self.tat.0;
        let interval = self.interval.load(Ordering::Relaxed);
        let tolerance = self.tolerance.load(Ordering::Relaxed);
        let mut current = tat.load(Ordering::Acquire);
        let mut max_wait = Some(max_wait);
        let mut allowed = Duration::ZERO;
        loop {
            let start = current.max(now);
            let wait = (start - now).saturating_sub(tolerance);
            if wait > 0 {
                if !precise {
                    now = now.max(self.now_precise());
                    precise = true;
                    continue;
                }
                if let Some(compute) = max_wait.take() {
                    allowed = compute();
                }
                if Duration::from_nanos(wait) > allowed {
                    return Err(Duration::from_nanos(wait));
                }
            }
            match tat.compare_exchange_weak(
                current,
                start.saturating_add(interval),
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

/// The OS clocks, in nanoseconds on `CLOCK_MONOTONIC`'s timeline (`None`
/// where there is no such clock: the limiter reads tokio's clock then).
/// `CLOCK_MONOTONIC_COARSE` takes about 8 ns to read on a virtual machine,
/// against 40–50 ns for `CLOCK_MONOTONIC`; it runs up to two ticks behind
/// the true time (on a 4 ms-tick VM over 20 million reads: 5.4 ms on
/// average, 7.4 ms at most).
mod clock {
    #[cfg(target_os = "linux")]
    #[inline]
    fn read(id: libc::clockid_t) -> Option<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; `clock_gettime` only
        // writes it, and reports an unknown clock id with a non-zero result.
        let rc = unsafe { libc::clock_gettime(id, &mut ts) };
        if rc != 0 {
            return None;
        }
        let secs = u64::try_from(ts.tv_sec).ok()?;
        let nanos = u64::try_from(ts.tv_nsec).ok()?;
        Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }

    #[cfg(target_os = "linux")]
    #[inline]
    pub(super) fn coarse_nanos() -> Option<u64> {
        read(libc::CLOCK_MONOTONIC_COARSE)
    }

    #[cfg(target_os = "linux")]
    pub(super) fn precise_nanos() -> Option<u64> {
        read(libc::CLOCK_MONOTONIC)
    }

    #[cfg(not(target_os = "linux"))]
    #[inline]
    pub(super) const fn coarse_nanos() -> Option<u64> {
        None
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) const fn precise_nanos() -> Option<u64> {
        None
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

    #[test]
    fn the_coarse_clock_is_a_lower_bound_of_the_precise_one() {
        let (Some(coarse), Some(precise)) = (clock::coarse_nanos(), clock::precise_nanos()) else {
            return; // no OS clock here: the limiter reads tokio's
        };
        assert!(coarse <= precise, "coarse {coarse} > precise {precise}");
        // Two ticks of at most 10 ms on any kernel configuration.
        assert!(
            precise - coarse < 20_000_000,
            "coarse lags by {} ns",
            precise - coarse
        );
    }

    /// The OS-clock path (the default, coarse clock): a burst,
    /// then a wait computed on the precise clock (one interval, less the
    /// little time the test took), then a reservation.
    #[test]
    fn os_clocks_admit_the_burst_then_compute_exact_waits() {
        for clock in [LimiterClock::Coarse, LimiterClock::Precise] {
            let limiter = RateLimiter::new(
                RateLimitConfig::new()
                    .with_per_second(1)
                    .with_burst(3)
                    .with_clock(clock),
            );
            for _ in 0..3 {
                assert_eq!(limiter.acquire(|| Duration::ZERO), Ok(Admission::Now));
            }
            let Err(wait) = limiter.acquire(|| Duration::ZERO) else {
                panic!("{clock:?}: a fourth call within a second must wait");
            };
            assert!(
                wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
                "{clock:?}: waited {wait:?}"
            );
            match limiter.acquire(|| Duration::from_secs(2)) {
                Ok(Admission::After(reserved)) => {
                    assert!(
                        reserved > Duration::from_millis(500) && reserved <= Duration::from_secs(1)
                    );
                }
                other => panic!("{clock:?}: expected a reservation, got {other:?}"),
            }
            // The reserved slot is taken: the next one is a second later.
            match limiter.acquire(|| Duration::from_secs(5)) {
                Ok(Admission::After(reserved)) => {
                    assert!(
                        reserved > Duration::from_millis(1500)
                            && reserved <= Duration::from_secs(2)
                    );
                }
                other => panic!("{clock:?}: expected a later reservation, got {other:?}"),
            }
        }
    }
}
