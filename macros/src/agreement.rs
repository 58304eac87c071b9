//! The settings agree in all three places that read them: this macro's
//! compile-time checks, the runtime's builders (`validate`) and its
//! configuration-file loader. Each case below writes one setting at the
//! edges of its range (from the vocabulary, `buttress_settings`) the three
//! ways, and asks each place whether it accepts it; the vocabulary's rule
//! says what the answer must be. A default or a range changed in one place
//! alone makes the places disagree on some case, and the test names it.

use std::time::Duration;

use buttress_core::adaptive_timeout::AdaptiveTimeoutConfig;
use buttress_core::breaker::{BreakerConfig, Window};
use buttress_core::budget::BudgetConfig;
use buttress_core::bulkhead::BulkheadConfig;
use buttress_core::config::Format;
use buttress_core::rate_limit::RateLimitConfig;
use buttress_core::recovery::RecoveryConfig;
use buttress_core::retry::{Backoff, RetryConfig};
use buttress_core::throttle::ThrottleConfig;
use buttress_core::{Policy, PolicyBuilder, PolicyConfig, Registry};
use buttress_settings::{defaults, rules};
use proc_macro2::TokenStream;
use quote::quote;

/// One setting written three ways.
struct Case {
    what: String,
    /// The vocabulary's verdict.
    valid: bool,
    /// `#[resilient(provider = "p", <attr>)]`.
    attr: String,
    /// A TOML file's `providers.p` section (or a whole file, when it starts
    /// with `[`).
    file: String,
    /// The builder.
    build: Box<dyn Fn(PolicyBuilder) -> PolicyBuilder>,
}

fn case(
    what: impl Into<String>,
    rule: rules::Rule,
    attr: impl Into<String>,
    file: impl Into<String>,
    build: impl Fn(PolicyBuilder) -> PolicyBuilder + 'static,
) -> Case {
    Case {
        what: what.into(),
        valid: rule.is_ok(),
        attr: attr.into(),
        file: file.into(),
        build: Box::new(build),
    }
}

/// Whether `#[resilient]` accepts the attribute (no `compile_error!`).
fn macro_accepts(attr: &str) -> bool {
    let attr: TokenStream = format!("provider = \"p\", {attr}").parse().unwrap();
    let item = quote!(
        async fn call() -> Result<(), E> {
            Ok(())
        }
    );
    !crate::resilient::expand(attr, item)
        .to_string()
        .contains("compile_error")
}

/// Whether a call site of provider `p` gets these settings from a file.
fn file_accepts(file: &str) -> bool {
    let text = if file.starts_with('[') {
        file.to_owned()
    } else {
        format!("[providers.p]\n{file}\n[policies.site]\nprovider = \"p\"\n")
    };
    let registry = Registry::new();
    registry.load_str(&text, Format::Toml).is_ok()
        && registry
            .settings_for(&PolicyConfig::new("p"), Some("site"))
            .validate()
            .is_ok()
}

