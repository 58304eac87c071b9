//! The circuit breaker against a reference model, over random operation
//! sequences and random valid configurations.
//!
//! The model is the contract written out as plainly as possible: a
//! `VecDeque` of the last outcomes, a state enum, an `open_until` time and
//! two probe counters, with exact rational arithmetic for the rates. After
//! every operation the real breaker must agree with it on the state, on the
//! admission decision (admitted or rejected, probe or not, `retry_in`), on
//! the window counts and on the transition events.
//!
//! The breaker runs synchronously on a paused tokio clock, so every case is
//! deterministic. `sequential_calls_match_the_model` makes one call at a
//! time; `held_permits_match_the_model` also keeps permits out across other
//! operations (the single-threaded interleavings of concurrent calls).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress::breaker::{
    Breaker, BreakerConfig, BreakerPermit, PermitKind, TransitionReason, Window, WindowCounts,
};
use buttress::BreakerState;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

/// The slow-call limit of every config with a slow rule.
const SLOW_CALL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Configs and operations
// ---------------------------------------------------------------------------

/// A rate as an exact fraction `num / den`.
#[derive(Debug, Clone, Copy)]
struct Rate {
    num: u64,
    den: u64,
}

impl Rate {
    fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// `part / whole >= num / den`, exactly.
    const fn reached(self, part: u64, whole: u64) -> bool {
        part * self.den >= self.num * whole
    }
}

#[derive(Debug, Clone, Copy)]
struct Cfg {
    window: u32,
    min_calls: u32,
    failure_rate: Rate,
    slow_rate: Option<Rate>,
    consecutive: Option<u32>,
    probes: u32,
    open_for: Duration,
}

impl Cfg {
    fn breaker_config(&self) -> BreakerConfig {
        let mut config = BreakerConfig::new()
            .with_window(Window::Count(self.window))
            .with_min_calls(self.min_calls)
            .with_failure_rate(self.failure_rate.as_f64())
            .with_half_open_probes(self.probes)
            .with_open_for(self.open_for);
        if let Some(rate) = self.slow_rate {
            config = config.with_slow_calls(rate.as_f64(), SLOW_CALL);
        }
        if let Some(n) = self.consecutive {
            config = config.with_consecutive_failures(n);
        }
        config
    }
}

/// Rates as users write them: short decimals. (The breaker judges rates in
/// millionths, so a rate like `2.0 / 3.0` acts as 0.666667; decimals with at
/// most six digits are exact both ways.)
fn rate() -> impl Strategy<Value = Rate> {
    prop::sample::select(vec![
        (1, 10),
        (1, 4),
        (3, 10),
        (33, 100),
        (1, 2),
        (3, 5),
        (67, 100),
        (7, 10),
        (1, 1),
    ])
    .prop_map(|(num, den)| Rate { num, den })
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (1u32..=20)
        .prop_flat_map(|window| {
            (
                Just(window),
                1..=window,
                rate(),
                prop::option::weighted(0.4, rate()),
                prop::option::weighted(0.4, 1u32..=6),
                1u32..=3,
                prop::sample::select(vec![1u64, 10, 250, 1000]),
            )
        })
        .prop_map(
            |(window, min_calls, failure_rate, slow_rate, consecutive, probes, open_for_ms)| Cfg {
                window,
                min_calls,
                failure_rate,
                slow_rate,
                consecutive,
                probes,
                open_for: Duration::from_millis(open_for_ms),
            },
        )
}

/// How an admitted call ends.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Success, ready at once (duration not measured).
    Ok,
    /// Success that took exactly `slow_call` (not slow).
    OkAtLimit,
    /// Success that took longer than `slow_call`.
    SlowOk,
    /// `Transient` / `RateLimited` / `OutcomeUnknown`: a provider failure.
    Transient,
    /// A provider failure that was also slow.
    SlowTransient,
    /// `Permanent`: counts as a success.
    Permanent,
}

