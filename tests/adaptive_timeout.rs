//! The adaptive attempt timeout, on tokio's paused clock: it follows a fast
//! provider down and a slow one up, doubles when every attempt is cut (so a
//! provider that slowed down past it is answered again), stays within its
//! bounds, doubles per call after each cut, and does not make the breaker
//! blame the provider for a cut shorter than the configured timeout.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress::adaptive_timeout::AdaptiveTimeoutConfig;
use buttress::breaker::BreakerConfig;
use buttress::recovery::RecoveryConfig;
use buttress::{BreakerState, Classify, ErrorClass, Policy, PolicyConfig, Registry};
use common::{constant_retry, ms, registry, ProviderError};
use tokio::time::Instant;

fn adaptive_policy(name: &'static str, attempts: u32, adaptive: AdaptiveTimeoutConfig) -> Policy {
    Policy::builder(name)
        .timeout(Duration::from_secs(1))
        .deadline(Duration::from_secs(30))
        .adaptive_timeout(adaptive)
        .retry(constant_retry(attempts, ms(1)))
        .idempotent(true)
        .no_breaker()
        .recovery(RecoveryConfig::fail_fast())
        .build_in(registry())
        .expect("valid policy")
}

/// One call whose every attempt answers `Ok` after `latency`; `attempts`
/// counts the attempts started.
async fn answer_after(
    policy: &Policy,
    attempts: &AtomicU32,
    latency: Duration,
) -> Result<u32, ProviderError> {
    policy
        .run(|| async move {
            attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(latency).await;
            Ok::<u32, ProviderError>(1)
        })
        .await
}

/// `n` calls, one after the other, each answered after `latency`.
async fn sequential(policy: &Policy, attempts: &AtomicU32, latency: Duration, n: u32) {
    for i in 0..n {
        answer_after(policy, attempts, latency)
            .await
            .unwrap_or_else(|e| panic!("call {i} at {latency:?} failed: {e:?}"));
    }
}

#[tokio::test(start_paused = true)]
async fn follows_a_fast_provider_down_and_a_slower_one_up() {
    let p = adaptive_policy("adaptive-follow", 5, AdaptiveTimeoutConfig::new());
    let attempts = AtomicU32::new(0);
    assert_eq!(
        p.attempt_timeout(),
        Some(Duration::from_secs(1)),
        "the configured timeout until enough answers are seen"
    );

    // 25 answers per second at 40 ms: the timeout settles near 1.5 × 40 ms
    // (the percentile is read from buckets about 10 % wide).
    sequential(&p, &attempts, ms(40), 100).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 100, "no attempt was cut");
    let settled = p.attempt_timeout().unwrap();
    assert!(
        (ms(50)..=ms(65)).contains(&settled),
        "1.5 × the p99 of 40 ms answers, got {settled:?}"
    );

    // The provider slows down to 200 ms: the first call is cut twice and
    // answered by its third attempt (each cut doubles that call's next
    // timeout); that answer raises the timeout for everyone at once.
    attempts.store(0, Ordering::SeqCst);
    sequential(&p, &attempts, ms(200), 30).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        32,
        "two cuts in all, on the first call only"
    );
    let grown = p.attempt_timeout().unwrap();
    assert!(
        (ms(250)..=ms(400)).contains(&grown),
        "1.5 × 200 ms or the bucket's middle, got {grown:?}"
    );

    // And back down when the provider is fast again.
    sequential(&p, &attempts, ms(40), 100).await;
    let again = p.attempt_timeout().unwrap();
    assert!(
        (ms(50)..=ms(65)).contains(&again),
        "follows the provider back down, got {again:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn stays_at_min_for_a_provider_faster_than_it() {
    let p = adaptive_policy(
        "adaptive-min",
        1,
        AdaptiveTimeoutConfig::new().with_min(ms(20)),
    );
    let attempts = AtomicU32::new(0);
    sequential(&p, &attempts, ms(2), 1000).await;
    assert_eq!(p.attempt_timeout(), Some(ms(20)));
}

/// Calls started every 20 ms for `span`, one attempt each, against a
/// provider answering after `latency`: how many succeeded among those
/// started after `settle`, and how many were started then.
async fn steady_traffic(
    p: &Policy,
    latency: Duration,
    span: Duration,
    settle: Duration,
) -> (usize, usize) {
    let origin = Instant::now();
    let mut calls = Vec::new();
    while origin.elapsed() < span {
        let p = p.clone();
        let late = origin.elapsed() >= settle;
        calls.push(tokio::spawn(async move {
            let attempts = AtomicU32::new(0);
            (late, answer_after(&p, &attempts, latency).await.is_ok())
        }));
        tokio::time::sleep(ms(20)).await;
    }
    let mut late = 0;
    let mut late_ok = 0;
    for call in calls {
        let (is_late, ok) = call.await.unwrap();
        if is_late {
            late += 1;
            late_ok += usize::from(ok);
        }
    }
    (late_ok, late)
}

