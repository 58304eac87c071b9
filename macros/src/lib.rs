//! The macros of [buttress](https://docs.rs/buttress): `#[resilient(...)]`
//! and `#[derive(Classify)]`. Use them through the `buttress` crate, which
//! re-exports them; the generated code names only `::buttress::__private`
//! paths.
//!
//! Each macro has three stages in three files: parse into a typed model
//! that keeps the original tokens for spans, check the model and collect
//! every error, then expand.

mod classify;
mod duration;
mod resilient;

use proc_macro::TokenStream;

/// Makes an `async fn` returning `Result<T, E>` resilient: deadline,
/// retries under a budget, circuit breaker, rate limit, bulkhead and
/// per-attempt timeout, shared per provider. See the `buttress` crate docs
/// for the grammar.
#[proc_macro_attribute]
pub fn resilient(attr: TokenStream, item: TokenStream) -> TokenStream {
    resilient::expand(attr.into(), item.into()).into()
}

/// Derives `buttress::Classify` for an enum: every variant carries
/// `#[classify(transient | rate_limited | outcome_unknown | permanent |
/// delegate)]`, or the enum carries `#[classify(default = …)]`; a field may
/// carry `#[retry_after]`.
#[proc_macro_derive(Classify, attributes(classify, retry_after))]
pub fn derive_classify(input: TokenStream) -> TokenStream {
    classify::expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
