//! The OS clocks the hot path reads, and the coarse instant timers are armed
//! from.
//!
//! On Linux, `CLOCK_MONOTONIC_COARSE` is the monotonic clock as of the last
//! scheduler tick: reading it touches no hardware counter, about 8 ns on a
//! virtual machine against 40–50 ns for `CLOCK_MONOTONIC` (what
//! `Instant::now` reads). Both count on the same timeline, so a coarse
//! reading converts to an [`Instant`] through one anchor taken at start-up.
//!
//! A coarse reading lags the true time: the kernel advances it at each tick
//! (`clock_getres`, 1–4 ms) by whole tick intervals, so the lag stays under
//! two ticks, plus the tick's own latency (measured on a 4 ms-tick VM over
//! 20 million reads: 5.4 ms on average, 7.4 ms at most). [`timer_now`]
//! adds three ticks, so a timer armed from it does not fire early and fires
//! at most three ticks late (12 ms at 250 Hz), on top of tokio's own 1 ms
//! timer resolution. That is why only limits of a second or more use it.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// Timeouts and deadlines shorter than this are armed from the precise
/// clock: three coarse ticks would be too large a share of them.
pub(crate) const COARSE_TIMER_MIN: Duration = Duration::from_secs(1);

/// The coarsest tick the coarse clock may have for timers to use it.
const MAX_TICK: Duration = Duration::from_millis(10);

#[cfg(target_os = "linux")]
#[inline]
fn read_timespec(id: libc::clockid_t) -> Option<(u64, u32)> {
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
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some((secs, nanos))
}

#[cfg(target_os = "linux")]
#[inline]
fn read(id: libc::clockid_t) -> Option<u64> {
    let (secs, nanos) = read_timespec(id)?;
    Some(
        secs.saturating_mul(1_000_000_000)
            .saturating_add(u64::from(nanos)),
    )
}

/// `CLOCK_MONOTONIC_COARSE` as seconds and nanoseconds (Linux only).
#[cfg(target_os = "linux")]
#[inline]
fn coarse_timespec() -> Option<(u64, u32)> {
    read_timespec(libc::CLOCK_MONOTONIC_COARSE)
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds (Linux only).
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn coarse_nanos() -> Option<u64> {
    read(libc::CLOCK_MONOTONIC_COARSE)
}

/// `CLOCK_MONOTONIC` in nanoseconds (Linux only).
#[cfg(target_os = "linux")]
pub(crate) fn precise_nanos() -> Option<u64> {
    read(libc::CLOCK_MONOTONIC)
}

/// The coarse clock's tick (Linux only).
#[cfg(target_os = "linux")]
fn coarse_tick() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `read`.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

#[cfg(not(target_os = "linux"))]
#[inline]
pub(crate) const fn coarse_nanos() -> Option<u64> {
    None
}

#[cfg(not(target_os = "linux"))]
pub(crate) const fn precise_nanos() -> Option<u64> {
    None
}

#[cfg(not(target_os = "linux"))]
const fn coarse_tick() -> Option<Duration> {
    None
}

#[cfg(not(target_os = "linux"))]
#[inline]
const fn coarse_timespec() -> Option<(u64, u32)> {
    None
}

/// A coarse reading's place on tokio's timeline.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// The instant three ticks after the start of second `base_secs` of
    /// `CLOCK_MONOTONIC`: a reading `(s, n)` converts to
    /// `origin + (s - base_secs, n)`, one addition without a division.
    origin: Instant,
    base_secs: u64,
    /// How far behind the true time a coarse reading may be: three ticks
    /// (already in `origin`; kept for the tests' bound).
    #[cfg_attr(not(test), allow(dead_code))]
    lag: Duration,
}

/// Ticks a coarse reading may lag the true time by (see the module docs).
const LAG_TICKS: u32 = 3;

impl Anchor {
    fn take() -> Option<Self> {
        let tick = coarse_tick().filter(|tick| *tick <= MAX_TICK)?;
        // `CLOCK_MONOTONIC` is read just before `Instant::now()` (the same
        // clock): the instant is at least as late on the shared timeline,
        // so a converted reading is never earlier than the reading.
        let base_nanos = precise_nanos()?;
        let base = Instant::from_std(std::time::Instant::now());
        coarse_timespec()?;
        let base_secs = base_nanos / 1_000_000_000;
        let into_second = Duration::from_nanos(base_nanos % 1_000_000_000);
        let lag = tick * LAG_TICKS;
        let origin = base.checked_sub(into_second)? + lag;
        Some(Self {
            origin,
            base_secs,
            lag,
        })
    }

    /// An instant no earlier than the true time when `(secs, nanos)` was
    /// read from the coarse clock: the reading plus three ticks.
    #[inline]
    fn upper_bound(&self, (secs, nanos): (u64, u32)) -> Instant {
        self.origin + Duration::new(secs.saturating_sub(self.base_secs), nanos)
    }
}

static ANCHOR: OnceLock<Option<Anchor>> = OnceLock::new();

#[inline]
fn anchor() -> Option<&'static Anchor> {
    ANCHOR.get_or_init(Anchor::take).as_ref()
}

/// Whether [`timer_now`] reads the coarse clock here: on Linux with a tick
/// of at most 10 ms, and not with the `test-util` feature (whose tests
/// drive timers with tokio's paused clock).
pub(crate) fn coarse_timers_available() -> bool {
    !cfg!(feature = "test-util") && anchor().is_some()
}

/// An instant at or after now and at most three coarse ticks later, to arm
/// a timer from: a timer armed at `timer_now() + d` fires no earlier than
/// `d` from now. Reads the coarse clock where [`coarse_timers_available`],
/// tokio's clock otherwise.
#[inline]
pub(crate) fn timer_now() -> Instant {
    if !cfg!(feature = "test-util") {
        if let (Some(anchor), Some(coarse)) = (anchor(), coarse_timespec()) {
            return anchor.upper_bound(coarse);
        }
    }
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_instant_bounds_the_true_time_from_above_by_three_ticks() {
        let Some(anchor) = Anchor::take() else {
            // No coarse clock here (not Linux, or a tick above 10 ms):
            // timers read the precise clock, which the other tests cover.
            return;
        };
        for _ in 0..100_000 {
            let before = Instant::from_std(std::time::Instant::now());
            let coarse = coarse_timespec().expect("the coarse clock was readable");
            let bound = anchor.upper_bound(coarse);
            let after = Instant::from_std(std::time::Instant::now());
            assert!(
                bound >= before,
                "a timer armed from the coarse instant would fire early: {:?} before now",
                before - bound
            );
            // At most the lag allowance after the latest true time it can
            // stand for, with 1 ms for the anchor's two reads and rounding.
            assert!(
                bound <= after + anchor.lag + Duration::from_millis(1),
                "the coarse instant is {:?} past now, more than {:?}",
                bound - after,
                anchor.lag
            );
        }
    }

    #[test]
    fn timer_now_is_never_before_now() {
        for _ in 0..10_000 {
            let before = Instant::from_std(std::time::Instant::now());
            let now = timer_now();
            assert!(now >= before, "{:?} early", before - now);
        }
    }
}
