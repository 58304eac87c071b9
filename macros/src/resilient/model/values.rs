//! Setting values: string literals, durations, whole and decimal numbers,
//! booleans and bare words, each error spanned on what was written.

use syn::{Expr, ExprLit, Lit, LitStr};

use super::{Dur, Num};
use crate::duration;
use crate::errors::Errors;

pub(super) fn is_ident(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Path(p) if p.path.is_ident(name))
}

pub(super) fn lit_str(
    expr: Option<&Expr>,
    errors: &mut Errors,
    key: &str,
    what: &str,
) -> Option<LitStr> {
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

pub(super) fn dur(expr: Option<&Expr>, errors: &mut Errors, key: &str) -> Option<Dur> {
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

pub(super) fn int(expr: Option<&Expr>, errors: &mut Errors, key: &str) -> Option<Num<u32>> {
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

pub(super) fn float(expr: Option<&Expr>, errors: &mut Errors, key: &str) -> Option<Num<f64>> {
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

pub(super) fn boolean(expr: Option<&Expr>, errors: &mut Errors, key: &str) -> Option<bool> {
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
