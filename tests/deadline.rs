//! Per-attempt timeouts and the overall deadline, on tokio's paused clock.

mod common;

use std::time::Duration;

use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::Policy;
use common::{constant_retry, ms, registry, Provider, ProviderError};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_a_slow_attempt_short() {
    // Attempt 1 times out at 1 s, the retry starts at 1.1 s and is cut by the
    // deadline at 1.5 s.
    let p = Policy::builder("deadline-cut")
        .timeout(Duration::from_secs(1))
        .deadline(ms(1500))
        .retry(constant_retry(5, ms(100)))
        .idempotent(true)
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let origin = Instant::now();
    let err = p
        .run(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), ProviderError>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some("deadline"));
    assert_eq!(origin.elapsed(), ms(1500));
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_cannot_fit_is_not_made_and_the_last_error_returned() {
    // Attempts fail after 300 ms; backoff 500 ms; deadline 1 s:
    // attempt 1 at 0 (fails at 300), attempt 2 at 800 (fails at 1100 > 1000: cut).
    // With a 150 ms failure: 1 at 0..150, 2 at 650..800, then 800 + 500 >= 1000: stop.
    let p = Policy::builder("deadline-no-room")
        .deadline(Duration::from_secs(1))
        .timeout(Duration::from_secs(1))
        .retry(constant_retry(10, ms(500)))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    let origin = Instant::now();
    let err = p
        .run(|| {
            let provider = provider.clone();
            async move {
                provider.hit();
                tokio::time::sleep(ms(150)).await;
                Err::<(), _>(ProviderError::Unavailable)
            }
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Unavailable,
        "the last provider error, not a deadline error"
    );
    assert_eq!(provider.starts_ms(origin), vec![0, 650]);
    assert_eq!(
        origin.elapsed(),
        ms(800),
        "no sleep that would overrun the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_deadline_ends_the_call_at_once() {
    let p = Policy::builder("deadline-retry-after")
        .deadline(Duration::from_secs(5))
        .timeout(Duration::from_secs(1))
        .retry(constant_retry(3, ms(10)))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    let origin = Instant::now();
    let err = p
        .run(|| {
            provider.hit();
            async { Err::<(), _>(ProviderError::Throttled(Some(Duration::from_secs(60)))) }
        })
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::Throttled(Some(Duration::from_secs(60))));
    assert_eq!(provider.calls(), 1);
    assert_eq!(origin.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_applies_per_attempt_and_the_deadline_to_the_whole_call() {
    // Idempotent, every attempt hangs: 400 ms timeout, 100 ms backoff,
    // deadline 1.2 s: attempts at 0, 500, 1000; the third is cut at 1200.
    let p = Policy::builder("deadline-vs-timeout")
        .timeout(ms(400))
        .deadline(ms(1200))
        .retry(constant_retry(10, ms(100)))
        .idempotent(true)
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    let origin = Instant::now();
    let err = p
        .run(|| {
            provider.hit();
            std::future::pending::<Result<(), ProviderError>>()
        })
        .await
        .unwrap_err();
    assert_eq!(provider.starts_ms(origin), vec![0, 500, 1000]);
    assert_eq!(err.reason(), Some("deadline"));
    assert_eq!(origin.elapsed(), ms(1200));
}

#[tokio::test(start_paused = true)]
async fn backoff_never_overruns_the_deadline_whatever_the_jitter() {
    for seed in 0..50 {
        let p = Policy::builder(format!("deadline-jitter-{seed}"))
            .timeout(ms(50))
            .deadline(ms(700))
            .retry(
                RetryConfig::new()
                    .with_max_attempts(20)
                    .with_backoff(Backoff::exponential(ms(20), ms(400)))
                    .with_jitter(Jitter::Full)
                    .with_budget(None),
            )
            .no_breaker()
            .seed(seed)
            .build_in(registry())
            .unwrap();
        let origin = Instant::now();
        let _ = p
            .run(|| async {
                tokio::time::sleep(ms(30)).await;
                Err::<(), _>(ProviderError::Unavailable)
            })
            .await;
        assert!(
            origin.elapsed() <= ms(700),
            "seed {seed}: {:?}",
            origin.elapsed()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn remaining_counts_down_inside_the_body() {
    let p = Policy::builder("deadline-remaining")
        .timeout(Duration::from_secs(1))
        .deadline(Duration::from_secs(3))
        .retry(constant_retry(3, ms(250)))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let seen = std::cell::RefCell::new(Vec::new());
    let _ = p
        .run(|| {
            let seen = &seen;
            async move {
                tokio::time::sleep(ms(100)).await;
                seen.borrow_mut().push(buttress::remaining().unwrap());
                Err::<(), _>(ProviderError::Unavailable)
            }
        })
        .await;
    // The call's clock starts at the first await of the first attempt.
    assert_eq!(seen.into_inner(), vec![ms(2900), ms(2550), ms(2200)]);
    assert_eq!(buttress::remaining(), None, "outside a wrapped body");
}

#[tokio::test(start_paused = true)]
async fn without_deadline_or_timeout_nothing_is_armed() {
    let p = Policy::builder("deadline-none")
        .no_timeout()
        .no_deadline()
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let origin = Instant::now();
    let value = p
        .run(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, ProviderError>(5)
        })
        .await
        .unwrap();
    assert_eq!(value, 5);
    assert_eq!(origin.elapsed(), Duration::from_secs(3600));
    assert_eq!(buttress::remaining(), None);
}

#[tokio::test(start_paused = true)]
async fn a_driver_that_waits_after_a_failure_has_the_wait_counted() {
    // The first attempt fails on its first poll, with no backoff, and the
    // driver waits 150 ms before asking for the next: past the 100 ms
    // deadline, so the retry is not made (the body is not polled again).
    let p = Policy::builder("deadline-manual-wait")
        .deadline(ms(100))
        .timeout(ms(100))
        .retry(constant_retry(3, Duration::ZERO))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    let mut call = p.call::<(), ProviderError>();
    let body = || async {
        provider.hit();
        Err::<(), _>(ProviderError::Unavailable)
    };
    assert!(call.attempt(body()).await.is_continue());
    tokio::time::sleep(ms(150)).await;
    let std::ops::ControlFlow::Break(result) = call.attempt(body()).await else {
        panic!("no time was left for a retry");
    };
    assert_eq!(result.unwrap_err(), ProviderError::Unavailable);
    assert_eq!(
        call.outcome(),
        Some(buttress::CallOutcome::DeadlineExceeded)
    );
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn zero_delay_retries_stay_inside_the_deadline() {
    // Every attempt fails after 40 ms and is retried at once: attempts at
    // 0, 40 and 80 ms; the third is cut by the 100 ms deadline.
    let p = Policy::builder("deadline-zero-delay")
        .deadline(ms(100))
        .timeout(ms(100))
        .retry(constant_retry(10, Duration::ZERO))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    let origin = Instant::now();
    let err = p
        .run(|| async {
            provider.hit();
            tokio::time::sleep(ms(40)).await;
            Err::<(), _>(ProviderError::Unavailable)
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some("deadline"));
    assert_eq!(provider.starts_ms(origin), vec![0, 40, 80]);
    assert_eq!(origin.elapsed(), ms(100));
}
