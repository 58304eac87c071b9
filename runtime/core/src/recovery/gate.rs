//! The provider's gate: where calls wait, earliest deadline first, while
//! the provider cannot take them, and from which they are released at a
//! pace it can take.
//!
//! The gate is idle in the steady state: a call reads one atomic flag and
//! passes. It becomes active when the breaker rejects a call, when the
//! provider asks for a pause (`Retry-After`), when a retry is made, or when
//! a `429` teaches a quota; it goes idle again once nothing waits, nothing
//! blocks, the slow start has passed and no learned quota binds. While
//! active, every attempt (first attempts, retries, probes) passes through
//! its one lock, so that the provider's total load can be paced; that lock
//! is never taken on the happy path.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::RecoveryConfig;
use crate::breaker::{Breaker, BreakerPermit, BreakerState};
use crate::clock::saturating_nanos;
use crate::sync::RwLock;

/// The sliding window of the pace: admissions over any span this long stay
/// within `pace` × the new calls that arrived in it.
const PACE_WINDOW: Duration = Duration::from_millis(100);
/// While calls are held, the release keeps at least the pace the provider
/// took over this span.
const SUSTAIN_SPAN: Duration = Duration::from_secs(1);
/// A bound on the admissions remembered for [`SUSTAIN_SPAN`].
const MAX_RELEASED: usize = 100_000;
/// The span over which the arrival rate of new calls is measured.
const DEMAND_SPAN: Duration = Duration::from_secs(2);
/// The shortest span a demand measure is divided by (right after the gate
/// became active, fewer arrivals have been seen).
const MIN_DEMAND_SPAN: Duration = Duration::from_millis(20);
/// How often a head waiter that has no known wake-up time (the breaker's
/// probes are all out) looks again, in case a wake-up was missed.
const RECHECK: Duration = Duration::from_millis(50);
/// How often a learned quota grows while no `429` comes.
const QUOTA_STEP_EVERY: Duration = Duration::from_millis(100);
/// The growth of a learned quota per [`QUOTA_STEP_EVERY`] without a `429`.
const QUOTA_GROWTH: f64 = 0.01;
/// The multiplicative decrease of a learned quota after a `429`.
const QUOTA_DECREASE: f64 = 0.75;
/// The first learned quota, as a fraction of the demand that met a `429`.
const QUOTA_FIRST: f64 = 0.5;
/// After a decrease, `429`s to requests sent within this long are taken
/// as the same signal.
const QUOTA_HOLD: Duration = Duration::from_millis(250);
/// How long a learned quota is kept after the last `429` while demand
/// stays below it.
const QUOTA_MEMORY: Duration = Duration::from_secs(30);

/// Why the gate held a call back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// The provider asked for a pause (`Retry-After`).
    Cooldown,
    /// The breaker is open, or half-open with every probe out.
    CircuitOpen,
    /// Admission is paced and the next slot is later.
    Pace,
    /// The learned quota's next slot is later.
    Quota,
    /// The waiting queue is full.
    QueueFull,
}

impl BlockReason {
    /// The telemetry label: `cooldown`, `circuit_open`, `pace`, `quota`,
    /// `queue_full`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cooldown => "cooldown",
            Self::CircuitOpen => "circuit_open",
            Self::Pace => "pace",
            Self::Quota => "quota",
            Self::QueueFull => "queue_full",
        }
    }
}

/// A call the gate did not admit (before its deadline, or at once when it
/// fails fast).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// What held it back last.
    pub reason: BlockReason,
    /// When that condition is expected to end, if known.
    pub until: Option<Instant>,
}

impl Blocked {
    /// How long until the blocking condition is expected to end.
    #[must_use]
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        self.until.map(|at| at.saturating_duration_since(now))
    }
}

/// A point-in-time view of a provider's gate, for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RecoveryStats {
    /// Whether calls pass through the gate's slow path.
    pub active: bool,
    /// Calls waiting now.
    pub waiting: usize,
    /// Time left of the provider-wide cooldown.
    pub cooldown: Option<Duration>,
    /// The admitted rate while paced, calls per second (`None` when not
    /// paced).
    pub paced_rate: Option<f64>,
    /// The learned quota, calls per second.
    pub learned_quota: Option<f64>,
    /// Calls that waited and were then admitted, since the start.
    pub released: u64,
    /// Calls that waited and gave up (deadline, cancellation), since the
    /// start.
    pub gave_up: u64,
    /// Cooldowns started by a provider's `Retry-After`, since the start.
    pub cooldowns: u64,
}

