//! `retry(...)`: attempts, backoff, jitter and the retry budget.

use syn::spanned::Spanned;
use syn::{Expr, Meta};

use super::keys::{BACKOFFS, JITTERS, RETRY_KEYS};
use super::syntax::{call_args, items, value};
use super::values::{dur, float, int, is_ident};
use super::{BackoffArg, BudgetArg, JitterArg, RetryArg, Switch};
use crate::errors::{unknown, Errors};

pub(super) fn parse_retry(metas: Vec<Meta>, errors: &mut Errors) -> RetryArg {
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

pub(super) fn parse_backoff(expr: &Expr, errors: &mut Errors) -> Option<BackoffArg> {
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

pub(super) fn parse_budget(expr: &Expr, errors: &mut Errors) -> Option<Switch<BudgetArg>> {
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
