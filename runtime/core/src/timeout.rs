//! Per-attempt timeout and overall deadline, without a timer on the happy
//! path.
//!
//! [`AttemptFuture`] polls the body first. A body that is ready on its first
//! poll never reads the clock and never creates a timer. Only when the body
//! returns `Pending` does it read the clock (fixing the call's start if
//! nothing did before; a retry held to a deadline hands over the reading
//! taken at its start instead) and arm one `tokio::time::Sleep` for
//! whichever comes first: `timeout` from the attempt's start, or the call's
//! deadline. Which of the two fired
//! decides the error: `Timeout` or `DeadlineExceeded`.
//!
//! The `Sleep` comes from a per-thread pool and is re-armed with
//! `Sleep::reset` (see the `pool` module): a yielding attempt takes no timer-wheel
//! lock in steady state, where a fresh `Sleep` takes it twice.

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
        deadline_cuts: bool,
        // Whether the body has waited (and the timer is armed).
        waited: bool,
        // When the attempt started, if the driver read the clock for it (a
        // retry held to a deadline: the timeout counts from there, and the
        // attempt does not read the clock again); else when the body first
        // waited.
        pending_since: Option<Instant>,
    }
}

impl<'c, F: Future> AttemptFuture<'c, F> {
    pub(crate) fn new(
        body: F,
        ctx: &'c mut CallContext,
        timeout: Option<Duration>,
        started: Option<Instant>,
    ) -> Self {
        Self {
            body,
            timer: None,
            pooled: None,
            ctx,
            timeout,
            deadline_cuts: false,
            waited: false,
            pending_since: started,
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
            let since = if *this.waited {
                *this.pending_since
            } else {
                None
            };
            return Poll::Ready((Finished::Done(out), since));
        }
        if !*this.waited {
            *this.waited = true;
            let now = this.pending_since.unwrap_or_else(Instant::now);
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
                match PooledTimer::arm(limit, now) {
                    Some(pooled) => *this.pooled = Some(pooled),
                    None => this.timer.set(Some(tokio::time::sleep_until(limit))),
                }
            }
        }
        let elapsed = match (this.pooled, this.timer.as_pin_mut()) {
            (Some(pooled), _) => Some(pooled.poll_elapsed(cx)),
            (None, Some(timer)) => Some(timer.poll(cx)),
            (None, None) => None,
        };
        if let Some(elapsed) = elapsed {
            ready!(elapsed);
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
/// runtime's handle twice. A pooled one stays in the wheel, and is re-armed
/// lazily: when its deadline is still ahead and no later than the new one
/// (attempts of the same policy, one after another), it is left as it is,
/// and only if it fires while the attempt still waits is it reset to the
/// attempt's own deadline (`Sleep::reset`) and polled again. A timer whose
/// deadline has passed, or lies beyond the new one, is reset at once. An
/// idle pooled timer keeps the waker of the last attempt that used it until
/// another attempt polls it or it fires (then that task gets one spurious
/// wake-up, which futures tolerate).
///
/// Each thread keeps up to [`PER_THREAD`] idle timers, tagged with their
/// runtime: a timer is only re-armed under the runtime it belongs to (whose
/// driver fires it), and one left by a runtime no longer current on the
/// thread is dropped (a thread that alternates between runtimes re-creates
/// them). A thread creates a timer only when its pool is empty, and stops
/// at [`PER_THREAD`] by its own count (timers returned to a full pool are
/// dropped and uncounted); past that (more attempts waiting at once on one
/// thread), attempts arm a timer of their own, inline. So the timers alive
/// are bounded by threads × [`PER_THREAD`] plus the attempts waiting, and
/// nothing allocates once a thread has reached its peak of waiting attempts.
mod pool {
    use std::cell::RefCell;
    use std::future::Future;
    use std::mem::ManuallyDrop;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

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
        /// When the attempt's time is up; the sleep's own deadline may be
        /// earlier (a lazily re-armed timer).
        limit: Instant,
        /// Taken only by `drop`.
        sleep: ManuallyDrop<Pin<Box<Sleep>>>,
    }

    impl PooledTimer {
        /// A pooled timer of the current runtime for an attempt whose time
        /// is up at `limit` (`now` being the time); `None` outside a
        /// runtime, or when the thread's pool is empty and has created its
        /// share.
        #[inline]
        pub(crate) fn arm(limit: Instant, now: Instant) -> Option<Self> {
            let runtime = Handle::try_current().ok()?.id();
            let sleep = POOL
                .try_with(|pool| {
                    let mut pool = pool.try_borrow_mut().ok()?;
                    while let Some(idle) = pool.idle.pop() {
                        if idle.runtime == runtime {
                            let mut sleep = idle.sleep;
                            let due = sleep.deadline();
                            if due > limit || due <= now || sleep.is_elapsed() {
                                sleep.as_mut().reset(limit);
                            }
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
                    Some(Box::pin(tokio::time::sleep_until(limit)))
                })
                .ok()
                .flatten()?;
            Some(Self {
                runtime,
                limit,
                sleep: ManuallyDrop::new(sleep),
            })
        }

        /// Ready once the attempt's `limit` has passed. A timer left at an
        /// earlier deadline that fires is reset to the limit first.
        #[inline]
        pub(crate) fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            let sleep = &mut *self.sleep;
            loop {
                ready!(sleep.as_mut().poll(cx));
                if sleep.deadline() >= self.limit {
                    return Poll::Ready(());
                }
                sleep.as_mut().reset(self.limit);
            }
        }
    }

    impl Drop for PooledTimer {
        fn drop(&mut self) {
            // SAFETY: `sleep` is not used after this, and taken only here.
            let sleep = unsafe { ManuallyDrop::take(&mut self.sleep) };
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

    /// Timers this thread created and holds (tests).
    #[cfg(test)]
    pub(crate) fn created() -> usize {
        POOL.with_borrow(|pool| pool.created)
    }
}

use pool::PooledTimer;

#[cfg(test)]
mod tests {
    use super::*;

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    }

    /// One attempt on tokio's clock with `timeout`.
    async fn attempt<F: Future>(body: F, timeout: Duration) -> Finished<F::Output> {
        let mut ctx = CallContext::new(None, false);
        AttemptFuture::new(body, &mut ctx, Some(timeout), None)
            .await
            .0
    }

    async fn yield_once() -> u32 {
        tokio::task::yield_now().await;
        7
    }

    /// Run `scenario` on a thread of its own (a fresh pool), failing if it
    /// does not finish: a timer armed on a runtime that is not driven
    /// would never fire, and the scenario would hang.
    fn on_own_thread(scenario: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            scenario();
            let _ = done.send(());
        });
        match finished.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => thread.join().expect("the scenario passed"),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(panic) = thread.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("an attempt's timer never fired: it was armed on a runtime nobody drives")
            }
        }
    }

    #[test]
    fn a_pooled_timer_is_re_armed_at_each_new_deadline() {
        on_own_thread(|| {
            paused_runtime().block_on(async {
                assert!(matches!(
                    attempt(yield_once(), Duration::from_secs(1)).await,
                    Finished::Done(7)
                ));
                assert_eq!((pool::idle(), pool::created()), (1, 1));

                // A later deadline than the idle timer's (its entry moves
                // when the old slot comes due, 500 ms in): fires at its own.
                tokio::time::advance(Duration::from_millis(500)).await;
                let start = Instant::now();
                let finished = attempt(std::future::pending::<u32>(), Duration::from_secs(1)).await;
                assert!(matches!(finished, Finished::TimedOut));
                assert_eq!(start.elapsed(), Duration::from_secs(1));
                assert_eq!((pool::idle(), pool::created()), (1, 1), "reused");

                // An earlier deadline than the (fired) timer's last one.
                let start = Instant::now();
                let finished =
                    attempt(std::future::pending::<u32>(), Duration::from_millis(100)).await;
                assert!(matches!(finished, Finished::TimedOut));
                assert_eq!(start.elapsed(), Duration::from_millis(100));

                // A body that completes well before a re-armed timer.
                let start = Instant::now();
                let finished = attempt(
                    async {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        8
                    },
                    Duration::from_secs(1),
                )
                .await;
                assert!(matches!(finished, Finished::Done(8)));
                assert_eq!(start.elapsed(), Duration::from_millis(30));
                assert_eq!((pool::idle(), pool::created()), (1, 1));
            });
        });
    }

    #[test]
    fn a_timer_is_re_armed_only_under_the_runtime_that_drives_it() {
        on_own_thread(|| {
            let first = paused_runtime();
            first.block_on(async {
                assert!(matches!(
                    attempt(yield_once(), Duration::from_secs(1)).await,
                    Finished::Done(7)
                ));
            });
            assert_eq!((pool::idle(), pool::created()), (1, 1));

            // `first` is alive but not driven: its timer must not serve here.
            paused_runtime().block_on(async {
                let start = Instant::now();
                let finished = attempt(std::future::pending::<u32>(), Duration::from_secs(2)).await;
                assert!(matches!(finished, Finished::TimedOut));
                assert_eq!(start.elapsed(), Duration::from_secs(2));
            });
            assert_eq!(
                (pool::idle(), pool::created()),
                (1, 1),
                "the first runtime's timer was dropped, the second's kept"
            );
            drop(first);
        });
    }

    #[test]
    fn past_its_share_a_thread_arms_timers_inline() {
        on_own_thread(|| {
            paused_runtime().block_on(async {
                let waiting = pool::PER_THREAD + 44;
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..waiting {
                    set.spawn(async {
                        let start = Instant::now();
                        let finished =
                            attempt(std::future::pending::<u32>(), Duration::from_secs(3)).await;
                        (matches!(finished, Finished::TimedOut), start.elapsed())
                    });
                }
                let mut timed_out = 0;
                while let Some(result) = set.join_next().await {
                    let (ok, took) = result.expect("no attempt panicked");
                    assert!(ok);
                    assert_eq!(took, Duration::from_secs(3));
                    timed_out += 1;
                }
                assert_eq!(timed_out, waiting);
                assert_eq!(pool::created(), pool::PER_THREAD);
                assert_eq!(pool::idle(), pool::PER_THREAD);
            });
        });
    }
    /// The pool under stress, where loom cannot go (tokio's timers): four
    /// worker threads, tasks that migrate between them mid-attempt (so a
    /// timer armed on one thread is returned to another's pool), attempts
    /// that finish first and attempts cut by their timeout, interleaved, and
    /// a second runtime driven by the same threads' successor. Every
    /// attempt ends as it must: a body that finishes is never cut (its
    /// timeout is an hour), a body that never finishes is cut no earlier
    /// than its timeout, and nothing hangs (a timer re-armed under a
    /// runtime that does not drive it would never fire).
    #[test]
    fn the_pool_holds_under_migrating_tasks_on_many_threads() {
        const TASKS: usize = 16;
        const ATTEMPTS: usize = 400;
        const CUT_EVERY: usize = 20;
        let short = Duration::from_millis(2);
        on_own_thread(move || {
            for round in 0..2 {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(4)
                    .enable_time()
                    .build()
                    .expect("a multi-thread runtime");
                let (done, cut) = runtime.block_on(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for task in 0..TASKS {
                        set.spawn(async move {
                            let (mut done, mut cut) = (0, 0);
                            for i in 0..ATTEMPTS {
                                if (i + task + round) % CUT_EVERY == 0 {
                                    let start = Instant::now();
                                    let finished =
                                        attempt(std::future::pending::<u32>(), short).await;
                                    assert!(matches!(finished, Finished::TimedOut));
                                    assert!(start.elapsed() >= short, "cut before its timeout");
                                    cut += 1;
                                } else {
                                    let body = async {
                                        // Yield twice: the task may move to
                                        // another worker mid-attempt.
                                        tokio::task::yield_now().await;
                                        tokio::task::yield_now().await;
                                        7
                                    };
                                    let finished = attempt(body, Duration::from_secs(3600)).await;
                                    assert!(matches!(finished, Finished::Done(7)));
                                    done += 1;
                                }
                            }
                            (done, cut)
                        });
                    }
                    let (mut done, mut cut) = (0, 0);
                    while let Some(result) = set.join_next().await {
                        let (d, c) = result.expect("no attempt panicked");
                        done += d;
                        cut += c;
                    }
                    (done, cut)
                });
                assert_eq!(done + cut, TASKS * ATTEMPTS);
                assert_eq!(cut, TASKS * ATTEMPTS / CUT_EVERY);
                // The workers' pools go with their threads.
                runtime.shutdown_timeout(Duration::from_secs(10));
            }
        });
    }
}
