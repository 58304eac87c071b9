//! The circuit breaker on tokio's paused clock: exact counts and exact state
//! transitions, both directly against [`Breaker`] and end to end through
//! [`Policy::run`] (counting how often the provider really ran).
//!
//! Every end-to-end test builds its policy in a private [`Registry`], so the
//! tests never share a breaker.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use buttress::breaker::{
    Breaker, BreakerConfig, PermitKind, Rejected, TransitionReason, Window, WindowCounts,
};
use buttress::events::PolicyEvent;
use buttress::recovery::RecoveryConfig;
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{BreakerState, Classify, Error, ErrorClass, Policy, Registry};
use tokio::sync::oneshot;
use tokio::time::advance;

use BreakerState::{Closed, ForcedClosed, ForcedOpen, HalfOpen, Open};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A provider's error type, classified by hand.
#[derive(Debug, Clone)]
enum ProviderError {
    /// `Transient`.
    Unavailable,
    /// `RateLimited`.
    Throttled,
    /// `OutcomeUnknown`.
    Lost,
    /// `Permanent`.
    Declined,
    /// Raised by buttress itself.
    Buttress(Error),
}

impl Classify for ProviderError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable => ErrorClass::Transient,
            Self::Throttled => ErrorClass::RateLimited,
            Self::Lost => ErrorClass::OutcomeUnknown,
            Self::Declined => ErrorClass::Permanent,
            Self::Buttress(e) => e.class(),
        }
    }
}

impl From<Error> for ProviderError {
    fn from(e: Error) -> Self {
        Self::Buttress(e)
    }
}

type Reply = Result<u32, ProviderError>;
type Events = Arc<Mutex<Vec<(BreakerState, BreakerState, TransitionReason)>>>;

/// A breaker config with a count window of `window` calls.
fn counting(window: u32, min_calls: u32, failure_rate: f64) -> BreakerConfig {
    BreakerConfig::new()
        .with_window(Window::Count(window))
        .with_min_calls(min_calls)
        .with_failure_rate(failure_rate)
        .with_open_for(Duration::from_secs(30))
        .with_half_open_probes(1)
}

/// A breaker with a name of its own (`direct-<n>`): its transitions reach
/// the process-wide events channel, which tests running at once share.
fn breaker(config: BreakerConfig) -> Breaker {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    config.validate().expect("valid breaker config");
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Breaker::new(format!("direct-{n}").as_str(), config)
}

/// One admitted call that succeeded (elapsed not measured).
fn ok(b: &Breaker) {
    let permit = b.try_acquire().expect("admitted");
    b.record(permit, false, None);
}

/// One admitted call that failed.
fn fail(b: &Breaker) {
    let permit = b.try_acquire().expect("admitted");
    b.record(permit, true, None);
}

fn counts(calls: u64, failures: u64, slow: u64) -> WindowCounts {
    WindowCounts {
        calls,
        failures,
        slow,
    }
}

/// The transitions of `b`, as the events channel delivers them (kept for
/// the test process's life).
fn listen(b: &Breaker) -> Events {
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    let name = Arc::clone(b.provider());
    buttress::events::subscribe(move |event| {
        if let PolicyEvent::BreakerTransition {
            provider,
            from,
            to,
            reason,
        } = event
        {
            if **provider == *name {
                sink.lock().unwrap().push((*from, *to, *reason));
            }
        }
    })
    .forever();
    events
}

fn take(events: &Events) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
    std::mem::take(&mut *events.lock().unwrap())
}

/// A policy with one attempt per call, no timeout and no deadline (so that
/// pending bodies never time out on the paused clock), in `registry`.
fn policy(registry: &Registry, name: &'static str, config: BreakerConfig) -> Policy {
    Policy::builder(name)
        .retry(RetryConfig::off())
        .no_timeout()
        .no_deadline()
        .breaker(config)
        .build_in(registry)
        .expect("valid policy")
}

/// One call whose provider answers `reply` after `delay`; `ran` counts the
/// times the provider's body actually started.
async fn call_after(policy: &Policy, ran: &AtomicU32, delay: Duration, reply: Reply) -> Reply {
    policy
        .run(|| {
            let reply = reply.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                reply
            }
        })
        .await
}

async fn call(policy: &Policy, ran: &AtomicU32, reply: Reply) -> Reply {
    call_after(policy, ran, Duration::ZERO, reply).await
}

/// The `retry_in` of a `CircuitOpen` rejection for `provider`; panics on any
/// other result.
#[track_caller]
fn circuit_open(result: Reply, provider: &str) -> Option<Duration> {
    match result {
        Err(ProviderError::Buttress(Error::CircuitOpen {
            provider: p,
            retry_in,
            ..
        })) => {
            assert_eq!(&*p, provider, "CircuitOpen names the provider");
            retry_in
        }
        other => panic!("expected CircuitOpen for {provider}, got {other:?}"),
    }
}

type Pending<'a> = Pin<Box<dyn Future<Output = Reply> + 'a>>;

/// A call whose provider body waits for the test to send its reply.
fn gated<'a>(policy: &'a Policy, ran: &'a AtomicU32) -> (oneshot::Sender<Reply>, Pending<'a>) {
    let (tx, rx) = oneshot::channel();
    let mut rx = Some(rx);
    let fut = policy.run(move || {
        let rx = rx.take().expect("one attempt per call");
        async move {
            ran.fetch_add(1, Ordering::SeqCst);
            rx.await.expect("the test keeps the sender")
        }
    });
    (tx, Box::pin(fut))
}

/// Poll `fut` exactly once.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Let spawned tasks on the current-thread runtime run until `done` holds.
async fn settle(mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("spawned tasks did not reach the expected point");
}

// ---------------------------------------------------------------------------
// Directly against `Breaker`
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn no_trip_below_min_calls() {
    let b = breaker(counting(10, 5, 0.5));
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), Closed, "4 failures of 4 but min_calls is 5");
    let stats = b.stats();
    assert_eq!(stats.window, counts(4, 4, 0));
    assert_eq!(stats.consecutive_failures, 4);
    assert_eq!(stats.times_opened, 0);
    fail(&b);
    assert_eq!(b.state(), Open, "the 5th call reaches min_calls");
    assert_eq!(b.stats().times_opened, 1);
}

