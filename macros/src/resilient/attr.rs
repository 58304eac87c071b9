//! Parse `#[resilient(...)]` into a typed model that keeps the original
//! tokens for spans. Syntax errors are collected, not returned at the
//! first one.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

use super::errors::{unknown, Errors};
use crate::duration;

pub(crate) const KEYS: &[&str] = &[
    "provider",
    "timeout",
    "deadline",
    "retry",
    "breaker",
    "bulkhead",
    "rate_limit",
    "idempotent",
    "fallback",
    "dlq",
    "policy",
    "recovery",
    "throttle",
    "adaptive_timeout",
    "hedge",
];
const RETRY_KEYS: &[&str] = &["max_attempts", "backoff", "jitter", "budget"];
const BACKOFFS: &[&str] = &["exponential", "constant", "decorrelated"];
const JITTERS: &[&str] = &["full", "equal", "none"];
const BREAKER_KEYS: &[&str] = &[
    "failure_rate",
    "slow_rate",
    "slow_call",
    "window",
    "min_calls",
    "consecutive_failures",
    "open_for",
    "probe_interval",
    "max_probe_interval",
    "half_open_probes",
];
const RECOVERY_KEYS: &[&str] = &[
    "wait",
    "max_waiting",
    "pace",
    "min_rate",
    "slow_start",
    "learn_quota",
];
const THROTTLE_KEYS: &[&str] = &["k", "window"];
const ADAPTIVE_TIMEOUT_KEYS: &[&str] = &["min", "max", "percentile", "multiplier"];
const BULKHEAD_KEYS: &[&str] = &["max_concurrent", "max_wait"];
const RATE_LIMIT_KEYS: &[&str] = &["per_second", "burst", "shared", "cost"];
const IDEMPOTENT_KEYS: &[&str] = &[
    "key",
    "store",
    "ttl",
    "fingerprint",
    "wait",
    "on_store_error",
];
const ON_STORE_ERROR: &[&str] = &["fail_closed", "proceed"];
const DLQ_KEYS: &[&str] = &["sink", "on"];
const DLQ_ON: &[&str] = &["permanent", "exhausted", "any"];

/// A duration literal and its value.
#[derive(Clone)]
pub(crate) struct Dur {
    pub(crate) lit: LitStr,
    pub(crate) value: Duration,
}

/// A number and the token it came from.
#[derive(Clone)]
pub(crate) struct Num<T> {
    pub(crate) span: Span,
    pub(crate) value: T,
}

/// `key = off` or the key's settings.
pub(crate) enum Switch<T> {
    Off,
    On(T),
}

pub(crate) enum BackoffArg {
    Exponential { base: Dur, max: Dur, span: Span },
    Constant(Dur),
    Decorrelated { base: Dur, max: Dur, span: Span },
}

#[derive(Clone, Copy)]
pub(crate) enum JitterArg {
    Full,
    Equal,
    None,
}

pub(crate) struct BudgetArg {
    pub(crate) ratio: Num<f64>,
    pub(crate) cap: Option<Num<u32>>,
}

#[derive(Default)]
pub(crate) struct RetryArg {
    pub(crate) max_attempts: Option<Num<u32>>,
    pub(crate) backoff: Option<BackoffArg>,
    pub(crate) jitter: Option<JitterArg>,
    pub(crate) budget: Option<Switch<BudgetArg>>,
}

pub(crate) enum WindowArg {
    Count(Num<u32>),
    Time(Dur),
}

#[derive(Default)]
pub(crate) struct BreakerArg {
    pub(crate) failure_rate: Option<Num<f64>>,
    pub(crate) slow_rate: Option<Num<f64>>,
    pub(crate) slow_call: Option<Dur>,
    pub(crate) window: Option<WindowArg>,
    pub(crate) min_calls: Option<Num<u32>>,
    pub(crate) consecutive_failures: Option<Num<u32>>,
    pub(crate) open_for: Option<Dur>,
    pub(crate) probe_interval: Option<Dur>,
    pub(crate) max_probe_interval: Option<Dur>,
    pub(crate) half_open_probes: Option<Num<u32>>,
}

#[derive(Default)]
pub(crate) struct BulkheadArg {
    pub(crate) max_concurrent: Option<Num<u32>>,
    pub(crate) max_wait: Option<Dur>,
}

