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
//! subscribers, delivering an event loads the list of listeners (no lock,
//! no allocation).
//!
//! This is the one channel for breaker transitions: the
//! `buttress_breaker_state` gauge of the `metrics` feature listens here
//! too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::circuit::{BreakerState, TransitionReason};
use crate::class::ErrorClass;

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
type Listeners = Vec<(u64, Listener)>;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Read without a lock on every event; replaced whole (copy on write) by
/// the rare subscribe and unsubscribe.
static LISTENERS: ArcSwapOption<Listeners> = ArcSwapOption::const_empty();

/// Serialises changes to the list, so `ACTIVE` always follows the list
/// stored last.
static CHANGING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Replace the list of listeners with `change` applied to it.
fn update(change: impl FnOnce(&mut Listeners)) {
    let _changing = CHANGING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut next: Listeners = LISTENERS.load().as_deref().cloned().unwrap_or_default();
    change(&mut next);
    ACTIVE.store(!next.is_empty(), Ordering::Release);
    LISTENERS.store((!next.is_empty()).then(|| Arc::new(next)));
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
        let id = self.id;
        update(|all| all.retain(|(each, _)| *each != id));
    }
}

/// Call `listener` on every policy event of every provider in this
/// process, until the returned [`Subscription`] is dropped.
pub fn subscribe(listener: impl Fn(&PolicyEvent<'_>) + Send + Sync + 'static) -> Subscription {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let listener: Listener = Arc::new(listener);
    update(|all| all.push((id, Arc::clone(&listener))));
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
    // A snapshot: a listener may subscribe or unsubscribe meanwhile.
    let current = LISTENERS.load();
    for (_, listener) in current.iter().flat_map(|all| all.iter()) {
        listener(event);
    }
}
