//! What a wrapped body can ask about its own call: which attempt this is,
//! how much time is left, the idempotency key and the correlation id.
//!
//! The call driver points a thread-local at the call's context while it
//! polls the body (and restores the previous one after, so nested wrapped
//! calls see their own). Reading it costs a thread-local access; setting it
//! allocates nothing.

use std::cell::{Cell, OnceCell};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::later;

/// Per-call state visible to the body.
#[derive(Debug)]
pub(crate) struct CallContext {
    pub(crate) attempt: Cell<u32>,
    /// When the call started, read lazily: a call whose first attempt
    /// completes on its first poll never reads the clock.
    pub(crate) started: Cell<Option<Instant>>,
    pub(crate) deadline: Option<Duration>,
    /// The instant the deadline passes, once the start is known (computed
    /// once: every retry compares with it).
    deadline_instant: Cell<Option<Instant>>,
    /// The idempotency key: given by the caller, or generated on first
    /// use for idempotent calls.
    pub(crate) key: OnceCell<Arc<str>>,
    /// The correlation id: the caller's, or generated on first use.
    pub(crate) correlation: OnceCell<Arc<str>>,
    /// The call's span, and the current attempt's (disabled without an
    /// interested subscriber).
    pub(crate) span: tracing::Span,
    pub(crate) attempt_span: tracing::Span,
    pub(crate) idempotent: bool,
}

impl CallContext {
    pub(crate) const fn new(deadline: Option<Duration>, idempotent: bool) -> Self {
        Self {
            attempt: Cell::new(0),
            started: Cell::new(None),
            deadline,
            deadline_instant: Cell::new(None),
            key: OnceCell::new(),
            correlation: OnceCell::new(),
            span: tracing::Span::none(),
            attempt_span: tracing::Span::none(),
            idempotent,
        }
    }

    /// The call's correlation id: the caller's (set on the call, or
    /// inherited from [`with_correlation_id`]), else a UUIDv7 generated
    /// once.
    pub(crate) fn correlation_id(&self) -> &Arc<str> {
        self.correlation.get_or_init(|| {
            INHERITED
                .try_with(Arc::clone)
                .unwrap_or_else(|_| crate::idempotency::generate_key())
        })
    }

    /// The call's key, generating one (a UUIDv7) for an idempotent call
    /// that has none yet.
    pub(crate) fn key(&self) -> Option<&Arc<str>> {
        if self.idempotent {
            Some(self.key.get_or_init(crate::idempotency::generate_key))
        } else {
            self.key.get()
        }
    }

    /// The current time, fixing the call's start if nothing did yet.
    pub(crate) fn now(&self) -> Instant {
        let now = Instant::now();
        if self.started.get().is_none() {
            self.started.set(Some(now));
        }
        now
    }

    pub(crate) fn start_at(&self, now: Instant) {
        if self.started.get().is_none() {
            self.started.set(Some(now));
        }
    }

    /// The instant the deadline passes, if there is one.
    pub(crate) fn deadline_at(&self, now: Instant) -> Option<Instant> {
        let deadline = self.deadline?;
        if let Some(at) = self.deadline_instant.get() {
            return Some(at);
        }
        let at = match self.started.get() {
            Some(started) => {
                let at = later(started, deadline);
                self.deadline_instant.set(Some(at));
                at
            }
            None => later(now, deadline),
        };
        Some(at)
    }

    pub(crate) fn remaining_at(&self, now: Instant) -> Option<Duration> {
        self.deadline_at(now)
            .map(|at| at.saturating_duration_since(now))
    }
}

tokio::task_local! {
    static INHERITED: Arc<str>;
}

/// Run `future` with `id` as the correlation id of every wrapped call made
/// inside it (unless a call sets its own): take it from an incoming
/// request (an `X-Request-Id` header, say) so one id follows the work
/// across services. Wrapped bodies read it with [`correlation_id`] to send
/// it on.
pub async fn with_correlation_id<F: std::future::Future>(
    id: impl Into<Arc<str>>,
    future: F,
) -> F::Output {
    INHERITED.scope(id.into(), future).await
}

/// The correlation id of the current call, inside a wrapped body: the
/// caller's (see [`with_correlation_id`]) or one generated per logical
/// call, the same on every attempt. Send it to the provider as a header so
/// both sides' logs can be joined. `None` outside a wrapped body.
#[must_use]
pub fn correlation_id() -> Option<Arc<str>> {
    with_current(|ctx| Arc::clone(ctx.correlation_id()))
}

thread_local! {
    static CURRENT: Cell<*const CallContext> = const { Cell::new(std::ptr::null()) };
}

/// Makes `ctx` current until dropped.
pub(crate) struct Entered {
    previous: *const CallContext,
}

impl Entered {
    #[inline]
    pub(crate) fn new(ctx: &CallContext) -> Self {
        Self {
            previous: CURRENT.with(|c| c.replace(ctx)),
        }
    }
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

fn with_current<R>(f: impl FnOnce(&CallContext) -> R) -> Option<R> {
    CURRENT.with(|c| {
        let ptr = c.get();
        // SAFETY: the pointer is set only by `Entered`, for the duration of
        // a poll of the body, from a reference to a context that outlives
        // that poll; it is reset before the reference ends.
        (!ptr.is_null()).then(|| f(unsafe { &*ptr }))
    })
}

/// The attempt number inside a wrapped body: 1 on the first attempt, 2 on
/// the first retry, and so on. 0 outside a wrapped body.
#[must_use]
pub fn attempt() -> u32 {
    with_current(|ctx| ctx.attempt.get()).unwrap_or(0)
}

/// Time left before the call's deadline, inside a wrapped body. `None`
/// outside one, or when the call has no deadline.
#[must_use]
pub fn remaining() -> Option<Duration> {
    with_current(|ctx| ctx.remaining_at(ctx.now())).flatten()
}

/// The idempotency key of the current call, the same on every attempt:
/// the caller's (`idempotent(key = …)`, [`crate::Call::set_key`]), or a
/// UUIDv7 generated once per logical call for an idempotent call. Send it
/// to the provider (an `Idempotency-Key` header) so a resend cannot act
/// twice. `None` outside a wrapped body, or for a call that is not
/// idempotent and was given no key.
#[must_use]
pub fn idempotency_key() -> Option<Arc<str>> {
    with_current(|ctx| ctx.key().cloned()).flatten()
}