impl Outcome {
    /// What the call driver reports: `(failed, elapsed)`.
    const fn report(self) -> (bool, Option<Duration>) {
        const JUST_OVER: Duration = SLOW_CALL.saturating_add(Duration::from_nanos(1));
        match self {
            Self::Ok => (false, None),
            Self::OkAtLimit => (false, Some(SLOW_CALL)),
            Self::SlowOk => (false, Some(JUST_OVER)),
            Self::Transient => (true, Some(Duration::from_millis(3))),
            Self::SlowTransient => (true, Some(Duration::from_secs(2))),
            Self::Permanent => (false, Some(Duration::from_millis(1))),
        }
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Ok),
        1 => Just(Outcome::OkAtLimit),
        2 => Just(Outcome::SlowOk),
        4 => Just(Outcome::Transient),
        1 => Just(Outcome::SlowTransient),
        2 => Just(Outcome::Permanent),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    /// Acquire and, if admitted, record the outcome at once.
    Call(Outcome),
    /// Acquire and, if admitted, drop the permit unreported (cancelled).
    Cancelled,
    /// Acquire and, if admitted, keep the permit out.
    Begin,
    /// Record the outcome of a held permit.
    Finish(Index, Outcome),
    /// Drop a held permit unreported.
    Abandon(Index),
    /// Let time pass.
    Advance(Duration),
    ForceOpen,
    ForceClosed,
    Reset,
}

fn advance(open_for: Duration) -> impl Strategy<Value = Op> {
    let nanos = |d: Duration| d.as_nanos() as u64;
    let open_for_ns = nanos(open_for);
    prop_oneof![
        (0u64..=open_for_ns / 2).prop_map(Duration::from_nanos),
        Just(open_for),
        Just(open_for - Duration::from_nanos(1)),
        Just(Duration::from_nanos(1)),
        (0u64..=3 * open_for_ns).prop_map(Duration::from_nanos),
    ]
    .prop_map(Op::Advance)
}

fn sequential_ops(open_for: Duration) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        20 => outcome().prop_map(Op::Call),
        2 => Just(Op::Cancelled),
        5 => advance(open_for),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::ForceClosed),
        1 => Just(Op::Reset),
    ];
    prop::collection::vec(op, 1..150)
}

fn interleaved_ops(open_for: Duration) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        10 => outcome().prop_map(Op::Call),
        1 => Just(Op::Cancelled),
        6 => Just(Op::Begin),
        6 => (any::<Index>(), outcome()).prop_map(|(i, o)| Op::Finish(i, o)),
        2 => any::<Index>().prop_map(Op::Abandon),
        4 => advance(open_for),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::ForceClosed),
        1 => Just(Op::Reset),
    ];
    prop::collection::vec(op, 1..150)
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

type Transition = (BreakerState, BreakerState, TransitionReason);

/// A permit as the model sees it: what it was admitted as, and in which
/// state epoch (an outcome from an earlier epoch no longer counts).
#[derive(Debug, Clone, Copy)]
struct ModelPermit {
    kind: PermitKind,
    epoch: u64,
}

