//! Retry behaviour on tokio's paused clock: exact attempt counts and delays.

mod common;

use std::time::Duration;

use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{ErrorClass, Policy};
use common::{constant_retry, ms, registry, Provider, ProviderError};
use tokio::time::Instant;

fn policy(name: &str, retry: RetryConfig) -> Policy {
    Policy::builder(name.to_owned())
        .retry(retry)
        .no_breaker()
        .seed(7)
        .build_in(registry())
        .unwrap()
}

async fn always(
    policy: &Policy,
    provider: &Provider,
    error: ProviderError,
) -> Result<u32, ProviderError> {
    policy
        .run(|| {
            let provider = provider.clone();
            let error = error.clone();
            async move {
                provider.hit();
                Err::<u32, _>(error)
            }
        })
        .await
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_up_to_max_attempts() {
    let p = policy("retry-transient", constant_retry(4, ms(10)));
    let provider = Provider::default();
    let err = always(&p, &provider, ProviderError::Unavailable)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Unavailable,
        "the last provider error is returned"
    );
    assert_eq!(provider.calls(), 4);
    assert_eq!(provider.gaps(), vec![ms(10); 3]);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_never_retried() {
    let p = policy("retry-permanent", constant_retry(5, ms(10)));
    let provider = Provider::default();
    let err = always(&p, &provider, ProviderError::Declined)
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::Declined);
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn outcome_unknown_is_retried_only_when_idempotent() {
    let provider = Provider::default();
    let not_idempotent = policy("retry-unknown-1", constant_retry(3, ms(10)));
    always(&not_idempotent, &provider, ProviderError::Lost)
        .await
        .unwrap_err();
    assert_eq!(provider.calls(), 1);

    let provider = Provider::default();
    let idempotent = Policy::builder("retry-unknown-2")
        .retry(constant_retry(3, ms(10)))
        .no_breaker()
        .idempotent(true)
        .build_in(registry())
        .unwrap();
    always(&idempotent, &provider, ProviderError::Lost)
        .await
        .unwrap_err();
    assert_eq!(provider.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn success_after_failures_returns_the_value() {
    let p = policy("retry-then-ok", constant_retry(5, ms(1)));
    let provider = Provider::default();
    let value = p
        .run(|| {
            let n = provider.hit();
            async move {
                if n < 3 {
                    Err(ProviderError::Unavailable)
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 3);
    assert_eq!(provider.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_delays_are_exact_without_jitter() {
    let retry = RetryConfig::new()
        .with_max_attempts(5)
        .with_backoff(Backoff::exponential(ms(100), ms(500)))
        .with_jitter(Jitter::None)
        .with_budget(None);
    let p = policy("retry-exponential", retry);
    let provider = Provider::default();
    let origin = Instant::now();
    always(&p, &provider, ProviderError::Unavailable)
        .await
        .unwrap_err();
    // 100, 200, 400, then capped at 500.
    assert_eq!(provider.starts_ms(origin), vec![0, 100, 300, 700, 1200]);
}

#[tokio::test(start_paused = true)]
async fn zero_delay_never_touches_the_timer() {
    // tokio rounds any sleep up to a whole millisecond; a retry with a zero
    // delay must not sleep at all, so the paused clock must not move.
    let p = policy("retry-zero-delay", constant_retry(6, Duration::ZERO));
    let provider = Provider::default();
    let origin = Instant::now();
    always(&p, &provider, ProviderError::Unavailable)
        .await
        .unwrap_err();
    assert_eq!(provider.calls(), 6);
    assert_eq!(origin.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_exactly() {
    let p = policy("retry-after", constant_retry(3, ms(10)));
    let provider = Provider::default();
    always(
        &p,
        &provider,
        ProviderError::Throttled(Some(Duration::from_secs(2))),
    )
    .await
    .unwrap_err();
    assert_eq!(provider.calls(), 3);
    // Never sooner than Retry-After, and not later either.
    assert_eq!(provider.gaps(), vec![Duration::from_secs(2); 2]);
}

#[tokio::test(start_paused = true)]
async fn backoff_longer_than_retry_after_wins() {
    let p = policy("retry-after-short", constant_retry(2, ms(300)));
    let provider = Provider::default();
    always(&p, &provider, ProviderError::Throttled(Some(ms(50))))
        .await
        .unwrap_err();
    assert_eq!(provider.gaps(), vec![ms(300)]);
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_is_repeatable_and_bounded() {
    let retry = RetryConfig::new()
        .with_max_attempts(6)
        .with_backoff(Backoff::exponential(ms(100), Duration::from_secs(5)))
        .with_jitter(Jitter::Full)
        .with_budget(None);
    let mut runs = Vec::new();
    for name in ["jitter-a", "jitter-b"] {
        let p = Policy::builder(name)
            .retry(retry)
            .no_breaker()
            .seed(42)
            .no_deadline()
            .build_in(registry())
            .unwrap();
        let provider = Provider::default();
        always(&p, &provider, ProviderError::Unavailable)
            .await
            .unwrap_err();
        runs.push(provider.gaps());
    }
    assert_eq!(runs[0], runs[1], "same seed, same delays");
    for (n, gap) in runs[0].iter().enumerate() {
        let ceiling = ms(100) * 2u32.pow(n as u32) + ms(1);
        assert!(*gap <= ceiling, "retry {n}: {gap:?} > {ceiling:?}");
    }
    assert!(
        runs[0].windows(2).any(|w| w[0] != w[1]),
        "jitter varies the delays"
    );
}

#[tokio::test(start_paused = true)]
async fn equal_jitter_keeps_at_least_half_the_delay() {
    let retry = RetryConfig::new()
        .with_max_attempts(8)
        .with_backoff(Backoff::constant(ms(200)))
        .with_jitter(Jitter::Equal)
        .with_budget(None);
    let p = policy("jitter-equal", retry);
    let provider = Provider::default();
    always(&p, &provider, ProviderError::Unavailable)
        .await
        .unwrap_err();
    for gap in provider.gaps() {
        assert!(gap >= ms(100) && gap <= ms(201), "{gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn decorrelated_backoff_grows_within_bounds() {
    let retry = RetryConfig::new()
        .with_max_attempts(10)
        .with_backoff(Backoff::decorrelated(ms(10), ms(400)))
        .with_budget(None);
    let p = Policy::builder("decorrelated")
        .retry(retry)
        .no_breaker()
        .no_deadline()
        .seed(3)
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    always(&p, &provider, ProviderError::Unavailable)
        .await
        .unwrap_err();
    let gaps = provider.gaps();
    assert_eq!(gaps.len(), 9);
    let mut previous = ms(10);
    for gap in gaps {
        assert!(gap >= ms(10) && gap <= ms(401), "{gap:?}");
        assert!(
            gap <= previous * 3 + ms(1),
            "{gap:?} vs previous {previous:?}"
        );
        previous = gap;
    }
}

#[tokio::test(start_paused = true)]
async fn the_body_sees_its_attempt_number() {
    let p = policy("retry-attempt-number", constant_retry(3, ms(5)));
    let mut seen = Vec::new();
    let _ = p
        .run(|| {
            seen.push(buttress::attempt());
            async { Err::<(), _>(ProviderError::Unavailable) }
        })
        .await;
    // The closure runs before the attempt's body is polled; check inside too.
    let inside = std::cell::RefCell::new(Vec::new());
    let _ = p
        .run(|| {
            let inside = &inside;
            async move {
                inside.borrow_mut().push(buttress::attempt());
                Err::<(), _>(ProviderError::Unavailable)
            }
        })
        .await;
    assert_eq!(inside.into_inner(), vec![1, 2, 3]);
    assert_eq!(buttress::attempt(), 0, "outside a wrapped body");
    assert_eq!(seen.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_outcome_unknown() {
    let retry = constant_retry(3, ms(10));
    let provider = Provider::default();
    let p = Policy::builder("retry-timeout")
        .timeout(ms(100))
        .retry(retry)
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let slow = || {
        let provider = provider.clone();
        async move {
            provider.hit();
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<u32, ProviderError>(1)
        }
    };
    let origin = Instant::now();
    let err = p.run(slow).await.unwrap_err();
    assert_eq!(err.reason(), Some("timeout"));
    assert_eq!(
        err,
        ProviderError::Buttress("timeout".into(), ErrorClass::OutcomeUnknown)
    );
    assert_eq!(
        provider.calls(),
        1,
        "a timeout on a non-idempotent call is not retried"
    );
    assert_eq!(origin.elapsed(), ms(100));

    let provider2 = Provider::default();
    let idempotent = Policy::builder("retry-timeout-idem")
        .timeout(ms(100))
        .retry(retry)
        .no_breaker()
        .idempotent(true)
        .build_in(registry())
        .unwrap();
    let origin = Instant::now();
    let err = idempotent
        .run(|| {
            let provider = provider2.clone();
            async move {
                provider.hit();
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<u32, ProviderError>(1)
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some("timeout"));
    assert_eq!(provider2.calls(), 3);
    assert_eq!(origin.elapsed(), ms(100 + 10 + 100 + 10 + 100));
}

#[tokio::test(start_paused = true)]
async fn retry_off_makes_one_attempt() {
    let p = policy("retry-off", RetryConfig::off());
    let provider = Provider::default();
    always(&p, &provider, ProviderError::Unavailable)
        .await
        .unwrap_err();
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn run_or_else_falls_back_after_the_retries_only() {
    // Three attempts fail: the fallback answers, once, with the last error.
    let p = policy("run-or-else", constant_retry(3, ms(10)));
    let provider = Provider::default();
    let mut seen = Vec::new();
    let answer = p
        .run_or_else(
            || {
                let provider = provider.clone();
                async move {
                    provider.hit();
                    Err::<u32, _>(ProviderError::Unavailable)
                }
            },
            |error| {
                seen.push(error);
                async { Ok(99) }
            },
        )
        .await;
    assert_eq!(answer.unwrap(), 99);
    assert_eq!(
        provider.calls(),
        3,
        "the fallback comes after every attempt"
    );
    assert_eq!(seen, vec![ProviderError::Unavailable]);

    // A success never reaches the fallback.
    let answer = p
        .run_or_else(
            || async { Ok::<u32, ProviderError>(1) },
            |_| async { panic!("no fallback for a success") },
        )
        .await;
    assert_eq!(answer.unwrap(), 1);
}

/// Drives one call by hand, failing every attempt with `error`; `set_up`
/// adjusts the call before its first attempt.
async fn drive_by_hand(
    policy: &Policy,
    provider: &Provider,
    error: ProviderError,
    set_up: impl FnOnce(&mut buttress::Call<'_, u32, ProviderError>),
) -> Result<u32, ProviderError> {
    let mut call = policy.call::<u32, ProviderError>();
    set_up(&mut call);
    loop {
        let attempt = call.attempt(async {
            provider.hit();
            Err(error.clone())
        });
        if let std::ops::ControlFlow::Break(result) = attempt.await {
            return result;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_can_be_made_idempotent_or_not_whatever_the_policy() {
    let not_idempotent = policy("retry-call-idempotent-1", constant_retry(3, ms(10)));
    let provider = Provider::default();
    drive_by_hand(&not_idempotent, &provider, ProviderError::Lost, |call| {
        assert!(!call.is_idempotent());
        call.set_idempotent(true);
    })
    .await
    .unwrap_err();
    assert_eq!(provider.calls(), 3, "made idempotent: retried");

    let idempotent = Policy::builder("retry-call-idempotent-2")
        .retry(constant_retry(3, ms(10)))
        .no_breaker()
        .idempotent(true)
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    drive_by_hand(&idempotent, &provider, ProviderError::Lost, |call| {
        assert!(call.is_idempotent());
        call.set_idempotent(false);
    })
    .await
    .unwrap_err();
    assert_eq!(provider.calls(), 1, "made not idempotent: not retried");
}

#[tokio::test(start_paused = true)]
async fn a_call_can_lower_its_attempts_but_not_raise_them() {
    let p = policy("retry-call-limit", constant_retry(3, ms(10)));
    for (limit, expected) in [(0, 1), (1, 1), (2, 2), (3, 3), (10, 3)] {
        let provider = Provider::default();
        drive_by_hand(&p, &provider, ProviderError::Unavailable, |call| {
            call.limit_attempts(limit);
        })
        .await
        .unwrap_err();
        assert_eq!(provider.calls(), expected, "limit {limit}");
    }
}
