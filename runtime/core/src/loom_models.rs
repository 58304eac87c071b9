//! Model checking of the lock-free state with loom: every interleaving of
//! a few threads (up to loom's bound on preemptions), on the real code,
//! whose atomics come from loom under `--cfg buttress_loom`
//! ([`crate::sync::atomic`]).
//!
//! Run with `scripts/loom` (CI does). Each model states the invariant the
//! structure documents, and fails on code that breaks it.

use std::time::Duration;

use loom::sync::atomic::AtomicUsize;
use loom::sync::atomic::Ordering::SeqCst;
use loom::sync::Arc;
use loom::thread;

use crate::breaker::{Breaker, BreakerConfig, BreakerState, PermitKind};
use crate::budget::{BudgetConfig, RetryBudget};
use crate::bulkhead::{Bulkhead, BulkheadConfig};
use crate::rate_limit::{Admission, LimiterClock, RateLimitConfig, RateLimiter};
use crate::retry::RetryConfig;
use crate::site::Site;
use crate::{Error, PolicyConfig, Registry};

/// Loom's default bound on preemptions keeps each model to seconds while
/// covering the interleavings that matter (two preemptions find nearly
/// all real concurrency bugs); `LOOM_MAX_PREEMPTIONS` overrides it.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// `n` loom threads running `f(i)`, joined: their results in order.
fn in_threads<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            thread::spawn(move || f(i))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// A caller that takes a slot if it can, and checks that no more than
/// `max` callers hold one while it does.
fn hold_a_slot(bulkhead: &Bulkhead, holding: &AtomicUsize, max: usize) {
    if let Some(permit) = bulkhead.try_acquire() {
        let now = holding.fetch_add(1, SeqCst) + 1;
        assert!(
            now <= max,
            "{now} callers hold a slot of a bulkhead of {max}"
        );
        holding.fetch_sub(1, SeqCst);
        drop(permit);
    }
}

// ---------------------------------------------------------------------------
// Retry budget: tokens are conserved.

/// Two retries race for the budget's one token while a first attempt
/// deposits: exactly one retry gets the token, the deposit lands only
/// below the cap, and the balance is what the operations that happened
/// leave (nothing created, nothing lost).
#[test]
fn budget_tokens_are_conserved() {
    model(|| {
        let budget = Arc::new(RetryBudget::new(
            BudgetConfig::new().with_cap(1).with_ratio(0.5),
        ));
        let b = budget.clone();
        // Two retries and a first attempt's deposit.
        let won = in_threads(3, move |i| {
            if i < 2 {
                b.try_withdraw()
            } else {
                b.deposit();
                false
            }
        })
        .into_iter()
        .filter(|&w| w)
        .count();
        let left = budget.tokens();
        // One whole token at the start, half a token deposited at most
        // (and only once the balance is below the cap of one).
        assert_eq!(won, 1, "exactly one retry takes the one token");
        assert!(
            left == 0.0 || left == 0.5,
            "balance {left}: tokens were created or lost"
        );
    });
}

/// Withdrawals never take the balance below zero, whatever their order.
#[test]
fn budget_never_overdraws() {
    model(|| {
        let budget = Arc::new(RetryBudget::new(BudgetConfig::new().with_cap(2)));
        let b = budget.clone();
        let won = in_threads(3, move |_| b.try_withdraw())
            .into_iter()
            .filter(|&w| w)
            .count();
        assert_eq!(won, 2);
        assert_eq!(budget.tokens(), 0.0);
    });
}

// ---------------------------------------------------------------------------
// Bulkhead: never over its limit, never leaks a permit.

/// Callers race for one slot; at no instant do two of them hold it, and
/// once every permit is dropped the bulkhead is empty.
#[test]
fn bulkhead_never_exceeds_its_limit_nor_leaks() {
    model(|| {
        let bulkhead = Arc::new(Bulkhead::new(BulkheadConfig::new().with_max_concurrent(1)));
        let holding = Arc::new(AtomicUsize::new(0));
        let (b, h) = (bulkhead.clone(), holding);
        in_threads(2, move |_| hold_a_slot(&b, &h, 1));
        assert_eq!(bulkhead.in_flight(), 0, "a permit leaked");
    });
}