#[tokio::test(start_paused = true)]
async fn doubles_when_every_attempt_is_cut_until_the_provider_answers() {
    let p = adaptive_policy(
        "adaptive-liveness",
        1,
        AdaptiveTimeoutConfig::new().with_max(Duration::from_secs(3)),
    );
    let attempts = AtomicU32::new(0);
    sequential(&p, &attempts, ms(40), 100).await;
    assert!(p.attempt_timeout().unwrap() < ms(100));

    // Every answer now takes 1.5 s: all attempts are cut (no answer is ever
    // seen to follow), until the doubling reaches past 1.5 s.
    let (ok, started) = steady_traffic(&p, ms(1500), Duration::from_secs(6), ms(2500)).await;
    assert_eq!(
        ok, started,
        "every call started after the timeout caught up succeeded"
    );
    let now = p.attempt_timeout().unwrap();
    assert!(
        (ms(1500)..=Duration::from_secs(3)).contains(&now),
        "above the provider's latency, within max: {now:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn never_exceeds_max() {
    let p = adaptive_policy(
        "adaptive-max",
        1,
        AdaptiveTimeoutConfig::new().with_max(ms(800)),
    );
    assert_eq!(p.attempt_timeout(), Some(ms(800)), "initial clamped to max");
    let (ok, started) = steady_traffic(&p, ms(1500), Duration::from_secs(4), ms(0)).await;
    assert!(started > 0);
    assert_eq!(ok, 0, "a provider slower than max is always cut");
    assert_eq!(p.attempt_timeout(), Some(ms(800)));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_error_reports_the_timeout_used() {
    let p = adaptive_policy("adaptive-error", 2, AdaptiveTimeoutConfig::new());
    let attempts = AtomicU32::new(0);
    sequential(&p, &attempts, ms(40), 100).await;
    let origin = Instant::now();
    let first = Arc::new(std::sync::Mutex::new(Vec::new()));
    let err = p
        .run(|| {
            let first = Arc::clone(&first);
            async move {
                first.lock().unwrap().push(origin.elapsed());
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<u32, buttress::Error>(1)
            }
        })
        .await
        .unwrap_err();
    let buttress::Error::Timeout {
        timeout, attempt, ..
    } = err
    else {
        panic!("a timeout, got {err:?}")
    };
    assert_eq!(attempt, 2);
    let starts = first.lock().unwrap().clone();
    assert_eq!(starts.len(), 2);
    // Attempt 1 was cut at the adaptive timeout (about 60 ms), attempt 2
    // after 1 ms of backoff at twice the adaptive timeout: what the error
    // reports, not the configured 1 s.
    let cut_first = starts[1] - ms(1);
    assert!((ms(50)..=ms(65)).contains(&cut_first), "{cut_first:?}");
    assert!((ms(100)..=ms(130)).contains(&timeout), "{timeout:?}");
    assert_eq!(origin.elapsed(), starts[1] + timeout);
    assert_eq!(err.class(), ErrorClass::OutcomeUnknown);
}

fn breaker() -> BreakerConfig {
    BreakerConfig::new()
        .with_consecutive_failures(3)
        .with_open_for(Duration::from_secs(30))
        .with_half_open_probes(1)
}

/// A provider whose attempts, counted from 0, hang when `n % 10 < 4` and
/// otherwise answer after 40 ms: four cuts in a row, then six answers.
async fn hangs_four_in_ten(p: &Policy, counter: &Arc<AtomicU32>) -> Result<u32, ProviderError> {
    p.run(|| {
        let counter = Arc::clone(counter);
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let wait = if n % 10 < 4 {
                Duration::from_secs(3600)
            } else {
                ms(40)
            };
            tokio::time::sleep(wait).await;
            Ok::<u32, ProviderError>(1)
        }
    })
    .await
}

fn breaker_policy(name: &'static str, adaptive: bool) -> Policy {
    let mut config = PolicyConfig::new(name)
        .with_timeout(Some(Duration::from_secs(1)))
        .with_deadline(Some(Duration::from_secs(30)))
        .with_retry(constant_retry(5, ms(1)))
        .with_idempotent(true)
        .with_breaker(Some(breaker()))
        .with_recovery(RecoveryConfig::fail_fast());
    if adaptive {
        config = config.with_adaptive_timeout(Some(
            AdaptiveTimeoutConfig::new().with_max(Duration::from_secs(2)),
        ));
    } else {
        // What the adaptive timeout settles at, fixed.
        config = config.with_timeout(Some(ms(60)));
    }
    Policy::from_config(config, &Registry::new()).expect("valid policy")
}

#[tokio::test(start_paused = true)]
async fn a_cut_shorter_than_the_configured_timeout_does_not_trip_the_breaker() {
    let p = breaker_policy("adaptive-no-blame", true);
    let attempts = AtomicU32::new(0);
    sequential(&p, &attempts, ms(40), 100).await;
    assert!(p.attempt_timeout().unwrap() < ms(100));

    // Four hung requests in a row out of every ten: each call is cut up to
    // four times (at about 60, 120, 240 and 480 ms), all well under the
    // configured 1 s, and answered by a later attempt.
    let counter = Arc::new(AtomicU32::new(0));
    for i in 0..40 {
        hangs_four_in_ten(&p, &counter)
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
    }
    assert_eq!(p.shared().breaker().state(), BreakerState::Closed);
    // The cuts may outnumber the answers in some windows (four hung
    // attempts take most of a second) and double the timeout, but not up
    // to the configured one, where cuts would count against the provider.
    assert!(
        p.attempt_timeout().unwrap() < Duration::from_secs(1),
        "{:?}",
        p.attempt_timeout()
    );

    // The same provider under the same timeout, fixed: three cuts in a row
    // open the breaker.
    let fixed = breaker_policy("fixed-blame", false);
    let counter = Arc::new(AtomicU32::new(0));
    let _ = hangs_four_in_ten(&fixed, &counter).await;
    assert_eq!(fixed.shared().breaker().state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_stops_answering_still_opens_the_breaker() {
    let p = breaker_policy("adaptive-hang", true);
    let attempts = AtomicU32::new(0);
    sequential(&p, &attempts, ms(40), 100).await;

    // Light traffic, one call at a time, against a provider that hangs:
    // the cuts outnumber the answers, the timeout doubles back up to the
    // configured one, and cuts there are the provider's failures.
    let origin = Instant::now();
    let mut calls = 0;
    while p.shared().breaker().state() == BreakerState::Closed {
        calls += 1;
        assert!(calls <= 10, "the breaker never opened");
        let err = p
            .run(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<u32, ProviderError>(1)
            })
            .await
            .unwrap_err();
        assert!(matches!(err.reason(), Some("timeout" | "circuit_open")));
    }
    assert_eq!(p.shared().breaker().state(), BreakerState::Open);
    assert!(
        origin.elapsed() < Duration::from_secs(15),
        "opened after {:?}",
        origin.elapsed()
    );
}

#[test]
fn builder_settings_are_validated() {
    let build = |adaptive: AdaptiveTimeoutConfig| {
        Policy::builder("adaptive-invalid")
            .timeout(Duration::from_secs(1))
            .deadline(Duration::from_secs(5))
            .adaptive_timeout(adaptive)
            .build_in(&Registry::new())
            .expect_err("invalid settings")
            .to_string()
    };
    assert!(build(AdaptiveTimeoutConfig::new().with_min(Duration::ZERO))
        .starts_with("adaptive_timeout.min: must be longer than zero"),);
    assert!(build(
        AdaptiveTimeoutConfig::new()
            .with_min(ms(500))
            .with_max(ms(100))
    )
    .starts_with("adaptive_timeout.max: (100ms) is shorter than `min` (500ms)"));
    for bad in [0.2, 1.0, f64::NAN] {
        assert!(
            build(AdaptiveTimeoutConfig::new().with_percentile(bad))
                .starts_with("adaptive_timeout.percentile: must lie in [0.5, 0.999]"),
            "{bad}"
        );
    }
    for bad in [0.5, 11.0, f64::INFINITY, f64::NAN] {
        assert!(
            build(AdaptiveTimeoutConfig::new().with_multiplier(bad))
                .starts_with("adaptive_timeout.multiplier: must lie in [1, 10]"),
            "{bad}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_max() {
    // The default `max` (10 s) under a 2 s deadline: accepted, and bounded
    // by the deadline.
    let p = Policy::builder("adaptive-deadline")
        .no_timeout()
        .deadline(Duration::from_secs(2))
        .adaptive_timeout(AdaptiveTimeoutConfig::new())
        .retry(constant_retry(1, ms(1)))
        .no_breaker()
        .build_in(&Registry::new())
        .expect("a max beyond the deadline is bounded by it");
    assert_eq!(p.attempt_timeout(), Some(Duration::from_secs(2)));
}
