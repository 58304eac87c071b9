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

use super::queue::wake_ends;
use super::RecoveryConfig;
use crate::breaker::{Breaker, BreakerState};
use crate::clock::saturating_nanos;
use crate::sync::RwLock;

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
    pub(super) provider: Arc<str>,
    pub(super) config: RecoveryConfig,
    /// Never goes idle.
    pinned: bool,
    active: AtomicBool,
    /// The end of the provider-wide cooldown, in nanoseconds since `base`
    /// (0: none).
    pub(super) cooldown_until: AtomicU64,
    base: Instant,
    pub(super) inner: RwLock<Inner>,
    pub(super) released: AtomicU64,
    pub(super) gave_up: AtomicU64,
    pub(super) cooldowns: AtomicU64,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// Waiters by (deadline in nanoseconds since `base`, arrival order).
    pub(super) waiters: BTreeMap<(u64, u64), Arc<Notify>>,
    /// Waiters held back: new calls that queued, and calls that an open
    /// breaker, a cooldown or the learned quota held back.
    pub(super) held: usize,
    /// Waiters that are hedges (see [`Gate::admit_with`]).
    pub(super) hedges: usize,
    pub(super) seq: u64,
    /// Admissions other than new calls going at once (retries, probes,
    /// held calls), ns since base, within the last [`SUSTAIN_SPAN`](super::pace::SUSTAIN_SPAN) (the
    /// pace counts those of the last [`PACE_WINDOW`](super::pace::PACE_WINDOW)).
    pub(super) released: VecDeque<u64>,
    /// New calls that went at once while active (ns since base), within
    /// the last [`PACE_WINDOW`](super::pace::PACE_WINDOW): they count in the pace's window too.
    pub(super) went: VecDeque<u64>,
    /// The earliest instant of the next admission under the learned quota.
    pub(super) next_quota_slot: u64,
    /// First attempts seen while active (ns since base), the last second.
    pub(super) arrivals: VecDeque<u64>,
    /// When the gate last became active (ns since base).
    pub(super) active_since: u64,
    /// Pacing holds until then (ns since base).
    pub(super) paced_until: u64,
    pub(super) quota: Option<f64>,
    /// A `429` came while no quota was known: learn one from the demand.
    pub(super) quota_pending: bool,
    pub(super) last_decrease: u64,
    pub(super) last_increase: u64,
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

    pub(super) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn instant(&self, nanos: u64) -> Instant {
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

    /// Go idle if nothing needs the slow path any more.
    pub(super) fn settle(&self, inner: &mut Inner, breaker: &Breaker, now: Instant) {
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
}