/// A provider's gate (see the [module docs](crate::recovery)).
#[derive(Debug)]
pub struct Gate {
    provider: Arc<str>,
    config: RecoveryConfig,
    /// Never goes idle.
    pinned: bool,
    active: AtomicBool,
    /// The end of the provider-wide cooldown, in nanoseconds since `base`
    /// (0: none).
    cooldown_until: AtomicU64,
    base: Instant,
    inner: RwLock<Inner>,
    released: AtomicU64,
    gave_up: AtomicU64,
    cooldowns: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Waiters by (deadline in nanoseconds since `base`, arrival order).
    waiters: BTreeMap<(u64, u64), Arc<Notify>>,
    /// Waiters held back: new calls that queued, and calls that an open
    /// breaker, a cooldown or the learned quota held back.
    held: usize,
    /// Waiters that are hedges (see [`Gate::admit_with`]).
    hedges: usize,
    seq: u64,
    /// Admissions other than new calls going at once (retries, probes,
    /// held calls), ns since base, within the last [`SUSTAIN_SPAN`] (the
    /// pace counts those of the last [`PACE_WINDOW`]).
    released: VecDeque<u64>,
    /// New calls that went at once while active (ns since base), within
    /// the last [`PACE_WINDOW`]: they count in the pace's window too.
    went: VecDeque<u64>,
    /// The earliest instant of the next admission under the learned quota.
    next_quota_slot: u64,
    /// First attempts seen while active (ns since base), the last second.
    arrivals: VecDeque<u64>,
    /// When the gate last became active (ns since base).
    active_since: u64,
    /// Pacing holds until then (ns since base).
    paced_until: u64,
    quota: Option<f64>,
    /// A `429` came while no quota was known: learn one from the demand.
    quota_pending: bool,
    last_decrease: u64,
    last_increase: u64,
}

impl Gate {
    /// An idle gate.
    #[must_use]
    pub fn new(provider: impl Into<Arc<str>>, config: RecoveryConfig) -> Self {
        Self::with_pinned(provider, config, false)
    }

