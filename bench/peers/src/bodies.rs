//! The bodies every stack wraps, as in `runtime/benches/common`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{BenchError, Out, TIMEOUT};

/// A body ready on its first poll.
pub async fn ready() -> Out {
    Ok(black_box(1))
}

/// A body that returns `Pending` once (rescheduling itself), then completes.
pub async fn yield_once() -> Out {
    tokio::task::yield_now().await;
    Ok(black_box(1))
}

/// Failures left to the current call of [`flaky`].
///
/// The count belongs to the call in progress: [`arm_flaky`] resets it
/// before every call (the drivers do so for every row of the `retry`
/// group alike). A static rather than a counter passed to the body, so
/// that every stack can run the same body without an allocation or a
/// request type of its own; the drivers call one row at a time on one
/// thread.
static FAILURES_LEFT: AtomicU32 = AtomicU32::new(0);

/// Failures before [`flaky`] succeeds, in each call.
pub const FAILURES: u32 = 2;

/// Start a new call of [`flaky`]: its next [`FAILURES`] attempts fail.
pub fn arm_flaky() {
    FAILURES_LEFT.store(FAILURES, Ordering::Relaxed);
}

/// A body that fails [`FAILURES`] times with a transient error (each ready
/// on its first poll), then succeeds.
pub async fn flaky() -> Out {
    // Plain load and store: one thread, and no locked instruction.
    let left = FAILURES_LEFT.load(Ordering::Relaxed);
    if left > 0 {
        FAILURES_LEFT.store(left - 1, Ordering::Relaxed);
        return Err(BenchError::Transient);
    }
    Ok(black_box(1))
}

/// `body` under `tokio::time::timeout(TIMEOUT, …)`, its elapsed error
/// mapped to [`BenchError::Timeout`]: the baseline, and the per-attempt
/// timeout of the peers that have none of their own.
pub async fn timed<F, Fut>(body: F) -> Out
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Out>,
{
    match tokio::time::timeout(TIMEOUT, body()).await {
        Ok(result) => result,
        Err(_) => Err(BenchError::Timeout),
    }
}
