//! The waiting queue: calls held back wait here, earliest deadline first
//! (the most time left first while the breaker probes), sending nothing,
//! until the gate admits them or their deadline passes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::gate::{BlockReason, Blocked, Gate, Inner};
use super::metrics::Metric;
use crate::breaker::{Breaker, BreakerPermit, BreakerState};

/// How often a head waiter that has no known wake-up time (the breaker's
/// probes are all out) looks again, in case a wake-up was missed.
const RECHECK: Duration = Duration::from_millis(50);

impl Gate {
    /// Admit one attempt: at once when nothing blocks; otherwise, with
    /// `wait` on, after waiting (earliest deadline first, sending nothing)
    /// until the provider can take it; give up at `deadline`, or at once
    /// when what blocks cannot end before it.
    ///
    /// # Errors
    /// [`Blocked`] when the call is not admitted.
    pub async fn admit<'b>(
        &self,
        breaker: &'b Breaker,
        deadline: Option<Instant>,
        first_attempt: bool,
    ) -> Result<BreakerPermit<'b>, Blocked> {
        self.admit_with(breaker, deadline, first_attempt, false)
            .await
    }

    /// [`admit`](Self::admit), saying whether the attempt is a hedge: a
    /// retry made while an earlier attempt of the same call still runs
    /// (the call's own answer may still come from that one). Hedges
    /// waiting for a pace slot never make new calls queue behind them.
    ///
    /// # Errors
    /// [`Blocked`] when the call is not admitted.
    pub async fn admit_with<'b>(
        &self,
        breaker: &'b Breaker,
        deadline: Option<Instant>,
        first_attempt: bool,
        hedge: bool,
    ) -> Result<BreakerPermit<'b>, Blocked> {
        let hedge = hedge && !first_attempt;
        let now = Instant::now();
        let notify = Arc::new(Notify::new());
        let key = {
            let mut inner = self.inner.write();
            if first_attempt {
                inner.arrivals.push_back(self.nanos(now));
            }
            // A new call queues behind waiters held back by the provider
            // (an open breaker, a cooldown): those are released earliest
            // deadline first. Retries waiting for a pace slot delay a new
            // call only once more of them wait than their share of one
            // window lets through: then their demand is above their share
            // (a 503 burst failing 30 % of requests needs 0.43 retries a
            // call; the pace leaves 0.5, less rounding), and new calls
            // overtaking them would starve them, the few calls that failed
            // once waiting for seconds. Queued together, the wait is
            // shared by every call, as the oracle shares it.
            let bypass = first_attempt && inner.held == 0 && self.may_overtake_retries(&inner, now);
            if inner.waiters.is_empty() || !self.config.wait || bypass {
                match self.try_grant(&mut inner, breaker, now, first_attempt) {
                    Ok(permit) => {
                        self.settle(&mut inner, breaker, now);
                        return Ok(permit);
                    }
                    Err(blocked) => {
                        // Waiting is bounded by the deadline: a call without
                        // one does not wait, and neither does one an
                        // operator's forced-open breaker turns away.
                        if !self.config.wait
                            || (deadline.is_none()
                                && !matches!(
                                    blocked.reason,
                                    BlockReason::Pace | BlockReason::Quota
                                ))
                            || hopeless(&blocked, deadline)
                            || breaker.state() == BreakerState::ForcedOpen
                        {
                            return Err(blocked);
                        }
                    }
                }
            }
            if inner.waiters.len() >= self.config.max_waiting as usize {
                let until = self.cooldown_until.load(Ordering::Acquire);
                return Err(Blocked {
                    reason: BlockReason::QueueFull,
                    until: (until > self.nanos(now)).then(|| self.instant(until)),
                });
            }
            inner.seq += 1;
            let key = (deadline.map_or(u64::MAX, |d| self.nanos(d)), inner.seq);
            inner.waiters.insert(key, Arc::clone(&notify));
            // A new call that has to queue is held back like the calls
            // ahead of it: later new calls queue behind it (earliest
            // deadline first) instead of overtaking it.
            if first_attempt {
                inner.held += 1;
            }
            if hedge {
                inner.hedges += 1;
            }
            self.metric(Metric::Waiting(inner.waiters.len()));
            key
        };
        let mut guard = Waiter {
            gate: self,
            key,
            armed: true,
            held: first_attempt,
            hedge,
        };
        let mut last = Blocked {
            reason: BlockReason::CircuitOpen,
            until: None,
        };
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(last);
            }
            let wake_at = {
                let mut inner = self.inner.write();
                // While the breaker probes, the waiter with the most time
                // left goes first: a failed probe then costs an attempt of
                // the call that can best afford it. Once it has closed,
                // earliest deadline first.
                let probing =
                    matches!(breaker.state(), BreakerState::Open | BreakerState::HalfOpen);
                let chosen = if probing {
                    inner.waiters.last_key_value().map(|(k, _)| *k)
                } else {
                    inner.waiters.first_key_value().map(|(k, _)| *k)
                };
                if chosen == Some(key) {
                    match self.try_grant(&mut inner, breaker, now, false) {
                        Ok(permit) => {
                            inner.waiters.remove(&key);
                            guard.armed = false;
                            if guard.held {
                                inner.held -= 1;
                            }
                            if guard.hedge {
                                inner.hedges -= 1;
                            }
                            wake_ends(&inner);
                            self.released.fetch_add(1, Ordering::Relaxed);
                            self.metric(Metric::Released(inner.waiters.len()));
                            self.settle(&mut inner, breaker, now);
                            return Ok(permit);
                        }
                        Err(blocked) => {
                            last = blocked;
                            if !guard.held
                                && matches!(
                                    blocked.reason,
                                    BlockReason::CircuitOpen
                                        | BlockReason::Cooldown
                                        | BlockReason::Quota
                                )
                            {
                                guard.held = true;
                                inner.held += 1;
                            }
                            if hopeless(&blocked, deadline)
                                || (deadline.is_none()
                                    && !matches!(
                                        blocked.reason,
                                        BlockReason::Pace | BlockReason::Quota
                                    ))
                                || breaker.state() == BreakerState::ForcedOpen
                            {
                                return Err(blocked);
                            }
                            Some(blocked.until.unwrap_or(now + RECHECK))
                        }
                    }
                } else {
                    None
                }
            };
            let wake = match (wake_at, deadline) {
                (Some(a), Some(d)) => Some(a.min(d)),
                (a, d) => a.or(d),
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = notify.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notify.notified().await,
            }
        }
    }
}

/// Wake the waiters that may go next: the first (earliest deadline) and
/// the last (the next probe while the breaker probes).
pub(super) fn wake_ends(inner: &Inner) {
    if let Some((_, first)) = inner.waiters.first_key_value() {
        first.notify_one();
    }
    if let Some((_, last)) = inner.waiters.last_key_value() {
        last.notify_one();
    }
}

/// Whether what blocks cannot end before the deadline.
fn hopeless(blocked: &Blocked, deadline: Option<Instant>) -> bool {
    matches!((blocked.until, deadline), (Some(until), Some(d)) if until >= d)
}

/// A waiting call's place in the queue; leaving it (a deadline, a dropped
/// future) hands the head to the next waiter.
struct Waiter<'g> {
    gate: &'g Gate,
    key: (u64, u64),
    armed: bool,
    /// Counted in `Inner::held`.
    held: bool,
    /// Counted in `Inner::hedges`.
    hedge: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.gate.gave_up.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.gate.inner.write();
        inner.waiters.remove(&self.key);
        self.gate.metric(Metric::GaveUp(inner.waiters.len()));
        if self.held {
            inner.held -= 1;
        }
        if self.hedge {
            inner.hedges -= 1;
        }
        wake_ends(&inner);
    }
}
