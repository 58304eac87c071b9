//! Validate the parsed attribute and the function it sits on, collecting
//! every error.

use std::time::Duration;

use proc_macro2::Span;
use syn::{ReturnType, Signature};

use super::model::{Attr, BackoffArg, Dur, Num, PolicyArg, Switch, WindowArg};
use crate::errors::Errors;

// Defaults (for cross-checks such as `timeout` against `deadline`) and
// every rule come from the settings vocabulary the runtime's builders and
// configuration files use, so the three cannot drift apart.
use buttress_settings::{defaults, rules};

/// Report `rule`'s reason at `span`, after `what` (the key, in backticks).
fn obey(errors: &mut Errors, span: Span, what: &str, rule: rules::Rule) {
    if let Err(reason) = rule {
        errors.at(span, format!("{what} {reason}"));
    }
}

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
    let min = a.min.as_ref().map_or(defaults::ADAPTIVE_MIN, |d| d.value);
    let deadline = attr
        .deadline
        .as_ref()
        .map_or(defaults::DEADLINE, |d| d.value);
    let max = a
        .max
        .as_ref()
        .map_or_else(|| default_adaptive_max(deadline), |d| d.value);
    // A `max` beyond the deadline is no error: the deadline bounds it, as
    // in the builder and in configuration files.
    if let Some(lit) = a.max.as_ref().or(a.min.as_ref()).map(|d| &d.lit) {
        obey(
            errors,
            lit.span(),
            "the adaptive timeout's `max`",
            rules::adaptive_bounds(min, max),
        );
    }
    if let Some(p) = &a.percentile {
        obey(errors, p.span, "`percentile`", rules::percentile(p.value));
    }
    if let Some(m) = &a.multiplier {
        obey(errors, m.span, "`multiplier`", rules::multiplier(m.value));
    }
}

/// The adaptive timeout's `max` when the attribute does not set one: the
/// runtime's default, or the deadline when that is shorter (an attempt can
/// never outlast the deadline anyway).
pub(crate) fn default_adaptive_max(deadline: Duration) -> Duration {
    defaults::adaptive_max(Some(deadline))
}

fn positive(d: Option<&Dur>, key: &str, errors: &mut Errors) {
    if let Some(d) = d {
        obey(
            errors,
            d.lit.span(),
            &format!("`{key}`"),
            rules::positive(d.value),
        );
    }
}

fn rate(n: Option<&Num<f64>>, key: &str, errors: &mut Errors) {
    if let Some(n) = n {
        obey(errors, n.span, &format!("`{key}`"), rules::rate(n.value));
    }
}

fn count(n: Option<&Num<u32>>, key: &str, rule: fn(u32) -> rules::Rule, errors: &mut Errors) {
    if let Some(n) = n {
        obey(errors, n.span, &format!("`{key}`"), rule(n.value));
    }
}

fn at_least_one(n: Option<&Num<u32>>, key: &str, errors: &mut Errors) {
    count(n, key, rules::at_least_one, errors);
}