    /// A gate that stays active for good when `pinned` (the provider has
    /// an adaptive throttle, which must see every call).
    pub(crate) fn with_pinned(
        provider: impl Into<Arc<str>>,
        config: RecoveryConfig,
        pinned: bool,
    ) -> Self {
        Self {
            provider: provider.into(),
            config,
            pinned,
            active: AtomicBool::new(pinned),
            cooldown_until: AtomicU64::new(0),
            base: Instant::now(),
            inner: RwLock::new(Inner::default()),
            released: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            cooldowns: AtomicU64::new(0),
        }
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &RecoveryConfig {
        &self.config
    }

    /// Whether calls must pass through [`admit`](Self::admit): one load.
    #[inline(always)]
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.base
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.base)
    }

    /// Make calls pass through the slow path from now on.
    #[cold]
    pub fn activate(&self) {
        if self.active.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = self.nanos(Instant::now());
        let mut inner = self.inner.write();
        inner.active_since = now;
        inner.arrivals.clear();
    }

    /// A retry is about to be made: pace the provider's load for the slow
    /// start, so the first moments of an incident cannot burst.
    #[cold]
    pub fn retrying(&self) {
        if !self.config.wait {
            return;
        }
        self.activate();
        let now = self.nanos(Instant::now());
        let until = now.saturating_add(saturating_nanos(self.config.slow_start));
        let mut inner = self.inner.write();
        inner.paced_until = inner.paced_until.max(until);
    }

    /// The provider asked every caller to wait `retry_after` (a `429` or
    /// `503` with `Retry-After`): nothing is sent to it before then.
    #[cold]
    pub fn cool_down(&self, retry_after: Duration) {
        if retry_after.is_zero() {
            return;
        }
        let now = Instant::now();
        let until = self
            .nanos(now)
            .saturating_add(saturating_nanos(retry_after))
            .max(1);
        let before = self.cooldown_until.fetch_max(until, Ordering::AcqRel);
        if before < self.nanos(now) {
            self.cooldowns.fetch_add(1, Ordering::Relaxed);
            self.metric(Metric::Cooldown);
            tracing::info!(
                provider = &*self.provider,
                retry_after = ?retry_after,
                "provider asked for a pause: every caller waits"
            );
        }
        self.activate();
        let mut inner = self.inner.write();
        let paced = until.saturating_add(saturating_nanos(self.config.slow_start));
        inner.paced_until = inner.paced_until.max(paced);
    }

    /// A request sent at `sent_at` was answered `429`: lower the learned
    /// quota (at most once per round of requests).
    #[cold]
    pub fn rate_limited(&self, sent_at: Instant, retry_after: Option<Duration>) {
        // A `Retry-After` says when capacity returns: the cooldown follows
        // it (and a token-bucket provider refills meanwhile). Only a 429
        // without one leaves the rate to be learned.
        if !self.config.learn_quota || retry_after.is_some() {
            return;
        }
        self.activate();
        let now = self.nanos(Instant::now());
        let sent = self.nanos(sent_at);
        let mut inner = self.inner.write();
        match inner.quota {
            None => inner.quota_pending = true,
            Some(q) => {
                // One decrease per round: requests sent before the last
                // decrease, or so soon after it that the provider's own
                // allowance had no time to refill, say nothing new.
                if sent
                    < inner
                        .last_decrease
                        .saturating_add(saturating_nanos(QUOTA_HOLD))
                {
                    return;
                }
                inner.quota = Some((q * QUOTA_DECREASE).max(self.config.min_rate));
                tracing::debug!(
                    provider = &*self.provider,
                    quota = inner.quota,
                    "a 429: learned quota lowered"
                );
            }
        }
        inner.last_decrease = now;
        inner.last_increase = now;
    }

    /// Wake the first waiter: something it waits for may have changed (a
    /// probe finished).
    #[cold]
    pub fn wake(&self) {
        if !self.is_active() {
            return;
        }
        wake_ends(&self.inner.read());
    }

    /// Counts and state, for operators.
    #[must_use]
    pub fn stats(&self) -> RecoveryStats {
        let now = Instant::now();
        let at = self.nanos(now);
        let cooldown = self.cooldown_until.load(Ordering::Acquire);
        let mut inner = self.inner.write();
        RecoveryStats {
            active: self.is_active(),
            waiting: inner.waiters.len(),
            cooldown: (cooldown > at).then(|| Duration::from_nanos(cooldown - at)),
            paced_rate: self.admitted_rate(&mut inner, at),
            learned_quota: inner.quota,
            released: self.released.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            cooldowns: self.cooldowns.load(Ordering::Relaxed),
        }
    }

    /// Forget everything: no cooldown, no quota, nothing paced. Waiting
    /// calls are woken to look again.
    pub fn reset(&self) {
        self.cooldown_until.store(0, Ordering::Release);
        let mut inner = self.inner.write();
        inner.quota = None;
        inner.quota_pending = false;
        inner.paced_until = 0;
        inner.released.clear();
        inner.went.clear();
        inner.next_quota_slot = 0;
        inner.arrivals.clear();
        for notify in inner.waiters.values() {
            notify.notify_one();
        }
    }

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
        if inner.quota_pending
            && now.saturating_sub(inner.active_since) >= saturating_nanos(MIN_DEMAND_SPAN)
        {
            inner.quota_pending = false;
            inner.quota = Some((demand * QUOTA_FIRST).max(self.config.min_rate));
            inner.last_increase = now;
        }
        if let Some(q) = inner.quota {
            // Additive increase while no 429 comes.
            let since = now.saturating_sub(inner.last_increase);
            let step = saturating_nanos(QUOTA_STEP_EVERY);
            if since >= step {
                let steps = (since / step) as f64;
                inner.quota = Some(q * (1.0 + QUOTA_GROWTH).powf(steps));
                inner.last_increase = now;
                self.quota_metric(inner.quota);
            }
            let forget = now.saturating_sub(inner.last_decrease) > saturating_nanos(QUOTA_MEMORY)
                && demand * self.config.pace < inner.quota.unwrap_or(q);
            if forget {
                inner.quota = None;
                self.quota_metric(None);
            }
        }
        let paced = self.config.wait && (now < inner.paced_until || !inner.waiters.is_empty());
        paced.then(|| (self.config.pace * demand).max(self.config.min_rate))
    }

    /// The pace and the learned quota now, per second, as one rate.
    fn admitted_rate(&self, inner: &mut Inner, now: u64) -> Option<f64> {
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
    fn try_grant<'b>(
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
    fn may_overtake_retries(&self, inner: &Inner, now: Instant) -> bool {
        let at = self.nanos(now);
        let horizon = at.saturating_sub(saturating_nanos(PACE_WINDOW));
        let arrived = count_since(&inner.arrivals, horizon);
        let floor = self.config.min_rate * PACE_WINDOW.as_secs_f64();
        let share = ((self.config.pace - 1.0) * arrived as f64).max(floor);
        let sent = count_since(&inner.released, horizon);
        let waiting_retries = inner.waiters.len() - inner.hedges;
        (sent == 0 || sent as f64 <= share) && waiting_retries as f64 <= share
    }

    /// Go idle if nothing needs the slow path any more.
    fn settle(&self, inner: &mut Inner, breaker: &Breaker, now: Instant) {
        let at = self.nanos(now);
        if !self.pinned
            && inner.waiters.is_empty()
            && self.cooldown_until.load(Ordering::Acquire) <= at
            && at >= inner.paced_until
            && inner.quota.is_none()
            && !inner.quota_pending
            && breaker.state() == BreakerState::Closed
        {
            self.active.store(false, Ordering::Release);
        }
    }

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
fn wake_ends(inner: &Inner) {
    if let Some((_, first)) = inner.waiters.first_key_value() {
        first.notify_one();
    }
    if let Some((_, last)) = inner.waiters.last_key_value() {
        last.notify_one();
    }
}

/// What the gate reports through the `metrics` facade.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
enum Metric {
    Waiting(usize),
    Released(usize),
    GaveUp(usize),
    Cooldown,
}

impl Gate {
    /// Report through the `metrics` facade (a no-op without the feature).
    /// Only the gate's slow path reports, so the handles are looked up
    /// each time rather than kept.
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn metric(&self, metric: Metric) {
        #[cfg(feature = "metrics")]
        {
            let provider = self.provider.to_string();
            let waiting = |n: usize| {
                metrics::gauge!("buttress_waiting_calls", "provider" => provider.clone())
                    .set(n as f64);
            };
            match metric {
                Metric::Waiting(n) => waiting(n),
                Metric::Released(n) => {
                    metrics::counter!("buttress_released_total", "provider" => provider.clone())
                        .increment(1);
                    waiting(n);
                }
                Metric::GaveUp(n) => {
                    metrics::counter!("buttress_gave_up_total", "provider" => provider.clone())
                        .increment(1);
                    waiting(n);
                }
                Metric::Cooldown => {
                    metrics::counter!("buttress_cooldowns_total", "provider" => provider.clone())
                        .increment(1);
                }
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = metric;
    }

    /// Report the learned quota (0 when none).
    fn quota_metric(&self, quota: Option<f64>) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("buttress_learned_quota", "provider" => self.provider.to_string())
            .set(quota.unwrap_or(0.0));
        #[cfg(not(feature = "metrics"))]
        let _ = quota;
    }
}

/// How many of the instants in `queue` (oldest first) are after `horizon`.
/// Drop the arrivals older than [`DEMAND_SPAN`].
fn forget_old_arrivals(inner: &mut Inner, now: u64) {
    let horizon = now.saturating_sub(saturating_nanos(DEMAND_SPAN));
    while inner.arrivals.front().is_some_and(|&t| t < horizon) {
        inner.arrivals.pop_front();
    }
}

fn count_since(queue: &VecDeque<u64>, horizon: u64) -> usize {
    queue.iter().rev().take_while(|&&t| t > horizon).count()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerConfig;

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
