//! The OS clocks the hot path reads, and the coarse instant timers are armed
//! from.
//!
//! On Linux, `CLOCK_MONOTONIC_COARSE` is the monotonic clock as of the last
//! scheduler tick: reading it touches no hardware counter, about 8 ns on a
//! virtual machine against 40–50 ns for `CLOCK_MONOTONIC` (what
//! `Instant::now` reads). Both count on the same timeline, so a coarse
//! reading converts to an [`Instant`] through one anchor taken at start-up.
//!
//! A coarse reading is at most one tick (`clock_getres`, 1–4 ms) behind the
//! true time. [`timer_now`] adds that tick, so a timer armed from it never
//! fires early and fires at most one tick late (on top of tokio's own 1 ms
//! timer resolution).

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// Timeouts and deadlines shorter than this are armed from the precise
/// clock: one coarse tick would be too large a share of them.
pub(crate) const COARSE_TIMER_MIN: Duration = Duration::from_secs(1);

/// The coarsest tick the coarse clock may have for timers to use it.
const MAX_TICK: Duration = Duration::from_millis(10);

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

/// A coarse reading's place on tokio's timeline.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// `Instant::now()`, read just after `base_nanos`.
    base: Instant,
    /// `CLOCK_MONOTONIC`, read just before `base`: `base` is at least as
    /// late on the shared timeline, so converting never yields an instant
    /// earlier than the reading.
    base_nanos: u64,
    /// The coarse clock's tick.
    tick: Duration,
}

impl Anchor {
    fn take() -> Option<Self> {
        let tick = coarse_tick().filter(|tick| *tick <= MAX_TICK)?;
        let base_nanos = precise_nanos()?;
        let base = Instant::from_std(std::time::Instant::now());
        coarse_nanos()?;
        Some(Self {
            base,
            base_nanos,
            tick,
        })
    }

    /// An instant no earlier than `coarse` (a coarse reading taken now) can
    /// be behind the true time: `coarse` plus one tick.
    #[inline]
    fn upper_bound(&self, coarse: u64) -> Instant {
        let since = Duration::from_nanos(coarse.saturating_sub(self.base_nanos));
        self.base + since + self.tick
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

/// An instant at or after now and at most one coarse tick later, to arm a
/// timer from: a timer armed at `timer_now() + d` fires no earlier than `d`
/// from now. Reads the coarse clock where [`coarse_timers_available`],
/// tokio's clock otherwise.
#[inline]
pub(crate) fn timer_now() -> Instant {
    if !cfg!(feature = "test-util") {
        if let (Some(anchor), Some(coarse)) = (anchor(), coarse_nanos()) {
            return anchor.upper_bound(coarse);
        }
    }
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_instant_bounds_the_true_time_from_above_by_one_tick() {
        let Some(anchor) = Anchor::take() else {
            // No coarse clock here (not Linux, or a tick above 10 ms):
            // timers read the precise clock, which the other tests cover.
            return;
        };
        for _ in 0..10_000 {
            let before = Instant::from_std(std::time::Instant::now());
            let coarse = coarse_nanos().expect("the coarse clock was readable");
            let bound = anchor.upper_bound(coarse);
            let after = Instant::from_std(std::time::Instant::now());
            // The coarse clock is at most one tick behind while the kernel's
            // timekeeping runs on time; allow one more for a tick delayed by
            // a busy host.
            assert!(
                bound + anchor.tick >= before,
                "a timer armed from the coarse instant would fire early: {:?} before now",
                before - bound
            );
            // At most one tick after the latest true time it can stand
            // for, with 1 ms for the anchor's two reads and rounding.
            assert!(
                bound <= after + anchor.tick + Duration::from_millis(1),
                "the coarse instant is {:?} past now, more than a tick ({:?})",
                bound - after,
                anchor.tick
            );
        }
    }

    #[test]
    fn timer_now_is_never_before_now() {
        for _ in 0..10_000 {
            let before = Instant::from_std(std::time::Instant::now());
            assert!(timer_now() >= before);
        }
    }
}
