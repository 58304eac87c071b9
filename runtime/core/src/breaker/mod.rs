//! Circuit breaker: stop calling a provider that is failing, probe it
//! carefully, and resume when it answers again.
//!
//! Guarantees:
//! - **Closed → Open** when, over the sliding window and after at least
//!   `min_calls` calls, the failure rate reaches `failure_rate` or the slow
//!   rate reaches `slow_rate` (thresholds inclusive: `0.5` opens at 2
//!   failures of 4), or after `consecutive_failures` failures in a row.
//! - Only `Transient`, `RateLimited` and `OutcomeUnknown` errors and slow
//!   calls (longer than `slow_call`) count as failures; `Permanent` errors
//!   are the caller's fault and count as successes.
//! - **Open** rejects every call with [`crate::Error::CircuitOpen`] for
//!   `open_for`; a rejected call never reaches the provider. The move to
//!   half-open is lazy: the first call after `open_for` makes it. After a
//!   failed probe the breaker is open for `probe_interval` (default
//!   `open_for`), doubled for each further failed probe in a row up to
//!   `max_probe_interval`, so a short interval notices recovery within one
//!   interval while a long outage is probed less and less often.
//!   (With [recovery](crate::recovery) waiting on, callers wait instead of
//!   being rejected, and the earliest-deadline waiter is the probe.)
//! - **Half-open** admits exactly `half_open_probes` probes (atomic
//!   admission: while they are out, every other caller is rejected), and
//!   one more beside each probe that has been out for a whole
//!   `probe_interval` without an answer (never more than twice
//!   `half_open_probes`), so a provider's slow
//!   answer to a probe delays the sight of its recovery by one interval at
//!   most. A failed (or slow) probe reopens the breaker at once; it closes,
//!   with a fresh window, when `half_open_probes` probes succeeded. A probe
//!   whose caller gave up (the future was dropped) returns its slot.
//! - **Forced** states (operators) hold until [`Breaker::reset`] or another
//!   force: forced-open rejects everything, forced-closed admits everything
//!   and records nothing.
//!
//! The whole state is one `AtomicU64` (state, probe counters, generation);
//! admission in the closed state is one load, and recording a success into a
//! healthy count window is three loads.

mod config;
mod permit;
mod window;
mod word;

pub use config::{BreakerConfig, Window, MAX_COUNT_WINDOW, MAX_HALF_OPEN_PROBES};
pub use permit::{BreakerPermit, PermitKind, Rejected};
pub use window::{WindowCounts, TIME_BUCKETS};

use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use crate::circuit::{BreakerState, TransitionReason};
use config::{parts_per_billion, BILLION};
use permit::{KIND_BITS, KIND_MASK};
use window::{CountWindow, TimeWindow};
use word::*;

/// A point-in-time view of a breaker, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The current state.
    pub state: BreakerState,
    /// Calls, failures and slow calls in the current window.
    pub window: WindowCounts,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// How many times the breaker has opened (automatic trips only).
    pub times_opened: u64,
    /// How long the breaker has been in its current state (since it was
    /// created, if it never changed).
    pub in_state_for: Duration,
}

#[derive(Debug)]
enum WindowImpl {
    Count(CountWindow),
    Time(TimeWindow),
}

/// A circuit breaker. Usually reached through the [registry](crate::Registry),
/// shared by every call site of one provider.
pub struct Breaker {
    provider: Arc<str>,
    config: BreakerConfig,
    rate_ppb: u64,
    slow_ppb: Option<u64>,
    state: AtomicU64,
    open_until: AtomicU64,
    /// When the breaker last went half-open, in nanoseconds since `base`.
    half_open_since: AtomicU64,
    base: Instant,
    window: WindowImpl,
    consecutive: AtomicU32,
    /// Failed probes in a row since the breaker last closed.
    failed_probes: AtomicU32,
    times_opened: AtomicU64,
    /// When the state last changed, in nanoseconds since `base`.
    changed_at: AtomicU64,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("provider", &self.provider)
            .field("state", &self.state())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// A closed breaker for `provider`. The configuration should have been
    /// validated ([`BreakerConfig::validate`]); out-of-range values are
    /// clamped.
    #[must_use]
    pub fn new(provider: impl Into<Arc<str>>, config: BreakerConfig) -> Self {
        let window = match config.window {
            Window::Count(n) => WindowImpl::Count(CountWindow::new(n.min(MAX_COUNT_WINDOW))),
            Window::Time(span) => WindowImpl::Time(TimeWindow::new(span)),
        };
        Self {
            provider: provider.into(),
            rate_ppb: parts_per_billion(config.failure_rate),
            slow_ppb: config
                .slow_rate
                .zip(config.slow_call)
                .map(|(r, _)| parts_per_billion(r)),
            config,
            state: AtomicU64::new(make(CLOSED, 0, 0, 0)),
            open_until: AtomicU64::new(0),
            half_open_since: AtomicU64::new(0),
            base: Instant::now(),
            window,
            consecutive: AtomicU32::new(0),
            failed_probes: AtomicU32::new(0),
            times_opened: AtomicU64::new(0),
            changed_at: AtomicU64::new(0),
        }
    }