/// A reload that lowers the limit while callers take slots: the callers
/// in flight never exceed the larger of the two limits, and the slots all
/// come back.
#[test]
fn bulkhead_reload_keeps_the_count() {
    model(|| {
        let bulkhead = Arc::new(Bulkhead::new(BulkheadConfig::new().with_max_concurrent(2)));
        let holding = Arc::new(AtomicUsize::new(0));
        let callers = {
            let (b, h) = (bulkhead.clone(), holding);
            thread::spawn(move || in_threads(2, move |_| hold_a_slot(&b, &h, 2)))
        };
        let reloader = {
            let bulkhead = bulkhead.clone();
            thread::spawn(move || {
                bulkhead.reconfigure(BulkheadConfig::new().with_max_concurrent(1));
            })
        };
        callers.join().unwrap();
        reloader.join().unwrap();
        assert_eq!(bulkhead.in_flight(), 0, "a permit leaked across the reload");
        // After the reload, the new limit holds.
        let first = bulkhead.try_acquire();
        assert!(first.is_some());
        assert!(bulkhead.try_acquire().is_none(), "the new limit of 1 holds");
    });
}

// ---------------------------------------------------------------------------
// Breaker: no lost or duplicated half-open probe.

/// A breaker that opens at the first failure and probes at once
/// (`open_for` zero), so a model starts it open.
fn open_breaker(probes: u32) -> Breaker {
    let breaker = Breaker::new(
        "loom",
        BreakerConfig::new()
            .with_consecutive_failures(1)
            .with_min_calls(1)
            .with_open_for(Duration::ZERO)
            .with_probe_interval(Duration::ZERO)
            .with_max_probe_interval(Duration::ZERO)
            .with_half_open_probes(probes),
    );
    let permit = breaker.try_acquire().expect("closed");
    breaker.record(permit, true, None);
    assert_eq!(breaker.state(), BreakerState::Open);
    breaker
}

/// Three callers race for two probe slots: never more than two probes at
/// once, and when the probes succeed the breaker closes. No interleaving
/// leaves it half-open with a slot nobody holds.
#[test]
fn breaker_admits_at_most_its_probes_and_closes_on_their_success() {
    model(|| {
        let breaker = Arc::new(open_breaker(2));
        let probing = Arc::new(AtomicUsize::new(0));
        let b = breaker.clone();
        in_threads(3, move |_| {
            if let Ok(permit) = b.try_acquire() {
                if permit.kind() == PermitKind::Probe {
                    let now = probing.fetch_add(1, SeqCst) + 1;
                    assert!(now <= 2, "{now} probes at once, 2 allowed");
                    probing.fetch_sub(1, SeqCst);
                }
                b.record(permit, false, None);
            }
        });
        // Every caller that was refused was refused because two probes
        // were out; both succeeded, so the breaker closed.
        assert_eq!(breaker.state(), BreakerState::Closed);
    });
}

/// A probe whose call is dropped before it reports (a cancelled future)
/// gives its slot back: a later caller can probe, and the breaker is
/// never stuck half-open.
#[test]
fn breaker_dropped_probe_is_not_lost() {
    model(|| {
        let breaker = Arc::new(open_breaker(1));
        let dropper = {
            let breaker = breaker.clone();
            thread::spawn(move || {
                if let Ok(permit) = breaker.try_acquire() {
                    drop(permit); // cancelled mid-call
                }
            })
        };
        let prober = {
            let breaker = breaker.clone();
            thread::spawn(move || match breaker.try_acquire() {
                Ok(permit) => {
                    breaker.record(permit, false, None);
                    true
                }
                Err(_) => false,
            })
        };
        dropper.join().unwrap();
        let probed = prober.join().unwrap();
        if !probed {
            // The slot the dropped probe held must be free again.
            let permit = breaker
                .try_acquire()
                .expect("the dropped probe's slot is free again");
            assert_eq!(permit.kind(), PermitKind::Probe);
            breaker.record(permit, false, None);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    });
}

/// A failed probe and a successful one race: the failure is never lost
/// (the breaker reopens, or the success closed it first and the stale
/// failure of the older generation is ignored), and the breaker is never
/// left half-open with no probe out.
#[test]
fn breaker_failed_probe_is_not_lost() {
    model(|| {
        let breaker = Arc::new(open_breaker(2));
        let outcomes: Vec<_> = [true, false]
            .into_iter()
            .map(|failed| {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    breaker.try_acquire().is_ok_and(|permit| {
                        breaker.record(permit, failed, None);
                        true
                    })
                })
            })
            .collect();
        let ran: Vec<bool> = outcomes.into_iter().map(|t| t.join().unwrap()).collect();
        let state = breaker.state();
        if ran[0] {
            // The failing probe ran: one success alone cannot close a
            // breaker that needs two, so the failure reopened it (or left
            // it half-open for the next probes if its generation passed).
            assert_ne!(state, BreakerState::Closed, "a failed probe was lost");
        }
        if state == BreakerState::HalfOpen {
            // Half-open only with free slots: a new caller can probe.
            assert!(breaker.try_acquire().is_ok(), "stuck half-open");
        }
    });
}