#[derive(Debug)]
struct Model {
    cfg: Cfg,
    state: BreakerState,
    /// Bumped on every transition.
    epoch: u64,
    /// The last `cfg.window` recorded outcomes: `(failed, slow)`.
    window: VecDeque<(bool, bool)>,
    consecutive: u32,
    open_until: Duration,
    /// When the breaker last went half-open.
    half_open_since: Duration,
    probes_out: u32,
    probes_succeeded: u32,
    times_opened: u64,
    events: Vec<Transition>,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Self {
            cfg,
            state: BreakerState::Closed,
            epoch: 0,
            window: VecDeque::new(),
            consecutive: 0,
            open_until: Duration::ZERO,
            half_open_since: Duration::ZERO,
            probes_out: 0,
            probes_succeeded: 0,
            times_opened: 0,
            events: Vec::new(),
        }
    }

    fn go(&mut self, to: BreakerState, reason: TransitionReason) {
        if self.state != to {
            self.events.push((self.state, to, reason));
        }
        self.state = to;
        self.epoch += 1;
        self.probes_out = 0;
        self.probes_succeeded = 0;
    }

    fn clear_window(&mut self) {
        self.window.clear();
        self.consecutive = 0;
    }

    fn open(&mut self, now: Duration, reason: TransitionReason) {
        self.open_until = now + self.cfg.open_for;
        self.times_opened += 1;
        self.go(BreakerState::Open, reason);
    }

    /// Admission: a permit, or a rejection with its `retry_in`.
    fn acquire(&mut self, now: Duration) -> Result<ModelPermit, Option<Duration>> {
        let kind = match self.state {
            BreakerState::Closed => PermitKind::Normal,
            BreakerState::ForcedClosed => PermitKind::Unrecorded,
            BreakerState::ForcedOpen => return Err(None),
            BreakerState::Open if now < self.open_until => {
                return Err(Some(self.open_until - now));
            }
            BreakerState::Open => {
                self.go(BreakerState::HalfOpen, TransitionReason::OpenTimeElapsed);
                self.half_open_since = now;
                self.probes_out = 1;
                PermitKind::Probe
            }
            // Every probe out: one more beside each probe that has been out
            // for a whole probe interval (here `open_for`), never more.
            BreakerState::HalfOpen if self.probes_out >= self.cfg.probes => {
                let extra = self.probes_out - self.cfg.probes + 1;
                if extra > self.cfg.probes {
                    return Err(None);
                }
                let due = self.half_open_since + self.cfg.open_for * extra;
                if now < due {
                    return Err(Some(due - now));
                }
                self.probes_out += 1;
                PermitKind::Probe
            }
            BreakerState::HalfOpen => {
                self.probes_out += 1;
                PermitKind::Probe
            }
        };
        Ok(ModelPermit {
            kind,
            epoch: self.epoch,
        })
    }

    fn record(
        &mut self,
        permit: ModelPermit,
        failed: bool,
        elapsed: Option<Duration>,
        now: Duration,
    ) {
        let slow = self.cfg.slow_rate.is_some() && elapsed.is_some_and(|e| e > SLOW_CALL);
        match permit.kind {
            PermitKind::Unrecorded => {}
            PermitKind::Normal => {
                if self.state != BreakerState::Closed || permit.epoch != self.epoch {
                    return;
                }
                if self.window.len() == self.cfg.window as usize {
                    self.window.pop_front();
                }
                self.window.push_back((failed, slow));
                self.consecutive = if failed { self.consecutive + 1 } else { 0 };

                let calls = self.window.len() as u64;
                let failures = self.window.iter().filter(|(f, _)| *f).count() as u64;
                let slows = self.window.iter().filter(|(_, s)| *s).count() as u64;
                let judged = calls >= u64::from(self.cfg.min_calls);
                if self.cfg.consecutive.is_some_and(|n| self.consecutive >= n) {
                    self.open(now, TransitionReason::ConsecutiveFailures);
                } else if judged && self.cfg.failure_rate.reached(failures, calls) {
                    self.open(now, TransitionReason::FailureRate);
                } else if judged && self.cfg.slow_rate.is_some_and(|r| r.reached(slows, calls)) {
                    self.open(now, TransitionReason::SlowCallRate);
                }
            }
            PermitKind::Probe => {
                if self.state != BreakerState::HalfOpen || permit.epoch != self.epoch {
                    return;
                }
                if failed || slow {
                    self.open(now, TransitionReason::ProbeFailed);
                    return;
                }
                self.probes_succeeded += 1;
                if self.probes_succeeded >= self.cfg.probes {
                    self.clear_window();
                    self.go(BreakerState::Closed, TransitionReason::ProbesSucceeded);
                }
            }
        }
    }

    /// A permit dropped unreported.
    fn abandon(&mut self, permit: ModelPermit) {
        if permit.kind == PermitKind::Probe
            && self.state == BreakerState::HalfOpen
            && permit.epoch == self.epoch
        {
            self.probes_out -= 1;
        }
    }

    fn counts(&self) -> WindowCounts {
        WindowCounts {
            calls: self.window.len() as u64,
            failures: self.window.iter().filter(|(f, _)| *f).count() as u64,
            slow: self.window.iter().filter(|(_, s)| *s).count() as u64,
        }
    }
}

