//! Validate the parsed attribute and the function it sits on, collecting
//! every error.

use std::time::Duration;

use proc_macro2::Span;
use syn::{ReturnType, Signature};

use super::model::{Attr, BackoffArg, Dur, Num, PolicyArg, Switch, WindowArg};
use crate::errors::Errors;

// The runtime's defaults, needed here only for cross-checks (`timeout`
// against `deadline`, `min_calls` against the window). They must match
// `PolicyConfig::new` and `BreakerConfig::new`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
const DEFAULT_WINDOW: u32 = 100;
const DEFAULT_MIN_CALLS: u32 = 20;
const MAX_COUNT_WINDOW: u32 = 1_000_000;
const MAX_HALF_OPEN_PROBES: u32 = 10_000;
const MIN_TIME_WINDOW: Duration = Duration::from_millis(20);
// Ranges of the recovery and throttle settings. They must match
// `recovery::{MAX_WAITING, MAX_PACE}` and `throttle::MIN_THROTTLE_WINDOW`.
const MAX_WAITING: u32 = 1_000_000;
const MAX_PACE: f64 = 100.0;
const MIN_THROTTLE_WINDOW: Duration = Duration::from_millis(100);
// Must match `adaptive_timeout::{AdaptiveTimeoutConfig::new, MAX_MULTIPLIER}`.
const DEFAULT_ADAPTIVE_MIN: Duration = Duration::from_millis(50);
const DEFAULT_ADAPTIVE_MAX: Duration = Duration::from_secs(10);
const MAX_MULTIPLIER: f64 = 10.0;

/// Checks on the function: what `#[resilient]` can wrap.
pub(crate) fn signature(sig: &Signature, errors: &mut Errors) {
    if let Some(constness) = &sig.constness {
        errors.at(constness.span, "`#[resilient]` cannot wrap a `const fn`: its body runs at run time under timeouts and retries; remove `const`");
    }
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            "`#[resilient]` needs an `async fn`: timeouts, backoff and breakers wait asynchronously; make the function `async`",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.on(variadic, "`#[resilient]` cannot wrap a variadic function");
    }
    if let ReturnType::Default = sig.output {
        errors.at(
            sig.ident.span(),
            format!(
                "`{}` returns `()`, but a `#[resilient]` function must return `Result<T, E>`: buttress decides what to retry from the error",
                sig.ident
            ),
        );
    }
}

fn adaptive_timeout(a: &super::model::AdaptiveTimeoutArg, attr: &Attr, errors: &mut Errors) {
    positive(a.min.as_ref(), "min", errors);
    let min = a.min.as_ref().map_or(DEFAULT_ADAPTIVE_MIN, |d| d.value);
    let deadline = attr.deadline.as_ref().map_or(DEFAULT_DEADLINE, |d| d.value);
    let max = a
        .max
        .as_ref()
        .map_or_else(|| default_adaptive_max(deadline), |d| d.value);
    if max < min {
        let lit = a.max.as_ref().or(a.min.as_ref()).map(|d| &d.lit);
        if let Some(lit) = lit {
            errors.on(
                lit,
                format!("the adaptive timeout's `max` ({max:?}) is shorter than its `min` ({min:?}); raise max or lower min"),
            );
        }
    }
    if let Some(d) = &a.max {
        if max > deadline && !deadline.is_zero() {
            errors.on(
                &d.lit,
                format!("the adaptive timeout's `max` ({max:?}) is longer than `deadline` ({deadline:?}); the deadline covers all attempts, so raise it or lower max"),
            );
        }
    }
    if let Some(p) = &a.percentile {
        if !(0.5..=0.999).contains(&p.value) {
            errors.at(
                p.span,
                format!("`percentile` must lie in [0.5, 0.999], got {}; 0.99 follows the provider's tail", p.value),
            );
        }
    }
    if let Some(m) = &a.multiplier {
        if !(1.0..=MAX_MULTIPLIER).contains(&m.value) {
            errors.at(
                m.span,
                format!("`multiplier` must lie in [1, {MAX_MULTIPLIER}], got {}; 1.5 is the usual choice (above 1, so the timeout can grow when the provider slows down)", m.value),
            );
        }
    }
}

