//! Duration literals (`"150ms"`, `"2s"`, `"1m30s"`), checked at compile time.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::quote;
use syn::LitStr;

/// Parse a duration literal, with an error spanned on the literal.
pub(crate) fn parse(lit: &LitStr) -> syn::Result<Duration> {
    let text = lit.value();
    humantime::parse_duration(text.trim()).map_err(|e| {
        syn::Error::new(
            lit.span(),
            format!(
                "`{text}` is not a duration ({e}); write a number with a unit, such as \"150ms\", \"2s\", \"1m30s\" or \"24h\""
            ),
        )
    })
}

/// The tokens of a `Duration` constant equal to `d`.
pub(crate) fn tokens(d: Duration) -> TokenStream {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let rt = crate::runtime_path();
    quote!(#rt::Duration::new(#secs, #nanos))
}
