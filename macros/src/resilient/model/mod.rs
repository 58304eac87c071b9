//! The `model` stage of `#[resilient(...)]`: parse the attribute into a
//! typed model that keeps the original tokens for spans. Syntax errors are
//! collected, not returned at the first one.
//!
//! This file holds the model and the loop over the attribute's keys; the
//! key tables (`keys`), the shapes of a setting (`syntax`), the values
//! (`values`) and the policy groups (`retry`, `policies`) each have their
//! own file.

mod keys;
mod policies;
mod retry;
mod syntax;
mod values;

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

use crate::errors::{unknown, Errors};
use keys::{ADAPTIVE_TIMEOUT_KEYS, BREAKER_KEYS, KEYS, RETRY_KEYS, THROTTLE_KEYS};
use policies::{
    parse_adaptive_timeout, parse_breaker, parse_bulkhead, parse_dlq, parse_idempotent,
    parse_rate_limit, parse_recovery, parse_throttle,
};
use retry::parse_retry;
use syntax::{list, path_text, switch, value};
use values::{dur, is_ident, lit_str};

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
    /// `clock = coarse | precise | tokio`: the `LimiterClock` variant.
    pub(crate) clock: Option<&'static str>,
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