/// The adaptive timeout's `max` when the attribute does not set one: the
/// runtime's default, or the deadline when that is shorter (an attempt can
/// never outlast the deadline anyway).
pub(crate) fn default_adaptive_max(deadline: Duration) -> Duration {
    if deadline.is_zero() {
        DEFAULT_ADAPTIVE_MAX
    } else {
        DEFAULT_ADAPTIVE_MAX.min(deadline)
    }
}

fn positive(d: Option<&Dur>, key: &str, errors: &mut Errors) {
    if let Some(d) = d {
        if d.value.is_zero() {
            errors.on(&d.lit, format!("`{key}` must be longer than zero"));
        }
    }
}

fn rate(n: Option<&Num<f64>>, key: &str, errors: &mut Errors) {
    if let Some(n) = n {
        if !(n.value > 0.0 && n.value <= 1.0) {
            errors.at(
                n.span,
                format!(
                    "`{key}` must be in (0, 1], got {}: it is the fraction of calls in the window",
                    n.value
                ),
            );
        }
    }
}

fn at_least_one(n: Option<&Num<u32>>, key: &str, errors: &mut Errors) {
    if let Some(n) = n {
        if n.value == 0 {
            errors.at(n.span, format!("`{key}` must be at least 1, got 0"));
        }
    }
}

