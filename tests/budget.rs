//! The retry budget bounds retry load in a total outage.

mod common;

use buttress::budget::BudgetConfig;
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::Policy;
use common::{ms, registry, Captured, Provider, ProviderError};

fn retry(budget: Option<BudgetConfig>) -> RetryConfig {
    RetryConfig::new()
        .with_max_attempts(5)
        .with_backoff(Backoff::constant(ms(1)))
        .with_jitter(Jitter::None)
        .with_budget(budget)
}

/// The budget's rules, written out: start full at the cap, first attempts
/// deposit `ratio` (up to the cap), each retry takes one whole token.
fn expected_retries(calls: u32, max_attempts: u32, cap: f64, ratio: f64) -> u32 {
    let mut tokens = cap;
    let mut retries = 0;
    for _ in 0..calls {
        tokens = (tokens + ratio).min(cap);
        for _ in 1..max_attempts {
            if tokens >= 1.0 - 1e-9 {
                tokens -= 1.0;
                retries += 1;
            } else {
                break;
            }
        }
    }
    retries
}

async fn outage(policy: &Policy, provider: &Provider, calls: u32) {
    for _ in 0..calls {
        let _ = policy
            .run(|| {
                provider.hit();
                async { Err::<(), _>(ProviderError::Unavailable) }
            })
            .await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_total_outage_adds_at_most_cap_plus_ratio_times_calls() {
    let p = Policy::builder("budget-outage")
        .retry(retry(Some(BudgetConfig::new())))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    outage(&p, &provider, 1000).await;
    let retries = provider.calls() - 1000;
    assert_eq!(retries, expected_retries(1000, 5, 10.0, 0.2));
    assert!(f64::from(retries) <= 10.0 + 0.2 * 1000.0, "{retries}");
    // Without a budget the same outage costs five calls per logical call.
    let naive = Policy::builder("budget-outage-naive")
        .retry(retry(None))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    outage(&naive, &provider, 1000).await;
    assert_eq!(provider.calls(), 5000);
}

#[tokio::test(start_paused = true)]
async fn successes_refill_the_budget() {
    let p = Policy::builder("budget-refill")
        .retry(retry(Some(BudgetConfig::new().with_cap(2).with_ratio(0.5))))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    outage(&p, &provider, 1).await; // spends both tokens
    assert_eq!(provider.calls(), 3);
    assert!(p.shared().budget().unwrap().tokens() < 1.0);
    for _ in 0..4 {
        p.run(|| async { Ok::<_, ProviderError>(()) })
            .await
            .unwrap();
    }
    assert!((p.shared().budget().unwrap().tokens() - 2.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn every_call_site_of_a_provider_spends_one_budget() {
    let reg = registry();
    let config = retry(Some(BudgetConfig::new().with_cap(3).with_ratio(0.0)));
    let a = Policy::builder("budget-shared")
        .operation("a")
        .retry(config)
        .no_breaker()
        .build_in(reg)
        .unwrap();
    let b = Policy::builder("budget-shared")
        .operation("b")
        .retry(config)
        .no_breaker()
        .build_in(reg)
        .unwrap();
    let provider = Provider::default();
    outage(&a, &provider, 1).await; // 1 + 3 retries: the budget is empty
    outage(&b, &provider, 1).await; // no retry left for b
    assert_eq!(provider.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn exhaustion_returns_the_provider_error_and_is_reported() {
    let captured = Captured::default();
    let _guard = captured.install();
    let p = Policy::builder("budget-report")
        .retry(retry(Some(BudgetConfig::new().with_cap(1).with_ratio(0.0))))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let provider = Provider::default();
    let first = p
        .run(|| {
            provider.hit();
            async { Err::<(), _>(ProviderError::Unavailable) }
        })
        .await;
    assert_eq!(first.unwrap_err(), ProviderError::Unavailable);
    assert_eq!(provider.calls(), 2);
    let text = captured.text();
    assert!(text.contains("retry budget exhausted"), "{text}");
    assert!(text.contains("budget-report"), "{text}");
}
