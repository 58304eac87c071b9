//! Hooks: subscribe to policy events in code.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use buttress::events::{self, PolicyEvent};
//!
//! let retries = Arc::new(AtomicU32::new(0));
//! let seen = Arc::clone(&retries);
//! let subscription = events::subscribe(move |event: &PolicyEvent<'_>| {
//!     if let PolicyEvent::RetryScheduled { .. } = event {
//!         seen.fetch_add(1, Ordering::Relaxed);
//!     }
//! });
//! // ... calls run; dropping the subscription unsubscribes.
//! drop(subscription);
//! ```
//!
//! Listeners run synchronously on the task that caused the event: keep
//! them short and never block (hand work to a channel). Events happen only
//! off the happy path (retries, rejections, breaker transitions): with no
//! subscriber, checking for one is a single relaxed atomic load; with
//! subscribers, delivering an event takes a read lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::{BreakerState, TransitionReason};
use crate::class::ErrorClass;
use crate::sync::RwLock;

/// Something a policy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyEvent<'a> {
    /// A failed attempt will be retried after `delay`.
    RetryScheduled {
        /// The provider called.
        provider: &'a str,
        /// The operation (call site).
        operation: &'a str,
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The class of its error.
        class: ErrorClass,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// A call or retry was refused locally.
    Rejected {
        /// The provider concerned.
        provider: &'a str,
        /// The operation (call site).
        operation: &'a str,
        /// `circuit_open`, `budget`, `rate_limit`, `bulkhead`, `deadline`
        /// or `in_flight`.
        reason: &'static str,
    },
    /// A provider's circuit breaker changed state.
    BreakerTransition {
        /// The provider whose breaker changed.
        provider: &'a str,
        /// The state before.
        from: BreakerState,
        /// The state after.
        to: BreakerState,
        /// Why.
        reason: TransitionReason,
    },
}

type Listener = Arc<dyn Fn(&PolicyEvent<'_>) + Send + Sync>;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

static LISTENERS: RwLock<Vec<(u64, Listener)>> = RwLock::new(Vec::new());

fn listeners() -> &'static RwLock<Vec<(u64, Listener)>> {
    &LISTENERS
}

/// A subscription: events reach its listener until it is dropped (or
/// [`Subscription::forever`] is called).
#[derive(Debug)]
#[must_use = "dropping the subscription unsubscribes at once"]
pub struct Subscription {
    id: u64,
}

impl Subscription {
    /// Keep the listener for the life of the process.
    pub fn forever(self) {
        std::mem::forget(self);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut all = listeners().write();
        all.retain(|(id, _)| *id != self.id);
        ACTIVE.store(!all.is_empty(), Ordering::Release);
    }
}

/// Call `listener` on every policy event of every provider in this
/// process, until the returned [`Subscription`] is dropped.
pub fn subscribe(listener: impl Fn(&PolicyEvent<'_>) + Send + Sync + 'static) -> Subscription {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut all = listeners().write();
    all.push((id, Arc::new(listener)));
    ACTIVE.store(true, Ordering::Release);
    Subscription { id }
}

/// Deliver `event` to the subscribers, if any.
#[inline]
pub(crate) fn emit(event: &PolicyEvent<'_>) {
    if ACTIVE.load(Ordering::Relaxed) {
        deliver(event);
    }
}

#[cold]
fn deliver(event: &PolicyEvent<'_>) {
    // Clone the list so a listener may subscribe or unsubscribe.
    let current: Vec<Listener> = listeners()
        .read()
        .iter()
        .map(|(_, l)| Arc::clone(l))
        .collect();
    for listener in current {
        listener(event);
    }
}
