//! A flaky in-process provider, called by a buttress policy and by a naive
//! retry loop under the same schedule: healthy with 20% transient errors,
//! then a total outage, then recovery. Prints what each one cost the
//! provider and what the caller saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress::breaker::BreakerConfig;
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{Classify, Error, ErrorClass, Policy};
use tokio::time::Instant;

#[derive(Debug)]
enum ProviderError {
    Unavailable,
    Resilience(Error),
}

impl Classify for ProviderError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable => ErrorClass::Transient,
            Self::Resilience(e) => e.class(),
        }
    }
}

impl From<Error> for ProviderError {
    fn from(e: Error) -> Self {
        Self::Resilience(e)
    }
}

/// The provider: 5 ms per call; 20% errors in the first phase, all errors
/// in the second, healthy in the third.
struct Flaky {
    start: Instant,
    calls: AtomicU64,
}

impl Flaky {
    async fn call(&self) -> Result<(), ProviderError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = self.start.elapsed();
        let failing = if t < Duration::from_secs(1) {
            n.is_multiple_of(5)
        } else {
            t < Duration::from_secs(2)
        };
        if failing {
            Err(ProviderError::Unavailable)
        } else {
            Ok(())
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    rejected: u64,
    latencies: Vec<Duration>,
}

async fn run(name: &str, use_buttress: bool) {
    let provider = Arc::new(Flaky {
        start: Instant::now(),
        calls: AtomicU64::new(0),
    });
    let policy = Policy::builder(format!("walkthrough-{name}"))
        .timeout(Duration::from_millis(200))
        .deadline(Duration::from_secs(1))
        .retry(
            RetryConfig::new()
                .with_max_attempts(3)
                .with_backoff(Backoff::exponential(
                    Duration::from_millis(20),
                    Duration::from_millis(200),
                ))
                .with_jitter(Jitter::Full),
        )
        .breaker(
            BreakerConfig::new()
                .with_failure_rate(0.5)
                .with_min_calls(10)
                .with_open_for(Duration::from_millis(300))
                .with_half_open_probes(2),
        )
        .build()
        .expect("valid policy");
    let policy = Arc::new(policy);
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..300 {
        tick.tick().await;
        let (policy, provider) = (Arc::clone(&policy), Arc::clone(&provider));
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let result = if use_buttress {
                policy.run(|| provider.call()).await
            } else {
                let mut result = provider.call().await;
                for _ in 1..3 {
                    if result.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    result = provider.call().await;
                }
                result
            };
            (result, began.elapsed())
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        let (result, latency) = task.await.expect("task");
        tally.latencies.push(latency);
        match result {
            Ok(()) => tally.ok += 1,
            Err(ProviderError::Resilience(e)) if e.is_rejection() => tally.rejected += 1,
            Err(_) => tally.failed += 1,
        }
    }
    tally.latencies.sort();
    let pct = |p: f64| tally.latencies[((tally.latencies.len() as f64 - 1.0) * p) as usize];
    let calls = provider.calls.load(Ordering::Relaxed);
    println!(
        "{name:<9} {:>7} {:>5} {:>6} {:>8} {:>14} {:>13.2} {:>8.1} {:>8.1}",
        300,
        tally.ok,
        tally.failed,
        tally.rejected,
        calls,
        calls as f64 / 300.0,
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
}

#[tokio::main]
async fn main() {
    println!("300 calls at 100/s; provider: 20% errors for 1 s, down for 1 s, then healthy\n");
    println!(
        "{:<9} {:>7} {:>5} {:>6} {:>8} {:>14} {:>13} {:>8} {:>8}",
        "client",
        "calls",
        "ok",
        "failed",
        "rejected",
        "provider_calls",
        "amplification",
        "p50_ms",
        "p99_ms"
    );
    run("buttress", true).await;
    run("naive", false).await;
    println!(
        "\nrejected: refused locally by the open breaker, without touching the provider.\n\
         amplification: provider calls per logical call (1.00 = no extra load)."
    );
}