    /// The provider this breaker protects.
    #[must_use]
    pub fn provider(&self) -> &Arc<str> {
        &self.provider
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state. An open breaker whose `open_for` has passed still
    /// reads `Open` until a call probes it.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        state_of(code(self.state.load(Ordering::Acquire)))
    }

    /// Counts and state, for operators.
    #[must_use]
    pub fn stats(&self) -> BreakerStats {
        let window = match &self.window {
            WindowImpl::Count(w) => w.counts(),
            WindowImpl::Time(w) => w.counts(self.now_nanos()),
        };
        BreakerStats {
            state: self.state(),
            window,
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            times_opened: self.times_opened.load(Ordering::Relaxed),
            in_state_for: Duration::from_nanos(
                self.now_nanos()
                    .saturating_sub(self.changed_at.load(Ordering::Relaxed)),
            ),
        }
    }

    /// Continue `old` under new settings (a configuration reload changed
    /// them): keep its `times_opened` count and an
    /// operator's forced state (with the time it was forced). Automatic
    /// state and the window start afresh: counts taken under other
    /// thresholds would not mean the same thing.
    pub(crate) fn take_over(&mut self, old: &Self) {
        // The same time origin, so "since when" carries over.
        self.base = old.base;
        self.times_opened
            .store(old.times_opened.load(Ordering::Relaxed), Ordering::Relaxed);
        let forced = match old.state() {
            BreakerState::ForcedOpen => Some(FORCED_OPEN),
            BreakerState::ForcedClosed => Some(FORCED_CLOSED),
            _ => None,
        };
        let changed_at = match forced {
            Some(code) => {
                self.state.store(make(code, 0, 0, 0), Ordering::Release);
                old.changed_at.load(Ordering::Relaxed)
            }
            None => self.now_nanos(),
        };
        self.changed_at.store(changed_at, Ordering::Relaxed);
    }

