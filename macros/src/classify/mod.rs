//! `#[derive(Classify)]`: parse (`model`), check (`check`), generate
//! (`expand`).

mod check;
mod expand;
mod model;

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: syn::DeriveInput = syn::parse2(input)?;
    let mut errors = Errors::default();
    let model = model::Input::parse(&input, &mut errors);
    let plan = check::check(&model, &mut errors);
    match (errors.0, plan) {
        (None, Some(plan)) => Ok(expand::classify_impl(&plan)),
        (Some(errors), _) => {
            let errors = errors.into_compile_error();
            let fallback = expand::fallback(&input);
            Ok(quote!(#errors #fallback))
        }
        (None, None) => Err(syn::Error::new_spanned(
            &input.ident,
            "internal error in #[derive(Classify)]: the input was rejected without a reason; please report this",
        )),
    }
}

/// Every error found so far, reported together (serde's `Ctxt`).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// An error spanning all of `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }
}
