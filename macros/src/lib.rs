//! The macros of [buttress](https://docs.rs/buttress): `#[resilient(...)]`
//! and `#[derive(Classify)]`. Use them through the `buttress` crate, which
//! re-exports them; the generated code names only paths under
//! `::buttress::__private_<version>` (the version of this crate), so a macro
//! crate and a runtime of different versions fail to build together
//! instead of misbehaving.
//!
//! Each macro runs the same three stages, each a module of the same name:
//! `model` parses the input into a typed model that keeps the original
//! tokens for spans, `check` validates the model and collects every error,
//! and `expand` generates the code. Both macros report through one error
//! collector (`errors`), so one compile shows every mistake.

#[cfg(test)]
mod agreement;
mod classify;
mod duration;
mod errors;
mod resilient;

use proc_macro::TokenStream;

/// The runtime's hidden module for this macro crate's version,
/// `::buttress::__private_0_1_0` for 0.1.0: the two crates are released
/// together, and the runtime names its module after its own version.
fn runtime_path() -> proc_macro2::TokenStream {
    let name = format!(
        "__private_{}",
        env!("CARGO_PKG_VERSION").replace(['.', '-', '+'], "_")
    );
    let module = proc_macro2::Ident::new(&name, proc_macro2::Span::call_site());
    quote::quote!(::buttress::#module)
}

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
