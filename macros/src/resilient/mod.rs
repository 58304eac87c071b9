//! `#[resilient(...)]`: parse (`attr.rs`) → check (`check.rs`) → expand
//! (`expand.rs`).

mod attr;
mod check;
mod errors;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Block, Signature, Visibility};

use errors::Errors;

/// The function the attribute sits on, whatever kind of item it is.
struct Function {
    attrs: Vec<Attribute>,
    vis: Visibility,
    defaultness: Option<syn::token::Default>,
    sig: Signature,
    block: Block,
}

fn parse_function(item: TokenStream) -> syn::Result<Function> {
    if let Ok(f) = syn::parse2::<syn::ImplItemFn>(item.clone()) {
        return Ok(Function {
            attrs: f.attrs,
            vis: f.vis,
            defaultness: f.defaultness,
            sig: f.sig,
            block: f.block,
        });
    }
    match syn::parse2::<syn::TraitItemFn>(item.clone()) {
        Ok(f) => match f.default {
            Some(block) => Ok(Function {
                attrs: f.attrs,
                vis: Visibility::Inherited,
                defaultness: None,
                sig: f.sig,
                block,
            }),
            None => Err(syn::Error::new_spanned(
                &f.sig.ident,
                "`#[resilient]` needs a function body: put it on the method's implementation, not on its declaration in the trait",
            )),
        },
        Err(_) => Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "`#[resilient]` goes on an `async fn` (a free function, or a method in an `impl` or `trait` block)",
        )),
    }
}

pub(crate) fn expand(attr_tokens: TokenStream, item: TokenStream) -> TokenStream {
    let function = match parse_function(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let error = e.into_compile_error();
            return quote!(#error #item);
        }
    };
    let mut errors = Errors::default();
    let attr = attr::parse(attr_tokens, &mut errors);
    check::signature(&function.sig, &mut errors);
    check::attr(&attr, &mut errors);
    let body = expand::body(&attr, &function.sig, &function.block, &mut errors);
    if let Err(e) = errors.finish() {
        // The user's function unchanged, so one mistake does not bring a
        // flood of follow-on errors and IDEs keep working.
        let error = e.into_compile_error();
        return quote!(#error #item);
    }
    let Function {
        attrs,
        vis,
        defaultness,
        sig,
        ..
    } = function;
    quote! {
        #(#attrs)*
        #vis #defaultness #sig #body
    }
}