/// Semantic checks on the attribute.
pub(crate) fn attr(attr: &Attr, errors: &mut Errors) {
    if let Some(provider) = &attr.provider {
        if provider.value().trim().is_empty() {
            errors.on(
                provider,
                "`provider` must not be empty: it names the shared breaker, budget and limits",
            );
        }
    }
    positive(attr.timeout.as_ref(), "timeout", errors);
    positive(attr.deadline.as_ref(), "deadline", errors);
    if let Some((true, span)) = attr.hedge {
        if attr.idempotent.is_none() {
            errors.at(
                span,
                "`hedge` needs `idempotent`: a kept attempt and its retry may both reach the provider, so the operation must be safe to repeat under one idempotency key; add `idempotent`",
            );
        }
    }
    let timeout = attr.timeout.as_ref().map_or(DEFAULT_TIMEOUT, |d| d.value);
    let deadline = attr.deadline.as_ref().map_or(DEFAULT_DEADLINE, |d| d.value);
    if timeout > deadline && !timeout.is_zero() && !deadline.is_zero() {
        let (span, which) = match (&attr.timeout, &attr.deadline) {
            (Some(t), _) => (t.lit.span(), ""),
            (None, Some(d)) => (d.lit.span(), " (the default timeout)"),
            (None, None) => (Span::call_site(), ""),
        };
        let deadline_note = if attr.deadline.is_some() {
            ""
        } else {
            ", the default"
        };
        errors.at(
            span,
            format!(
                "`timeout` ({timeout:?}{which}) is longer than `deadline` ({deadline:?}{deadline_note}); the deadline covers all attempts, so raise it or lower the timeout"
            ),
        );
    }

    if let Some(Switch::On(retry)) = &attr.retry {
        at_least_one(retry.max_attempts.as_ref(), "max_attempts", errors);
        if let Some(
            BackoffArg::Exponential { base, max, span }
            | BackoffArg::Decorrelated { base, max, span },
        ) = &retry.backoff
        {
            if base.value > max.value {
                errors.at(*span, format!("backoff `base` ({:?}) is larger than `max` ({:?}); raise max or lower base", base.value, max.value));
            }
        }
        if let Some(Switch::On(budget)) = &retry.budget {
            if !(0.0..=1.0).contains(&budget.ratio.value) {
                errors.at(budget.ratio.span, format!("budget `ratio` must be in [0, 1], got {}: it is the extra load retries may add", budget.ratio.value));
            }
            at_least_one(budget.cap.as_ref(), "cap", errors);
        }
    }

    if let Some(Switch::On(b)) = &attr.breaker {
        rate(b.failure_rate.as_ref(), "failure_rate", errors);
        rate(b.slow_rate.as_ref(), "slow_rate", errors);
        match (&b.slow_rate, &b.slow_call) {
            (Some(r), None) => errors.at(r.span, "`slow_rate` needs `slow_call`, the duration above which a call is slow, such as `slow_call = \"2s\"`"),
            (None, Some(c)) => errors.on(&c.lit, "`slow_call` needs `slow_rate`, the fraction of slow calls that opens the breaker, such as `slow_rate = 0.5`"),
            _ => {}
        }
        positive(b.slow_call.as_ref(), "slow_call", errors);
        positive(b.open_for.as_ref(), "open_for", errors);
        positive(b.probe_interval.as_ref(), "probe_interval", errors);
        positive(b.max_probe_interval.as_ref(), "max_probe_interval", errors);
        if let Some(max) = &b.max_probe_interval {
            // Unset, the probe interval is `open_for` (30 s by default).
            let interval = b
                .probe_interval
                .as_ref()
                .or(b.open_for.as_ref())
                .map_or(Duration::from_secs(30), |d| d.value);
            if max.value < interval && !max.value.is_zero() {
                errors.on(
                    &max.lit,
                    format!("`max_probe_interval` ({:?}) is shorter than the probe interval ({interval:?}; `probe_interval`, or `open_for` when it is not set): the interval only grows, so raise max_probe_interval or lower probe_interval", max.value),
                );
            }
        }
        at_least_one(b.min_calls.as_ref(), "min_calls", errors);
        at_least_one(
            b.consecutive_failures.as_ref(),
            "consecutive_failures",
            errors,
        );
        if let Some(p) = &b.half_open_probes {
            if p.value == 0 || p.value > MAX_HALF_OPEN_PROBES {
                errors.at(
                    p.span,
                    format!(
                        "`half_open_probes` must be in 1..={MAX_HALF_OPEN_PROBES}, got {}",
                        p.value
                    ),
                );
            }
        }
        match &b.window {
            Some(WindowArg::Count(n)) if n.value == 0 => errors.at(n.span, "`window` must hold at least 1 call, got 0"),
            Some(WindowArg::Count(n)) if n.value > MAX_COUNT_WINDOW => errors.at(
                n.span,
                format!("`window` must hold at most {MAX_COUNT_WINDOW} calls, got {}; use a time window such as `window = \"30s\"` for high-volume providers", n.value),
            ),
            Some(WindowArg::Time(d)) if d.value < MIN_TIME_WINDOW => {
                errors.on(&d.lit, format!("a time `window` must span at least {MIN_TIME_WINDOW:?}, got {:?}", d.value));
            }
            _ => {}
        }
        let window = match &b.window {
            Some(WindowArg::Count(n)) => Some(n.value),
            Some(WindowArg::Time(_)) => None,
            None => Some(DEFAULT_WINDOW),
        };
        let min_calls = b.min_calls.as_ref().map_or(DEFAULT_MIN_CALLS, |n| n.value);
        if let Some(window) = window {
            if min_calls > window && window > 0 {
                let span = b.min_calls.as_ref().map(|n| n.span).or(match &b.window {
                    Some(WindowArg::Count(n)) => Some(n.span),
                    _ => None,
                });
                errors.at(
                    span.unwrap_or_else(Span::call_site),
                    format!("`min_calls` ({min_calls}) is larger than the `window` ({window} calls), so the rate could never be judged; lower min_calls or widen the window"),
                );
            }
        }
    }

    if let Some(b) = &attr.bulkhead {
        at_least_one(b.max_concurrent.as_ref(), "max_concurrent", errors);
    }
    if let Some(r) = &attr.recovery {
        if let Some(n) = &r.max_waiting {
            if n.value == 0 || n.value > MAX_WAITING {
                errors.at(
                    n.span,
                    format!("`max_waiting` must be in 1..={MAX_WAITING}, got {}; use `wait = false` to fail fast instead", n.value),
                );
            }
        }
        if let Some(n) = &r.pace {
            if !(n.value >= 1.0 && n.value <= MAX_PACE) {
                errors.at(
                    n.span,
                    format!("`pace` must be in [1, {MAX_PACE}], got {}; 1.5 lets held calls out at half the rate of new ones", n.value),
                );
            }
        }
        if let Some(n) = &r.min_rate {
            if !(n.value > 0.0 && n.value.is_finite()) {
                errors.at(
                    n.span,
                    format!(
                        "`min_rate` must be a positive number of calls per second, got {}",
                        n.value
                    ),
                );
            }
        }
    }
    if let Some(Switch::On(t)) = &attr.throttle {
        if let Some(k) = &t.k {
            if !(k.value >= 1.0 && k.value.is_finite()) {
                errors.at(
                    k.span,
                    format!(
                        "`k` must be a number of at least 1, got {}; 2 is the usual choice",
                        k.value
                    ),
                );
            }
        }
        if let Some(w) = &t.window {
            if w.value < MIN_THROTTLE_WINDOW {
                errors.on(
                    &w.lit,
                    format!("the throttle's `window` must span at least {MIN_THROTTLE_WINDOW:?}, got {:?}", w.value),
                );
            }
        }
    }
    if let Some(Switch::On(a)) = &attr.adaptive_timeout {
        adaptive_timeout(a, attr, errors);
    }
    if let Some(r) = &attr.rate_limit {
        at_least_one(r.per_second.as_ref(), "per_second", errors);
        at_least_one(r.burst.as_ref(), "burst", errors);
        if let (Some(cost), None) = (&r.cost, &r.shared) {
            errors.on(
                cost,
                "`cost` is what a call costs in a shared quota; add `shared = ...` (a `buttress::shared_quota::SharedQuota`, kept in a field or static), or remove `cost`",
            );
        }
    }
    if let Some(i) = &attr.idempotent {
        if i.store.is_none() {
            let needs_store = |what: &str| {
                format!("`{what}` applies to results kept in an idempotency store; add `store = ...` (for example `store = buttress::idempotency::MemoryStore::new()` kept in a field or static), or remove `{what}`")
            };
            if let Some(ttl) = &i.ttl {
                errors.on(&ttl.lit, needs_store("ttl"));
            }
            if let Some(fingerprint) = &i.fingerprint {
                errors.on(fingerprint, needs_store("fingerprint"));
            }
            if let Some(wait) = &i.wait {
                errors.on(&wait.lit, needs_store("wait"));
            }
            if let Some((ident, _)) = &i.proceed_on_store_error {
                errors.on(ident, needs_store("on_store_error"));
            }
        }
        positive(i.ttl.as_ref(), "ttl", errors);
    }
    if let Some(dlq) = &attr.dlq {
        if dlq.sink.is_none() {
            errors.at(
                dlq.span,
                "`dlq(...)` needs `sink = ...`: the `buttress::dlq::DeadLetterSink` that keeps failed calls, such as `dlq(sink = &self.dead_letters, on = exhausted)`",
            );
        }
    }
    if let Some(PolicyArg::Expr(_)) = &attr.policy {
        for key in &attr.inline_keys {
            errors.on(
                key,
                format!("`{key}` cannot be combined with `policy = <expression>`: that policy carries every setting; set `{key}` where the policy is built, or name a registry policy with `policy = \"name\"`"),
            );
        }
    }
}