// ---------------------------------------------------------------------------
// Driving both
// ---------------------------------------------------------------------------

/// Run `ops` on a fresh breaker and model; the final state.
fn run(cfg: Cfg, ops: &[Op]) -> Result<BreakerState, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(check(cfg, ops))
}

/// Acquire on both; they must agree. Returns the pair of permits if admitted.
fn acquire<'b>(
    breaker: &'b Breaker,
    model: &mut Model,
    now: Duration,
    step: usize,
) -> Result<Option<(BreakerPermit<'b>, ModelPermit)>, TestCaseError> {
    match (breaker.try_acquire(), model.acquire(now)) {
        (Ok(permit), Ok(expected)) => {
            prop_assert_eq!(permit.kind(), expected.kind, "step {}: permit kind", step);
            Ok(Some((permit, expected)))
        }
        (Err(rejected), Err(retry_in)) => {
            prop_assert_eq!(rejected.retry_in, retry_in, "step {}: retry_in", step);
            Ok(None)
        }
        (real, expected) => Err(TestCaseError::fail(format!(
            "step {step}: breaker said {real:?}, model said {expected:?} (state {:?})",
            model.state
        ))),
    }
}

async fn check(cfg: Cfg, ops: &[Op]) -> Result<BreakerState, TestCaseError> {
    let config = cfg.breaker_config();
    prop_assert!(
        config.validate().is_ok(),
        "generated config must be valid: {:?}",
        config
    );
    // A name of its own: transitions arrive through the process-wide
    // events channel, which other cases running at once also use.
    static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "model-{}",
        CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let breaker = Breaker::new(name.as_str(), config);
    let seen: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let _subscription = buttress::events::subscribe(move |event| {
        if let buttress::events::PolicyEvent::BreakerTransition {
            provider,
            from,
            to,
            reason,
        } = event
        {
            if *provider == name && from != to {
                sink.lock().unwrap().push((*from, *to, *reason));
            }
        }
    });
    let mut model = Model::new(cfg);
    let mut now = Duration::ZERO;
    let mut held: Vec<(BreakerPermit<'_>, ModelPermit)> = Vec::new();

    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Call(outcome) => {
                if let Some((permit, expected)) = acquire(&breaker, &mut model, now, step)? {
                    let (failed, elapsed) = outcome.report();
                    breaker.record(permit, failed, elapsed);
                    model.record(expected, failed, elapsed, now);
                }
            }
            Op::Cancelled => {
                if let Some((permit, expected)) = acquire(&breaker, &mut model, now, step)? {
                    drop(permit);
                    model.abandon(expected);
                }
            }
            Op::Begin => {
                if let Some(pair) = acquire(&breaker, &mut model, now, step)? {
                    held.push(pair);
                }
            }
            Op::Finish(index, outcome) => {
                if !held.is_empty() {
                    let (permit, expected) = held.remove(index.index(held.len()));
                    let (failed, elapsed) = outcome.report();
                    breaker.record(permit, failed, elapsed);
                    model.record(expected, failed, elapsed, now);
                }
            }
            Op::Abandon(index) => {
                if !held.is_empty() {
                    let (permit, expected) = held.remove(index.index(held.len()));
                    drop(permit);
                    model.abandon(expected);
                }
            }
            Op::Advance(d) => {
                tokio::time::advance(*d).await;
                now += *d;
            }
            Op::ForceOpen => {
                breaker.force_open();
                model.go(BreakerState::ForcedOpen, TransitionReason::Operator);
            }
            Op::ForceClosed => {
                breaker.force_closed();
                model.go(BreakerState::ForcedClosed, TransitionReason::Operator);
            }
            Op::Reset => {
                breaker.reset();
                model.clear_window();
                model.go(BreakerState::Closed, TransitionReason::Operator);
            }
        }
        compare(&breaker, &model, &seen, step, op)?;
    }

    // Whatever is still out is cancelled.
    while let Some((permit, expected)) = held.pop() {
        drop(permit);
        model.abandon(expected);
        compare(&breaker, &model, &seen, ops.len(), &"drop of a held permit")?;
    }
    Ok(model.state)
}

