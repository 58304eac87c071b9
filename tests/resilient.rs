//! Behaviour through `#[resilient]`, on tokio's paused clock: each key of
//! the attribute, observed from outside the wrapped function.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use buttress::{resilient, BreakerState, Registry};
use common::{ms, Provider, ProviderError};
use tokio::time::Instant;

struct Client {
    provider: Provider,
    script: std::sync::Mutex<Vec<Result<u32, ProviderError>>>,
}

impl Client {
    fn new(script: Vec<Result<u32, ProviderError>>) -> Self {
        let mut script = script;
        script.reverse();
        Self {
            provider: Provider::default(),
            script: std::sync::Mutex::new(script),
        }
    }

    /// The next scripted answer (the last one repeats).
    fn answer(&self) -> Result<u32, ProviderError> {
        self.provider.hit();
        let mut script = self.script.lock().unwrap();
        if script.len() > 1 {
            script.pop().unwrap()
        } else {
            script[0].clone()
        }
    }

    #[resilient(
        provider = "macro-retry",
        retry(max_attempts = 4, backoff = constant("10ms"), jitter = none, budget = off),
        breaker = off
    )]
    async fn fetch(&self) -> Result<u32, ProviderError> {
        self.answer()
    }

    /// As `fetch`, on a provider of its own: a `Retry-After` pauses the
    /// whole provider, and the tests run at once.
    #[resilient(
        provider = "macro-retry-after",
        retry(max_attempts = 4, backoff = constant("10ms"), jitter = none, budget = off),
        breaker = off
    )]
    async fn fetch_throttled(&self) -> Result<u32, ProviderError> {
        self.answer()
    }

    #[resilient(
        provider = "macro-idempotent",
        retry(max_attempts = 3, backoff = constant("10ms"), jitter = none, budget = off),
        breaker = off,
        idempotent
    )]
    async fn fetch_idempotent(&self) -> Result<u32, ProviderError> {
        self.answer()
    }
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_error_class() {
    let client = Client::new(vec![
        Err(ProviderError::Unavailable),
        Err(ProviderError::Unavailable),
        Ok(7),
    ]);
    assert_eq!(client.fetch().await.unwrap(), 7);
    assert_eq!(client.provider.calls(), 3);
    assert_eq!(client.provider.gaps(), vec![ms(10), ms(10)]);

    let client = Client::new(vec![Err(ProviderError::Declined)]);
    assert_eq!(client.fetch().await.unwrap_err(), ProviderError::Declined);
    assert_eq!(client.provider.calls(), 1, "permanent: no retry");

    let client = Client::new(vec![Err(ProviderError::Lost)]);
    assert_eq!(client.fetch().await.unwrap_err(), ProviderError::Lost);
    assert_eq!(
        client.provider.calls(),
        1,
        "outcome unknown, not idempotent: no retry"
    );

    let client = Client::new(vec![Err(ProviderError::Lost)]);
    assert_eq!(
        client.fetch_idempotent().await.unwrap_err(),
        ProviderError::Lost
    );
    assert_eq!(
        client.provider.calls(),
        3,
        "outcome unknown, idempotent: retried"
    );

    let client = Client::new(vec![Err(ProviderError::Unavailable)]);
    assert_eq!(
        client.fetch().await.unwrap_err(),
        ProviderError::Unavailable
    );
    assert_eq!(client.provider.calls(), 4, "max_attempts");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_through_the_macro() {
    let client = Client::new(vec![
        Err(ProviderError::Throttled(Some(Duration::from_secs(3)))),
        Ok(1),
    ]);
    assert_eq!(client.fetch_throttled().await.unwrap(), 1);
    assert_eq!(client.provider.gaps(), vec![Duration::from_secs(3)]);
}

#[resilient(provider = "macro-deadline", timeout = "1s", deadline = "1500ms", retry(backoff = constant("100ms"), jitter = none), idempotent, breaker = off)]
async fn hangs(provider: &Provider) -> Result<(), ProviderError> {
    provider.hit();
    std::future::pending::<()>().await;
    Ok(())
}

#[resilient(provider = "macro-timeout", timeout = "200ms", breaker = off)]
async fn slow(provider: &Provider) -> Result<(), ProviderError> {
    provider.hit();
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn timeout_and_deadline() {
    let provider = Provider::default();
    let origin = Instant::now();
    let err = slow(&provider).await.unwrap_err();
    assert_eq!(err.reason(), Some("timeout"));
    assert_eq!(origin.elapsed(), ms(200));
    assert_eq!(provider.calls(), 1);

    let provider = Provider::default();
    let origin = Instant::now();
    let err = hangs(&provider).await.unwrap_err();
    assert_eq!(err.reason(), Some("deadline"));
    assert_eq!(origin.elapsed(), ms(1500));
    assert_eq!(provider.starts_ms(origin), vec![0, 1100]);
}

#[resilient(
    provider = "macro-breaker",
    retry = off,
    breaker(failure_rate = 0.5, window = 4, min_calls = 4, open_for = "10s", half_open_probes = 2)
)]
async fn guarded(provider: &Provider, fail: bool) -> Result<(), ProviderError> {
    provider.hit();
    if fail {
        Err(ProviderError::Unavailable)
    } else {
        Ok(())
    }
}

