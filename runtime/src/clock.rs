//! The OS clocks the rate limiter reads.
//!
//! On Linux, `CLOCK_MONOTONIC_COARSE` is the monotonic clock as of the last
//! scheduler tick: reading it touches no hardware counter, about 8 ns on a
//! virtual machine against 40–50 ns for `CLOCK_MONOTONIC` (what
//! `Instant::now` reads). It lags the true time: the kernel advances it at
//! each tick (1–4 ms) by whole tick intervals, so the lag stays under two
//! ticks plus the tick's own latency (on a 4 ms-tick VM, over 20 million
//! reads: 5.4 ms on average, 7.4 ms at most).
//!
//! Timers are not armed from it: an instant derived from the OS clock would
//! not follow tokio's paused clock in a user's tests.

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

#[cfg(not(target_os = "linux"))]
#[inline]
pub(crate) const fn coarse_nanos() -> Option<u64> {
    None
}

#[cfg(not(target_os = "linux"))]
pub(crate) const fn precise_nanos() -> Option<u64> {
    None
}
