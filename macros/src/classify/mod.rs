//! `#[derive(Classify)]`.

use proc_macro2::TokenStream;

pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: syn::DeriveInput = syn::parse2(input)?;
    Err(syn::Error::new_spanned(
        &input.ident,
        "#[derive(Classify)] is not implemented yet",
    ))
}
