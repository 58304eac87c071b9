//! What the overhead benches share: the bodies, the policies and the
//! drivers of each row.

use std::future::Future;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Duration;

use buttress::bulkhead::BulkheadConfig;
use buttress::rate_limit::RateLimitConfig;
use buttress::{Error, Policy, Registry};
use tokio::runtime::Runtime;

pub type Out = Result<u64, Error>;

/// The per-attempt timeout of the default policy, used for the baseline.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A body ready on its first poll.
pub async fn ready() -> Out {
    Ok(black_box(1))
}

/// A body that returns `Pending` once (rescheduling itself), then completes.
pub async fn yield_once() -> Out {
    tokio::task::yield_now().await;
    Ok(black_box(1))
}

/// What `#[resilient]` expands to: the attempt loop around a fresh body.
pub async fn drive<Fut>(policy: &Policy, body: impl Fn() -> Fut) -> Out
where
    Fut: Future<Output = Out>,
{
    let mut call = policy.call::<u64, Error>();
    loop {
        if let ControlFlow::Break(result) = call.attempt(body()).await {
            break result;
        }
    }
}

/// The body under a bare tokio timeout (the baseline).
pub async fn with_tokio_timeout<Fut>(body: impl Fn() -> Fut) -> Out
where
    Fut: Future<Output = Out>,
{
    match tokio::time::timeout(TIMEOUT, body()).await {
        Ok(result) => result,
        Err(_) => unreachable!("the body never takes 10 s"),
    }
}

/// An empty `#[resilient]` on a ready body: the default stack as users get it.
#[buttress::resilient(provider = "bench-macro-ready")]
pub async fn macro_ready() -> Out {
    Ok(black_box(1))
}

/// An empty `#[resilient]` on a body that yields once.
#[buttress::resilient(provider = "bench-macro-yield")]
pub async fn macro_yield_once() -> Out {
    tokio::task::yield_now().await;
    Ok(black_box(1))
}

/// Each policy gets its own registry, alive for the whole bench.
fn registry() -> &'static Registry {
    Box::leak(Box::new(Registry::new()))
}

/// The default policy of an empty `#[resilient]`: timeout 10 s, deadline
/// 30 s, 3 attempts under a retry budget, count-window breaker.
pub fn default_stack(name: &'static str) -> Policy {
    Policy::builder(name)
        .build_in(registry())
        .expect("the default policy is valid")
}

/// The defaults plus a bulkhead and a rate limiter that never limits.
///
/// The limiter's interval is `1e9 / per_second`, clamped to at least 1 ns,
/// and its tolerance `interval × (burst − 1)` ≈ 2.1 s: every call advances
/// its clock by 1 ns and no call waits unless calls come faster than one a
/// nanosecond for 2 s. Nothing overflows a `u64`.
pub fn full_stack(name: &'static str) -> Policy {
    Policy::builder(name)
        .bulkhead(BulkheadConfig::new().with_max_concurrent(1024))
        .rate_limit(
            RateLimitConfig::new()
                .with_per_second(u32::MAX / 2)
                .with_burst(u32::MAX / 2),
        )
        .build_in(registry())
        .expect("the full policy is valid")
}

pub fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// The error of the retry row: transient, so every attempt may be retried.
#[derive(Debug, buttress::Classify)]
pub enum Flaky {
    #[classify(transient)]
    Unavailable,
    #[classify(delegate)]
    Resilience(Error),
}

impl From<Error> for Flaky {
    fn from(e: Error) -> Self {
        Self::Resilience(e)
    }
}

/// Two retries with zero backoff: the body fails (ready on its first poll)
/// while `failures` is above zero, then succeeds. No breaker, no budget:
/// the retry path alone, as the peers' retry rows measure it.
#[buttress::resilient(
    provider = "bench-macro-retry",
    retry(max_attempts = 3, backoff = constant("0s"), budget = off),
    breaker = off
)]
pub async fn macro_retry(failures: &std::cell::Cell<u32>) -> Result<u64, Flaky> {
    let left = failures.get();
    if left > 0 {
        failures.set(left - 1);
        return Err(Flaky::Unavailable);
    }
    Ok(black_box(1))
}

/// One call of the retry row: two failures, then the answer.
pub async fn retry_twice() -> Out {
    let failures = std::cell::Cell::new(2);
    match macro_retry(&failures).await {
        Ok(value) => Ok(value),
        Err(_) => unreachable!("the third attempt succeeds"),
    }
}