fn builder_accepts(build: &dyn Fn(PolicyBuilder) -> PolicyBuilder) -> bool {
    build(Policy::builder("p"))
        .build_in(&Registry::new())
        .is_ok()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `{d:?}` as a duration string the attribute and files read.
fn text(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    // Timing.
    for t in [defaults::DEADLINE, defaults::DEADLINE + ms(1), ms(1)] {
        all.push(case(
            format!("timeout {t:?} under the default deadline"),
            rules::timeout_within_deadline(t, defaults::DEADLINE),
            format!("timeout = \"{}\"", text(t)),
            format!("timeout = \"{}\"", text(t)),
            move |b| b.timeout(t),
        ));
    }
    for d in [defaults::TIMEOUT, defaults::TIMEOUT - ms(1)] {
        all.push(case(
            format!("deadline {d:?} over the default timeout"),
            rules::timeout_within_deadline(defaults::TIMEOUT, d),
            format!("deadline = \"{}\"", text(d)),
            format!("deadline = \"{}\"", text(d)),
            move |b| b.deadline(d),
        ));
    }
    // Retries.
    for n in [0, 1, defaults::MAX_ATTEMPTS] {
        all.push(case(
            format!("max_attempts {n}"),
            rules::max_attempts(n),
            format!("retry(max_attempts = {n})"),
            format!("retry = {{ max_attempts = {n} }}"),
            move |b| b.retry(RetryConfig::new().with_max_attempts(n)),
        ));
    }
    for (base, max) in [(ms(200), ms(100)), (ms(100), ms(100))] {
        all.push(case(
            format!("backoff base {base:?} max {max:?}"),
            rules::backoff(base, max),
            format!(
                "retry(backoff = exponential(\"{}\", \"{}\"))",
                text(base),
                text(max)
            ),
            format!(
                "retry = {{ backoff = {{ type = \"exponential\", base = \"{}\", max = \"{}\" }} }}",
                text(base),
                text(max)
            ),
            move |b| b.retry(RetryConfig::new().with_backoff(Backoff::exponential(base, max))),
        ));
    }
    for ratio in [0.0, 1.0, 1.5] {
        all.push(case(
            format!("budget ratio {ratio}"),
            rules::budget_ratio(ratio),
            format!("retry(budget = ratio({ratio:?}))"),
            format!("retry = {{ budget = {{ ratio = {ratio:?} }} }}"),
            move |b| {
                b.retry(RetryConfig::new().with_budget(Some(BudgetConfig::new().with_ratio(ratio))))
            },
        ));
    }
    for cap in [0, 1] {
        all.push(case(
            format!("budget cap {cap}"),
            rules::budget_cap(cap),
            format!("retry(budget = ratio(0.2, cap = {cap}))"),
            format!("retry = {{ budget = {{ ratio = 0.2, cap = {cap} }} }}"),
            move |b| {
                b.retry(RetryConfig::new().with_budget(Some(BudgetConfig::new().with_cap(cap))))
            },
        ));
    }
    // The breaker.
    for rate in [0.0, 0.001, 1.0, 1.001] {
        all.push(case(
            format!("failure_rate {rate}"),
            rules::rate(rate),
            format!("breaker(failure_rate = {rate:?})"),
            format!("breaker = {{ failure_rate = {rate:?} }}"),
            move |b| b.breaker(BreakerConfig::new().with_failure_rate(rate)),
        ));
        all.push(case(
            format!("slow_rate {rate}"),
            rules::rate(rate),
            format!("breaker(slow_rate = {rate:?}, slow_call = \"1s\")"),
            format!("breaker = {{ slow_rate = {rate:?}, slow_call = \"1s\" }}"),
            move |b| b.breaker(BreakerConfig::new().with_slow_calls(rate, Duration::from_secs(1))),
        ));
    }
    let max_window = rules::MAX_COUNT_WINDOW;
    for n in [
        0,
        1,
        defaults::MIN_CALLS - 1,
        defaults::MIN_CALLS,
        max_window,
        max_window + 1,
    ] {
        all.push(case(
            format!("count window {n} with the default min_calls"),
            rules::count_window(n).and(rules::min_calls_in_window(defaults::MIN_CALLS, n)),
            format!("breaker(window = {n})"),
            format!("breaker = {{ window = {n} }}"),
            move |b| b.breaker(BreakerConfig::new().with_window(Window::Count(n))),
        ));
    }
    for n in [0, 1, defaults::WINDOW, defaults::WINDOW + 1] {
        all.push(case(
            format!("min_calls {n} in the default window"),
            rules::at_least_one(n).and(rules::min_calls_in_window(n, defaults::WINDOW)),
            format!("breaker(min_calls = {n})"),
            format!("breaker = {{ min_calls = {n} }}"),
            move |b| b.breaker(BreakerConfig::new().with_min_calls(n)),
        ));
    }
    for d in [rules::MIN_TIME_WINDOW - ms(1), rules::MIN_TIME_WINDOW] {
        all.push(case(
            format!("time window {d:?}"),
            rules::time_window(d),
            format!("breaker(window = \"{}\")", text(d)),
            format!("breaker = {{ window = \"{}\" }}", text(d)),
            move |b| b.breaker(BreakerConfig::new().with_window(Window::Time(d))),
        ));
    }
    for n in [0, 1] {
        all.push(case(
            format!("consecutive_failures {n}"),
            rules::at_least_one(n),
            format!("breaker(consecutive_failures = {n})"),
            format!("breaker = {{ consecutive_failures = {n} }}"),
            move |b| b.breaker(BreakerConfig::new().with_consecutive_failures(n)),
        ));
    }
    let probes = rules::MAX_HALF_OPEN_PROBES;
    for n in [0, 1, probes, probes + 1] {
        all.push(case(
            format!("half_open_probes {n}"),
            rules::half_open_probes(n),
            format!("breaker(half_open_probes = {n})"),
            format!("breaker = {{ half_open_probes = {n} }}"),
            move |b| b.breaker(BreakerConfig::new().with_half_open_probes(n)),
        ));
    }
    for d in [ms(0), ms(1)] {
        all.push(case(
            format!("open_for {d:?}"),
            rules::positive(d),
            format!("breaker(open_for = \"{}\")", text(d)),
            format!("breaker = {{ open_for = \"{}\" }}", text(d)),
            move |b| b.breaker(BreakerConfig::new().with_open_for(d)),
        ));
    }
    for d in [defaults::OPEN_FOR - ms(1), defaults::OPEN_FOR] {
        all.push(case(
            format!("max_probe_interval {d:?} over the default open_for"),
            rules::max_probe_interval(d, defaults::OPEN_FOR),
            format!("breaker(max_probe_interval = \"{}\")", text(d)),
            format!("breaker = {{ max_probe_interval = \"{}\" }}", text(d)),
            move |b| b.breaker(BreakerConfig::new().with_max_probe_interval(d)),
        ));
    }
    // Bulkhead and rate limit.
    for n in [0, 1] {
        all.push(case(
            format!("max_concurrent {n}"),
            rules::at_least_one(n),
            format!("bulkhead(max_concurrent = {n})"),
            format!("bulkhead = {{ max_concurrent = {n} }}"),
            move |b| b.bulkhead(BulkheadConfig::new().with_max_concurrent(n)),
        ));
        all.push(case(
            format!("per_second {n}"),
            rules::at_least_one(n),
            format!("rate_limit(per_second = {n})"),
            format!("rate_limit = {{ per_second = {n} }}"),
            move |b| b.rate_limit(RateLimitConfig::new().with_per_second(n)),
        ));
        all.push(case(
            format!("burst {n}"),
            rules::at_least_one(n),
            format!("rate_limit(burst = {n})"),
            format!("rate_limit = {{ burst = {n} }}"),
            move |b| b.rate_limit(RateLimitConfig::new().with_burst(n)),
        ));
    }
    // Recovery.
    let most = rules::MAX_WAITING;
    for n in [0, 1, most, most + 1] {
        all.push(case(
            format!("max_waiting {n}"),
            rules::max_waiting(n),
            format!("recovery(max_waiting = {n})"),
            format!("recovery = {{ max_waiting = {n} }}"),
            move |b| b.recovery(RecoveryConfig::new().with_max_waiting(n)),
        ));
    }
    for pace in [0.99, 1.0, rules::MAX_PACE, rules::MAX_PACE + 0.5] {
        all.push(case(
            format!("pace {pace}"),
            rules::pace(pace),
            format!("recovery(pace = {pace:?})"),
            format!("recovery = {{ pace = {pace:?} }}"),
            move |b| b.recovery(RecoveryConfig::new().with_pace(pace)),
        ));
    }
    for rate in [0.0, 0.1] {
        all.push(case(
            format!("min_rate {rate}"),
            rules::min_rate(rate),
            format!("recovery(min_rate = {rate:?})"),
            format!("recovery = {{ min_rate = {rate:?} }}"),
            move |b| b.recovery(RecoveryConfig::new().with_min_rate(rate)),
        ));
    }
    // The adaptive throttle.
    for k in [0.99, 1.0] {
        all.push(case(
            format!("throttle k {k}"),
            rules::throttle_k(k),
            format!("throttle(k = {k:?})"),
            format!("throttle = {{ k = {k:?} }}"),
            move |b| b.throttle(ThrottleConfig::new().with_k(k)),
        ));
    }
    let shortest = rules::MIN_THROTTLE_WINDOW;
    for d in [shortest - ms(1), shortest] {
        all.push(case(
            format!("throttle window {d:?}"),
            rules::throttle_window(d),
            format!("throttle(window = \"{}\")", text(d)),
            format!("throttle = {{ window = \"{}\" }}", text(d)),
            move |b| b.throttle(ThrottleConfig::new().with_window(d)),
        ));
    }
    // The adaptive timeout.
    for (min, max) in [(ms(2000), ms(1000)), (ms(1000), ms(1000))] {
        all.push(case(
            format!("adaptive timeout min {min:?} max {max:?}"),
            rules::adaptive_bounds(min, max),
            format!(
                "adaptive_timeout(min = \"{}\", max = \"{}\")",
                text(min),
                text(max)
            ),
            format!(
                "adaptive_timeout = {{ min = \"{}\", max = \"{}\" }}",
                text(min),
                text(max)
            ),
            move |b| b.adaptive_timeout(AdaptiveTimeoutConfig::new().with_min(min).with_max(max)),
        ));
    }
    // A `max` beyond the deadline is bounded by it, everywhere.
    let beyond = defaults::DEADLINE + ms(1);
    all.push(case(
        "adaptive timeout max beyond the deadline",
        Ok(()),
        format!("adaptive_timeout(max = \"{}\")", text(beyond)),
        format!("adaptive_timeout = {{ max = \"{}\" }}", text(beyond)),
        move |b| b.adaptive_timeout(AdaptiveTimeoutConfig::new().with_max(beyond)),
    ));
    let (low, high) = rules::PERCENTILE;
    for p in [low - 0.01, low, high, high + 0.0005] {
        all.push(case(
            format!("percentile {p}"),
            rules::percentile(p),
            format!("adaptive_timeout(percentile = {p:?})"),
            format!("adaptive_timeout = {{ percentile = {p:?} }}"),
            move |b| b.adaptive_timeout(AdaptiveTimeoutConfig::new().with_percentile(p)),
        ));
    }
    for m in [
        0.99,
        1.0,
        rules::MAX_MULTIPLIER,
        rules::MAX_MULTIPLIER + 0.5,
    ] {
        all.push(case(
            format!("multiplier {m}"),
            rules::multiplier(m),
            format!("adaptive_timeout(multiplier = {m:?})"),
            format!("adaptive_timeout = {{ multiplier = {m:?} }}"),
            move |b| b.adaptive_timeout(AdaptiveTimeoutConfig::new().with_multiplier(m)),
        ));
    }
    // `hedge` needs `idempotent`.
    for idempotent in [false, true] {
        all.push(case(
            format!("hedge with idempotent {idempotent}"),
            if idempotent { Ok(()) } else { Err(String::new()) },
            if idempotent { "hedge, idempotent" } else { "hedge" },
            format!(
                "[providers.p]\n[policies.site]\nprovider = \"p\"\nhedge = true\nidempotent = {idempotent}\n"
            ),
            move |b| b.hedge(true).idempotent(idempotent),
        ));
    }
    all
}

#[test]
fn the_macro_the_builders_and_the_files_agree_on_every_rule() {
    let mut disagreements = Vec::new();
    let all = cases();
    assert!(all.len() > 70, "only {} cases", all.len());
    for case in &all {
        let said = [
            ("#[resilient]", macro_accepts(&case.attr)),
            ("the builder", builder_accepts(&*case.build)),
            ("a configuration file", file_accepts(&case.file)),
        ];
        for (place, accepted) in said {
            if accepted != case.valid {
                disagreements.push(format!(
                    "{}: {place} {} it, the vocabulary {} it",
                    case.what,
                    if accepted { "accepts" } else { "refuses" },
                    if case.valid { "accepts" } else { "refuses" },
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "the places that read settings disagree:\n{}",
        disagreements.join("\n")
    );
}

/// The builders start from the vocabulary's defaults.
#[test]
fn the_builders_start_from_the_vocabulary_defaults() {
    let policy = PolicyConfig::new("p");
    assert_eq!(policy.timeout(), Some(defaults::TIMEOUT));
    assert_eq!(policy.deadline(), Some(defaults::DEADLINE));
    let retry = RetryConfig::new();
    assert_eq!(retry.max_attempts(), defaults::MAX_ATTEMPTS);
    assert_eq!(
        retry.backoff(),
        Backoff::exponential(defaults::BACKOFF_BASE, defaults::BACKOFF_MAX)
    );
    let budget = BudgetConfig::new();
    assert_eq!(
        (budget.ratio(), budget.cap()),
        (defaults::BUDGET_RATIO, defaults::BUDGET_CAP)
    );
    let breaker = BreakerConfig::new();
    assert_eq!(breaker.failure_rate(), defaults::FAILURE_RATE);
    assert_eq!(breaker.window(), Window::Count(defaults::WINDOW));
    assert_eq!(breaker.min_calls(), defaults::MIN_CALLS);
    assert_eq!(breaker.open_for(), defaults::OPEN_FOR);
    assert_eq!(breaker.half_open_probes(), defaults::HALF_OPEN_PROBES);
    let limit = RateLimitConfig::new();
    assert_eq!(
        (limit.per_second(), limit.burst()),
        (defaults::PER_SECOND, defaults::BURST)
    );
    let bulkhead = BulkheadConfig::new();
    assert_eq!(bulkhead.max_concurrent(), defaults::MAX_CONCURRENT);
    let recovery = RecoveryConfig::new();
    assert_eq!(recovery.max_waiting(), defaults::MAX_WAITING);
    assert_eq!(recovery.pace(), defaults::PACE);
    let adaptive = AdaptiveTimeoutConfig::new();
    assert_eq!(
        (
            adaptive.min(),
            adaptive.max(),
            adaptive.percentile(),
            adaptive.multiplier()
        ),
        (
            defaults::ADAPTIVE_MIN,
            defaults::ADAPTIVE_MAX,
            defaults::PERCENTILE,
            defaults::MULTIPLIER
        )
    );
    let throttle = ThrottleConfig::new();
    assert_eq!(
        (throttle.k(), throttle.window()),
        (defaults::THROTTLE_K, defaults::THROTTLE_WINDOW)
    );
}
