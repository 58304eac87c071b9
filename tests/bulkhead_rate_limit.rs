//! Bulkhead and rate limiter, through the call driver.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress::bulkhead::BulkheadConfig;
use buttress::rate_limit::{LimiterClock, RateLimitConfig};
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::Policy;
use common::{ms, registry, Provider, ProviderError};
use tokio::sync::Notify;
use tokio::time::Instant;

fn bulkhead_policy(name: &str, max: u32, wait: Duration) -> Policy {
    Policy::builder(name.to_owned())
        .bulkhead(
            BulkheadConfig::new()
                .with_max_concurrent(max)
                .with_max_wait(wait),
        )
        .retry(RetryConfig::off())
        .no_breaker()
        .build_in(registry())
        .unwrap()
}

async fn held(policy: &Policy, provider: &Provider, release: &Notify) -> Result<(), ProviderError> {
    policy
        .run(|| async {
            provider.hit();
            release.notified().await;
            Ok(())
        })
        .await
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_rejects_at_once_without_max_wait() {
    let p = bulkhead_policy("bulkhead-reject", 2, Duration::ZERO);
    let provider = Provider::default();
    let release = Notify::new();
    let (a, b, c) = tokio::join!(
        held(&p, &provider, &release),
        held(&p, &provider, &release),
        async {
            tokio::task::yield_now().await;
            let r = held(&p, &provider, &release).await;
            release.notify_waiters();
            r
        },
    );
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(c.unwrap_err().reason(), Some("bulkhead"));
    assert_eq!(
        provider.calls(),
        2,
        "the rejected call never reached the provider"
    );
    assert_eq!(
        p.shared().bulkhead().unwrap().in_flight(),
        0,
        "slots are returned"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_takes_the_next_free_slot() {
    let p = bulkhead_policy("bulkhead-wait", 1, ms(50));
    let provider = Provider::default();
    let origin = Instant::now();
    let (first, second) = tokio::join!(
        p.run(|| async {
            provider.hit();
            tokio::time::sleep(ms(30)).await;
            Ok::<_, ProviderError>(1)
        }),
        p.run(|| async {
            provider.hit();
            Ok::<_, ProviderError>(Instant::now())
        }),
    );
    assert_eq!(first.unwrap(), 1);
    assert_eq!(
        second.unwrap() - origin,
        ms(30),
        "admitted when the slot freed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_max_wait_is_rejected_at_max_wait() {
    let p = bulkhead_policy("bulkhead-timeout", 1, ms(50));
    let provider = Provider::default();
    let origin = Instant::now();
    let (_, second) = tokio::join!(
        p.run(|| async {
            provider.hit();
            tokio::time::sleep(ms(500)).await;
            Ok::<_, ProviderError>(())
        }),
        async {
            let r = p.run(|| async { Ok::<_, ProviderError>(()) }).await;
            (r, origin.elapsed())
        },
    );
    assert_eq!(second.0.unwrap_err().reason(), Some("bulkhead"));
    assert_eq!(second.1, ms(50));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_waits_spend_the_deadline() {
    let p = Policy::builder("bulkhead-deadline")
        .bulkhead(
            BulkheadConfig::new()
                .with_max_concurrent(1)
                .with_max_wait(Duration::from_secs(10)),
        )
        .timeout(ms(20))
        .deadline(ms(20))
        .retry(RetryConfig::off())
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let origin = Instant::now();
    let (_, second) = tokio::join!(
        p.run(|| async {
            tokio::time::sleep(ms(15)).await;
            Ok::<_, ProviderError>(())
        }),
        async {
            tokio::task::yield_now().await;
            let r = p
                .run(|| async {
                    tokio::time::sleep(ms(15)).await;
                    Ok::<_, ProviderError>(())
                })
                .await;
            (r, origin.elapsed())
        },
    );
    // Waited 15 ms for the slot, leaving 5 ms of deadline for a 15 ms body.
    assert_eq!(second.0.unwrap_err().reason(), Some("deadline"));
    assert_eq!(second.1, ms(20));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_returns_its_slot() {
    let p = bulkhead_policy("bulkhead-cancel", 1, Duration::ZERO);
    let call = p.run(std::future::pending::<Result<(), ProviderError>>);
    let _ = tokio::time::timeout(ms(10), call).await;
    assert_eq!(p.shared().bulkhead().unwrap().in_flight(), 0);
    p.run(|| async { Ok::<_, ProviderError>(()) })
        .await
        .unwrap();
}

/// Waiters dropped mid-wait (a caller's own timeout, a cancelled request)
/// take nothing with them: no slot, and no wake-up a live waiter needed.
#[tokio::test(start_paused = true)]
async fn waiters_dropped_mid_wait_leak_nothing() {
    let p = Arc::new(bulkhead_policy("bulkhead-drop-waiters", 1, ms(1_000)));
    let release = Arc::new(Notify::new());
    let holder = {
        let (p, release) = (p.clone(), release.clone());
        tokio::spawn(async move {
            p.run(|| async {
                release.notified().await;
                Ok::<_, ProviderError>(())
            })
            .await
        })
    };
    tokio::time::sleep(ms(1)).await;
    // Fifty callers queue for the slot; forty-nine are dropped mid-wait,
    // interleaved with the one that stays.
    let mut cancelled = Vec::new();
    for _ in 0..49 {
        let p = p.clone();
        cancelled.push(tokio::spawn(async move {
            p.run(|| async { Ok::<_, ProviderError>(()) }).await
        }));
    }
    let live = {
        let p = p.clone();
        tokio::spawn(async move {
            let asked = tokio::time::Instant::now();
            p.run(|| async { Ok::<_, ProviderError>(()) })
                .await
                .unwrap();
            asked.elapsed()
        })
    };
    tokio::time::sleep(ms(10)).await;
    for task in &cancelled {
        task.abort();
    }
    tokio::time::sleep(ms(10)).await;
    release.notify_one();
    holder.await.unwrap().unwrap();
    // The live waiter gets the slot as soon as it is freed, not at the end
    // of its wait: the dropped waiters did not swallow its wake-up.
    let waited = live.await.unwrap();
    assert!(waited < ms(100), "the live waiter waited {waited:?}");
    assert_eq!(p.shared().bulkhead().unwrap().in_flight(), 0);
    // And the slot is free for the next caller at once.
    let next = tokio::time::timeout(ms(1), p.run(|| async { Ok::<_, ProviderError>(()) }));
    next.await.expect("no wait").unwrap();
}

#[test]
fn concurrency_never_exceeds_the_limit_under_real_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let p = Arc::new(bulkhead_policy(
            "bulkhead-threads",
            3,
            Duration::from_secs(5),
        ));
        let now = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (p, now, peak) = (p.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    p.run(|| async {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, ProviderError>(())
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(p.shared().bulkhead().unwrap().in_flight(), 0);
    });
}

fn limited(name: &str, per_second: u32, burst: u32, retry: RetryConfig) -> Policy {
    Policy::builder(name.to_owned())
        .rate_limit(
            RateLimitConfig::new()
                .with_per_second(per_second)
                .with_burst(burst)
                .with_clock(LimiterClock::Tokio),
        )
        .retry(retry)
        .no_breaker()
        .build_in(registry())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_spaces_calls_after_the_burst() {
    let p = limited("rate-spacing", 10, 2, RetryConfig::off());
    let provider = Provider::default();
    let origin = Instant::now();
    let calls = (0..5).map(|_| {
        p.run(|| async {
            provider.hit();
            Ok::<_, ProviderError>(())
        })
    });
    for r in futures_join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(provider.starts_ms(origin), vec![0, 0, 100, 200, 300]);
}

#[tokio::test(start_paused = true)]
async fn retries_take_rate_limit_slots_too() {
    let retry = RetryConfig::new()
        .with_max_attempts(3)
        .with_backoff(Backoff::constant(Duration::ZERO))
        .with_jitter(Jitter::None)
        .with_budget(None);
    let p = limited("rate-retries", 4, 1, retry);
    let provider = Provider::default();
    let origin = Instant::now();
    let _ = p
        .run(|| async {
            provider.hit();
            Err::<(), _>(ProviderError::Unavailable)
        })
        .await;
    assert_eq!(provider.starts_ms(origin), vec![0, 250, 500]);
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_is_a_rejection() {
    let p = Policy::builder("rate-deadline")
        .rate_limit(
            RateLimitConfig::new()
                .with_per_second(1)
                .with_burst(1)
                .with_clock(LimiterClock::Tokio),
        )
        .timeout(ms(500))
        .deadline(ms(500))
        .retry(RetryConfig::off())
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    p.run(|| async { Ok::<_, ProviderError>(provider.hit()) })
        .await
        .unwrap();
    let err = p
        .run(|| async { Ok::<_, ProviderError>(provider.hit()) })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some("rate_limit"));
    assert_eq!(provider.calls(), 1);
    // Rejections reserve nothing: after a second the next call goes at once.
    tokio::time::advance(Duration::from_secs(1)).await;
    let origin = Instant::now();
    p.run(|| async { Ok::<_, ProviderError>(provider.hit()) })
        .await
        .unwrap();
    assert_eq!(origin.elapsed(), Duration::ZERO);
}

/// `join_all` without pulling in the futures crate.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(start_paused = true)]
async fn a_retry_times_out_from_when_the_bulkhead_let_it_in() {
    // Attempt 1 fails at once; its retry (10 ms later) waits in the
    // bulkhead until another call frees it at 80 ms, then takes 60 ms,
    // inside its 100 ms timeout counted from 80 ms (not from 10 ms).
    let p = Policy::builder("bulkhead-retry-timeout")
        .bulkhead(
            BulkheadConfig::new()
                .with_max_concurrent(1)
                .with_max_wait(ms(500)),
        )
        .timeout(ms(100))
        .retry(
            RetryConfig::new()
                .with_max_attempts(2)
                .with_backoff(Backoff::constant(ms(10)))
                .with_jitter(Jitter::None),
        )
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    let origin = Instant::now();
    let holder = async {
        // Queued behind the first attempt; holds the slot from 0 to 80 ms.
        tokio::task::yield_now().await;
        p.run(|| async {
            tokio::time::sleep(ms(80)).await;
            Ok::<_, ProviderError>(0)
        })
        .await
    };
    let retried = p.run(|| async {
        if provider.hit() == 1 {
            tokio::task::yield_now().await;
            return Err(ProviderError::Unavailable);
        }
        tokio::time::sleep(ms(60)).await;
        Ok(1)
    });
    let (held, retried) = tokio::join!(holder, retried);
    assert_eq!(held.unwrap(), 0);
    assert_eq!(retried.unwrap(), 1, "the retry had its whole timeout");
    assert_eq!(provider.starts_ms(origin), vec![0, 80]);
}