#[derive(Default)]
pub(crate) struct RateLimitArg {
    pub(crate) per_second: Option<Num<u32>>,
    pub(crate) burst: Option<Num<u32>>,
    /// `shared = EXPR`: a `buttress::shared_quota::SharedQuota` (by
    /// reference), evaluated per call.
    pub(crate) shared: Option<Expr>,
    /// `cost = EXPR`: a `u32`, each attempt's cost in the shared quota.
    pub(crate) cost: Option<Expr>,
}

#[derive(Default)]
pub(crate) struct IdempotentArg {
    pub(crate) key: Option<Expr>,
    pub(crate) store: Option<Expr>,
    pub(crate) ttl: Option<Dur>,
    pub(crate) fingerprint: Option<Expr>,
    pub(crate) wait: Option<Dur>,
    /// `on_store_error = proceed` (true) or `fail_closed` (false).
    pub(crate) proceed_on_store_error: Option<(syn::Ident, bool)>,
}

/// Which failures go to the dead-letter sink.
#[derive(Clone, Copy)]
pub(crate) enum DlqOn {
    Permanent,
    Exhausted,
    Any,
}

/// `dlq = EXPR` or `dlq(sink = EXPR, on = …)`.
pub(crate) struct DlqArg {
    /// The span of the `dlq` key, for "needs a sink".
    pub(crate) span: Span,
    pub(crate) sink: Option<Expr>,
    pub(crate) on: Option<DlqOn>,
}

pub(crate) enum PolicyArg {
    Named(LitStr),
    Expr(Expr),
}

/// `recovery(...)`, or `recovery = fail_fast`.
#[derive(Default)]
pub(crate) struct RecoveryArg {
    pub(crate) fail_fast: bool,
    pub(crate) wait: Option<bool>,
    pub(crate) max_waiting: Option<Num<u32>>,
    pub(crate) pace: Option<Num<f64>>,
    pub(crate) min_rate: Option<Num<f64>>,
    pub(crate) slow_start: Option<Dur>,
    pub(crate) learn_quota: Option<bool>,
}

/// `throttle(...)`.
#[derive(Default)]
pub(crate) struct ThrottleArg {
    pub(crate) k: Option<Num<f64>>,
    pub(crate) window: Option<Dur>,
}

/// `adaptive_timeout(...)`.
#[derive(Default)]
pub(crate) struct AdaptiveTimeoutArg {
    pub(crate) min: Option<Dur>,
    pub(crate) max: Option<Dur>,
    pub(crate) percentile: Option<Num<f64>>,
    pub(crate) multiplier: Option<Num<f64>>,
}

/// The whole attribute.
#[derive(Default)]
pub(crate) struct Attr {
    pub(crate) provider: Option<LitStr>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) deadline: Option<Dur>,
    pub(crate) retry: Option<Switch<RetryArg>>,
    pub(crate) breaker: Option<Switch<BreakerArg>>,
    pub(crate) bulkhead: Option<BulkheadArg>,
    pub(crate) rate_limit: Option<RateLimitArg>,
    pub(crate) idempotent: Option<IdempotentArg>,
    pub(crate) fallback: Option<Expr>,
    pub(crate) dlq: Option<DlqArg>,
    pub(crate) policy: Option<PolicyArg>,
    pub(crate) recovery: Option<RecoveryArg>,
    pub(crate) throttle: Option<Switch<ThrottleArg>>,
    pub(crate) adaptive_timeout: Option<Switch<AdaptiveTimeoutArg>>,
    /// `hedge` (on, with the key's span) or `hedge = off`.
    pub(crate) hedge: Option<(bool, proc_macro2::Span)>,
    /// Every inline setting given (not `provider`, `fallback`, `dlq`, `policy`),
    /// for the `policy = EXPR` conflict check.
    pub(crate) inline_keys: Vec<syn::Ident>,
}

