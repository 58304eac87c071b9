//! The layer over `tower::service_fn`, on tokio's paused clock.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress_core::breaker::BreakerConfig;
use buttress_core::budget::BudgetConfig;
use buttress_core::bulkhead::BulkheadConfig;
use buttress_core::retry::{Backoff, Jitter, RetryConfig};
use buttress_core::{BreakerState, Policy, PolicyBuilder};
use buttress_tower::{ByError, Error, Readiness, Replay, ResilienceLayer};
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

fn retries(max_attempts: u32) -> RetryConfig {
    RetryConfig::new()
        .with_max_attempts(max_attempts)
        .with_backoff(Backoff::constant(Duration::from_millis(10)))
        .with_jitter(Jitter::None)
        .with_budget(None)
}

fn builder(provider: &'static str) -> PolicyBuilder {
    Policy::builder(provider)
        .retry(retries(3))
        .no_breaker()
        .timeout(Duration::from_secs(1))
        .deadline(Duration::from_secs(10))
        .seed(7)
}

/// A service failing with `kinds` in turn (then succeeding), counting calls.
fn scripted(
    kinds: Vec<Option<io::ErrorKind>>,
    calls: Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = io::Error, Future = impl Send> + Clone + Send + 'static
{
    let kinds = Arc::new(kinds);
    service_fn(move |request: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        let kind = kinds.get(n).copied().flatten();
        async move {
            match kind {
                Some(kind) => Err(io::Error::from(kind)),
                None => Ok(request + 1),
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_up_to_max_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let refused = Some(io::ErrorKind::ConnectionRefused);
    let layer =
        ResilienceLayer::new(builder("tower-transient").build().unwrap()).classify_with(ByError);
    let service = layer.layer(scripted(vec![refused; 10], Arc::clone(&calls)));
    let error = service.oneshot(1).await.unwrap_err();
    assert!(
        matches!(&error, Error::Inner(e) if e.kind() == io::ErrorKind::ConnectionRefused),
        "{error:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Two refusals, then an answer: the caller gets the answer.
    calls.store(0, Ordering::SeqCst);
    let layer =
        ResilienceLayer::new(builder("tower-transient-2").build().unwrap()).classify_with(ByError);
    let service = layer.layer(scripted(vec![refused, refused], Arc::clone(&calls)));
    assert_eq!(service.oneshot(41).await.unwrap(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_outcome_is_retried_only_when_idempotent() {
    let reset = Some(io::ErrorKind::ConnectionReset);

    let calls = Arc::new(AtomicU32::new(0));
    let layer =
        ResilienceLayer::new(builder("tower-unknown").build().unwrap()).classify_with(ByError);
    let service = layer.layer(scripted(vec![reset], Arc::clone(&calls)));
    assert!(service.oneshot(1).await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a non-idempotent call is not repeated"
    );

    let calls = Arc::new(AtomicU32::new(0));
    let policy = builder("tower-unknown-idem")
        .idempotent(true)
        .build()
        .unwrap();
    let layer = ResilienceLayer::new(policy).classify_with(ByError);
    let service = layer.layer(scripted(vec![reset], Arc::clone(&calls)));
    assert_eq!(service.oneshot(1).await.unwrap(), 2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "an idempotent policy repeats it"
    );
}

/// A request that says it is safe to repeat.
#[derive(Clone)]
struct Lookup(u32);

impl Replay for Lookup {
    type Source = Self;
    fn into_source(self) -> (Self, Self) {
        (self.clone(), self)
    }
    fn replay(source: &mut Self) -> Option<Self> {
        Some(source.clone())
    }
    fn is_idempotent(&self) -> bool {
        true
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_marked_idempotent_is_retried_after_an_unknown_outcome() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let inner = service_fn(move |Lookup(n)| {
        let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            } else {
                Ok(n)
            }
        }
    });
    let layer =
        ResilienceLayer::new(builder("tower-unknown-req").build().unwrap()).classify_with(ByError);
    assert_eq!(layer.layer(inner).oneshot(Lookup(5)).await.unwrap(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A request that cannot be copied: one attempt only.
struct Once;

impl Replay for Once {
    type Source = ();
    fn into_source(self) -> (Self, ()) {
        (self, ())
    }
    fn replay((): &mut ()) -> Option<Self> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_copied_gets_one_attempt() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let inner = service_fn(move |Once| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Err::<u32, _>(io::Error::from(io::ErrorKind::ConnectionRefused)) }
    });
    let layer = ResilienceLayer::new(builder("tower-once").build().unwrap()).classify_with(ByError);
    let error = layer.layer(inner).oneshot(Once).await.unwrap_err();
    assert!(matches!(error, Error::Inner(_)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Readiness now, without waiting: `Some(true)` ready, `None` pending.
async fn ready_now<S: Service<u32>>(service: &mut S) -> Option<bool> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match service.poll_ready(cx) {
            std::task::Poll::Ready(r) => Some(r.is_ok()),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_refuses_without_calling_the_inner_service() {
    let calls = Arc::new(AtomicU32::new(0));
    let refused = Some(io::ErrorKind::ConnectionRefused);
    let policy = builder("tower-breaker")
        .retry(RetryConfig::off())
        .breaker(
            BreakerConfig::new()
                .with_consecutive_failures(2)
                .with_open_for(Duration::from_secs(30)),
        )
        .build()
        .unwrap();
    let layer = ResilienceLayer::new(policy.clone()).classify_with(ByError);
    let mut service = layer.layer(scripted(vec![refused; 10], Arc::clone(&calls)));
    assert_eq!(ready_now(&mut service).await, Some(true), "closed: ready");
    for _ in 0..2 {
        let _ = service.ready().await.unwrap().call(1).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(policy.shared().breaker().state(), BreakerState::Open);

    // Honest readiness: not ready while open, ready when a probe is due.
    assert_eq!(ready_now(&mut service).await, None, "open: not ready");
    let opened = Instant::now();
    service.ready().await.unwrap();
    assert_eq!(
        opened.elapsed(),
        Duration::from_secs(30),
        "woken when the probe is due"
    );

    // Fail-fast readiness: ready, and the call is refused without the inner
    // service being called.
    let policy = builder("tower-breaker-fast")
        .retry(RetryConfig::off())
        .breaker(BreakerConfig::new().with_consecutive_failures(1))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let layer = ResilienceLayer::new(policy)
        .classify_with(ByError)
        .readiness(Readiness::FailFast);
    let mut service = layer.layer(scripted(vec![refused; 10], Arc::clone(&calls)));
    let _ = service.ready().await.unwrap().call(1).await;
    assert_eq!(ready_now(&mut service).await, Some(true));
    let error = service.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Resilience(buttress_core::Error::CircuitOpen { .. })
        ),
        "{error:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the refused call never reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_makes_poll_ready_wait() {
    let policy = builder("tower-bulkhead")
        .bulkhead(BulkheadConfig::new().with_max_concurrent(1))
        .build()
        .unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
    let inner = service_fn(move |n: u32| {
        let released = Arc::clone(&released);
        async move {
            if let Some(rx) = released.lock().await.take() {
                let _ = rx.await;
            }
            Ok::<_, io::Error>(n)
        }
    });
    let mut service = ResilienceLayer::new(policy)
        .classify_with(ByError)
        .layer(inner);
    let first = tokio::spawn(service.ready().await.unwrap().call(1));
    tokio::task::yield_now().await;
    assert_eq!(
        ready_now(&mut service).await,
        None,
        "the only slot is taken"
    );
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    service.ready().await.unwrap();
    assert_eq!(service.call(2).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_retries() {
    let calls = Arc::new(AtomicU32::new(0));
    let refused = Some(io::ErrorKind::ConnectionRefused);
    let policy = builder("tower-budget")
        .retry(retries(5).with_budget(Some(BudgetConfig::new().with_cap(2).with_ratio(0.01))))
        .build()
        .unwrap();
    let layer = ResilienceLayer::new(policy).classify_with(ByError);
    let service = layer.layer(scripted(vec![refused; 100], Arc::clone(&calls)));
    assert!(service.clone().oneshot(1).await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two retries, then the budget is spent"
    );
    assert!(service.oneshot(1).await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "no retry left for the next call"
    );
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_cuts_a_hanging_call() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let hangs_once = service_fn(move |n: u32| {
        let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                std::future::pending::<()>().await;
            }
            Ok::<_, io::Error>(n)
        }
    });
    let policy = builder("tower-timeout")
        .timeout(Duration::from_millis(200))
        .idempotent(true)
        .build()
        .unwrap();
    let service = ResilienceLayer::new(policy)
        .classify_with(ByError)
        .layer(hangs_once.clone());
    let started = Instant::now();
    assert_eq!(service.oneshot(9).await.unwrap(), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(210),
        "200ms cut, 10ms backoff"
    );

    // Not idempotent: the timeout is the answer.
    calls.store(0, Ordering::SeqCst);
    let policy = builder("tower-timeout-2")
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let service = ResilienceLayer::new(policy)
        .classify_with(ByError)
        .layer(hangs_once);
    let error = service.oneshot(9).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Resilience(buttress_core::Error::Timeout { .. })
        ),
        "{error:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_standard_classifier_reads_io_errors_down_the_source_chain() {
    #[derive(Debug)]
    struct Transport(io::Error);
    impl std::fmt::Display for Transport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport failed")
        }
    }
    impl std::error::Error for Transport {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let inner = service_fn(move |n: u32| {
        let call = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            match call {
                0 => Err(Transport(io::Error::from(io::ErrorKind::ConnectionRefused))),
                _ => Ok(n),
            }
        }
    });
    let service = ResilienceLayer::new(builder("tower-chain").build().unwrap()).layer(inner);
    assert_eq!(service.oneshot(3).await.unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
