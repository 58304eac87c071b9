//! The registry: shared state per provider, operator handles, and typed
//! configuration errors.

mod common;

use std::time::Duration;

use buttress::breaker::{BreakerConfig, Window};
use buttress::budget::BudgetConfig;
use buttress::bulkhead::BulkheadConfig;
use buttress::rate_limit::RateLimitConfig;
use buttress::retry::{Backoff, RetryConfig};
use buttress::{BreakerState, Policy, Registry};
use common::{ms, registry, Captured, Provider, ProviderError};

fn tripping() -> BreakerConfig {
    BreakerConfig::new().with_consecutive_failures(2)
}

#[tokio::test(start_paused = true)]
async fn call_sites_of_one_provider_share_one_breaker() {
    let reg = registry();
    let charge = Policy::builder("shared-stripe")
        .operation("charge")
        .breaker(tripping())
        .retry(RetryConfig::off())
        .build_in(reg)
        .unwrap();
    let refund = Policy::builder("shared-stripe")
        .operation("refund")
        .breaker(tripping())
        .retry(RetryConfig::off())
        .build_in(reg)
        .unwrap();
    let provider = Provider::default();
    for _ in 0..2 {
        let _ = charge
            .run(|| async {
                provider.hit();
                Err::<(), _>(ProviderError::Unavailable)
            })
            .await;
    }
    let err = refund
        .run(|| async {
            provider.hit();
            Ok::<_, ProviderError>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some("circuit_open"));
    assert_eq!(provider.calls(), 2);
    assert_eq!(reg.breaker("shared-stripe").state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn operators_can_force_a_breaker_before_any_call_site_runs() {
    let reg = Registry::new();
    let handle = reg.breaker("forced-early");
    assert_eq!(handle.state(), BreakerState::Closed);
    handle.force_open();
    let p = Policy::builder("forced-early").build_in(&reg).unwrap();
    let provider = Provider::default();
    let err = p
        .run(|| async {
            provider.hit();
            Ok::<_, ProviderError>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some("circuit_open"));
    assert_eq!(provider.calls(), 0);
    handle.reset();
    p.run(|| async { Ok::<_, ProviderError>(provider.hit()) })
        .await
        .unwrap();
    assert_eq!(reg.providers().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn breaker_off_still_honours_operator_force() {
    let reg = Registry::new();
    let p = Policy::builder("off-but-forced")
        .no_breaker()
        .retry(RetryConfig::off())
        .build_in(&reg)
        .unwrap();
    for _ in 0..50 {
        let _ = p
            .run(|| async { Err::<(), _>(ProviderError::Unavailable) })
            .await;
    }
    assert_eq!(
        reg.breaker("off-but-forced").state(),
        BreakerState::Closed,
        "never trips by itself"
    );
    reg.breaker("off-but-forced").force_open();
    let err = p
        .run(|| async { Ok::<_, ProviderError>(()) })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some("circuit_open"));
}

#[test]
fn the_global_registry_is_what_build_uses() {
    let p = Policy::builder("global-registry-test").build().unwrap();
    Registry::global()
        .breaker("global-registry-test")
        .force_open();
    assert_eq!(p.shared().breaker().state(), BreakerState::ForcedOpen);
    Registry::global().breaker("global-registry-test").reset();
    assert_eq!(p.shared().breaker().state(), BreakerState::Closed);
}

#[test]
fn differing_settings_keep_the_first_and_warn_once() {
    let captured = Captured::default();
    let _guard = captured.install();
    let reg = Registry::new();
    let first = Policy::builder("mismatch")
        .breaker(BreakerConfig::new().with_min_calls(5))
        .build_in(&reg)
        .unwrap();
    for _ in 0..3 {
        let other = Policy::builder("mismatch")
            .breaker(BreakerConfig::new().with_min_calls(7))
            .build_in(&reg)
            .unwrap();
        assert_eq!(other.shared().breaker().config().min_calls(), 5);
    }
    assert_eq!(first.shared().breaker().config().min_calls(), 5);
    let text = captured.text();
    assert_eq!(
        text.matches("configures provider `mismatch` differently")
            .count(),
        1,
        "{text}"
    );
}

fn error_of(builder: buttress::PolicyBuilder) -> String {
    builder.build_in(&Registry::new()).unwrap_err().to_string()
}

#[test]
fn invalid_settings_are_typed_errors_that_say_what_to_do() {
    let b = || Policy::builder("invalid");
    let cases = [
        (
            error_of(b().timeout(Duration::from_secs(5)).deadline(Duration::from_secs(2))),
            "timeout: (5s) is longer than `deadline` (2s); the deadline covers all attempts, so raise it or lower the timeout",
        ),
        (error_of(b().timeout(Duration::ZERO)), "timeout: must be longer than zero"),
        (
            error_of(b().retry(RetryConfig::new().with_max_attempts(0))),
            "retry.max_attempts: must be at least 1 (1 means no retries), got 0",
        ),
        (
            error_of(b().retry(RetryConfig::new().with_backoff(Backoff::exponential(ms(10), ms(5))))),
            "retry.backoff: `base` (10ms) is larger than `max` (5ms); raise max or lower base",
        ),
        (
            error_of(b().retry(RetryConfig::new().with_budget(Some(BudgetConfig::new().with_ratio(-0.1))))),
            "retry.budget.ratio: must be in [0, 1], got -0.1: it is the extra load retries may add",
        ),
        (
            error_of(b().breaker(BreakerConfig::new().with_failure_rate(1.5))),
            "breaker.failure_rate: must be in (0, 1], got 1.5: it is the fraction of calls in the window",
        ),
        (
            error_of(b().breaker(BreakerConfig::new().with_failure_rate(0.0))),
            "breaker.failure_rate: must be in (0, 1], got 0: it is the fraction of calls in the window",
        ),
        (
            error_of(b().breaker(BreakerConfig::new().with_window(Window::Count(10)))),
            "breaker.min_calls: (20) is larger than the `window` (10 calls), so the rate could never be judged; lower min_calls or widen the window",
        ),
        (
            error_of(b().breaker(BreakerConfig::new().with_slow_calls(2.0, ms(100)))),
            "breaker.slow_rate: must be in (0, 1], got 2: it is the fraction of calls in the window",
        ),
        (
            error_of(b().breaker(BreakerConfig::new().with_half_open_probes(0))),
            "breaker.half_open_probes: must be in 1..=10000, got 0",
        ),
        (
            error_of(b().breaker(BreakerConfig::new().with_open_for(Duration::ZERO))),
            "breaker.open_for: must be longer than zero",
        ),
        (
            error_of(b().breaker(BreakerConfig::new().with_consecutive_failures(0))),
            "breaker.consecutive_failures: must be at least 1, got 0",
        ),
        (
            error_of(b().bulkhead(BulkheadConfig::new().with_max_concurrent(0))),
            "bulkhead.max_concurrent: must be at least 1, got 0",
        ),
        (
            error_of(b().rate_limit(RateLimitConfig::new().with_per_second(0))),
            "rate_limit.per_second: must be at least 1, got 0",
        ),
        (
            error_of(Policy::builder("")),
            "provider: must not be empty: it names the shared breaker, budget and limits",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[buttress::resilient(provider = "define-lab", policy = "define-lab-op", timeout = "200ms", retry = off)]
async fn slow_op() -> Result<(), ProviderError> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(())
}

/// How long the call ran before its timeout (the clock is paused, so exact).
async fn slow_op_timeout() -> Duration {
    let start = tokio::time::Instant::now();
    let err = slow_op().await.unwrap_err();
    assert_eq!(err.reason(), Some("timeout"));
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_policy_defined_later_reaches_call_sites_that_already_ran() {
    assert_eq!(slow_op_timeout().await, ms(200));
    let generation = Registry::global().generation();
    Registry::global()
        .define_policy(
            "define-lab-op",
            buttress::PolicyConfig::named("define-lab", "slow_op")
                .with_timeout(Some(ms(300)))
                .with_retry(RetryConfig::off()),
        )
        .unwrap();
    assert!(Registry::global().generation() > generation);
    assert_eq!(slow_op_timeout().await, ms(300));
}