#[tokio::test(start_paused = true)]
async fn half_rate_trips_inclusively_at_two_of_four() {
    let b = breaker(counting(4, 4, 0.5));
    let events = listen(&b);
    ok(&b);
    fail(&b);
    ok(&b);
    assert_eq!(b.state(), Closed);
    fail(&b);
    assert_eq!(b.state(), Open, "2 failures of 4 reach 0.5");
    assert_eq!(b.stats().window, counts(4, 2, 0));
    assert_eq!(
        take(&events),
        vec![(Closed, Open, TransitionReason::FailureRate)]
    );

    // One failure of four never trips, however long it goes on.
    let b = breaker(counting(4, 4, 0.5));
    for _ in 0..50 {
        fail(&b);
        ok(&b);
        ok(&b);
        ok(&b);
    }
    assert_eq!(b.state(), Closed);
    assert_eq!(b.stats().window, counts(4, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn rate_point_three_trips_at_exactly_three_of_ten() {
    // 10.0 * 0.3 == 3.0000000000000004 in floating point: a naive
    // `failures as f64 >= rate * calls as f64` would miss this trip.
    let b = breaker(counting(10, 10, 0.3));
    for _ in 0..7 {
        ok(&b);
    }
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), Closed, "9 calls < min_calls");
    fail(&b);
    assert_eq!(b.state(), Open, "3 failures of 10 reach 0.3");
    assert_eq!(b.stats().window, counts(10, 3, 0));

    // The same for 0.7: 10.0 * 0.7 == 7.000000000000001.
    let b = breaker(counting(10, 10, 0.7));
    for _ in 0..3 {
        ok(&b);
    }
    for _ in 0..6 {
        fail(&b);
    }
    assert_eq!(b.state(), Closed);
    fail(&b);
    assert_eq!(b.state(), Open, "7 failures of 10 reach 0.7");

    // And 2 of 10 stays under 0.3 with a sliding window.
    let b = breaker(counting(10, 10, 0.3));
    for i in 0..100 {
        if i % 5 == 0 {
            fail(&b);
        } else {
            ok(&b);
        }
    }
    assert_eq!(b.state(), Closed);
    assert_eq!(b.stats().window, counts(10, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn the_call_that_completes_min_calls_judges_the_rate_even_if_it_succeeded() {
    // failure, failure, success, success: after min_calls (4) calls the
    // failure rate over the window is 2 of 4, which reaches 0.5.
    let b = breaker(counting(4, 4, 0.5));
    fail(&b);
    fail(&b);
    ok(&b);
    assert_eq!(b.state(), Closed, "3 calls < min_calls");
    ok(&b);
    assert_eq!(b.state(), Open, "2 failures of 4 reach 0.5");
    assert_eq!(b.stats().window, counts(4, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_whatever_the_rate() {
    let config = counting(100, 100, 0.5).with_consecutive_failures(3);
    let b = breaker(config);
    let events = listen(&b);
    for _ in 0..20 {
        ok(&b);
    }
    fail(&b);
    fail(&b);
    ok(&b); // breaks the run
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), Closed);
    assert_eq!(b.stats().consecutive_failures, 2);
    fail(&b);
    assert_eq!(b.state(), Open);
    assert_eq!(b.stats().window, counts(26, 5, 0));
    assert_eq!(
        take(&events),
        vec![(Closed, Open, TransitionReason::ConsecutiveFailures)]
    );
}

#[tokio::test(start_paused = true)]
async fn open_rejects_until_open_for_then_moves_to_half_open_lazily() {
    let b = breaker(counting(1, 1, 1.0).with_open_for(ms(500)));
    let events = listen(&b);
    fail(&b);
    assert_eq!(b.state(), Open);
    assert_eq!(
        b.try_acquire().unwrap_err(),
        Rejected {
            retry_in: Some(ms(500))
        }
    );
    advance(ms(200)).await;
    assert_eq!(b.try_acquire().unwrap_err().retry_in, Some(ms(300)));
    advance(ms(300) - Duration::from_nanos(1)).await;
    assert_eq!(
        b.try_acquire().unwrap_err().retry_in,
        Some(Duration::from_nanos(1)),
        "one nanosecond before open_for it still rejects"
    );
    assert_eq!(b.state(), Open);
    advance(Duration::from_nanos(1)).await;
    assert_eq!(b.state(), Open, "the move to half-open is lazy");
    assert_eq!(
        take(&events),
        vec![(Closed, Open, TransitionReason::FailureRate)]
    );

    let probe = b
        .try_acquire()
        .expect("the first call after open_for probes");
    assert_eq!(probe.kind(), PermitKind::Probe);
    assert_eq!(b.state(), HalfOpen);
    assert_eq!(
        take(&events),
        vec![(Open, HalfOpen, TransitionReason::OpenTimeElapsed)]
    );
    // The probe is out: another may go beside it one probe interval on.
    assert_eq!(
        b.try_acquire().unwrap_err(),
        Rejected {
            retry_in: Some(ms(500))
        }
    );
    b.record(probe, false, None);
    assert_eq!(b.state(), Closed);
    assert_eq!(
        take(&events),
        vec![(HalfOpen, Closed, TransitionReason::ProbesSucceeded)]
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_configured_probes() {
    let b = breaker(counting(4, 2, 0.5).with_half_open_probes(2));
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), Open);
    advance(Duration::from_secs(30)).await;

    let p1 = b.try_acquire().expect("probe 1");
    let p2 = b.try_acquire().expect("probe 2");
    assert_eq!(
        (p1.kind(), p2.kind()),
        (PermitKind::Probe, PermitKind::Probe)
    );
    // Both out: the next may go beside them once they have been out for a
    // probe interval (30 s here) without an answer.
    assert_eq!(
        b.try_acquire().unwrap_err(),
        Rejected {
            retry_in: Some(Duration::from_secs(30))
        }
    );

    b.record(p1, false, None);
    assert_eq!(b.state(), HalfOpen, "one of two probes succeeded");
    assert!(
        b.try_acquire().is_err(),
        "a finished probe does not free a slot: exactly 2 probes per half-open"
    );

    b.record(p2, false, None);
    assert_eq!(b.state(), Closed, "all probes succeeded");
    assert_eq!(
        b.stats().window,
        counts(0, 0, 0),
        "closed with a fresh window"
    );
    assert_eq!(b.stats().consecutive_failures, 0);
    assert_eq!(b.try_acquire().expect("closed").kind(), PermitKind::Normal);

    // The fresh window needs min_calls again before it can trip.
    fail(&b);
    assert_eq!(b.state(), Closed);
    fail(&b);
    assert_eq!(b.state(), Open);
    assert_eq!(b.stats().times_opened, 2);
}

#[tokio::test(start_paused = true)]
async fn a_probe_without_answer_for_a_probe_interval_gets_one_more_beside_it() {
    let b = breaker(
        counting(1, 1, 1.0)
            .with_open_for(ms(50))
            .with_half_open_probes(1),
    );
    fail(&b);
    advance(ms(50)).await;
    let slow = b.try_acquire().expect("the probe");
    assert_eq!(slow.kind(), PermitKind::Probe);
    // Out, and not for a whole interval yet: nobody else goes, and the
    // rejection says when one more may.
    advance(ms(20)).await;
    assert_eq!(
        b.try_acquire().unwrap_err(),
        Rejected {
            retry_in: Some(ms(30))
        }
    );
    advance(ms(30)).await;
    let quick = b.try_acquire().expect("one more probe beside the slow one");
    assert_eq!(quick.kind(), PermitKind::Probe);
    // Never more than one beside each probe, however long they take.
    advance(Duration::from_secs(10)).await;
    assert_eq!(b.try_acquire().unwrap_err(), Rejected { retry_in: None });
    // The second probe answers first: recovery is seen, the slow probe's
    // later answer belongs to the half-open that ended.
    b.record(quick, false, None);
    assert_eq!(b.state(), Closed);
    b.record(slow, true, None);
    assert_eq!(b.state(), Closed, "a stale probe's failure decides nothing");

    // A slow probe that fails reopens as any failed probe does.
    fail(&b);
    assert_eq!(b.state(), Open);
    advance(Duration::from_secs(1)).await;
    let slow = b.try_acquire().expect("the probe");
    advance(ms(50)).await;
    let other = b.try_acquire().expect("one more");
    b.record(slow, true, None);
    assert_eq!(b.state(), Open);
    b.record(other, false, None);
    assert_eq!(
        b.state(),
        Open,
        "the reopened breaker ignores the old probe"
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_returns_its_slot() {
    let b = breaker(counting(1, 1, 1.0).with_half_open_probes(2));
    fail(&b);
    advance(Duration::from_secs(30)).await;

    let p1 = b.try_acquire().expect("probe 1");
    let p2 = b.try_acquire().expect("probe 2");
    assert!(b.try_acquire().is_err());
    drop(p1); // the caller gave up
    assert_eq!(b.state(), HalfOpen, "a cancelled probe decides nothing");
    let p3 = b
        .try_acquire()
        .expect("the dropped probe's slot is free again");
    assert_eq!(p3.kind(), PermitKind::Probe);
    assert!(b.try_acquire().is_err());

    b.record(p2, false, None);
    assert_eq!(b.state(), HalfOpen);
    b.record(p3, false, None);
    assert_eq!(b.state(), Closed, "two probes succeeded");
}

#[tokio::test(start_paused = true)]
async fn one_failed_probe_reopens_at_once() {
    let b = breaker(counting(1, 1, 1.0).with_half_open_probes(3));
    let events = listen(&b);
    fail(&b);
    advance(Duration::from_secs(30)).await;
    let p1 = b.try_acquire().expect("probe 1");
    let p2 = b.try_acquire().expect("probe 2");
    let p3 = b.try_acquire().expect("probe 3");

    b.record(p1, false, None);
    b.record(p2, true, None);
    assert_eq!(b.state(), Open, "a failed probe reopens at once");
    assert_eq!(
        b.try_acquire().unwrap_err().retry_in,
        Some(Duration::from_secs(30)),
        "open_for starts again from the failed probe"
    );
    // The last probe's success belongs to the previous half-open.
    b.record(p3, false, None);
    assert_eq!(b.state(), Open);
    assert_eq!(b.stats().times_opened, 2);
    assert_eq!(
        take(&events),
        vec![
            (Closed, Open, TransitionReason::FailureRate),
            (Open, HalfOpen, TransitionReason::OpenTimeElapsed),
            (HalfOpen, Open, TransitionReason::ProbeFailed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_and_slow_probes_reopen() {
    let config = counting(4, 4, 1.0).with_slow_calls(0.5, ms(100));
    let b = breaker(config);
    let events = listen(&b);
    let record = |elapsed: Option<Duration>| {
        let permit = b.try_acquire().expect("admitted");
        b.record(permit, false, elapsed);
    };
    record(Some(ms(100))); // exactly slow_call: not slow
    record(Some(ms(100) + Duration::from_nanos(1))); // slow
    record(None); // not measured: not slow
    assert_eq!(b.state(), Closed);
    assert_eq!(b.stats().window, counts(3, 0, 1));
    assert_eq!(
        b.stats().consecutive_failures,
        0,
        "slow successes are not errors"
    );
    record(Some(ms(250)));
    assert_eq!(b.state(), Open, "2 slow calls of 4 reach 0.5");
    assert_eq!(b.stats().window, counts(4, 0, 2));

    advance(Duration::from_secs(30)).await;
    let probe = b.try_acquire().expect("probe");
    b.record(probe, false, Some(ms(101)));
    assert_eq!(b.state(), Open, "a slow probe fails");
    assert_eq!(
        take(&events),
        vec![
            (Closed, Open, TransitionReason::SlowCallRate),
            (Open, HalfOpen, TransitionReason::OpenTimeElapsed),
            (HalfOpen, Open, TransitionReason::ProbeFailed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn time_window_trips_on_the_rate_over_its_span() {
    // 20 s span: 1 s buckets.
    let config = BreakerConfig::new()
        .with_window(Window::Time(Duration::from_secs(20)))
        .with_min_calls(4)
        .with_failure_rate(0.5);
    let b = breaker(config);
    fail(&b);
    advance(Duration::from_secs(5)).await;
    ok(&b);
    advance(Duration::from_secs(5)).await;
    ok(&b);
    advance(Duration::from_secs(9)).await;
    assert_eq!(
        b.stats().window,
        counts(3, 1, 0),
        "all three calls are in the span"
    );
    fail(&b);
    assert_eq!(b.state(), Open, "2 failures of 4 within 20 s");
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_failures_older_than_its_span() {
    let config = BreakerConfig::new()
        .with_window(Window::Time(Duration::from_secs(20)))
        .with_min_calls(3)
        .with_failure_rate(0.5);
    let b = breaker(config);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), Closed, "2 calls < min_calls");
    advance(Duration::from_secs(20) - Duration::from_nanos(1)).await;
    assert_eq!(b.stats().window, counts(2, 2, 0), "still inside the span");
    advance(Duration::from_nanos(1)).await;
    assert_eq!(
        b.stats().window,
        counts(0, 0, 0),
        "a whole span later they are gone"
    );

    ok(&b);
    ok(&b);
    fail(&b);
    assert_eq!(
        b.state(),
        Closed,
        "1 failure of 3 now; with the old failures it would be 3 of 5"
    );
    assert_eq!(b.stats().window, counts(3, 1, 0));
    fail(&b);
    assert_eq!(b.state(), Open, "2 of 4");
}

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_everything_until_reset() {
    let b = breaker(counting(4, 4, 0.5));
    let events = listen(&b);
    ok(&b);
    b.force_open();
    assert_eq!(b.state(), ForcedOpen);
    for _ in 0..10 {
        assert_eq!(b.try_acquire().unwrap_err(), Rejected { retry_in: None });
    }
    advance(Duration::from_secs(3600)).await;
    assert!(b.try_acquire().is_err(), "forced open ignores open_for");
    assert_eq!(b.state(), ForcedOpen);
    assert_eq!(
        b.stats().times_opened,
        0,
        "an operator's force is not a trip"
    );

    // Forced open over an open breaker holds past open_for too.
    b.reset();
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), Open);
    b.force_open();
    advance(Duration::from_secs(60)).await;
    assert!(b.try_acquire().is_err());
    assert_eq!(b.state(), ForcedOpen);
    b.reset();
    assert_eq!(b.state(), Closed);
    assert_eq!(
        take(&events),
        vec![
            (Closed, ForcedOpen, TransitionReason::Operator),
            (ForcedOpen, Closed, TransitionReason::Operator),
            (Closed, Open, TransitionReason::FailureRate),
            (Open, ForcedOpen, TransitionReason::Operator),
            (ForcedOpen, Closed, TransitionReason::Operator),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn forced_closed_admits_everything_and_records_nothing() {
    let b = breaker(counting(4, 1, 0.5).with_consecutive_failures(1));
    b.force_closed();
    assert_eq!(b.state(), ForcedClosed);
    for _ in 0..1000 {
        let permit = b.try_acquire().expect("forced closed admits everything");
        assert_eq!(permit.kind(), PermitKind::Unrecorded);
        b.record(permit, true, Some(Duration::from_secs(60)));
    }
    assert_eq!(b.state(), ForcedClosed, "no trip however many failures");
    let stats = b.stats();
    assert_eq!(stats.window, counts(0, 0, 0), "nothing recorded");
    assert_eq!(stats.consecutive_failures, 0);
    assert_eq!(stats.times_opened, 0);

    // Forced closed also overrides an open breaker.
    b.reset();
    fail(&b);
    assert_eq!(b.state(), Open);
    b.force_closed();
    assert_eq!(
        b.try_acquire().expect("admitted").kind(),
        PermitKind::Unrecorded
    );
    b.reset();
    assert_eq!(b.state(), Closed);
    fail(&b);
    assert_eq!(b.state(), Open, "after reset it trips again");
}

#[tokio::test(start_paused = true)]
async fn reset_returns_to_closed_with_an_empty_window() {
    let b = breaker(counting(10, 4, 0.5).with_consecutive_failures(3));
    fail(&b);
    fail(&b);
    ok(&b);
    fail(&b);
    assert_eq!(b.state(), Open, "3 failures of 4");
    assert_eq!(b.stats().window, counts(4, 3, 0));
    assert_eq!(b.stats().consecutive_failures, 1);
    b.reset();
    assert_eq!(b.state(), Closed);
    assert_eq!(b.stats().window, counts(0, 0, 0));
    assert_eq!(b.stats().consecutive_failures, 0);
    fail(&b);
    fail(&b);
    ok(&b);
    assert_eq!(
        b.state(),
        Closed,
        "the old failures are gone: 2 of 3 < min_calls"
    );

    // From open, mid-open_for.
    fail(&b);
    assert_eq!(b.state(), Open);
    advance(Duration::from_secs(1)).await;
    b.reset();
    assert_eq!(b.state(), Closed);
    assert_eq!(
        b.try_acquire().expect("admitted").kind(),
        PermitKind::Normal
    );
    assert_eq!(b.stats().window, counts(0, 0, 0));

    // From half-open, with a probe out: the probe's result no longer counts.
    fail(&b);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), Open);
    advance(Duration::from_secs(30)).await;
    let probe = b.try_acquire().expect("probe");
    b.reset();
    b.record(probe, true, None);
    assert_eq!(
        b.state(),
        Closed,
        "a probe from before the reset decides nothing"
    );
    assert_eq!(
        b.stats().times_opened,
        3,
        "times_opened counts every trip ever made"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_before_a_transition_is_not_recorded_after_it() {
    let b = breaker(counting(4, 2, 0.5).with_half_open_probes(1));
    let old = b.try_acquire().expect("admitted while closed");
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), Open);
    advance(Duration::from_secs(30)).await;
    ok(&b); // the probe closes it
    assert_eq!(b.state(), Closed);
    b.record(old, true, None);
    assert_eq!(b.stats().window, counts(0, 0, 0), "stale outcome dropped");
}

#[tokio::test(start_paused = true)]
async fn transition_events_reach_every_listener_in_order() {
    let b = breaker(
        counting(4, 4, 0.5)
            .with_consecutive_failures(2)
            .with_half_open_probes(2)
            .with_open_for(Duration::from_secs(10)),
    );
    let first = listen(&b);
    let second = listen(&b);

    ok(&b);
    ok(&b);
    fail(&b);
    ok(&b);
    assert_eq!(b.state(), Closed, "1 failure of 4");
    fail(&b);
    assert_eq!(
        b.state(),
        Open,
        "2 failures of the last 4, never 2 in a row"
    );
    advance(Duration::from_secs(10)).await;
    let p = b.try_acquire().unwrap();
    b.record(p, true, None); // probe fails
    advance(Duration::from_secs(10)).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    b.record(p1, false, None);
    b.record(p2, false, None); // closes
    fail(&b);
    fail(&b); // 2 in a row
    b.force_open();
    b.force_closed();
    b.reset();

    let expected = vec![
        (Closed, Open, TransitionReason::FailureRate),
        (Open, HalfOpen, TransitionReason::OpenTimeElapsed),
        (HalfOpen, Open, TransitionReason::ProbeFailed),
        (Open, HalfOpen, TransitionReason::OpenTimeElapsed),
        (HalfOpen, Closed, TransitionReason::ProbesSucceeded),
        (Closed, Open, TransitionReason::ConsecutiveFailures),
        (Open, ForcedOpen, TransitionReason::Operator),
        (ForcedOpen, ForcedClosed, TransitionReason::Operator),
        (ForcedClosed, Closed, TransitionReason::Operator),
    ];
    assert_eq!(take(&first), expected);
    assert_eq!(take(&second), expected);
    assert_eq!(b.stats().times_opened, 3);
}

// ---------------------------------------------------------------------------
// End to end through `Policy::run`
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn e2e_no_trip_below_min_calls_then_trip_at_the_threshold() {
    let registry = Registry::new();
    let p = policy(&registry, "e2e-min-calls", counting(4, 4, 0.5));
    let ran = AtomicU32::new(0);
    for _ in 0..3 {
        let err = call(&p, &ran, Err(ProviderError::Unavailable))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable));
    }
    assert_eq!(
        p.shared().breaker().state(),
        Closed,
        "3 calls < min_calls 4"
    );
    assert_eq!(call(&p, &ran, Ok(7)).await.unwrap(), 7);
    assert_eq!(p.shared().breaker().state(), Open, "3 failures of 4");
    assert_eq!(ran.load(Ordering::SeqCst), 4);

    let retry_in = circuit_open(call(&p, &ran, Ok(1)).await, "e2e-min-calls");
    assert_eq!(retry_in, Some(Duration::from_secs(30)));
    assert_eq!(
        ran.load(Ordering::SeqCst),
        4,
        "a rejected call never reaches the provider"
    );
}

#[tokio::test(start_paused = true)]
async fn e2e_trips_inclusively_at_two_of_four_and_three_of_ten() {
    let registry = Registry::new();
    let half = policy(&registry, "e2e-half", counting(4, 4, 0.5));
    let ran = AtomicU32::new(0);
    call(&half, &ran, Ok(1)).await.unwrap();
    call(&half, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    call(&half, &ran, Ok(1)).await.unwrap();
    assert_eq!(half.shared().breaker().state(), Closed);
    call(&half, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(half.shared().breaker().state(), Open);
    circuit_open(call(&half, &ran, Ok(1)).await, "e2e-half");
    assert_eq!(ran.load(Ordering::SeqCst), 4);

    let rate = policy(&registry, "e2e-point-three", counting(10, 10, 0.3));
    let ran = AtomicU32::new(0);
    for _ in 0..7 {
        call(&rate, &ran, Ok(1)).await.unwrap();
    }
    call(&rate, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    call(&rate, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(rate.shared().breaker().state(), Closed);
    call(&rate, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(rate.shared().breaker().state(), Open, "3 of 10 reach 0.3");
    for _ in 0..5 {
        circuit_open(call(&rate, &ran, Ok(1)).await, "e2e-point-three");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 10);
    assert_eq!(
        half.shared().breaker().state(),
        Open,
        "the other provider is unaffected"
    );
}

#[tokio::test(start_paused = true)]
async fn e2e_every_provider_failure_class_counts_but_permanent_does_not() {
    let registry = Registry::new();
    let config = counting(4, 4, 0.5).with_consecutive_failures(3);
    // Without quota learning, a 429 is a breaker failure like the others
    // (with it, the default, 429s pace the calls instead: see
    // `e2e_rate_limits_pace_instead_of_tripping`).
    let p = Policy::builder("e2e-classes")
        .retry(RetryConfig::off())
        .no_timeout()
        .no_deadline()
        .breaker(config)
        .recovery(RecoveryConfig::fail_fast())
        .build_in(&registry)
        .expect("valid policy");
    let ran = AtomicU32::new(0);
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    call(&p, &ran, Err(ProviderError::Throttled))
        .await
        .unwrap_err();
    assert_eq!(p.shared().breaker().stats().window, counts(2, 2, 0));
    call(&p, &ran, Err(ProviderError::Lost)).await.unwrap_err();
    assert_eq!(
        p.shared().breaker().state(),
        Open,
        "3 provider failures in a row"
    );
    assert_eq!(
        p.shared().breaker().stats().window,
        counts(3, 3, 0),
        "transient, rate-limited and outcome-unknown all count"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn e2e_rate_limits_pace_instead_of_tripping() {
    let registry = Registry::new();
    let config = counting(4, 4, 0.5).with_consecutive_failures(2);
    let p = policy(&registry, "e2e-429", config);
    let ran = AtomicU32::new(0);
    for _ in 0..5 {
        call(&p, &ran, Err(ProviderError::Throttled))
            .await
            .unwrap_err();
    }
    assert_eq!(p.shared().breaker().state(), Closed);
    assert_eq!(p.shared().breaker().stats().window, counts(0, 0, 0));
    assert!(
        p.shared().recovery().stats().active,
        "the 429s went to the gate"
    );
}

#[tokio::test(start_paused = true)]
async fn e2e_permanent_errors_count_as_successes_and_never_trip() {
    let registry = Registry::new();
    let config = counting(4, 1, 0.25).with_consecutive_failures(2);
    let p = policy(&registry, "e2e-permanent", config);
    let ran = AtomicU32::new(0);
    for _ in 0..100 {
        let err = call(&p, &ran, Err(ProviderError::Declined))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Declined),
            "the caller gets its error"
        );
    }
    let b = p.shared().breaker();
    assert_eq!(b.state(), Closed);
    assert_eq!(b.stats().window, counts(4, 0, 0), "recorded as successes");
    assert_eq!(ran.load(Ordering::SeqCst), 100);

    // A permanent error breaks a run of failures like a success does.
    let p = policy(
        &registry,
        "e2e-permanent-run",
        counting(10, 10, 1.0).with_consecutive_failures(2),
    );
    let ran = AtomicU32::new(0);
    for _ in 0..20 {
        call(&p, &ran, Err(ProviderError::Unavailable))
            .await
            .unwrap_err();
        call(&p, &ran, Err(ProviderError::Declined))
            .await
            .unwrap_err();
    }
    assert_eq!(p.shared().breaker().state(), Closed);
    assert_eq!(p.shared().breaker().stats().window, counts(10, 5, 0));
    assert_eq!(ran.load(Ordering::SeqCst), 40);
}

#[tokio::test(start_paused = true)]
async fn e2e_consecutive_failures_trip() {
    let registry = Registry::new();
    let config = counting(100, 100, 0.5).with_consecutive_failures(5);
    let p = policy(&registry, "e2e-consecutive", config);
    let events = listen(p.shared().breaker());
    let ran = AtomicU32::new(0);
    for _ in 0..4 {
        call(&p, &ran, Err(ProviderError::Unavailable))
            .await
            .unwrap_err();
    }
    call(&p, &ran, Ok(1)).await.unwrap();
    for _ in 0..4 {
        call(&p, &ran, Err(ProviderError::Unavailable))
            .await
            .unwrap_err();
    }
    assert_eq!(p.shared().breaker().state(), Closed);
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(p.shared().breaker().state(), Open);
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-consecutive");
    assert_eq!(ran.load(Ordering::SeqCst), 10);
    assert_eq!(
        take(&events),
        vec![(Closed, Open, TransitionReason::ConsecutiveFailures)]
    );
}

#[tokio::test(start_paused = true)]
async fn e2e_timeouts_count_as_failures() {
    let registry = Registry::new();
    let p = Policy::builder("e2e-timeout")
        .retry(RetryConfig::off())
        .timeout(Duration::from_secs(1))
        .no_deadline()
        .breaker(counting(10, 10, 1.0).with_consecutive_failures(2))
        .build_in(&registry)
        .unwrap();
    let ran = AtomicU32::new(0);
    for _ in 0..2 {
        let err = call_after(&p, &ran, Duration::from_secs(5), Ok(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Buttress(Error::Timeout { .. })),
            "{err:?}"
        );
    }
    assert_eq!(p.shared().breaker().state(), Open);
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-timeout");
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn e2e_slow_calls_trip() {
    let registry = Registry::new();
    let config = counting(4, 4, 1.0).with_slow_calls(0.5, ms(100));
    let p = policy(&registry, "e2e-slow", config);
    let events = listen(p.shared().breaker());
    let ran = AtomicU32::new(0);
    call_after(&p, &ran, ms(100), Ok(1)).await.unwrap(); // exactly slow_call: not slow
    call_after(&p, &ran, ms(150), Ok(1)).await.unwrap(); // slow
    call(&p, &ran, Ok(1)).await.unwrap(); // ready at once: not slow
    assert_eq!(p.shared().breaker().stats().window, counts(3, 0, 1));
    assert_eq!(p.shared().breaker().state(), Closed);
    call_after(&p, &ran, ms(101), Ok(1)).await.unwrap(); // slow
    assert_eq!(p.shared().breaker().state(), Open, "2 slow calls of 4");
    assert_eq!(p.shared().breaker().stats().window, counts(4, 0, 2));
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-slow");
    assert_eq!(ran.load(Ordering::SeqCst), 4);
    assert_eq!(
        take(&events),
        vec![(Closed, Open, TransitionReason::SlowCallRate)]
    );

    // A slow probe reopens.
    advance(Duration::from_secs(30)).await;
    call_after(&p, &ran, ms(200), Ok(1)).await.unwrap();
    assert_eq!(p.shared().breaker().state(), Open);
    assert_eq!(ran.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn e2e_open_waits_open_for_then_one_probe_closes() {
    let registry = Registry::new();
    let config = counting(2, 2, 0.5)
        .with_open_for(ms(1500))
        .with_half_open_probes(1);
    let p = policy(&registry, "e2e-open-for", config);
    let ran = AtomicU32::new(0);
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(p.shared().breaker().state(), Open);

    advance(ms(1499)).await;
    let retry_in = circuit_open(call(&p, &ran, Ok(1)).await, "e2e-open-for");
    assert_eq!(retry_in, Some(ms(1)), "one millisecond before open_for");
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    advance(ms(1)).await;
    assert_eq!(call(&p, &ran, Ok(9)).await.unwrap(), 9, "the probe runs");
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(p.shared().breaker().state(), Closed);
    assert_eq!(p.shared().breaker().stats().window, counts(0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn e2e_half_open_admits_exactly_two_concurrent_probes() {
    let registry = Registry::new();
    let config = counting(4, 4, 0.5)
        .with_half_open_probes(2)
        .with_open_for(Duration::from_secs(10));
    let p = policy(&registry, "e2e-probes", config);
    let ran = AtomicU32::new(0);
    for _ in 0..4 {
        call(&p, &ran, Err(ProviderError::Unavailable))
            .await
            .unwrap_err();
    }
    assert_eq!(p.shared().breaker().state(), Open);
    advance(Duration::from_secs(10)).await;

    let (tx_a, mut a) = gated(&p, &ran);
    let (tx_b, mut b) = gated(&p, &ran);
    let (_tx_c, mut c) = gated(&p, &ran);
    assert!(poll_once(a.as_mut()).await.is_pending(), "probe A is out");
    assert_eq!(p.shared().breaker().state(), HalfOpen);
    assert!(poll_once(b.as_mut()).await.is_pending(), "probe B is out");
    assert_eq!(ran.load(Ordering::SeqCst), 6);
    match poll_once(c.as_mut()).await {
        Poll::Ready(result) => {
            // Until both have been out for a probe interval.
            assert_eq!(
                circuit_open(result, "e2e-probes"),
                Some(Duration::from_secs(10))
            );
        }
        Poll::Pending => panic!("a third caller must be rejected while two probes are out"),
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        6,
        "the third caller never reached the provider"
    );

    tx_a.send(Ok(1)).unwrap();
    assert!(matches!(poll_once(a.as_mut()).await, Poll::Ready(Ok(1))));
    assert_eq!(
        p.shared().breaker().state(),
        HalfOpen,
        "one of two probes done"
    );
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-probes");

    tx_b.send(Ok(2)).unwrap();
    assert!(matches!(poll_once(b.as_mut()).await, Poll::Ready(Ok(2))));
    assert_eq!(
        p.shared().breaker().state(),
        Closed,
        "both probes succeeded"
    );
    assert_eq!(
        p.shared().breaker().stats().window,
        counts(0, 0, 0),
        "fresh window"
    );

    // The fresh window: three failures stay under min_calls.
    for _ in 0..3 {
        call(&p, &ran, Err(ProviderError::Unavailable))
            .await
            .unwrap_err();
    }
    assert_eq!(p.shared().breaker().state(), Closed);
    assert_eq!(ran.load(Ordering::SeqCst), 9);
}

#[tokio::test(start_paused = true)]
async fn e2e_cancelled_probe_returns_its_slot() {
    let registry = Registry::new();
    let config = counting(1, 1, 1.0).with_half_open_probes(2);
    let p = policy(&registry, "e2e-cancel", config);
    let ran = Arc::new(AtomicU32::new(0));
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    advance(Duration::from_secs(30)).await;

    // Two probes, spawned on the current-thread runtime, waiting for replies.
    let spawn_probe = || {
        let (tx, rx) = oneshot::channel::<Reply>();
        let p = p.clone();
        let ran = Arc::clone(&ran);
        let handle = tokio::spawn(async move {
            let mut rx = Some(rx);
            p.run(move || {
                let rx = rx.take().expect("one attempt");
                let ran = Arc::clone(&ran);
                async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    rx.await.unwrap_or(Err(ProviderError::Unavailable))
                }
            })
            .await
        });
        (tx, handle)
    };
    let (_tx_a, a) = spawn_probe();
    let (tx_b, b) = spawn_probe();
    settle(|| ran.load(Ordering::SeqCst) == 3).await;
    assert_eq!(p.shared().breaker().state(), HalfOpen);
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-cancel");

    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());
    assert_eq!(
        p.shared().breaker().state(),
        HalfOpen,
        "a cancelled probe decides nothing"
    );

    let (tx_c, c) = spawn_probe();
    settle(|| ran.load(Ordering::SeqCst) == 4).await;
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-cancel");
    assert_eq!(ran.load(Ordering::SeqCst), 4);

    tx_b.send(Ok(2)).unwrap();
    assert_eq!(b.await.unwrap().unwrap(), 2);
    assert_eq!(p.shared().breaker().state(), HalfOpen);
    tx_c.send(Ok(3)).unwrap();
    assert_eq!(c.await.unwrap().unwrap(), 3);
    assert_eq!(p.shared().breaker().state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn e2e_one_failed_probe_reopens_while_another_is_out() {
    let registry = Registry::new();
    let config = counting(1, 1, 1.0)
        .with_half_open_probes(2)
        .with_open_for(Duration::from_secs(5));
    let p = policy(&registry, "e2e-probe-fails", config);
    let events = listen(p.shared().breaker());
    let ran = AtomicU32::new(0);
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    advance(Duration::from_secs(5)).await;

    let (tx_a, mut a) = gated(&p, &ran);
    let (tx_b, mut b) = gated(&p, &ran);
    assert!(poll_once(a.as_mut()).await.is_pending());
    assert!(poll_once(b.as_mut()).await.is_pending());
    tx_a.send(Err(ProviderError::Lost)).unwrap();
    assert!(matches!(
        poll_once(a.as_mut()).await,
        Poll::Ready(Err(ProviderError::Lost))
    ));
    assert_eq!(p.shared().breaker().state(), Open, "reopened at once");
    assert_eq!(
        circuit_open(call(&p, &ran, Ok(1)).await, "e2e-probe-fails"),
        Some(Duration::from_secs(5))
    );

    tx_b.send(Ok(1)).unwrap();
    assert!(matches!(poll_once(b.as_mut()).await, Poll::Ready(Ok(1))));
    assert_eq!(
        p.shared().breaker().state(),
        Open,
        "a late probe success changes nothing"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(
        take(&events),
        vec![
            (Closed, Open, TransitionReason::FailureRate),
            (Open, HalfOpen, TransitionReason::OpenTimeElapsed),
            (HalfOpen, Open, TransitionReason::ProbeFailed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn e2e_time_window_trips_and_forgets() {
    let registry = Registry::new();
    let config = BreakerConfig::new()
        .with_window(Window::Time(Duration::from_secs(10)))
        .with_min_calls(3)
        .with_failure_rate(0.5);
    let p = policy(&registry, "e2e-time-window", config);
    let ran = AtomicU32::new(0);
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    advance(Duration::from_secs(10)).await;
    call(&p, &ran, Ok(1)).await.unwrap();
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    call(&p, &ran, Ok(1)).await.unwrap();
    assert_eq!(
        p.shared().breaker().state(),
        Closed,
        "the first two failures are forgotten"
    );
    advance(ms(500)).await;
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(p.shared().breaker().state(), Open, "2 of 4 within the span");
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-time-window");
    assert_eq!(ran.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn e2e_forced_states_through_the_registry_handle() {
    let registry = Registry::new();
    let config = counting(4, 1, 0.5).with_consecutive_failures(1);
    let p = policy(&registry, "e2e-forced", config);
    let handle = registry.breaker("e2e-forced");
    let ran = AtomicU32::new(0);

    handle.force_open();
    assert_eq!(p.shared().breaker().state(), ForcedOpen);
    for _ in 0..20 {
        assert_eq!(
            circuit_open(call(&p, &ran, Ok(1)).await, "e2e-forced"),
            None
        );
    }
    advance(Duration::from_secs(3600)).await;
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-forced");
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "forced open never calls the provider"
    );

    handle.force_closed();
    for _ in 0..50 {
        call(&p, &ran, Err(ProviderError::Unavailable))
            .await
            .unwrap_err();
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        50,
        "forced closed admits everything"
    );
    assert_eq!(handle.state(), ForcedClosed, "and never trips");
    assert_eq!(
        handle.stats().window,
        counts(0, 0, 0),
        "and records nothing"
    );

    handle.reset();
    assert_eq!(handle.state(), Closed);
    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(handle.state(), Open, "after reset the breaker trips again");
    assert_eq!(ran.load(Ordering::SeqCst), 51);
}

#[tokio::test(start_paused = true)]
async fn e2e_registry_handle_shares_state_with_the_policy() {
    let registry = Registry::new();
    let config = counting(4, 2, 0.5);
    let p = policy(&registry, "e2e-shared", config);
    let twin = policy(&registry, "e2e-shared", config);
    let handle = registry.breaker("e2e-shared");
    let events = listen(&handle);
    let ran = AtomicU32::new(0);

    call(&p, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    call(&twin, &ran, Err(ProviderError::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(handle.state(), Open, "both call sites feed one breaker");
    assert_eq!(handle.stats().window, counts(2, 2, 0));
    assert_eq!(handle.stats().times_opened, 1);
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-shared");
    circuit_open(call(&twin, &ran, Ok(1)).await, "e2e-shared");
    assert_eq!(ran.load(Ordering::SeqCst), 2);

    handle.reset();
    assert_eq!(
        call(&twin, &ran, Ok(5)).await.unwrap(),
        5,
        "the operator's reset lets calls through"
    );
    assert_eq!(p.shared().breaker().stats().window, counts(1, 0, 0));
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(
        take(&events),
        vec![
            (Closed, Open, TransitionReason::FailureRate),
            (Open, Closed, TransitionReason::Operator),
        ]
    );

    // Another registry knows nothing of it.
    let other = Registry::new();
    let elsewhere = policy(&other, "e2e-shared", config);
    handle.force_open();
    assert_eq!(call(&elsewhere, &ran, Ok(6)).await.unwrap(), 6);
    assert_eq!(other.breaker("e2e-shared").state(), Closed);
    circuit_open(call(&p, &ran, Ok(1)).await, "e2e-shared");
}

#[tokio::test(start_paused = true)]
async fn e2e_every_retry_attempt_passes_the_breaker() {
    let registry = Registry::new();
    let p = Policy::builder("e2e-retries")
        .retry(
            RetryConfig::new()
                .with_max_attempts(5)
                .with_backoff(Backoff::constant(ms(10)))
                .with_jitter(Jitter::None)
                .with_budget(None),
        )
        .no_timeout()
        .no_deadline()
        .breaker(counting(10, 10, 1.0).with_consecutive_failures(2))
        .build_in(&registry)
        .unwrap();
    let ran = AtomicU32::new(0);
    let result = call(&p, &ran, Err(ProviderError::Unavailable)).await;
    assert!(result.is_err());
    assert_eq!(
        ran.load(Ordering::SeqCst),
        2,
        "the third attempt met an open breaker and never reached the provider"
    );
    assert_eq!(p.shared().breaker().state(), Open);
    assert_eq!(p.shared().breaker().stats().window, counts(2, 2, 0));
}

#[test]
fn a_failed_probe_reopens_even_while_other_probes_come_and_go() {
    use std::sync::atomic::AtomicBool;

    // Real threads race the probe failure: they take and drop probe slots
    // while the main thread records it. Only the main thread reads the
    // paused clock; the racers' clock (no runtime) never reaches open_for,
    // so they can't move the breaker out of open themselves.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _clock = rt.enter();
    let open_for = Duration::from_secs(3600);
    let b = Breaker::new(
        "race",
        counting(1, 1, 1.0)
            .with_half_open_probes(buttress::breaker::MAX_HALF_OPEN_PROBES)
            .with_open_for(open_for),
    );
    let stop = AtomicBool::new(false);
    let mut lost = 0;
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(permit) = b.try_acquire() {
                        drop(permit);
                    }
                }
            });
        }
        for _ in 0..20_000 {
            b.reset();
            fail(&b);
            rt.block_on(advance(open_for));
            let probe = b.try_acquire().expect("probe");
            b.record(probe, true, None);
            if b.state() != Open {
                lost += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(lost, 0, "failed probes that did not reopen the breaker");
}
