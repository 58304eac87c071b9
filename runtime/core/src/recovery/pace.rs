//! The pace: how fast the gate lets attempts through while the provider
//! recovers, measured against the arrival rate of new calls (and bound by
//! the learned quota), and the admission of one attempt under it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::gate::{BlockReason, Blocked, Gate, Inner};
use crate::breaker::{Breaker, BreakerPermit, BreakerState};
use crate::clock::saturating_nanos;

/// The sliding window of the pace: admissions over any span this long stay
/// within `pace` × the new calls that arrived in it.
pub(super) const PACE_WINDOW: Duration = Duration::from_millis(100);
/// While calls are held, the release keeps at least the pace the provider
/// took over this span.
pub(super) const SUSTAIN_SPAN: Duration = Duration::from_secs(1);
/// A bound on the admissions remembered for [`SUSTAIN_SPAN`].
const MAX_RELEASED: usize = 100_000;
/// The span over which the arrival rate of new calls is measured.
const DEMAND_SPAN: Duration = Duration::from_secs(2);
/// The shortest span a demand measure is divided by (right after the gate
/// became active, fewer arrivals have been seen).
pub(super) const MIN_DEMAND_SPAN: Duration = Duration::from_millis(20);

impl Gate {
    /// The arrival rate of new calls, per second.
    fn demand(&self, inner: &mut Inner, now: u64) -> f64 {
        forget_old_arrivals(inner, now);
        let span = now.saturating_sub(inner.active_since);
        if span >= saturating_nanos(DEMAND_SPAN) {
            return inner.arrivals.len() as f64 / DEMAND_SPAN.as_secs_f64();
        }
        // Freshly active: few arrivals seen yet. Count one more than seen,
        // so a young measure errs towards admitting (the caller's success)
        // rather than towards starving; it is exact within a second.
        let span = span.max(saturating_nanos(MIN_DEMAND_SPAN));
        (inner.arrivals.len() + 1) as f64 / (span as f64 / 1e9)
    }

    /// The arrival rate of new calls, per second, as measured: unlike
    /// [`demand`](Self::demand), a young measure is not rounded up (the
    /// span is at least one [`PACE_WINDOW`]), so a release held to it
    /// cannot run ahead of the arrivals.
    fn measured_demand(inner: &mut Inner, now: u64) -> f64 {
        forget_old_arrivals(inner, now);
        let span = now
            .saturating_sub(inner.active_since)
            .clamp(saturating_nanos(PACE_WINDOW), saturating_nanos(DEMAND_SPAN));
        inner.arrivals.len() as f64 / (span as f64 / 1e9)
    }

    /// The pace now, per second (`None` when not paced), after bringing
    /// the learned quota up to date.
    fn rate(&self, inner: &mut Inner, now: u64) -> Option<f64> {
        let demand = self.demand(inner, now);
        self.update_quota(inner, now, demand);
        let paced = self.config.wait && (now < inner.paced_until || !inner.waiters.is_empty());
        paced.then(|| (self.config.pace * demand).max(self.config.min_rate))
    }

    /// The pace and the learned quota now, per second, as one rate.
    pub(super) fn admitted_rate(&self, inner: &mut Inner, now: u64) -> Option<f64> {
        match (self.rate(inner, now), inner.quota) {
            (Some(p), Some(q)) => Some(p.min(q)),
            (p, q) => p.or(q),
        }
    }