    fn now_nanos(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.base)
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64
    }

    /// Ask to make a call.
    ///
    /// # Errors
    /// [`Rejected`] when the breaker is open (or forced open), or half-open
    /// with all probe slots taken.
    #[inline]
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_>, Rejected> {
        let word = self.state.load(Ordering::Acquire);
        if code(word) == CLOSED {
            return Ok(self.permit(generation(word), PermitKind::Normal));
        }
        self.acquire_contended(word)
    }

    const fn permit(&self, generation: u64, kind: PermitKind) -> BreakerPermit<'_> {
        let kind = match kind {
            PermitKind::Normal => 0,
            PermitKind::Probe => 1,
            PermitKind::Unrecorded => 2,
        };
        BreakerPermit {
            breaker: self,
            tag: (generation << KIND_BITS) | kind,
        }
    }

    #[cold]
    fn acquire_contended(&self, mut word: u64) -> Result<BreakerPermit<'_>, Rejected> {
        loop {
            let gen = generation(word);
            let next = match code(word) {
                CLOSED => return Ok(self.permit(gen, PermitKind::Normal)),
                FORCED_CLOSED => return Ok(self.permit(gen, PermitKind::Unrecorded)),
                FORCED_OPEN => return Err(Rejected { retry_in: None }),
                OPEN => {
                    let now = self.now_nanos();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Err(Rejected {
                            retry_in: Some(Duration::from_nanos(until - now)),
                        });
                    }
                    // Before the move, so a caller that finds the probes
                    // all out never reads an earlier half-open's start (a
                    // losing racer's store is as recent as the winner's).
                    self.half_open_since.store(now, Ordering::Release);
                    make(HALF_OPEN, 1, 0, gen + 1)
                }
                _ => {
                    if let Some(wait) = self.probes_all_out(word) {
                        return Err(Rejected { retry_in: wait });
                    }
                    make(HALF_OPEN, admitted(word) + 1, succeeded(word), gen)
                }
            };
            match self
                .state
                .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if code(word) == OPEN {
                        self.emit(
                            BreakerState::Open,
                            BreakerState::HalfOpen,
                            TransitionReason::OpenTimeElapsed,
                        );
                    }
                    return Ok(self.permit(generation(next), PermitKind::Probe));
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// In the half-open state `word`: `None` when a probe may go now;
    /// otherwise every probe is out, and `Some` wait until one more may go
    /// (`Some(None)`: not until a probe answers).
    ///
    /// A probe out for a whole probe interval without an answer does not
    /// hold recovery back: one more probe goes beside it, at most one per
    /// probe (so a provider that hangs gets twice the probes, not more),
    /// and the first `half_open_probes` successes close the breaker. A
    /// provider's answer time then delays the sight of its recovery by one
    /// probe interval at most. (A zero interval, which only unvalidated
    /// settings can have, doubles nothing.)
    #[allow(clippy::option_option)]
    fn probes_all_out(&self, word: u64) -> Option<Option<Duration>> {
        let probes = u64::from(self.config.half_open_probes);
        let out = admitted(word);
        if out < probes {
            return None;
        }
        let interval = u64::try_from(self.config.probe_interval().as_nanos()).unwrap_or(u64::MAX);
        let extra = out - probes + 1;
        if interval == 0 || extra > probes {
            return Some(None);
        }
        let due = self
            .half_open_since
            .load(Ordering::Acquire)
            .saturating_add(interval.saturating_mul(extra));
        let now = self.now_nanos();
        (now < due).then(|| Some(Duration::from_nanos(due - now)))
    }

    /// Report the outcome of an admitted call. `failed` is true for a
    /// provider failure (not for `Permanent` errors); `elapsed` is the call's
    /// duration when it was measured (a call that completed on its first
    /// poll is not measured, and is not slow).
    #[inline(always)]
    pub fn record(&self, permit: BreakerPermit<'_>, failed: bool, elapsed: Option<Duration>) {
        let permit = std::mem::ManuallyDrop::new(permit);
        let slow = match (self.config.slow_call, elapsed) {
            (Some(limit), Some(elapsed)) => elapsed > limit,
            _ => false,
        };
        // The healthy steady state: a success into a full count window that
        // holds no failure and no slow call, with no failure streak, changes
        // nothing (whatever generation admitted it).
        if !failed && !slow && permit.tag & KIND_MASK == 0 && self.healthy() {
            return;
        }
        self.record_outcome(permit.kind(), permit.generation(), failed, slow);
    }

    #[inline(always)]
    fn healthy(&self) -> bool {
        match &self.window {
            WindowImpl::Count(w) => {
                w.is_full_and_clean() && self.consecutive.load(Ordering::Relaxed) == 0
            }
            WindowImpl::Time(_) => false,
        }
    }

    #[inline(never)]
    fn record_outcome(&self, kind: PermitKind, generation: u64, failed: bool, slow: bool) {
        match kind {
            PermitKind::Normal => self.record_closed(generation, failed, slow),
            PermitKind::Probe => self.record_probe(generation, failed || slow),
            PermitKind::Unrecorded => {}
        }
    }

    /// Whether recording needs the duration of calls (a slow-call rule is
    /// set), so the driver knows whether to read the clock after a call.
    #[must_use]
    pub const fn measures_duration(&self) -> bool {
        self.config.slow_call.is_some()
    }

    #[inline]
    fn record_closed(&self, gen: u64, failed: bool, slow: bool) {
        let word = self.state.load(Ordering::Acquire);
        if code(word) != CLOSED || generation(word) != gen {
            return; // admitted before a transition: stale
        }
        let counts = match &self.window {
            WindowImpl::Count(w) => w.record(failed, slow),
            WindowImpl::Time(w) => w.record(self.now_nanos(), failed, slow),
        };
        let consecutive = if failed {
            self.consecutive
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1)
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            0
        };
        // A success is judged too: the call that brings the window to
        // `min_calls` (or one recorded after older calls left a time window)
        // may find the rate at the threshold. A window without failures or
        // slow calls cannot trip, so the healthy path still returns here.
        if !failed && !slow && counts.failures == 0 && counts.slow == 0 {
            return;
        }
        let judged = counts.calls >= u64::from(self.config.min_calls);
        let reason = if failed
            && self
                .config
                .consecutive_failures
                .is_some_and(|limit| consecutive >= limit)
        {
            TransitionReason::ConsecutiveFailures
        } else if judged && counts.failures * BILLION >= self.rate_ppb * counts.calls {
            TransitionReason::FailureRate
        } else if judged
            && self
                .slow_ppb
                .is_some_and(|ppb| counts.slow * BILLION >= ppb * counts.calls)
        {
            TransitionReason::SlowCallRate
        } else {
            return;
        };
        self.open_from(word, reason);
    }

    /// Open from `word`; false if the state word changed meanwhile.
    fn open_from(&self, word: u64, reason: TransitionReason) -> bool {
        let period = self.open_period(reason);
        let until = self
            .now_nanos()
            .saturating_add(u64::try_from(period.as_nanos()).unwrap_or(u64::MAX));
        self.open_until.store(until, Ordering::Release);
        let next = make(OPEN, 0, 0, generation(word) + 1);
        if self
            .state
            .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if reason == TransitionReason::ProbeFailed {
                self.failed_probes.fetch_add(1, Ordering::Relaxed);
            } else {
                self.failed_probes.store(0, Ordering::Relaxed);
            }
            self.times_opened.fetch_add(1, Ordering::Relaxed);
            self.emit(state_of(code(word)), BreakerState::Open, reason);
            return true;
        }
        false
    }

    /// How long the breaker stays open after a transition for `reason`:
    /// `open_for` after a trip from closed; after failed probes in a row,
    /// `probe_interval` doubled per earlier failed probe, up to
    /// `max_probe_interval`.
    fn open_period(&self, reason: TransitionReason) -> Duration {
        if reason != TransitionReason::ProbeFailed {
            return self.config.open_for;
        }
        let failed = self.failed_probes.load(Ordering::Relaxed).min(63);
        let base = self.config.probe_interval();
        let max = self.config.max_probe_interval();
        base.checked_mul(1u32 << failed.min(31))
            .map_or(max, |d| d.min(max))
    }

    /// When an open breaker admits its next probe; `None` unless open.
    #[must_use]
    pub fn next_probe_in(&self) -> Option<Duration> {
        let word = self.state.load(Ordering::Acquire);
        if code(word) != OPEN {
            return None;
        }
        let until = self.open_until.load(Ordering::Acquire);
        Some(Duration::from_nanos(until.saturating_sub(self.now_nanos())))
    }

    fn record_probe(&self, gen: u64, failed: bool) {
        let mut word = self.state.load(Ordering::Acquire);
        loop {
            if code(word) != HALF_OPEN || generation(word) != gen {
                return;
            }
            if failed {
                // Other probes being admitted or released change the word
                // too; try again rather than lose the failure.
                if self.open_from(word, TransitionReason::ProbeFailed) {
                    return;
                }
                word = self.state.load(Ordering::Acquire);
                continue;
            }
            let done = succeeded(word) + 1;
            let next = if done >= u64::from(self.config.half_open_probes) {
                // Only probes run now, and they do not feed the window.
                self.clear_window();
                make(CLOSED, 0, 0, gen + 1)
            } else {
                make(HALF_OPEN, admitted(word), done, gen)
            };
            match self
                .state
                .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if code(next) == CLOSED {
                        self.emit(
                            BreakerState::HalfOpen,
                            BreakerState::Closed,
                            TransitionReason::ProbesSucceeded,
                        );
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    fn release_probe(&self, gen: u64) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (code(word) == HALF_OPEN && generation(word) == gen && admitted(word) > 0)
                    .then(|| make(HALF_OPEN, admitted(word) - 1, succeeded(word), gen))
            });
    }

    fn clear_window(&self) {
        match &self.window {
            WindowImpl::Count(w) => w.reset(),
            WindowImpl::Time(w) => w.reset(),
        }
        self.consecutive.store(0, Ordering::Relaxed);
        self.failed_probes.store(0, Ordering::Relaxed);
    }

    fn set(&self, to: u64) {
        let old = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                Some(make(to, 0, 0, generation(word) + 1))
            })
            .unwrap_or_else(|w| w);
        self.emit(
            state_of(code(old)),
            state_of(to),
            TransitionReason::Operator,
        );
    }

    /// Reject every call until [`reset`](Self::reset) or
    /// [`force_closed`](Self::force_closed).
    pub fn force_open(&self) {
        self.set(FORCED_OPEN);
    }

    /// Admit every call and record nothing until [`reset`](Self::reset) or
    /// [`force_open`](Self::force_open).
    pub fn force_closed(&self) {
        self.set(FORCED_CLOSED);
    }

    /// Back to closed with an empty window.
    pub fn reset(&self) {
        self.clear_window();
        self.set(CLOSED);
    }

    fn emit(&self, from: BreakerState, to: BreakerState, reason: TransitionReason) {
        self.changed_at.store(self.now_nanos(), Ordering::Relaxed);
        let provider: &str = &self.provider;
        if to == BreakerState::Open {
            tracing::warn!(provider, from = from.as_str(), to = to.as_str(), reason = ?reason, "circuit breaker opened");
        } else {
            tracing::info!(provider, from = from.as_str(), to = to.as_str(), reason = ?reason, "circuit breaker state changed");
        }
        // The one channel out: `events::subscribe` (the metrics gauge
        // listens there too).
        crate::events::emit(&crate::events::PolicyEvent::BreakerTransition {
            provider,
            from,
            to,
            reason,
        });
    }
}