// ---------------------------------------------------------------------------
// Rate limiter: GCRA never admits more than its burst at one instant.

/// Three callers at the same instant against a burst of two: exactly two
/// go now, the third is refused (no wait allowed), whatever the order.
#[test]
fn gcra_never_admits_more_than_its_burst() {
    model(|| {
        let limiter = Arc::new(RateLimiter::new(
            RateLimitConfig::new()
                .with_per_second(1)
                .with_burst(2)
                .with_clock(LimiterClock::Precise),
        ));
        let now = tokio::time::Instant::now();
        let admitted = in_threads(3, move |_| {
            matches!(limiter.acquire_at(now, Duration::ZERO), Ok(Admission::Now))
        })
        .into_iter()
        .filter(|&a| a)
        .count();
        assert_eq!(admitted, 2);
    });
}

/// Callers that may wait each reserve their own slot: no two are given the
/// same slot (the waits are all different), and the spacing holds.
#[test]
fn gcra_reservations_are_distinct() {
    model(|| {
        let limiter = Arc::new(RateLimiter::new(
            RateLimitConfig::new()
                .with_per_second(10)
                .with_burst(1)
                .with_clock(LimiterClock::Precise),
        ));
        let now = tokio::time::Instant::now();
        let mut waits = in_threads(3, move |_| {
            match limiter.acquire_at(now, Duration::from_secs(1)) {
                Ok(Admission::Now) => Duration::ZERO,
                Ok(Admission::After(wait)) => wait,
                Err(wait) => panic!("refused a wait of {wait:?} within a second"),
            }
        });
        waits.sort();
        assert_eq!(
            waits,
            [
                Duration::ZERO,
                Duration::from_millis(100),
                Duration::from_millis(200)
            ]
        );
    });
}

// ---------------------------------------------------------------------------
// Call-site cache: never a stale policy after a change, never a freed one.

fn op_config(timeout_ms: u64) -> PolicyConfig {
    PolicyConfig::named("loom", "op")
        .with_timeout(Some(Duration::from_millis(timeout_ms)))
        .with_retry(RetryConfig::off())
}

/// A policy is defined while a call starts at the call site. The call runs
/// under the old policy or the new one, whole; once the definition has
/// returned, every new call runs under the new one; and the replaced
/// policy is freed once no call holds it (the call site keeps only the
/// policy in force).
#[test]
fn site_hands_out_the_policy_in_force_and_frees_the_replaced_one() {
    model(|| {
        let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
        let site: &'static Site =
            Box::leak(Box::new(Site::with_name(Some("loom-op"), op_config(100))));
        let first = site.call_in::<(), Error>(registry).unwrap();
        let old = std::sync::Arc::downgrade(&first.policy_arc());
        drop(first);
        let definer = thread::spawn(move || {
            registry.define_policy("loom-op", op_config(200)).unwrap();
        });
        let caller = thread::spawn(move || {
            let call = site.call_in::<(), Error>(registry).unwrap();
            call.policy_inner().config.timeout
        });
        definer.join().unwrap();
        let seen = caller.join().unwrap();
        assert!(
            seen == Some(Duration::from_millis(100)) || seen == Some(Duration::from_millis(200)),
            "a call ran under {seen:?}, neither the old policy nor the new"
        );
        let call = site.call_in::<(), Error>(registry).unwrap();
        assert_eq!(
            call.policy_inner().config.timeout,
            Some(Duration::from_millis(200)),
            "a call that started after the definition ran under the old policy"
        );
        drop(call);
        assert!(
            old.upgrade().is_none(),
            "the replaced policy is still alive with no call holding it"
        );
    });
}
