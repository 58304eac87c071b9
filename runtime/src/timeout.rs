//! Per-attempt timeout and overall deadline, without a timer on the happy
//! path.
//!
//! [`AttemptFuture`] polls the body first. A body that is ready on its first
//! poll never reads the clock and never creates a timer. Only when the body
//! returns `Pending` does it read the clock (fixing the call's start if
//! nothing did before) and arm one `tokio::time::Sleep`, inline in the
//! future, for whichever comes first: `timeout` from now, or the call's
//! deadline. Which of the two fired decides the error: `Timeout` or
//! `DeadlineExceeded`.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::context::{CallContext, Entered};

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Finished<R> {
    /// The body completed.
    Done(R),
    /// The per-attempt timeout elapsed first.
    TimedOut,
    /// The call's deadline passed first.
    DeadlineCut,
}

pin_project_lite::pin_project! {
    /// One attempt: the body under the timeout and deadline, with the call
    /// context current while the body is polled.
    pub(crate) struct AttemptFuture<'c, F> {
        #[pin]
        body: F,
        #[pin]
        timer: Option<Sleep>,
        ctx: &'c mut CallContext,
        timeout: Option<Duration>,
        coarse: bool,
        deadline_cuts: bool,
        pending_since: Option<Instant>,
    }
}

impl<'c, F: Future> AttemptFuture<'c, F> {
    /// `coarse`: arm the timer from [`crate::clock::timer_now`] rather than
    /// the precise clock.
    pub(crate) fn new(
        body: F,
        ctx: &'c mut CallContext,
        timeout: Option<Duration>,
        coarse: bool,
    ) -> Self {
        Self {
            body,
            timer: None,
            ctx,
            timeout,
            coarse,
            deadline_cuts: false,
            pending_since: None,
        }
    }
}

impl<F: Future> Future for AttemptFuture<'_, F> {
    type Output = (Finished<F::Output>, Option<Instant>);

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = {
            let _entered = Entered::new(this.ctx);
            let _span = this.ctx.attempt_span.enter();
            this.body.poll(cx)
        };
        if let Poll::Ready(out) = polled {
            return Poll::Ready((Finished::Done(out), *this.pending_since));
        }
        if this.pending_since.is_none() {
            let now = if *this.coarse {
                crate::clock::timer_now()
            } else {
                Instant::now()
            };
            let first_read = this.ctx.started.get().is_none();
            this.ctx.start_at(now);
            *this.pending_since = Some(now);
            // Both limits count from now when the call starts here: compare
            // the durations and compute one instant.
            let (attempt_limit, call_limit) = match (*this.timeout, this.ctx.deadline) {
                (Some(t), Some(d)) if first_read && t < d => (now.checked_add(t), None),
                (timeout, _) => (
                    timeout.and_then(|t| now.checked_add(t)),
                    this.ctx.deadline_at(now),
                ),
            };
            let limit = match (attempt_limit, call_limit) {
                (Some(a), Some(c)) => {
                    *this.deadline_cuts = c <= a;
                    Some(a.min(c))
                }
                (Some(a), None) => Some(a),
                (None, Some(c)) => {
                    *this.deadline_cuts = true;
                    Some(c)
                }
                (None, None) => None,
            };
            if let Some(limit) = limit {
                this.timer.set(Some(tokio::time::sleep_until(limit)));
            }
        }
        if let Some(timer) = this.timer.as_pin_mut() {
            ready!(timer.poll(cx));
            let finished = if *this.deadline_cuts {
                Finished::DeadlineCut
            } else {
                Finished::TimedOut
            };
            return Poll::Ready((finished, *this.pending_since));
        }
        Poll::Pending
    }
}
