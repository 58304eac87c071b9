//! Values that validation accepts but that once broke the runtime: durations
//! too long to add to an instant ("for ever"), casts that wrapped, and the
//! validators' disagreements. Each case panicked or misbehaved before its
//! fix; all go through the public API, on tokio's paused clock.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress::breaker::{Breaker, BreakerConfig, Window};
use buttress::bulkhead::BulkheadConfig;
use buttress::idempotency::{Claim, ClaimRequest, IdempotencyStore, MemoryStore};
use buttress::retry::RetryConfig;
use buttress::{BreakerState, Policy, Registry};
use common::{constant_retry, ms, ProviderError};

/// Answers `Unavailable` `failures` times, then `Ok(n)` with `n` the count
/// of calls so far.
async fn flaky(calls: &AtomicU32, failures: u32) -> Result<u32, ProviderError> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(ms(1)).await;
    if n <= failures {
        Err(ProviderError::Unavailable)
    } else {
        Ok(n)
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_of_duration_max_means_none() {
    let p = Policy::builder("hostile-deadline")
        .timeout(Duration::from_secs(1))
        .deadline(Duration::MAX)
        .retry(constant_retry(3, ms(10)))
        .no_breaker()
        .build_in(&Registry::new())
        .unwrap();
    let calls = AtomicU32::new(0);
    assert_eq!(p.run(|| flaky(&calls, 1)).await.unwrap(), 2);
    // Inside the body the time left is enormous, not an overflow.
    let left = p
        .run(|| async {
            tokio::time::sleep(ms(1)).await;
            Ok::<_, ProviderError>(buttress::remaining().unwrap())
        })
        .await
        .unwrap();
    assert!(left > Duration::from_secs(365 * 24 * 3600), "{left:?}");
}

#[tokio::test(start_paused = true)]
async fn a_backoff_of_duration_max_waits_instead_of_panicking() {
    let p = Policy::builder("hostile-backoff")
        .timeout(Duration::from_secs(1))
        .no_deadline()
        .retry(constant_retry(2, Duration::MAX))
        .no_breaker()
        .build_in(&Registry::new())
        .unwrap();
    let calls = AtomicU32::new(0);
    let start = tokio::time::Instant::now();
    assert_eq!(p.run(|| flaky(&calls, 1)).await.unwrap(), 2);
    assert!(start.elapsed() > Duration::from_secs(50 * 365 * 24 * 3600));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_duration_max_without_a_deadline_does_not_panic() {
    let p = Policy::builder("hostile-retry-after")
        .timeout(Duration::from_secs(1))
        .no_deadline()
        .retry(constant_retry(2, ms(10)))
        .no_breaker()
        .build_in(&Registry::new())
        .unwrap();
    let calls = AtomicU32::new(0);
    let outcome = p
        .run(|| async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(ms(1)).await;
            if n == 0 {
                Err(ProviderError::Throttled(Some(Duration::MAX)))
            } else {
                Ok(n)
            }
        })
        .await;
    // Whether it waits out the cooldown or gives up on it, it answers.
    assert!(calls.load(Ordering::SeqCst) <= 2);
    if let Err(e) = outcome {
        assert!(
            matches!(
                e,
                ProviderError::Throttled(_) | ProviderError::Buttress(_, _)
            ),
            "{e:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_bulkhead_max_wait_of_duration_max_waits_for_a_slot() {
    let p = Policy::builder("hostile-bulkhead")
        .no_timeout()
        .no_deadline()
        .retry(RetryConfig::off())
        .no_breaker()
        .bulkhead(
            BulkheadConfig::new()
                .with_max_concurrent(1)
                .with_max_wait(Duration::MAX),
        )
        .build_in(&Registry::new())
        .unwrap();
    let holder = {
        let p = p.clone();
        tokio::spawn(async move {
            p.run(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, ProviderError>(1)
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    let start = tokio::time::Instant::now();
    let waited = p
        .run(|| async {
            tokio::time::sleep(ms(1)).await;
            Ok::<_, ProviderError>(2)
        })
        .await;
    assert_eq!(waited.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(1) + ms(1));
    assert_eq!(holder.await.unwrap().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_memory_store_keeps_for_ever_without_panicking() {
    let store = MemoryStore::new();
    let forever = ClaimRequest {
        key: "order-1",
        fingerprint: None,
        lease: Duration::MAX,
        ttl: Duration::MAX,
    };
    assert_eq!(
        store.claim(forever).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    assert!(store
        .complete("order-1", 1, b"done", Duration::MAX)
        .await
        .unwrap());
    tokio::time::advance(Duration::from_secs(10 * 365 * 24 * 3600)).await;
    let again = ClaimRequest {
        key: "order-1",
        fingerprint: None,
        lease: Duration::MAX,
        ttl: Duration::MAX,
    };
    assert_eq!(
        store.claim(again).await.unwrap(),
        Claim::Completed {
            record: b"done".to_vec()
        }
    );
}

#[test]
fn a_breaker_open_for_duration_max_stays_open() {
    let config = BreakerConfig::new()
        .with_consecutive_failures(1)
        .with_open_for(Duration::MAX)
        .with_half_open_probes(1);
    config.validate().unwrap();
    let b = Breaker::new("hostile-open-for", config);
    let permit = b.try_acquire().expect("closed");
    b.record(permit, true, None);
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.try_acquire().is_err(), "the next call is not let through");
}

#[test]
fn a_time_window_of_duration_max_does_not_divide_by_zero() {
    let config = BreakerConfig::new()
        .with_window(Window::Time(Duration::MAX))
        .with_min_calls(2)
        .with_failure_rate(0.5);
    config.validate().unwrap();
    let b = Breaker::new("hostile-window", config);
    for failed in [true, true] {
        let permit = b.try_acquire().expect("admitted");
        b.record(permit, failed, Some(ms(1)));
    }
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn validators_agree_on_a_zero_slow_call() {
    let err = BreakerConfig::new()
        .with_slow_calls(0.5, Duration::ZERO)
        .validate()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "breaker.slow_call: must be longer than zero"
    );
}

#[test]
fn a_count_beyond_u32_names_the_upper_limit() {
    let err = Registry::new()
        .load_str(
            "[providers.x]\nbreaker = { min_calls = 5000000000 }\n",
            buttress::config::Format::Toml,
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "providers.x.breaker.min_calls: expected a whole number from 0 to 4294967295, got 5000000000"
    );
}

#[tokio::test(start_paused = true)]
async fn shared_state_survives_concurrent_hostile_calls() {
    // Many calls with a for-ever deadline and bulkhead wait at once: all
    // answered, none lost.
    let p = Policy::builder("hostile-concurrent")
        .timeout(Duration::from_secs(1))
        .deadline(Duration::MAX)
        .retry(constant_retry(2, ms(1)))
        .no_breaker()
        .bulkhead(
            BulkheadConfig::new()
                .with_max_concurrent(4)
                .with_max_wait(Duration::MAX),
        )
        .build_in(&Registry::new())
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let p = p.clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            p.run(|| {
                let calls = Arc::clone(&calls);
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(ms(10)).await;
                    Ok::<_, ProviderError>(())
                }
            })
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 32);
}