/// Parse the attribute's tokens, collecting every error.
pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Attr {
    let mut attr = Attr::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                format!("{e}; `#[resilient]` takes comma-separated settings such as `timeout = \"2s\"` or `retry(max_attempts = 3)`"),
            ));
            return attr;
        }
    };
    let mut seen: Vec<syn::Ident> = Vec::new();
    for meta in metas {
        let Some(ident) = meta.path().get_ident().cloned() else {
            errors.on(
                meta.path(),
                unknown("key", &path_text(meta.path()), "`#[resilient]`", KEYS),
            );
            continue;
        };
        let key = ident.to_string();
        if let Some(first) = seen.iter().find(|k| **k == ident) {
            let mut e = syn::Error::new(
                ident.span(),
                format!("duplicate key `{key}`; each setting may appear once"),
            );
            e.combine(syn::Error::new(
                first.span(),
                format!("`{key}` first set here"),
            ));
            errors.push(e);
            continue;
        }
        seen.push(ident.clone());
        if !matches!(key.as_str(), "provider" | "fallback" | "dlq" | "policy")
            && KEYS.contains(&key.as_str())
        {
            attr.inline_keys.push(ident.clone());
        }
        match key.as_str() {
            "provider" => {
                attr.provider = lit_str(
                    value(&meta, errors),
                    errors,
                    "provider",
                    "a provider name such as `provider = \"stripe\"`",
                )
            }
            "timeout" => attr.timeout = dur(value(&meta, errors), errors, "timeout"),
            "deadline" => attr.deadline = dur(value(&meta, errors), errors, "deadline"),
            "retry" => attr.retry = switch(&meta, errors, "retry", RETRY_KEYS, parse_retry),
            "breaker" => {
                attr.breaker = switch(&meta, errors, "breaker", BREAKER_KEYS, parse_breaker)
            }
            "bulkhead" => {
                attr.bulkhead = list(
                    &meta,
                    errors,
                    "bulkhead",
                    "bulkhead(max_concurrent = 32, max_wait = \"50ms\")",
                )
                .map(|items| parse_bulkhead(items, errors));
            }
            "rate_limit" => {
                attr.rate_limit = list(
                    &meta,
                    errors,
                    "rate_limit",
                    "rate_limit(per_second = 100, burst = 20)",
                )
                .map(|items| parse_rate_limit(items, errors));
            }
            "idempotent" => {
                attr.idempotent = match &meta {
                    Meta::Path(_) => Some(IdempotentArg::default()),
                    _ => list(
                        &meta,
                        errors,
                        "idempotent",
                        "`idempotent` alone, or idempotent(key = format!(\"order-{}\", id))",
                    )
                    .map(|items| parse_idempotent(items, errors)),
                };
            }
            "fallback" => {
                attr.fallback = value(&meta, errors).and_then(|v| match v {
                    Expr::Path(_) => Some(v.clone()),
                    other => {
                        errors.on(other, "`fallback` takes the path of an async function called with the same arguments and the error, such as `fallback = Self::cached_quote`");
                        None
                    }
                });
            }
            "policy" => {
                attr.policy = value(&meta, errors).map(|v| match v {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => PolicyArg::Named(s.clone()),
                    other => PolicyArg::Expr(other.clone()),
                });
            }
            "dlq" => attr.dlq = parse_dlq(&meta, errors),
            "recovery" => attr.recovery = parse_recovery(&meta, errors),
            "throttle" => {
                attr.throttle = switch(&meta, errors, "throttle", THROTTLE_KEYS, parse_throttle)
            }
            "hedge" => {
                attr.hedge = match &meta {
                    Meta::Path(_) => Some((true, ident.span())),
                    Meta::NameValue(nv) if is_ident(&nv.value, "off") => {
                        Some((false, ident.span()))
                    }
                    _ => {
                        errors.on(
                            &meta,
                            "`hedge` takes no arguments: write `hedge` (keep an attempt cut by its timeout running alongside the retries) or `hedge = off`",
                        );
                        None
                    }
                }
            }
            "adaptive_timeout" => {
                attr.adaptive_timeout = switch(
                    &meta,
                    errors,
                    "adaptive_timeout",
                    ADAPTIVE_TIMEOUT_KEYS,
                    parse_adaptive_timeout,
                )
            }
            _ => errors.on(&ident, unknown("key", &key, "`#[resilient]`", KEYS)),
        }
    }
    attr
}

fn path_text(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// The `= value` of `key = value`.
fn value<'m>(meta: &'m Meta, errors: &mut Errors) -> Option<&'m Expr> {
    match meta {
        Meta::NameValue(nv) => Some(&nv.value),
        other => {
            let key = path_text(other.path());
            errors.on(other, format!("`{key}` takes a value: `{key} = ...`"));
            None
        }
    }
}

