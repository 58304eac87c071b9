//! Recovery at the provider's pace, on tokio's paused clock: the
//! provider-wide cooldown, waiting inside the deadline, the bounded
//! earliest-deadline-first queue, the adaptive probe interval, slow start
//! after recovery and the learned quota.
//!
//! Every test builds its policies in a private [`Registry`], so no two tests
//! share a provider.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress::breaker::{BreakerConfig, Window};
use buttress::recovery::RecoveryConfig;
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{BreakerState, Classify, Error, ErrorClass, Policy, Registry};
use tokio::time::Instant;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug, Clone)]
enum Fail {
    Unavailable,
    Throttled(Option<Duration>),
    Buttress(Error),
}

impl Classify for Fail {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable => ErrorClass::Transient,
            Self::Throttled(_) => ErrorClass::RateLimited,
            Self::Buttress(e) => e.class(),
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled(after) => *after,
            _ => None,
        }
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Self::Buttress(e)
    }
}

/// A fake provider: what it answers at an instant, and when it was called.
#[derive(Clone)]
struct Provider {
    calls: Arc<Mutex<Vec<(Instant, &'static str)>>>,
    accepted: Arc<Mutex<Vec<Instant>>>,
    answer: Arc<dyn Fn(Instant) -> Result<(), Fail> + Send + Sync>,
}

impl Provider {
    fn new(answer: impl Fn(Instant) -> Result<(), Fail> + Send + Sync + 'static) -> Self {
        Self {
            calls: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(Mutex::new(Vec::new())),
            answer: Arc::new(answer),
        }
    }

    async fn call(&self, who: &'static str) -> Result<(), Fail> {
        let now = Instant::now();
        self.calls.lock().unwrap().push((now, who));
        // A provider answers after a short latency.
        tokio::time::sleep(ms(5)).await;
        let answer = (self.answer)(now);
        if answer.is_ok() {
            self.accepted.lock().unwrap().push(now);
        }
        answer
    }

    fn accepted_between(&self, from: Instant, to: Instant) -> usize {
        let accepted = self.accepted.lock().unwrap();
        accepted.iter().filter(|t| **t >= from && **t < to).count()
    }

    fn calls(&self) -> Vec<(Instant, &'static str)> {
        self.calls.lock().unwrap().clone()
    }

