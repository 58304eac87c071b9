//! The other policy groups: `breaker(...)`, `bulkhead(...)`,
//! `rate_limit(...)`, `recovery(...)`, `throttle(...)`,
//! `adaptive_timeout(...)`, `idempotent(...)` and `dlq(...)`.

use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta};

use super::keys::{
    ADAPTIVE_TIMEOUT_KEYS, BREAKER_KEYS, BULKHEAD_KEYS, CLOCKS, DLQ_KEYS, DLQ_ON, IDEMPOTENT_KEYS,
    ON_STORE_ERROR, RATE_LIMIT_KEYS, RECOVERY_KEYS, THROTTLE_KEYS,
};
use super::syntax::{items, list, value};
use super::values::{boolean, dur, float, int, is_ident};
use super::{
    AdaptiveTimeoutArg, BreakerArg, BulkheadArg, DlqArg, DlqOn, IdempotentArg, RateLimitArg,
    RecoveryArg, ThrottleArg, WindowArg,
};
use crate::errors::{unknown, Errors};

pub(super) fn parse_breaker(metas: Vec<Meta>, errors: &mut Errors) -> BreakerArg {
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

pub(super) fn parse_bulkhead(metas: Vec<Meta>, errors: &mut Errors) -> BulkheadArg {
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

pub(super) fn parse_rate_limit(metas: Vec<Meta>, errors: &mut Errors) -> RateLimitArg {
    let mut r = RateLimitArg::default();
    for (name, meta) in items(&metas, errors, "`rate_limit(...)`", RATE_LIMIT_KEYS) {
        let v = value(meta, errors);
        match name.as_str() {
            "per_second" => r.per_second = int(v, errors, "per_second"),
            "burst" => r.burst = int(v, errors, "burst"),
            "shared" => r.shared = v.cloned(),
            "clock" => {
                r.clock = v.and_then(|v| match v {
                    Expr::Path(p) if p.path.is_ident("coarse") => Some("Coarse"),
                    Expr::Path(p) if p.path.is_ident("precise") => Some("Precise"),
                    Expr::Path(p) if p.path.is_ident("tokio") => Some("Tokio"),
                    other => {
                        let found = quote::ToTokens::to_token_stream(other).to_string();
                        errors.on(
                            other,
                            unknown("clock", &found, "`rate_limit(clock = ...)`", CLOCKS),
                        );
                        None
                    }
                });
            }
            _ => r.cost = v.cloned(),
        }
    }
    r
}

pub(super) fn parse_recovery(meta: &Meta, errors: &mut Errors) -> Option<RecoveryArg> {
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

pub(super) fn parse_throttle(metas: Vec<Meta>, errors: &mut Errors) -> ThrottleArg {
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

pub(super) fn parse_adaptive_timeout(metas: Vec<Meta>, errors: &mut Errors) -> AdaptiveTimeoutArg {
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

pub(super) fn parse_idempotent(metas: Vec<Meta>, errors: &mut Errors) -> IdempotentArg {
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

pub(super) fn parse_dlq(meta: &Meta, errors: &mut Errors) -> Option<DlqArg> {
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