/// The items of `key(a = 1, b = 2)`.
fn list(meta: &Meta, errors: &mut Errors, key: &str, example: &str) -> Option<Vec<Meta>> {
    match meta {
        Meta::List(list) => {
            match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
                Ok(items) => Some(items.into_iter().collect()),
                Err(e) => {
                    errors.push(syn::Error::new(e.span(), format!("{e}; write `{example}`")));
                    None
                }
            }
        }
        other => {
            errors.on(
                other,
                format!("`{key}` takes settings in parentheses: `{example}`"),
            );
            None
        }
    }
}

/// `key = off` or `key(...)`.
fn switch<T: Default>(
    meta: &Meta,
    errors: &mut Errors,
    key: &str,
    keys: &[&str],
    parse: fn(Vec<Meta>, &mut Errors) -> T,
) -> Option<Switch<T>> {
    match meta {
        Meta::NameValue(nv) => {
            if is_ident(&nv.value, "off") {
                Some(Switch::Off)
            } else {
                errors.on(
                    &nv.value,
                    format!(
                        "`{key}` is either `{key} = off` or `{key}(...)` with any of: {}",
                        keys.join(", ")
                    ),
                );
                None
            }
        }
        Meta::List(_) => list(meta, errors, key, &format!("{key}({} = ...)", keys[0]))
            .map(|items| Switch::On(parse(items, errors))),
        Meta::Path(_) => Some(Switch::On(T::default())),
    }
}

fn is_ident(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Path(p) if p.path.is_ident(name))
}

fn lit_str(expr: Option<&Expr>, errors: &mut Errors, key: &str, what: &str) -> Option<LitStr> {
    match expr? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        other => {
            errors.on(other, format!("`{key}` must be a string literal: {what}"));
            None
        }
    }
}

fn dur(expr: Option<&Expr>, errors: &mut Errors, key: &str) -> Option<Dur> {
    let lit = lit_str(
        expr,
        errors,
        key,
        "a duration such as \"150ms\", \"2s\" or \"1m30s\"",
    )?;
    match duration::parse(&lit) {
        Ok(value) => Some(Dur { lit, value }),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn int(expr: Option<&Expr>, errors: &mut Errors, key: &str) -> Option<Num<u32>> {
    match expr? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<u32>() {
            Ok(value) => Some(Num {
                span: i.span(),
                value,
            }),
            Err(_) => {
                errors.on(
                    i,
                    format!("`{key}` must be a whole number from 0 to {}", u32::MAX),
                );
                None
            }
        },
        other => {
            errors.on(
                other,
                format!("`{key}` must be a whole number literal, such as `{key} = 10`"),
            );
            None
        }
    }
}

fn float(expr: Option<&Expr>, errors: &mut Errors, key: &str) -> Option<Num<f64>> {
    let parsed = match expr? {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok().map(|v| (f.span(), v)),
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<f64>().ok().map(|v| (i.span(), v)),
        other => {
            errors.on(
                other,
                format!("`{key}` must be a number literal, such as `{key} = 0.5`"),
            );
            return None;
        }
    };
    parsed.map(|(span, value)| Num { span, value })
}

/// Each item as `name = value`, reporting unknown names against `keys`.
fn items<'m>(
    items: &'m [Meta],
    errors: &mut Errors,
    context: &str,
    keys: &[&str],
) -> Vec<(String, &'m Meta)> {
    let mut out: Vec<(String, &Meta)> = Vec::new();
    for meta in items {
        let name = path_text(meta.path());
        if !keys.contains(&name.as_str()) {
            errors.on(meta.path(), unknown("setting", &name, context, keys));
            continue;
        }
        if out.iter().any(|(seen, _)| *seen == name) {
            errors.on(
                meta.path(),
                format!("duplicate setting `{name}` in {context}; each setting may appear once"),
            );
            continue;
        }
        out.push((name, meta));
    }
    out
}

fn parse_retry(metas: Vec<Meta>, errors: &mut Errors) -> RetryArg {
    let mut retry = RetryArg::default();
    for (name, meta) in items(&metas, errors, "`retry(...)`", RETRY_KEYS) {
        let v = value(meta, errors);
        match name.as_str() {
            "max_attempts" => retry.max_attempts = int(v, errors, "max_attempts"),
            "backoff" => retry.backoff = v.and_then(|v| parse_backoff(v, errors)),
            "jitter" => {
                retry.jitter = v.and_then(|v| match v {
                    Expr::Path(p) if p.path.is_ident("full") => Some(JitterArg::Full),
                    Expr::Path(p) if p.path.is_ident("equal") => Some(JitterArg::Equal),
                    Expr::Path(p) if p.path.is_ident("none") => Some(JitterArg::None),
                    other => {
                        let found = quote::ToTokens::to_token_stream(other).to_string();
                        errors.on(
                            other,
                            unknown("jitter", &found, "`retry(jitter = ...)`", JITTERS),
                        );
                        None
                    }
                });
            }
            _ => {
                retry.budget = v.and_then(|v| parse_budget(v, errors));
            }
        }
    }
    retry
}