#[resilient(provider = "macro-breaker", retry = off)]
async fn guarded_too(provider: &Provider) -> Result<(), ProviderError> {
    provider.hit();
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn breaker_trips_probes_and_closes_and_is_shared_by_provider() {
    let provider = Provider::default();
    for fail in [false, true, false, true] {
        let _ = guarded(&provider, fail).await;
    }
    let handle = Registry::global().breaker("macro-breaker");
    assert_eq!(
        handle.state(),
        BreakerState::Open,
        "2 failures of 4 at rate 0.5"
    );
    // A call that meets the open breaker waits, sending nothing, until the
    // breaker probes (its 30 s deadline allows it): it is the first probe.
    let start = tokio::time::Instant::now();
    guarded(&provider, false).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10),
        "waited for the probe"
    );
    assert_eq!(provider.calls(), 5);
    assert_eq!(handle.state(), BreakerState::HalfOpen);
    guarded_too(&provider).await.unwrap();
    assert_eq!(
        handle.state(),
        BreakerState::Closed,
        "both probes succeeded, from either function of the provider"
    );
}

#[resilient(provider = "macro-bulkhead", retry = off, bulkhead(max_concurrent = 1, max_wait = "20ms"))]
async fn exclusive(hold: Duration) -> Result<(), ProviderError> {
    tokio::time::sleep(hold).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn bulkhead_through_the_macro() {
    let (a, b) = tokio::join!(exclusive(ms(100)), async {
        tokio::task::yield_now().await;
        exclusive(ms(1)).await
    });
    a.unwrap();
    assert_eq!(b.unwrap_err().reason(), Some("bulkhead"));
}

#[resilient(
    provider = "macro-rate",
    retry = off,
    rate_limit(per_second = 5, burst = 1, clock = tokio)
)]
async fn limited(provider: &Provider) -> Result<(), ProviderError> {
    provider.hit();
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn rate_limit_through_the_macro() {
    let provider = Provider::default();
    let origin = Instant::now();
    for _ in 0..3 {
        limited(&provider).await.unwrap();
    }
    assert_eq!(provider.starts_ms(origin), vec![0, 200, 400]);
}

async fn cached_price(sku: &str, error: ProviderError) -> Result<u32, ProviderError> {
    assert_eq!(sku, "sku-1");
    match error {
        ProviderError::Unavailable => Ok(99),
        other => Err(other),
    }
}

#[resilient(provider = "macro-fallback", retry = off, fallback = cached_price)]
async fn price(sku: &str) -> Result<u32, ProviderError> {
    let _ = sku;
    Err(ProviderError::Unavailable)
}

#[tokio::test(start_paused = true)]
async fn fallback_gets_the_arguments_and_the_error() {
    assert_eq!(price("sku-1").await.unwrap(), 99);
}

static SEEN: AtomicU32 = AtomicU32::new(0);

#[resilient(
    provider = "macro-context",
    timeout = "2s",
    deadline = "5s",
    retry(max_attempts = 3, backoff = constant("1s"), jitter = none),
    idempotent(key = format!("order-{}", order))
)]
async fn with_context(order: u32) -> Result<(u32, Duration, String), ProviderError> {
    tokio::time::sleep(ms(1)).await;
    let attempt = buttress::attempt();
    SEEN.fetch_add(1, Ordering::SeqCst);
    if attempt < 3 {
        return Err(ProviderError::Unavailable);
    }
    let key = buttress::idempotency_key().expect("set by #[resilient]");
    Ok((attempt, buttress::remaining().unwrap(), key.to_string()))
}

#[tokio::test(start_paused = true)]
async fn the_body_sees_attempt_remaining_and_key() {
    let (attempt, remaining, key) = with_context(42).await.unwrap();
    assert_eq!(attempt, 3);
    assert_eq!(
        remaining,
        Duration::from_secs(5) - ms(3) - Duration::from_secs(2)
    );
    assert_eq!(key, "order-42");
    assert_eq!(SEEN.load(Ordering::SeqCst), 3);
}
