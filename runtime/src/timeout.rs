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
        pooled: Option<PooledTimer>,
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
            pooled: None,
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
                match PooledTimer::arm(limit) {
                    Some(pooled) => *this.pooled = Some(pooled),
                    None => this.timer.set(Some(tokio::time::sleep_until(limit))),
                }
            }
        }
        let timer = match this.pooled {
            Some(pooled) => Some(pooled.sleep()),
            None => this.timer.as_pin_mut(),
        };
        if let Some(timer) = timer {
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

/// Attempt timers, kept per thread and re-armed rather than created and
/// dropped for each attempt.
///
/// A new `Sleep` takes the timer wheel's lock twice (to insert its entry on
/// the first poll and to remove it on drop) and clones and drops the
/// runtime's handle twice. A pooled one is re-armed with `Sleep::reset`: when
/// the new deadline is no earlier than its last one (attempts of the same
/// policy, one after another), that is one compare-and-swap on the entry,
/// which stays in the wheel; the wheel moves the entry to its new slot only
/// when the old slot comes due. An idle pooled timer keeps the waker of the
/// last attempt that used it until it is re-armed or its deadline passes
/// (then that task gets one spurious wake-up, which futures tolerate).
///
/// Each thread keeps up to [`PER_THREAD`] idle timers, tagged with their
/// runtime: a timer is only re-armed under the runtime it belongs to (whose
/// driver fires it), and one left by a runtime no longer current on the
/// thread is dropped. A thread creates at most [`PER_THREAD`] of them; past
/// that (more attempts waiting at once on one thread), attempts use a timer
/// of their own, inline, so nothing allocates after warm-up.
mod pool {
    use std::cell::RefCell;
    use std::pin::Pin;

    use tokio::runtime::{Handle, Id};
    use tokio::time::{Instant, Sleep};

    /// Idle timers a thread keeps, and timers it creates, at most.
    pub(super) const PER_THREAD: usize = 256;

    struct Idle {
        runtime: Id,
        sleep: Pin<Box<Sleep>>,
    }

    struct Pool {
        idle: Vec<Idle>,
        /// Timers this thread created and has not seen dropped.
        created: usize,
    }

    thread_local! {
        static POOL: RefCell<Pool> = const {
            RefCell::new(Pool { idle: Vec::new(), created: 0 })
        };
    }

    /// A timer taken from this thread's pool, returned to the pool of the
    /// thread that drops it.
    pub(crate) struct PooledTimer {
        runtime: Id,
        sleep: Option<Pin<Box<Sleep>>>,
    }

    impl std::fmt::Debug for PooledTimer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PooledTimer")
                .field("runtime", &self.runtime)
                .finish_non_exhaustive()
        }
    }

    impl PooledTimer {
        /// A pooled timer of the current runtime, armed at `deadline`;
        /// `None` outside a runtime, or when the thread's pool is empty and
        /// has created its share.
        #[inline]
        pub(crate) fn arm(deadline: Instant) -> Option<Self> {
            let runtime = Handle::try_current().ok()?.id();
            let sleep = POOL
                .try_with(|pool| {
                    let mut pool = pool.try_borrow_mut().ok()?;
                    while let Some(idle) = pool.idle.pop() {
                        if idle.runtime == runtime {
                            let mut sleep = idle.sleep;
                            sleep.as_mut().reset(deadline);
                            return Some(sleep);
                        }
                        // A timer of another runtime: its driver may not
                        // run while this one does.
                        pool.created = pool.created.saturating_sub(1);
                    }
                    if pool.created >= PER_THREAD {
                        return None;
                    }
                    pool.created += 1;
                    Some(Box::pin(tokio::time::sleep_until(deadline)))
                })
                .ok()
                .flatten()?;
            Some(Self {
                runtime,
                sleep: Some(sleep),
            })
        }

        /// The armed timer.
        #[inline]
        pub(crate) fn sleep(&mut self) -> Pin<&mut Sleep> {
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut(),
                None => unreachable!("a pooled timer holds its Sleep until dropped"),
            }
        }
    }

    impl Drop for PooledTimer {
        fn drop(&mut self) {
            let Some(sleep) = self.sleep.take() else {
                return;
            };
            let idle = Idle {
                runtime: self.runtime,
                sleep,
            };
            // Outside the thread's lifetime, or with the pool borrowed, the
            // timer is simply dropped.
            let _ = POOL.try_with(move |pool| {
                if let Ok(mut pool) = pool.try_borrow_mut() {
                    if pool.idle.len() < PER_THREAD {
                        pool.idle.push(idle);
                    } else {
                        pool.created = pool.created.saturating_sub(1);
                    }
                }
            });
        }
    }

    /// Idle timers in this thread's pool (tests).
    #[cfg(test)]
    pub(crate) fn idle() -> usize {
        POOL.with_borrow(|pool| pool.idle.len())
    }
}

use pool::PooledTimer;