    fn count_between(&self, from: Instant, to: Instant) -> usize {
        self.calls()
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .count()
    }
}

fn no_retry() -> RetryConfig {
    RetryConfig::off()
}

fn retries(n: u32) -> RetryConfig {
    RetryConfig::new()
        .with_max_attempts(n)
        .with_backoff(Backoff::constant(ms(50)))
        .with_jitter(Jitter::None)
        .with_budget(None)
}

/// A breaker that opens after `n` failures in a row.
fn tripping(n: u32, open_for: Duration) -> BreakerConfig {
    BreakerConfig::new()
        .with_window(Window::Count(100))
        .with_consecutive_failures(n)
        .with_open_for(open_for)
        .with_half_open_probes(1)
}

fn policy(
    registry: &Registry,
    provider: &'static str,
    deadline: Duration,
    retry: RetryConfig,
    breaker: BreakerConfig,
    recovery: RecoveryConfig,
) -> Policy {
    Policy::builder(provider)
        .timeout(ms(500).min(deadline))
        .deadline(deadline)
        .retry(retry)
        .breaker(breaker)
        .recovery(recovery)
        .seed(7)
        .build_in(registry)
        .expect("a valid policy")
}

/// A provider that answers its first request 429 with `Retry-After: 1 s`,
/// and every later one with success.
fn throttles_once() -> Provider {
    let first = Arc::new(Mutex::new(true));
    Provider::new(move |_| {
        if std::mem::take(&mut *first.lock().unwrap()) {
            Err(Fail::Throttled(Some(Duration::from_secs(1))))
        } else {
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn one_429_pauses_every_caller_of_the_provider() {
    let registry = Registry::new();
    let start = Instant::now();
    let provider = throttles_once();
    let breaker = BreakerConfig::new();
    let a = policy(
        &registry,
        "cooldown",
        ms(5000),
        no_retry(),
        breaker,
        RecoveryConfig::new(),
    );
    let b = policy(
        &registry,
        "cooldown",
        ms(5000),
        no_retry(),
        breaker,
        RecoveryConfig::new(),
    );
    let answer = a.run(|| provider.call("a")).await;
    assert!(matches!(answer, Err(Fail::Throttled(_))), "{answer:?}");

    // Another call site of the same provider, 10 ms later: it must not send
    // before the pause ends, and succeeds after it.
    tokio::time::sleep(ms(10)).await;
    let answer = b.run(|| provider.call("b")).await;
    assert!(answer.is_ok(), "{answer:?}");
    let calls = provider.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let (sent, who) = calls[1];
    assert_eq!(who, "b");
    // The 429 was answered 5 ms after the start: the pause lasts until then + 1 s.
    assert!(
        sent >= start + ms(1005),
        "sent {:?} after the start",
        sent - start
    );
    assert!(
        sent <= start + ms(1006),
        "sent {:?} after the start",
        sent - start
    );

    // Failing fast, the same pause rejects at once and says how long.
    let registry = Registry::new();
    let provider = throttles_once();
    let fast = RecoveryConfig::fail_fast();
    let c = policy(
        &registry,
        "cooldown-fast",
        ms(5000),
        no_retry(),
        breaker,
        fast,
    );
    let _ = c.run(|| provider.call("c1")).await;
    let before = Instant::now();
    let answer = c.run(|| provider.call("c2")).await;
    assert_eq!(Instant::now(), before, "rejected without waiting");
    match answer {
        Err(Fail::Buttress(Error::RateLimited { retry_after, .. })) => {
            assert!(
                retry_after > ms(900) && retry_after <= ms(1000),
                "{retry_after:?}"
            );
        }
        other => panic!("expected a local RateLimited, got {other:?}"),
    }
    assert_eq!(provider.calls().len(), 1);

    // An operator's (or a test's) reset forgets the pause.
    assert!(c.shared().recovery().stats().cooldown.is_some());
    c.shared().recovery().reset();
    assert_eq!(c.shared().recovery().stats().cooldown, None);
    assert!(c.run(|| provider.call("c3")).await.is_ok());
    assert_eq!(provider.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_sends_nothing_and_never_outlives_its_deadline() {
    let registry = Registry::new();
    let provider = Provider::new(|_| Ok(()));
    let p = policy(
        &registry,
        "forced",
        ms(2000),
        retries(3),
        tripping(1, ms(100)),
        RecoveryConfig::new(),
    );
    // Trip the breaker, let its open period pass, and start a probe that
    // takes 10 s, and after a probe interval the one more that may go
    // beside it: while they are out, the breaker admits nobody else.
    let slow = Provider::new(|_| Ok(()));
    let down = Provider::new(|_| Err(Fail::Unavailable));
    let _ = p.run(|| down.call("trip")).await;
    tokio::time::sleep(ms(100)).await;
    let prober = Policy::builder("forced")
        .timeout(Duration::from_secs(20))
        .deadline(Duration::from_secs(20))
        .retry(no_retry())
        .breaker(tripping(1, ms(100)))
        .build_in(&registry)
        .unwrap();
    let start_probe = || {
        let slow = slow.clone();
        let prober = prober.clone();
        tokio::spawn(async move {
            prober
                .run(|| async {
                    let _ = slow.call("probe").await;
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok::<(), Fail>(())
                })
                .await
        })
    };
    let probe = start_probe();
    tokio::time::sleep(ms(1)).await;
    assert_eq!(p.shared().breaker().state(), BreakerState::HalfOpen);
    tokio::time::sleep(ms(100)).await;
    let hedge = start_probe();
    tokio::time::sleep(ms(1)).await;
    assert_eq!(slow.calls().len(), 2, "the probe and the one beside it");
    // A call now waits, sending nothing, for the whole of its deadline and
    // not a moment more.
    let start = Instant::now();
    let answer = p.run(|| provider.call("x")).await;
    assert_eq!(Instant::now() - start, ms(2000));
    assert!(
        matches!(answer, Err(Fail::Buttress(Error::CircuitOpen { .. }))),
        "{answer:?}"
    );
    assert!(provider.calls().is_empty());
    assert_eq!(
        p.shared().recovery().stats().waiting,
        0,
        "it left the queue"
    );
    assert_eq!(p.shared().recovery().stats().gave_up, 1);
    probe.abort();
    hedge.abort();

    // An operator's forced-open breaker turns calls away at once.
    p.shared().breaker().force_open();
    let start = Instant::now();
    let answer = p.run(|| provider.call("forced")).await;
    assert_eq!(Instant::now(), start);
    assert!(
        matches!(answer, Err(Fail::Buttress(Error::CircuitOpen { .. }))),
        "{answer:?}"
    );
    assert!(provider.calls().is_empty());

    // A breaker whose next probe comes after the deadline: rejected at once.
    let registry = Registry::new();
    let down = Provider::new(|_| Err(Fail::Unavailable));
    let p = policy(
        &registry,
        "long-open",
        ms(1000),
        no_retry(),
        tripping(1, Duration::from_secs(10)),
        RecoveryConfig::new(),
    );
    let _ = p.run(|| down.call("trip")).await;
    assert_eq!(p.shared().breaker().state(), BreakerState::Open);
    let start = Instant::now();
    let answer = p.run(|| down.call("y")).await;
    assert_eq!(
        Instant::now(),
        start,
        "no waiting when recovery cannot come in time"
    );
    assert!(
        matches!(answer, Err(Fail::Buttress(Error::CircuitOpen { .. }))),
        "{answer:?}"
    );
    assert_eq!(down.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_bounded_and_released_earliest_deadline_first() {
    let registry = Registry::new();
    let start = Instant::now();
    // Down for the first 50 ms, healthy after.
    let provider = Provider::new(move |at| {
        if at < start + ms(50) {
            Err(Fail::Unavailable)
        } else {
            Ok(())
        }
    });
    let recovery = RecoveryConfig::new()
        .with_max_waiting(3)
        .with_min_rate(1000.0);
    let breaker = tripping(1, ms(200));
    let make = |deadline| policy(&registry, "edf", deadline, no_retry(), breaker, recovery);
    let trip = make(ms(1000));
    let _ = trip.run(|| provider.call("trip")).await;
    assert_eq!(trip.shared().breaker().state(), BreakerState::Open);

    // Three calls wait, in an order other than their deadlines'.
    let mut tasks = Vec::new();
    for (deadline, who) in [(3000, "late"), (1000, "early"), (2000, "middle")] {
        let p = make(ms(deadline));
        let provider = provider.clone();
        tasks.push(tokio::spawn(
            async move { p.run(|| provider.call(who)).await },
        ));
        tokio::time::sleep(ms(1)).await;
    }
    assert_eq!(trip.shared().recovery().stats().waiting, 3);
    // A fourth finds the queue full and is rejected at once.
    let before = Instant::now();
    let fourth = make(ms(5000)).run(|| provider.call("fourth")).await;
    assert_eq!(Instant::now(), before);
    assert!(
        matches!(fourth, Err(Fail::Buttress(Error::CircuitOpen { .. }))),
        "{fourth:?}"
    );

    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    // The probe is the waiter with the most time left (a failed probe
    // costs it least); once the breaker has closed, the rest go earliest
    // deadline first.
    let order: Vec<&str> = provider.calls().iter().map(|(_, who)| *who).collect();
    assert_eq!(order, ["trip", "late", "early", "middle"]);
    // Nothing was sent before the breaker's open period ended.
    let first_release = provider.calls()[1].0;
    assert!(
        first_release >= start + ms(205),
        "{:?}",
        first_release - start
    );
}

#[tokio::test(start_paused = true)]
async fn probes_follow_the_adaptive_interval() {
    use buttress::breaker::Breaker;
    let config = BreakerConfig::new()
        .with_window(Window::Count(10))
        .with_consecutive_failures(1)
        .with_open_for(Duration::from_secs(1))
        .with_probe_interval(ms(100))
        .with_max_probe_interval(ms(400))
        .with_half_open_probes(1);
    let breaker = Breaker::new("adaptive", config);
    let permit = breaker.try_acquire().unwrap();
    breaker.record(permit, true, None);
    assert_eq!(
        breaker.next_probe_in(),
        Some(Duration::from_secs(1)),
        "open_for first"
    );
    let mut seen = Vec::new();
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let probe = breaker.try_acquire().expect("a probe after the interval");
        breaker.record(probe, true, None);
        let next = breaker.next_probe_in().unwrap();
        seen.push(next);
        assert!(breaker.try_acquire().is_err(), "open between probes");
        tokio::time::advance(next).await;
    }
    assert_eq!(seen, [ms(100), ms(200), ms(400), ms(400), ms(400)]);
    // A successful probe closes it; the next trip starts again from open_for.
    let probe = breaker.try_acquire().unwrap();
    breaker.record(probe, false, None);
    assert_eq!(breaker.state(), BreakerState::Closed);
    let permit = breaker.try_acquire().unwrap();
    breaker.record(permit, true, None);
    assert_eq!(breaker.next_probe_in(), Some(Duration::from_secs(1)));
    let probe = {
        tokio::time::advance(Duration::from_secs(1)).await;
        breaker.try_acquire().unwrap()
    };
    breaker.record(probe, true, None);
    assert_eq!(
        breaker.next_probe_in(),
        Some(ms(100)),
        "the growth starts afresh"
    );
}

/// Issue one call every 20 ms (50 per second) for `for_ms`, each through
/// `policy`, and wait for all of them.
async fn open_loop(policy: &Policy, provider: &Provider, for_ms: u64) -> Vec<Result<(), Fail>> {
    let mut tasks = Vec::new();
    let start = Instant::now();
    for i in 0..for_ms / 20 {
        tokio::time::sleep_until(start + ms(i * 20)).await;
        let p = policy.clone();
        let provider = provider.clone();
        tasks.push(tokio::spawn(
            async move { p.run(|| provider.call("op")).await },
        ));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn held_calls_come_back_at_the_slow_start_pace() {
    let registry = Registry::new();
    let start = Instant::now();
    // Down from 0.5 s to 1.5 s.
    let provider = Provider::new(move |at| {
        if at >= start + ms(500) && at < start + ms(1500) {
            Err(Fail::Unavailable)
        } else {
            Ok(())
        }
    });
    let breaker = tripping(3, ms(100));
    let p = policy(
        &registry,
        "slow-start",
        ms(5000),
        retries(5),
        breaker,
        RecoveryConfig::new(),
    );
    let results = open_loop(&p, &provider, 3000).await;
    // Every operation was held through the outage and then served.
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(failed, 0, "{failed} of {} failed", results.len());
    // After recovery, no 100 ms window carries more than 1.5 × the 5 new
    // calls of the window (plus one for a window edge).
    let recovered = start + ms(1500);
    for k in 0..15 {
        let from = recovered + ms(100 * k);
        let n = provider.count_between(from, from + ms(100));
        assert!(n <= 8, "{n} calls in window {k} after recovery");
    }
    // And the backlog drains: by 2.5 s after recovery nothing is held.
    assert_eq!(p.shared().recovery().stats().waiting, 0);
    // During the outage, the provider got far fewer calls than were issued.
    let during = provider.count_between(start + ms(500), recovered);
    assert!(during <= 25, "{during} calls while down");
}

#[tokio::test(start_paused = true)]
async fn the_admitted_rate_converges_on_an_unannounced_quota() {
    let registry = Registry::new();
    // A provider allowing 20 requests per second (a token bucket of one
    // second's allowance), answering 429 without saying its limit.
    let bucket = Arc::new(Mutex::new((20.0f64, Instant::now())));
    let provider = Provider::new(move |at| {
        let mut b = bucket.lock().unwrap();
        let refill = (at - b.1).as_secs_f64() * 20.0;
        b.0 = (b.0 + refill).min(20.0);
        b.1 = at;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            Err(Fail::Throttled(None))
        }
    });
    let p = policy(
        &registry,
        "quota",
        ms(5000),
        retries(5),
        BreakerConfig::new(),
        RecoveryConfig::new(),
    );
    let start = Instant::now();
    let results = open_loop(&p, &provider, 20_000).await;

    assert_eq!(results.len(), 1000);
    // Over the last 10 s of demand (50/s against a quota of 20/s), the
    // provider accepted close to its quota, and most of what it was sent.
    let from = start + Duration::from_secs(10);
    let to = start + Duration::from_secs(20);
    let sent = provider.count_between(from, to) as f64 / 10.0;
    let accepted = provider.accepted_between(from, to) as f64 / 10.0;
    let quota = p
        .shared()
        .recovery()
        .stats()
        .learned_quota
        .expect("a learned quota");
    assert!(
        (17.0..=21.0).contains(&accepted),
        "accepted {accepted}/s of a quota of 20/s"
    );
    assert!(
        sent <= 1.35 * accepted,
        "sent {sent}/s for {accepted}/s accepted"
    );
    assert!(quota > 0.0, "a quota was learned");
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_throttle_rejects_by_the_formula() {
    use buttress::throttle::ThrottleConfig;
    let registry = Registry::new();
    let start = Instant::now();
    // Accepts for the first 20 calls, then fails everything.
    let provider = Provider::new(move |at| {
        if at < start + ms(200) {
            Ok(())
        } else {
            Err(Fail::Unavailable)
        }
    });
    let p = Policy::builder("throttled")
        .timeout(ms(500))
        .deadline(ms(5000))
        .retry(no_retry())
        .no_breaker()
        .recovery(RecoveryConfig::fail_fast())
        .throttle(
            ThrottleConfig::new()
                .with_k(2.0)
                .with_window(Duration::from_secs(60)),
        )
        .seed(3)
        .build_in(&registry)
        .unwrap();
    let mut throttled = 0;
    for _ in 0..400 {
        let throttle = p.shared().throttle().expect("a throttle");
        let (requests, accepts) = throttle.counts();
        let expected =
            ((requests as f64 - 2.0 * accepts as f64) / (requests as f64 + 1.0)).max(0.0);
        assert!((throttle.rejection_probability() - expected).abs() < 1e-12);
        if let Err(Fail::Buttress(Error::Throttled { .. })) = p.run(|| provider.call("op")).await {
            throttled += 1;
        }
        tokio::time::sleep(ms(10)).await;
    }
    let sent = provider.calls().len();
    assert_eq!(sent + throttled, 400, "every call was sent or throttled");
    // Once failing, the provider sees about k × its accepts (20 × 2), not all 400.
    assert!(throttled >= 250, "{throttled} throttled");
    assert!(sent <= 150, "{sent} sent");
}

#[tokio::test(start_paused = true)]
async fn failed_probes_spend_no_retry_budget() {
    // A budget with room for one retry; a breaker that opens at the first
    // failure and probes every 50 ms; a provider down for 500 ms. Each
    // failed probe is an attempt of the held call, but the probe interval,
    // not the budget, bounds probes: the call is still there when the
    // provider is back.
    let registry = Registry::new();
    let start = Instant::now();
    let provider = Provider::new(move |now| {
        if now < start + ms(500) {
            Err(Fail::Unavailable)
        } else {
            Ok(())
        }
    });
    let retry = RetryConfig::new()
        .with_max_attempts(30)
        .with_backoff(Backoff::constant(ms(1)))
        .with_jitter(Jitter::None)
        .with_budget(Some(
            buttress::budget::BudgetConfig::new()
                .with_ratio(0.1)
                .with_cap(1),
        ));
    let p = policy(
        &registry,
        "probes-and-budget",
        ms(5000),
        retry,
        tripping(1, ms(50)),
        RecoveryConfig::new(),
    );
    let result = p.run(|| provider.call("held")).await;
    assert!(result.is_ok(), "{result:?}");
    let calls = provider.calls();
    // The first attempt, then probes (50 ms, then the probe interval)
    // until one finds the provider back: with a token per failed probe,
    // the call would have ended at the second failure.
    assert!(calls.len() >= 5, "{calls:?}");
    // The one retry the budget allowed was the first; the probes took none.
    let budget = registry.get("probes-and-budget").unwrap();
    let tokens = budget.budget().unwrap().tokens();
    assert!((0.0..1.0).contains(&tokens), "{tokens}");
}
