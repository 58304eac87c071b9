//! `#[derive(Classify)]`, in three stages:
//!
//! - `model`: parse the input into a typed model that keeps the original
//!   tokens for spans;
//! - `check`: validate the model, collecting every error;
//! - `expand`: generate the code.
//!
//! Every stage reports into one `crate::errors::Errors`, so one compile
//! shows every mistake.

mod check;
mod expand;
mod model;

use proc_macro2::TokenStream;
use quote::quote;

use crate::errors::Errors;

pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: syn::DeriveInput = syn::parse2(input)?;
    let mut errors = Errors::default();
    let model = model::Input::parse(&input, &mut errors);
    let plan = check::check(&model, &mut errors);
    match (errors.finish(), plan) {
        (Ok(()), Some(plan)) => Ok(expand::classify_impl(&plan)),
        (Err(errors), _) => {
            let errors = errors.into_compile_error();
            let fallback = expand::fallback(&input);
            Ok(quote!(#errors #fallback))
        }
        (Ok(()), None) => Err(syn::Error::new_spanned(
            &input.ident,
            "internal error in #[derive(Classify)]: the input was rejected without a reason; please report this",
        )),
    }
}
