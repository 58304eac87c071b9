use buttress::resilient;
use std::time::Duration;

#[derive(Debug, buttress::Classify)]
pub enum ApiError {
    #[classify(transient)]
    Unavailable,
    #[classify(permanent)]
    Rejected(String),
    #[classify(delegate)]
    Resilience(buttress::Error),
}

impl From<buttress::Error> for ApiError {
    fn from(e: buttress::Error) -> Self {
        Self::Resilience(e)
    }
}

async fn cached(order: &u64, error: ApiError) -> Result<String, ApiError> {
    let _ = error;
    Ok(format!("cached-{order}"))
}

#[resilient(
    provider = "every-key",
    timeout = "2s",
    adaptive_timeout(min = "20ms", max = "4s", percentile = 0.95, multiplier = 2.0),
    deadline = "10s",
    retry(max_attempts = 4, backoff = exponential(base = "100ms", max = "5s"), jitter = full, budget = ratio(0.1, cap = 5)),
    breaker(failure_rate = 0.5, slow_rate = 0.8, slow_call = "1s", window = 20, min_calls = 10, consecutive_failures = 5, open_for = "30s", probe_interval = "100ms", max_probe_interval = "1s", half_open_probes = 3),
    bulkhead(max_concurrent = 32, max_wait = "50ms"),
    rate_limit(per_second = 100, burst = 20),
    idempotent(key = format!("charge-{order}")),
    hedge,
    fallback = cached,
    recovery(wait = true, max_waiting = 64, pace = 1.5, min_rate = 5, slow_start = "2s", learn_quota = false),
    throttle(k = 2, window = "1m"),
)]
async fn charge(order: &u64) -> Result<String, ApiError> {
    Ok(buttress::idempotency_key().unwrap().to_string())
}

#[resilient(
    retry(backoff = decorrelated("10ms", "1s"), jitter = equal, budget = off),
    breaker(window = "30s", min_calls = 5),
    recovery,
    throttle,
)]
async fn decorrelated() -> Result<u8, ApiError> {
    Ok(1)
}

#[resilient(retry = off, breaker = off, idempotent, recovery = fail_fast, throttle = off)]
async fn plain() -> Result<u8, ApiError> {
    let _ = Duration::from_secs(1);
    Ok(2)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(charge(&7).await.unwrap(), "charge-7");
        assert_eq!(decorrelated().await.unwrap(), 1);
        assert_eq!(plain().await.unwrap(), 2);
    });
}