    /// Admit now if nothing blocks.
    ///
    /// A new call that finds nobody waiting is not held back by the pace
    /// (new calls are the demand the pace is measured against, and delaying
    /// them would only lower success), but it takes its slot, so held calls
    /// and retries get what remains.
    pub(super) fn try_grant<'b>(
        &self,
        inner: &mut Inner,
        breaker: &'b Breaker,
        now: Instant,
        new_call: bool,
    ) -> Result<BreakerPermit<'b>, Blocked> {
        let at = self.nanos(now);
        let slow_start = saturating_nanos(self.config.slow_start);
        let cooldown = self.cooldown_until.load(Ordering::Acquire);
        if cooldown > at {
            return Err(Blocked {
                reason: BlockReason::Cooldown,
                until: Some(self.instant(cooldown)),
            });
        }
        let pace = self.rate(inner, at);
        let forced_closed = breaker.state() == BreakerState::ForcedClosed;
        let window = saturating_nanos(PACE_WINDOW);
        let horizon = at.saturating_sub(window);
        let second = at.saturating_sub(saturating_nanos(SUSTAIN_SPAN));
        while inner.released.front().is_some_and(|&t| t <= second) {
            inner.released.pop_front();
        }
        while inner.went.front().is_some_and(|&t| t <= horizon) {
            inner.went.pop_front();
        }
        let quota_interval = inner
            .quota
            .filter(|_| !forced_closed)
            .map(|r| (1e9 / r) as u64);
        if let Some(interval) = quota_interval {
            // The learned quota binds every call, new ones included.
            if inner.next_quota_slot > at.saturating_add(interval) {
                return Err(Blocked {
                    reason: BlockReason::Quota,
                    until: Some(self.instant(inner.next_quota_slot - interval)),
                });
            }
        }
        // The pace is a sliding window: every span of `PACE_WINDOW`,
        // wherever it starts, carries at most `pace` × the new calls that
        // arrived in it (at least `min_rate`'s share). New calls that find
        // nobody held back go at once, one per arrival, so the others
        // (retries, probes) share `pace − 1` of the arrivals; while calls
        // are held, everything is released from the queue and shares the
        // whole `pace`. An operator who forced the breaker closed said:
        // let everything through.
        if pace.is_some() && !forced_closed && !new_call {
            let arrived = count_since(&inner.arrivals, horizon);
            let share = if inner.held > 0 {
                self.config.pace
            } else {
                self.config.pace - 1.0
            };
            // When new calls thin out (or stop) while calls are held, the
            // release does not collapse with them: it keeps the demand of
            // the last `DEMAND_SPAN` as its measure, and the pace the
            // provider has been taking over the last second.
            let arrived = if inner.held > 0 {
                let recent = Self::measured_demand(inner, at) * PACE_WINDOW.as_secs_f64();
                // Half a call a window above what the provider took over
                // the last second: the whole-call rounding of each window
                // would otherwise lower the pace by a call a window every
                // second (7, 6, 5, … a window) while the backlog waits,
                // and a whole call more would raise it past the pace.
                let taken = (inner.released.len() as f64 * PACE_WINDOW.as_secs_f64()
                    / SUSTAIN_SPAN.as_secs_f64()
                    + 0.5)
                    / self.config.pace;
                (arrived as f64).max(recent).max(taken)
            } else {
                arrived as f64
            };
            let floor = self.config.min_rate * PACE_WINDOW.as_secs_f64();
            let allowance = (share * arrived).max(floor);
            // Spread over the window, not sent back to back: two windows'
            // worth admitted at the edges of the sliding window could
            // otherwise reach the provider in one of its 100 ms spans.
            let spacing = (window as f64 / allowance.max(1.0)) as u64;
            if let Some(&last) = inner.released.back() {
                let next = last.saturating_add(spacing);
                if at < next {
                    return Err(Blocked {
                        reason: BlockReason::Pace,
                        until: Some(self.instant(next)),
                    });
                }
            }
            let sent = count_since(&inner.released, horizon);
            // New calls that went at once in the window count too: they
            // and what is released share `pace` × the arrivals, whichever
            // way the gate admitted them (it changes way as calls start or
            // stop being held, and the provider sees them all alike).
            let went = inner.went.len();
            let whole = (self.config.pace * arrived).max((went as f64) + floor);
            if (sent + 1) as f64 > allowance || (went + sent + 1) as f64 > whole {
                // The oldest admission still in the window (none when the
                // allowance is below one call: then wait a whole window).
                let oldest = inner
                    .released
                    .len()
                    .checked_sub(sent)
                    .and_then(|i| inner.released.get(i))
                    .copied()
                    .filter(|_| sent > 0)
                    .unwrap_or(at);
                return Err(Blocked {
                    reason: BlockReason::Pace,
                    until: Some(self.instant(oldest.saturating_add(window).saturating_add(1))),
                });
            }
        }
        match breaker.try_acquire() {
            Ok(permit) => {
                let admitted = if new_call {
                    &mut inner.went
                } else {
                    &mut inner.released
                };
                admitted.push_back(at);
                if admitted.len() > MAX_RELEASED {
                    admitted.pop_front();
                }
                if let Some(interval) = quota_interval {
                    inner.next_quota_slot = inner.next_quota_slot.max(at).saturating_add(interval);
                }
                Ok(permit)
            }
            Err(rejected) => {
                inner.paced_until = inner.paced_until.max(at.saturating_add(slow_start));
                Err(Blocked {
                    reason: BlockReason::CircuitOpen,
                    until: rejected.retry_in.and_then(|d| now.checked_add(d)),
                })
            }
        }
    }

    /// Whether a new call may go past the retries waiting for a pace
    /// slot: both the admissions other than new calls in the last
    /// [`PACE_WINDOW`] and the waiting retries (hedges aside) are within
    /// the retries' share beside new calls (`pace − 1` of the arrivals).
    /// Right after held calls were released at the whole `pace`, new calls
    /// queue until the first is, so the window that spans the change keeps
    /// the bound too; while the second is not, the retries' demand is above
    /// their share and new calls overtaking them would starve them.
    pub(super) fn may_overtake_retries(&self, inner: &Inner, now: Instant) -> bool {
        let at = self.nanos(now);
        let horizon = at.saturating_sub(saturating_nanos(PACE_WINDOW));
        let arrived = count_since(&inner.arrivals, horizon);
        let floor = self.config.min_rate * PACE_WINDOW.as_secs_f64();
        let share = ((self.config.pace - 1.0) * arrived as f64).max(floor);
        let sent = count_since(&inner.released, horizon);
        let waiting_retries = inner.waiters.len() - inner.hedges;
        (sent == 0 || sent as f64 <= share) && waiting_retries as f64 <= share
    }
}