/// Call arguments, positional or named (`exponential("100ms", "5s")` ≡
/// `exponential(base = "100ms", max = "5s")`), in the order of `names`.
fn call_args<'e>(
    args: &'e Punctuated<Expr, Token![,]>,
    names: &[&str],
    errors: &mut Errors,
    context: &str,
    span: Span,
) -> Option<Vec<&'e Expr>> {
    let mut slots: Vec<Option<&Expr>> = vec![None; names.len()];
    let mut ok = true;
    for (i, arg) in args.iter().enumerate() {
        let (slot, value) = match arg {
            Expr::Assign(assign) => {
                let name = quote::ToTokens::to_token_stream(&assign.left).to_string();
                match names.iter().position(|n| *n == name) {
                    Some(slot) => (slot, &*assign.right),
                    None => {
                        errors.on(&assign.left, unknown("argument", &name, context, names));
                        ok = false;
                        continue;
                    }
                }
            }
            positional if i < names.len() => (i, positional),
            extra => {
                errors.on(
                    extra,
                    format!(
                        "too many arguments to {context}; it takes {}",
                        names.join(", ")
                    ),
                );
                ok = false;
                continue;
            }
        };
        if slots[slot].replace(value).is_some() {
            errors.on(
                arg,
                format!("`{}` is given twice in {context}", names[slot]),
            );
            ok = false;
        }
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&slots)
        .filter(|(_, s)| s.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        errors.at(
            span,
            format!(
                "{context} needs {}",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        );
        ok = false;
    }
    ok.then(|| slots.into_iter().flatten().collect())
}

fn parse_backoff(expr: &Expr, errors: &mut Errors) -> Option<BackoffArg> {
    let Expr::Call(call) = expr else {
        errors.on(expr, "`backoff` is one of `exponential(base, max)`, `constant(delay)` or `decorrelated(base, max)`, such as `backoff = exponential(\"100ms\", \"5s\")`");
        return None;
    };
    let name = quote::ToTokens::to_token_stream(&call.func).to_string();
    let span = call.span();
    match name.as_str() {
        "exponential" | "decorrelated" => {
            let context = format!("`{name}(base, max)`");
            let args = call_args(&call.args, &["base", "max"], errors, &context, span)?;
            let base = dur(Some(args[0]), errors, "base");
            let max = dur(Some(args[1]), errors, "max");
            let (base, max) = (base?, max?);
            Some(if name == "exponential" {
                BackoffArg::Exponential { base, max, span }
            } else {
                BackoffArg::Decorrelated { base, max, span }
            })
        }
        "constant" => {
            let args = call_args(&call.args, &["delay"], errors, "`constant(delay)`", span)?;
            dur(Some(args[0]), errors, "delay").map(BackoffArg::Constant)
        }
        _ => {
            errors.on(
                &call.func,
                unknown("backoff", &name, "`retry(backoff = ...)`", BACKOFFS),
            );
            None
        }
    }
}

fn parse_budget(expr: &Expr, errors: &mut Errors) -> Option<Switch<BudgetArg>> {
    if is_ident(expr, "off") {
        return Some(Switch::Off);
    }
    let Expr::Call(call) = expr else {
        errors.on(
            expr,
            "`budget` is `off` or `ratio(0.2)` (optionally `ratio(0.2, cap = 10)`)",
        );
        return None;
    };
    let name = quote::ToTokens::to_token_stream(&call.func).to_string();
    if name != "ratio" {
        errors.on(
            &call.func,
            unknown("budget", &name, "`retry(budget = ...)`", &["off", "ratio"]),
        );
        return None;
    }
    let with_cap = call.args.len() == 2;
    let names: &[&str] = if with_cap {
        &["ratio", "cap"]
    } else {
        &["ratio"]
    };
    let args = call_args(
        &call.args,
        names,
        errors,
        "`ratio(ratio, cap)`",
        call.span(),
    )?;
    let ratio = float(Some(args[0]), errors, "ratio")?;
    let cap = if with_cap {
        Some(int(Some(args[1]), errors, "cap")?)
    } else {
        None
    };
    Some(Switch::On(BudgetArg { ratio, cap }))
}

