//! The builder's validation and the configuration files' agree on every
//! boundary value: what one refuses the other refuses, what one accepts
//! the other accepts. (The attribute's checks have their UI cases; they
//! share the ranges, see `macros/src/resilient/check.rs`.)

use std::time::Duration;

use buttress::adaptive_timeout::AdaptiveTimeoutConfig;
use buttress::breaker::{BreakerConfig, Window};
use buttress::budget::BudgetConfig;
use buttress::bulkhead::BulkheadConfig;
use buttress::config::Format;
use buttress::rate_limit::RateLimitConfig;
use buttress::recovery::RecoveryConfig;
use buttress::retry::RetryConfig;
use buttress::throttle::ThrottleConfig;
use buttress::{Policy, PolicyConfig, Registry};

const MS: Duration = Duration::from_millis(1);

type Build = fn(PolicyConfig) -> PolicyConfig;

fn breaker(c: PolicyConfig, f: fn(BreakerConfig) -> BreakerConfig) -> PolicyConfig {
    c.with_breaker(Some(f(BreakerConfig::new())))
}

/// `(case, builder settings, the same in a file's provider section, valid)`.
fn cases() -> Vec<(&'static str, Build, &'static str, bool)> {
    vec![
        (
            "timeout zero",
            |c| c.with_timeout(Some(Duration::ZERO)),
            "timeout = \"0s\"",
            false,
        ),
        (
            "deadline zero",
            |c| c.with_deadline(Some(Duration::ZERO)),
            "deadline = \"0s\"",
            false,
        ),
        (
            "timeout above deadline",
            |c| {
                c.with_timeout(Some(2000 * MS))
                    .with_deadline(Some(1000 * MS))
            },
            "timeout = \"2s\"\ndeadline = \"1s\"",
            false,
        ),
        (
            "timeout equal to deadline",
            |c| {
                c.with_timeout(Some(1000 * MS))
                    .with_deadline(Some(1000 * MS))
            },
            "timeout = \"1s\"\ndeadline = \"1s\"",
            true,
        ),
        (
            "max_attempts zero",
            |c| c.with_retry(RetryConfig::new().with_max_attempts(0)),
            "retry = { max_attempts = 0 }",
            false,
        ),
        (
            "max_attempts one",
            |c| c.with_retry(RetryConfig::new().with_max_attempts(1)),
            "retry = { max_attempts = 1 }",
            true,
        ),
        (
            "budget ratio above one",
            |c| {
                c.with_retry(
                    RetryConfig::new().with_budget(Some(BudgetConfig::new().with_ratio(1.5))),
                )
            },
            "retry = { budget = { ratio = 1.5 } }",
            false,
        ),
        (
            "budget ratio one",
            |c| {
                c.with_retry(
                    RetryConfig::new().with_budget(Some(BudgetConfig::new().with_ratio(1.0))),
                )
            },
            "retry = { budget = { ratio = 1.0 } }",
            true,
        ),
        (
            "budget cap zero",
            |c| c.with_retry(RetryConfig::new().with_budget(Some(BudgetConfig::new().with_cap(0)))),
            "retry = { budget = { cap = 0 } }",
            false,
        ),
        (
            "failure_rate zero",
            |c| breaker(c, |b| b.with_failure_rate(0.0)),
            "breaker = { failure_rate = 0.0 }",
            false,
        ),
        (
            "failure_rate one",
            |c| breaker(c, |b| b.with_failure_rate(1.0)),
            "breaker = { failure_rate = 1.0 }",
            true,
        ),
        (
            "failure_rate above one",
            |c| breaker(c, |b| b.with_failure_rate(1.01)),
            "breaker = { failure_rate = 1.01 }",
            false,
        ),
        (
            "slow_call zero",
            |c| breaker(c, |b| b.with_slow_calls(0.5, Duration::ZERO)),
            "breaker = { slow_rate = 0.5, slow_call = \"0s\" }",
            false,
        ),
        (
            "count window zero",
            |c| breaker(c, |b| b.with_window(Window::Count(0))),
            "breaker = { window = 0 }",
            false,
        ),
        (
            "time window below 20 ms",
            |c| breaker(c, |b| b.with_window(Window::Time(19 * MS))),
            "breaker = { window = \"19ms\" }",
            false,
        ),
        (
            "time window 20 ms",
            |c| {
                breaker(c, |b| {
                    b.with_window(Window::Time(20 * MS)).with_min_calls(1)
                })
            },
            "breaker = { window = \"20ms\", min_calls = 1 }",
            true,
        ),
        (
            "min_calls zero",
            |c| breaker(c, |b| b.with_min_calls(0)),
            "breaker = { min_calls = 0 }",
            false,
        ),
        (
            "min_calls above a count window",
            |c| breaker(c, |b| b.with_window(Window::Count(10)).with_min_calls(11)),
            "breaker = { window = 10, min_calls = 11 }",
            false,
        ),
        (
            "consecutive_failures zero",
            |c| breaker(c, |b| b.with_consecutive_failures(0)),
            "breaker = { consecutive_failures = 0 }",
            false,
        ),
        (
            "open_for zero",
            |c| breaker(c, |b| b.with_open_for(Duration::ZERO)),
            "breaker = { open_for = \"0s\" }",
            false,
        ),
        (
            "half_open_probes zero",
            |c| breaker(c, |b| b.with_half_open_probes(0)),
            "breaker = { half_open_probes = 0 }",
            false,
        ),
        (
            "half_open_probes 10000",
            |c| breaker(c, |b| b.with_half_open_probes(10_000)),
            "breaker = { half_open_probes = 10000 }",
            true,
        ),
        (
            "half_open_probes 10001",
            |c| breaker(c, |b| b.with_half_open_probes(10_001)),
            "breaker = { half_open_probes = 10001 }",
            false,
        ),
        (
            "max_probe_interval below probe_interval",
            |c| {
                breaker(c, |b| {
                    b.with_probe_interval(200 * MS)
                        .with_max_probe_interval(100 * MS)
                })
            },
            "breaker = { probe_interval = \"200ms\", max_probe_interval = \"100ms\" }",
            false,
        ),
        (
            "bulkhead zero",
            |c| c.with_bulkhead(Some(BulkheadConfig::new().with_max_concurrent(0))),
            "bulkhead = { max_concurrent = 0 }",
            false,
        ),
        (
            "rate zero",
            |c| c.with_rate_limit(Some(RateLimitConfig::new().with_per_second(0))),
            "rate_limit = { per_second = 0 }",
            false,
        ),
        (
            "burst zero",
            |c| c.with_rate_limit(Some(RateLimitConfig::new().with_burst(0))),
            "rate_limit = { burst = 0 }",
            false,
        ),
        (
            "adaptive min zero",
            |c| {
                c.with_adaptive_timeout(Some(AdaptiveTimeoutConfig::new().with_min(Duration::ZERO)))
            },
            "adaptive_timeout = { min = \"0s\" }",
            false,
        ),
        (
            "adaptive percentile 0.999",
            |c| c.with_adaptive_timeout(Some(AdaptiveTimeoutConfig::new().with_percentile(0.999))),
            "adaptive_timeout = { percentile = 0.999 }",
            true,
        ),
        (
            "adaptive percentile one",
            |c| c.with_adaptive_timeout(Some(AdaptiveTimeoutConfig::new().with_percentile(1.0))),
            "adaptive_timeout = { percentile = 1.0 }",
            false,
        ),
        (
            "adaptive multiplier ten",
            |c| c.with_adaptive_timeout(Some(AdaptiveTimeoutConfig::new().with_multiplier(10.0))),
            "adaptive_timeout = { multiplier = 10.0 }",
            true,
        ),
        (
            "adaptive multiplier below one",
            |c| c.with_adaptive_timeout(Some(AdaptiveTimeoutConfig::new().with_multiplier(0.9))),
            "adaptive_timeout = { multiplier = 0.9 }",
            false,
        ),
        (
            "pace one",
            |c| c.with_recovery(RecoveryConfig::new().with_pace(1.0)),
            "recovery = { pace = 1.0 }",
            true,
        ),
        (
            "pace below one",
            |c| c.with_recovery(RecoveryConfig::new().with_pace(0.5)),
            "recovery = { pace = 0.5 }",
            false,
        ),
        (
            "max_waiting zero",
            |c| c.with_recovery(RecoveryConfig::new().with_max_waiting(0)),
            "recovery = { max_waiting = 0 }",
            false,
        ),
        (
            "min_rate zero",
            |c| c.with_recovery(RecoveryConfig::new().with_min_rate(0.0)),
            "recovery = { min_rate = 0.0 }",
            false,
        ),
        (
            "throttle k one",
            |c| c.with_throttle(Some(ThrottleConfig::new().with_k(1.0))),
            "throttle = { k = 1.0 }",
            true,
        ),
        (
            "throttle k below one",
            |c| c.with_throttle(Some(ThrottleConfig::new().with_k(0.5))),
            "throttle = { k = 0.5 }",
            false,
        ),
        (
            "throttle window below 100 ms",
            |c| c.with_throttle(Some(ThrottleConfig::new().with_window(50 * MS))),
            "throttle = { window = \"50ms\" }",
            false,
        ),
    ]
}

#[test]
fn the_builder_and_the_files_agree_on_every_boundary() {
    let mut disagreements = Vec::new();
    for (case, build, toml, valid) in cases() {
        let built = Policy::from_config(build(PolicyConfig::new("v")), &Registry::new());
        let registry = Registry::new();
        let filed = registry.load_str(&format!("[providers.v]\n{toml}\n"), Format::Toml);
        // A file section is checked on its own when loaded; what it leaves
        // to the call site is checked when the call site resolves it.
        let filed_ok = filed.is_ok()
            && registry
                .settings_for(&PolicyConfig::new("v"), None)
                .validate()
                .is_ok();
        if built.is_ok() != valid || filed_ok != valid {
            disagreements.push(format!(
                "{case}: expected {}, builder {}, file {}{}",
                if valid { "valid" } else { "invalid" },
                if built.is_ok() { "accepts" } else { "refuses" },
                if filed_ok { "accepts" } else { "refuses" },
                filed.err().map(|e| format!(" ({e})")).unwrap_or_default(),
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
