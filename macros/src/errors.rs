//! The one error collector of both macros. Every stage reports into it
//! instead of stopping at the first mistake, like serde's `Ctxt`, so one
//! compile shows the user all of their mistakes at once. Also the "did you
//! mean" hints for unknown words.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// Every error found so far, reported together by `finish`.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Add an error as built, keeping its own span(s).
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// An error at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// An error spanning all of `tokens`.
    pub(crate) fn on(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// `Ok` when nothing was reported, otherwise every error combined.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// "unknown key `timout` in `#[resilient]`; did you mean `timeout`? expected one of: …"
pub(crate) fn unknown(what: &str, found: &str, context: &str, valid: &[&str]) -> String {
    let suggestion = valid
        .iter()
        .map(|v| (strsim(found, v), v))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| format!("did you mean `{v}`? "))
        .unwrap_or_default();
    let list = valid
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("unknown {what} `{found}` in {context}; {suggestion}expected one of: {list}")
}

/// Levenshtein distance, for "did you mean" hints.
fn strsim(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}