fn parse_breaker(metas: Vec<Meta>, errors: &mut Errors) -> BreakerArg {
    let mut b = BreakerArg::default();
    for (name, meta) in items(&metas, errors, "`breaker(...)`", BREAKER_KEYS) {
        let v = value(meta, errors);
        match name.as_str() {
            "failure_rate" => b.failure_rate = float(v, errors, "failure_rate"),
            "slow_rate" => b.slow_rate = float(v, errors, "slow_rate"),
            "slow_call" => b.slow_call = dur(v, errors, "slow_call"),
            "window" => {
                b.window = match v {
                    Some(Expr::Lit(ExprLit {
                        lit: Lit::Str(_), ..
                    })) => dur(v, errors, "window").map(WindowArg::Time),
                    Some(_) => int(v, errors, "window").map(WindowArg::Count),
                    None => None,
                };
            }
            "min_calls" => b.min_calls = int(v, errors, "min_calls"),
            "consecutive_failures" => {
                b.consecutive_failures = int(v, errors, "consecutive_failures")
            }
            "open_for" => b.open_for = dur(v, errors, "open_for"),
            "probe_interval" => b.probe_interval = dur(v, errors, "probe_interval"),
            "max_probe_interval" => b.max_probe_interval = dur(v, errors, "max_probe_interval"),
            _ => b.half_open_probes = int(v, errors, "half_open_probes"),
        }
    }
    b
}

fn boolean(expr: Option<&Expr>, errors: &mut Errors, key: &str) -> Option<bool> {
    match expr? {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.value),
        other => {
            errors.on(
                other,
                format!("`{key}` must be `true` or `false`, such as `{key} = false`"),
            );
            None
        }
    }
}

fn parse_recovery(meta: &Meta, errors: &mut Errors) -> Option<RecoveryArg> {
    const EXAMPLE: &str = "recovery(wait = true, max_waiting = 1024, pace = 1.5)";
    if let Meta::NameValue(nv) = meta {
        if is_ident(&nv.value, "fail_fast") {
            return Some(RecoveryArg {
                fail_fast: true,
                ..RecoveryArg::default()
            });
        }
        errors.on(
            &nv.value,
            format!(
                "`recovery` is either `recovery = fail_fast` or `recovery(...)` with any of: {}",
                RECOVERY_KEYS.join(", ")
            ),
        );
        return None;
    }
    if let Meta::Path(_) = meta {
        return Some(RecoveryArg::default());
    }
    let metas = list(meta, errors, "recovery", EXAMPLE)?;
    let mut r = RecoveryArg::default();
    for (name, meta) in items(&metas, errors, "`recovery(...)`", RECOVERY_KEYS) {
        let v = value(meta, errors);
        match name.as_str() {
            "wait" => r.wait = boolean(v, errors, "wait"),
            "max_waiting" => r.max_waiting = int(v, errors, "max_waiting"),
            "pace" => r.pace = float(v, errors, "pace"),
            "min_rate" => r.min_rate = float(v, errors, "min_rate"),
            "slow_start" => r.slow_start = dur(v, errors, "slow_start"),
            _ => r.learn_quota = boolean(v, errors, "learn_quota"),
        }
    }
    Some(r)
}

fn parse_throttle(metas: Vec<Meta>, errors: &mut Errors) -> ThrottleArg {
    let mut t = ThrottleArg::default();
    for (name, meta) in items(&metas, errors, "`throttle(...)`", THROTTLE_KEYS) {
        let v = value(meta, errors);
        if name == "k" {
            t.k = float(v, errors, "k");
        } else {
            t.window = dur(v, errors, "window");
        }
    }
    t
}

fn parse_adaptive_timeout(metas: Vec<Meta>, errors: &mut Errors) -> AdaptiveTimeoutArg {
    let mut a = AdaptiveTimeoutArg::default();
    for (name, meta) in items(
        &metas,
        errors,
        "`adaptive_timeout(...)`",
        ADAPTIVE_TIMEOUT_KEYS,
    ) {
        let v = value(meta, errors);
        match name.as_str() {
            "min" => a.min = dur(v, errors, "min"),
            "max" => a.max = dur(v, errors, "max"),
            "percentile" => a.percentile = float(v, errors, "percentile"),
            _ => a.multiplier = float(v, errors, "multiplier"),
        }
    }
    a
}