/// Semantic checks on the attribute.
pub(crate) fn attr(attr: &Attr, errors: &mut Errors) {
    if let Some(provider) = &attr.provider {
        obey(
            errors,
            provider.span(),
            "`provider`",
            rules::provider(&provider.value()),
        );
    }
    positive(attr.timeout.as_ref(), "timeout", errors);
    positive(attr.deadline.as_ref(), "deadline", errors);
    if let Some((true, span)) = attr.hedge {
        if attr.idempotent.is_none() {
            obey(
                errors,
                span,
                "`hedge`",
                Err(rules::HEDGE_NEEDS_IDEMPOTENT.into()),
            );
        }
    }
    let timeout = attr.timeout.as_ref().map_or(defaults::TIMEOUT, |d| d.value);
    let deadline = attr
        .deadline
        .as_ref()
        .map_or(defaults::DEADLINE, |d| d.value);
    // The rule decides; the message says which of the two is a default.
    if rules::timeout_within_deadline(timeout, deadline).is_err()
        && !timeout.is_zero()
        && !deadline.is_zero()
    {
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
        count(
            retry.max_attempts.as_ref(),
            "max_attempts",
            rules::max_attempts,
            errors,
        );
        if let Some(
            BackoffArg::Exponential { base, max, span }
            | BackoffArg::Decorrelated { base, max, span },
        ) = &retry.backoff
        {
            obey(
                errors,
                *span,
                "backoff",
                rules::backoff(base.value, max.value),
            );
        }
        if let Some(Switch::On(budget)) = &retry.budget {
            obey(
                errors,
                budget.ratio.span,
                "budget `ratio`",
                rules::budget_ratio(budget.ratio.value),
            );
            count(budget.cap.as_ref(), "cap", rules::budget_cap, errors);
        }
    }

    if let Some(Switch::On(b)) = &attr.breaker {
        rate(b.failure_rate.as_ref(), "failure_rate", errors);
        rate(b.slow_rate.as_ref(), "slow_rate", errors);
        match (&b.slow_rate, &b.slow_call) {
            (Some(r), None) => obey(
                errors,
                r.span,
                "`slow_rate`",
                Err(rules::SLOW_RATE_NEEDS_SLOW_CALL.into()),
            ),
            (None, Some(c)) => obey(
                errors,
                c.lit.span(),
                "`slow_call`",
                Err(rules::SLOW_CALL_NEEDS_SLOW_RATE.into()),
            ),
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
                .map_or(defaults::OPEN_FOR, |d| d.value);
            if !max.value.is_zero() {
                obey(
                    errors,
                    max.lit.span(),
                    "`max_probe_interval`",
                    rules::max_probe_interval(max.value, interval),
                );
            }
        }
        at_least_one(b.min_calls.as_ref(), "min_calls", errors);
        at_least_one(
            b.consecutive_failures.as_ref(),
            "consecutive_failures",
            errors,
        );
        count(
            b.half_open_probes.as_ref(),
            "half_open_probes",
            rules::half_open_probes,
            errors,
        );
        match &b.window {
            Some(WindowArg::Count(n)) => {
                obey(errors, n.span, "`window`", rules::count_window(n.value));
            }
            Some(WindowArg::Time(d)) => {
                obey(
                    errors,
                    d.lit.span(),
                    "`window`",
                    rules::time_window(d.value),
                );
            }
            None => {}
        }
        let window = match &b.window {
            Some(WindowArg::Count(n)) => Some(n.value),
            Some(WindowArg::Time(_)) => None,
            None => Some(defaults::WINDOW),
        };
        let min_calls = b
            .min_calls
            .as_ref()
            .map_or(defaults::MIN_CALLS, |n| n.value);
        if let Some(window) = window.filter(|w| *w > 0) {
            let span = b.min_calls.as_ref().map(|n| n.span).or(match &b.window {
                Some(WindowArg::Count(n)) => Some(n.span),
                _ => None,
            });
            obey(
                errors,
                span.unwrap_or_else(Span::call_site),
                "`min_calls`",
                rules::min_calls_in_window(min_calls, window),
            );
        }
    }

    if let Some(b) = &attr.bulkhead {
        at_least_one(b.max_concurrent.as_ref(), "max_concurrent", errors);
    }
    if let Some(r) = &attr.recovery {
        count(
            r.max_waiting.as_ref(),
            "max_waiting",
            rules::max_waiting,
            errors,
        );
        if let Some(n) = &r.pace {
            obey(errors, n.span, "`pace`", rules::pace(n.value));
        }
        if let Some(n) = &r.min_rate {
            obey(errors, n.span, "`min_rate`", rules::min_rate(n.value));
        }
    }
    if let Some(Switch::On(t)) = &attr.throttle {
        if let Some(k) = &t.k {
            obey(errors, k.span, "`k`", rules::throttle_k(k.value));
        }
        if let Some(w) = &t.window {
            obey(
                errors,
                w.lit.span(),
                "the throttle's `window`",
                rules::throttle_window(w.value),
            );
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