fn compare(
    breaker: &Breaker,
    model: &Model,
    seen: &Mutex<Vec<Transition>>,
    step: usize,
    op: &dyn std::fmt::Debug,
) -> Result<(), TestCaseError> {
    let stats = breaker.stats();
    prop_assert_eq!(stats.state, model.state, "step {} ({:?}): state", step, op);
    prop_assert_eq!(
        breaker.state(),
        model.state,
        "step {} ({:?}): state()",
        step,
        op
    );
    prop_assert_eq!(
        stats.window,
        model.counts(),
        "step {} ({:?}): window",
        step,
        op
    );
    prop_assert_eq!(
        stats.consecutive_failures,
        model.consecutive,
        "step {} ({:?}): consecutive failures",
        step,
        op
    );
    prop_assert_eq!(
        stats.times_opened,
        model.times_opened,
        "step {} ({:?}): times opened",
        step,
        op
    );
    let seen = seen.lock().unwrap();
    prop_assert_eq!(
        &*seen,
        &model.events,
        "step {} ({:?}): transition events",
        step,
        op
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sequential_calls_match_the_model(
        (cfg, ops) in cfg().prop_flat_map(|cfg| (Just(cfg), sequential_ops(cfg.open_for)))
    ) {
        run(cfg, &ops)?;
    }

    #[test]
    fn held_permits_match_the_model(
        (cfg, ops) in cfg().prop_flat_map(|cfg| (Just(cfg), interleaved_ops(cfg.open_for)))
    ) {
        run(cfg, &ops)?;
    }
}

/// The cases the contract spells out, pinned so they run on every build
/// whatever the random generator picks (both sides must agree, and on this).
#[test]
fn contract_examples_match_the_model() {
    let base = Cfg {
        window: 4,
        min_calls: 4,
        failure_rate: Rate { num: 1, den: 2 },
        slow_rate: None,
        consecutive: None,
        probes: 2,
        open_for: Duration::from_millis(10),
    };
    let t = Op::Call(Outcome::Transient);
    let s = Op::Call(Outcome::Ok);
    // 2 failures of 4 at 0.5, in either order.
    let open = BreakerState::Open;
    assert_eq!(
        run(base, &[s.clone(), t.clone(), s.clone(), t.clone()]).unwrap(),
        open
    );
    assert_eq!(
        run(base, &[t.clone(), t.clone(), s.clone(), s.clone()]).unwrap(),
        open
    );
    assert_eq!(
        run(base, &[t.clone(), s.clone(), s.clone(), s.clone()]).unwrap(),
        BreakerState::Closed
    );
    // 3 failures of 10 at 0.3.
    let point_three = Cfg {
        window: 10,
        min_calls: 10,
        failure_rate: Rate { num: 3, den: 10 },
        ..base
    };
    let mut ops = vec![s.clone(); 7];
    ops.extend([t.clone(), t.clone()]);
    assert_eq!(run(point_three, &ops).unwrap(), BreakerState::Closed);
    ops.push(t);
    assert_eq!(run(point_three, &ops).unwrap(), open);
}