/// Drop the arrivals older than [`DEMAND_SPAN`].
fn forget_old_arrivals(inner: &mut Inner, now: u64) {
    let horizon = now.saturating_sub(saturating_nanos(DEMAND_SPAN));
    while inner.arrivals.front().is_some_and(|&t| t < horizon) {
        inner.arrivals.pop_front();
    }
}

/// How many of the instants in `queue` (oldest first) are after `horizon`.
fn count_since(queue: &VecDeque<u64>, horizon: u64) -> usize {
    queue.iter().rev().take_while(|&&t| t > horizon).count()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::recovery::RecoveryConfig;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Whether `admit` grants at once (polled once on the paused clock).
    async fn granted_at_once(gate: &Gate, breaker: &Breaker, first: bool, hedge: bool) -> bool {
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        tokio::time::timeout(
            Duration::ZERO,
            gate.admit_with(breaker, deadline, first, hedge),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// A paced gate that saw a new call every 20 ms for 100 ms: five
    /// arrivals a window, so retries share 2.5 a window beside them.
    async fn paced(gate: &Arc<Gate>, breaker: &Breaker) {
        gate.retrying();
        for _ in 0..5 {
            assert!(granted_at_once(gate, breaker, true, false).await);
            tokio::time::sleep(ms(20)).await;
        }
    }

    /// `n` retries (hedges if `hedge`) waiting for pace slots, each in a
    /// task of its own until admitted.
    fn waiting_retries(gate: &Arc<Gate>, breaker: &Arc<Breaker>, n: usize, hedge: bool) {
        for _ in 0..n {
            let (gate, breaker) = (gate.clone(), breaker.clone());
            tokio::spawn(async move {
                let deadline = Some(Instant::now() + Duration::from_secs(5));
                let _ = gate.admit_with(&breaker, deadline, false, hedge).await;
            });
        }
    }

    /// Retries waiting beyond their share of a window are not overtaken by
    /// new calls (they would starve while their demand is above their
    /// share): a new call queues behind them. Within their share, or when
    /// the waiting retries are hedges (the call's earlier attempt still
    /// runs), a new call goes at once.
    #[tokio::test(start_paused = true)]
    async fn new_calls_queue_behind_retries_beyond_their_share() {
        for (retries, hedge, new_call_goes) in
            [(1, false, true), (6, false, false), (6, true, true)]
        {
            let gate = Arc::new(Gate::new("gate-share", RecoveryConfig::new()));
            let breaker = Arc::new(Breaker::new("gate-share", BreakerConfig::new()));
            paced(&gate, &breaker).await;
            waiting_retries(&gate, &breaker, retries, hedge);
            tokio::task::yield_now().await;
            let waiting = gate.inner.read().waiters.len();
            assert!(
                waiting + 1 >= retries,
                "{waiting} retries wait of {retries}"
            );
            assert_eq!(
                granted_at_once(&gate, &breaker, true, false).await,
                new_call_goes,
                "{retries} retries waiting (hedges: {hedge})"
            );
        }
    }
    /// Calls held through a cooldown are released at the pace the provider
    /// took over the last second once new calls stop, not one call a window
    /// slower each second (the rounding of each window would otherwise
    /// drain a backlog ever slower while it waits out its deadlines).
    #[tokio::test(start_paused = true)]
    async fn a_backlog_drains_without_slowing_once_new_calls_stop() {
        let gate = Arc::new(Gate::new("gate-drain", RecoveryConfig::new()));
        let breaker = Arc::new(Breaker::new("gate-drain", BreakerConfig::new()));
        let start = Instant::now();
        // Five seconds of new calls at 50 a second, through a cooldown: all
        // held.
        gate.cool_down(Duration::from_millis(5_000));
        let admitted = Arc::new(std::sync::Mutex::new(Vec::new()));
        for _ in 0..250 {
            let (gate, breaker, admitted) = (gate.clone(), breaker.clone(), admitted.clone());
            tokio::spawn(async move {
                let deadline = Some(Instant::now() + Duration::from_secs(30));
                if let Ok(permit) = gate.admit(&breaker, deadline, true).await {
                    admitted.lock().unwrap().push(Instant::now());
                    drop(permit);
                }
            });
            tokio::time::sleep(ms(20)).await;
        }
        // No new call once the cooldown ends; the backlog drains.
        tokio::time::sleep(Duration::from_secs(25)).await;
        let admitted = admitted.lock().unwrap();
        assert_eq!(admitted.len(), 250, "every held call is released");
        let last = admitted.iter().max().unwrap().duration_since(start);
        // Near the pace it started at: 250 calls within about 4.3 s of the
        // cooldown's end (5 s with slack). A pace losing a call a window
        // every second took until 21.8 s.
        assert!(
            last < Duration::from_secs(10),
            "the backlog took until {last:?}: the release slowed as it drained"
        );
    }
}