fn parse_bulkhead(metas: Vec<Meta>, errors: &mut Errors) -> BulkheadArg {
    let mut b = BulkheadArg::default();
    for (name, meta) in items(&metas, errors, "`bulkhead(...)`", BULKHEAD_KEYS) {
        let v = value(meta, errors);
        if name == "max_concurrent" {
            b.max_concurrent = int(v, errors, "max_concurrent");
        } else {
            b.max_wait = dur(v, errors, "max_wait");
        }
    }
    b
}

fn parse_rate_limit(metas: Vec<Meta>, errors: &mut Errors) -> RateLimitArg {
    let mut r = RateLimitArg::default();
    for (name, meta) in items(&metas, errors, "`rate_limit(...)`", RATE_LIMIT_KEYS) {
        let v = value(meta, errors);
        match name.as_str() {
            "per_second" => r.per_second = int(v, errors, "per_second"),
            "burst" => r.burst = int(v, errors, "burst"),
            "shared" => r.shared = v.cloned(),
            _ => r.cost = v.cloned(),
        }
    }
    r
}

fn parse_idempotent(metas: Vec<Meta>, errors: &mut Errors) -> IdempotentArg {
    let mut i = IdempotentArg::default();
    for (name, meta) in items(&metas, errors, "`idempotent(...)`", IDEMPOTENT_KEYS) {
        let v = value(meta, errors).cloned();
        match name.as_str() {
            "key" => i.key = v,
            "store" => i.store = v,
            "ttl" => i.ttl = dur(v.as_ref(), errors, "ttl"),
            "wait" => i.wait = dur(v.as_ref(), errors, "wait"),
            "on_store_error" => {
                i.proceed_on_store_error = match &v {
                    Some(Expr::Path(p))
                        if p.path.is_ident("proceed") || p.path.is_ident("fail_closed") =>
                    {
                        let ident = p.path.get_ident().cloned().expect("checked above");
                        let proceed = ident == "proceed";
                        Some((ident, proceed))
                    }
                    Some(other) => {
                        let found = quote::ToTokens::to_token_stream(other).to_string();
                        errors.on(
                            other,
                            unknown(
                                "choice",
                                &found,
                                "`idempotent(on_store_error = ...)`",
                                ON_STORE_ERROR,
                            ),
                        );
                        None
                    }
                    None => None,
                };
            }
            _ => i.fingerprint = v,
        }
    }
    i
}

fn parse_dlq(meta: &Meta, errors: &mut Errors) -> Option<DlqArg> {
    let span = meta.path().span();
    match meta {
        Meta::NameValue(nv) => Some(DlqArg {
            span,
            sink: Some(nv.value.clone()),
            on: None,
        }),
        Meta::Path(_) => {
            errors.on(meta, "`dlq` needs a sink: `dlq = SINK` or `dlq(sink = SINK, on = permanent | exhausted | any)`, where SINK is a `buttress::dlq::DeadLetterSink` such as `buttress::dlq::MemorySink::new()` kept in a field or static");
            None
        }
        Meta::List(_) => {
            let metas = list(meta, errors, "dlq", "dlq(sink = SINK, on = any)")?;
            let mut arg = DlqArg {
                span,
                sink: None,
                on: None,
            };
            for (name, meta) in items(&metas, errors, "`dlq(...)`", DLQ_KEYS) {
                let v = value(meta, errors);
                if name == "sink" {
                    arg.sink = v.cloned();
                    continue;
                }
                arg.on = v.and_then(|v| match v {
                    Expr::Path(p) if p.path.is_ident("permanent") => Some(DlqOn::Permanent),
                    Expr::Path(p) if p.path.is_ident("exhausted") => Some(DlqOn::Exhausted),
                    Expr::Path(p) if p.path.is_ident("any") => Some(DlqOn::Any),
                    other => {
                        let found = quote::ToTokens::to_token_stream(other).to_string();
                        errors.on(other, unknown("choice", &found, "`dlq(on = ...)`", DLQ_ON));
                        None
                    }
                });
            }
            Some(arg)
        }
    }
}
