//! The only locks in the crate, all on cold paths (registration,
//! configuration, breaker transitions). Each acquisition is counted per
//! thread, so a test can prove that the hot path of a call takes none.

use std::cell::Cell;
use std::sync::{PoisonError, RwLockReadGuard, RwLockWriteGuard};

thread_local! {
    static LOCKS_TAKEN: Cell<u64> = const { Cell::new(0) };
}

/// How many buttress locks this thread has taken so far.
#[must_use]
pub fn locks_taken_on_this_thread() -> u64 {
    LOCKS_TAKEN.with(Cell::get)
}

fn count() {
    LOCKS_TAKEN.with(|c| c.set(c.get() + 1));
}

/// A `std::sync::RwLock` that counts acquisitions and shrugs off poisoning
/// (every critical section here leaves the data consistent).
#[derive(Debug, Default)]
pub(crate) struct RwLock<T>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::sync::RwLock::new(value))
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        count();
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        count();
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The atomics of the lock-free state (the breaker's word, the bulkhead's
/// slots, the retry budget, the rate limiter's GCRA word, the registry's
/// generation): the standard library's, or loom's when the crate's unit
/// tests are built with `--cfg buttress_loom` to model-check them
/// (`scripts/loom`).
pub(crate) mod atomic {
    #[cfg(all(test, buttress_loom))]
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
    #[cfg(not(all(test, buttress_loom)))]
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
}
