//! Bulkhead: a cap on calls in flight to one provider, so a slow provider
//! cannot take every connection, task and socket of the caller with it.
//!
//! Guarantees: at most `max_concurrent` admitted calls are in flight at any
//! time; a caller waits for a slot at most `max_wait` (and never past its
//! deadline), then is rejected with [`crate::Error::BulkheadFull`].
//!
//! Taking and returning a free slot is one compare-and-swap and one
//! `fetch_sub`; the waiters' `Notify` is touched only when someone waits.

use crate::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use buttress_settings::{defaults, rules};

use crate::error::ConfigError;

/// Bulkhead settings.
///
/// # Default
/// `max_concurrent` 64, `max_wait` zero (reject at once when full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadConfig {
    pub(crate) max_concurrent: u32,
    pub(crate) max_wait: Duration,
}

impl BulkheadConfig {
    /// The defaults (see [`BulkheadConfig`]).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            max_concurrent: defaults::MAX_CONCURRENT,
            max_wait: defaults::MAX_WAIT,
        }
    }

    /// Calls allowed in flight at once (at least 1).
    #[must_use]
    pub const fn with_max_concurrent(mut self, max: u32) -> Self {
        self.max_concurrent = max;
        self
    }

    /// How long a call may wait for a slot.
    #[must_use]
    pub const fn with_max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// `max_concurrent`.
    #[must_use]
    pub const fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }

    /// `max_wait`.
    #[must_use]
    pub const fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] when `max_concurrent` is zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check(
            "bulkhead.max_concurrent",
            rules::at_least_one(self.max_concurrent),
        )
    }
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A provider's bulkhead.
#[derive(Debug)]
pub struct Bulkhead {
    /// The limit and the wait: atomics, so that a reload changes them in
    /// place and the calls in flight keep counting against the new limit.
    max_concurrent: AtomicU32,
    max_wait_nanos: AtomicU64,
    /// Written by every call: kept on its own cache line, away from the
    /// read-mostly state of the other policies.
    slots: Slots,
    freed: Notify,
}

#[derive(Debug)]
#[repr(align(64))]
struct Slots {
    in_flight: AtomicU32,
    waiters: AtomicUsize,
}

/// A slot in the bulkhead, returned on drop.
#[derive(Debug)]
pub struct BulkheadPermit<'a> {
    bulkhead: &'a Bulkhead,
}

impl Drop for BulkheadPermit<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let slots = &self.bulkhead.slots;
        slots.in_flight.fetch_sub(1, Ordering::SeqCst);
        if slots.waiters.load(Ordering::SeqCst) > 0 {
            self.bulkhead.wake_one();
        }
    }
}

/// Why a call got no slot: the bulkhead stayed full for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// How long the caller waited.
    pub waited: Duration,
}

impl Bulkhead {
    /// An empty bulkhead.
    #[must_use]
    pub fn new(config: BulkheadConfig) -> Self {
        Self {
            max_concurrent: AtomicU32::new(config.max_concurrent),
            max_wait_nanos: AtomicU64::new(crate::clock::saturating_nanos(config.max_wait)),
            slots: Slots {
                in_flight: AtomicU32::new(0),
                waiters: AtomicUsize::new(0),
            },
            freed: Notify::new(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> BulkheadConfig {
        BulkheadConfig {
            max_concurrent: self.max_concurrent.load(Ordering::Relaxed),
            max_wait: self.max_wait(),
        }
    }

    fn max_wait(&self) -> Duration {
        match self.max_wait_nanos.load(Ordering::Relaxed) {
            u64::MAX => Duration::MAX,
            nanos => Duration::from_nanos(nanos),
        }
    }

    /// Take new settings in place: the calls in flight keep their slots and
    /// count against the new limit (a reload never lets through more than
    /// the larger of the two limits), and waiters look again at once.
    pub fn reconfigure(&self, config: BulkheadConfig) {
        self.max_concurrent
            .store(config.max_concurrent, Ordering::SeqCst);
        self.max_wait_nanos.store(
            crate::clock::saturating_nanos(config.max_wait),
            Ordering::Relaxed,
        );
        self.freed.notify_waiters();
    }

    /// Calls in flight now.
    #[must_use]
    pub fn in_flight(&self) -> u32 {
        self.slots.in_flight.load(Ordering::Relaxed)
    }

    #[cold]
    #[inline(never)]
    fn wake_one(&self) {
        self.freed.notify_one();
    }

    /// Take a slot if one is free, without waiting.
    #[inline(always)]
    pub fn try_acquire(&self) -> Option<BulkheadPermit<'_>> {
        let in_flight = &self.slots.in_flight;
        let mut current = in_flight.load(Ordering::SeqCst);
        let max = self.max_concurrent.load(Ordering::Relaxed);
        while current < max {
            match in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(BulkheadPermit { bulkhead: self }),
                Err(actual) => current = actual,
            }
        }
        None
    }

    /// Take a slot, waiting until `max_wait` or `limit` (the caller's
    /// deadline), whichever comes first.
    ///
    /// # Errors
    /// [`Full`] when no slot freed up in time.
    pub async fn acquire(&self, limit: Option<Instant>) -> Result<BulkheadPermit<'_>, Full> {
        if let Some(permit) = self.try_acquire() {
            return Ok(permit);
        }
        self.wait(limit).await
    }

    #[cold]
    async fn wait(&self, limit: Option<Instant>) -> Result<BulkheadPermit<'_>, Full> {
        let start = Instant::now();
        let mut until = crate::clock::later(start, self.max_wait());
        if let Some(limit) = limit {
            until = until.min(limit);
        }
        if until <= start {
            return Err(Full {
                waited: Duration::ZERO,
            });
        }
        self.slots.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = WaiterGuard(&self.slots.waiters);
        let sleep = tokio::time::sleep_until(until);
        tokio::pin!(sleep);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                return Ok(permit);
            }
            tokio::select! {
                biased;
                () = &mut freed => {}
                () = &mut sleep => {
                    return self.try_acquire().ok_or(Full { waited: start.elapsed() });
                }
            }
        }
    }
}

struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
