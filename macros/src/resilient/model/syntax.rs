//! The shapes a setting takes: `key = value`, `key(a = 1, b = 2)`,
//! `key = off` or bare `key`; the items of a group, and the arguments of a
//! call such as `exponential("100ms", "5s")`.

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::{Expr, Meta, Token};

use super::values::is_ident;
use super::Switch;
use crate::errors::{unknown, Errors};

pub(super) fn path_text(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// The `= value` of `key = value`.
pub(super) fn value<'m>(meta: &'m Meta, errors: &mut Errors) -> Option<&'m Expr> {
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
pub(super) fn list(
    meta: &Meta,
    errors: &mut Errors,
    key: &str,
    example: &str,
) -> Option<Vec<Meta>> {
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
pub(super) fn switch<T: Default>(
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

/// Each item as `name = value`, reporting unknown names against `keys`.
pub(super) fn items<'m>(
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

/// Call arguments, positional or named (`exponential("100ms", "5s")` ≡
/// `exponential(base = "100ms", max = "5s")`), in the order of `names`.
pub(super) fn call_args<'e>(
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
