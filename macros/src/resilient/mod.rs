//! `#[resilient(...)]`, in three stages:
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
use syn::{
    Attribute, Block, Expr, Local, Pat, PatType, ReturnType, Signature, Stmt, Type, Visibility,
};

use crate::errors::Errors;

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

/// `#[async_trait]` (which expands before us when it sits on the impl or
/// trait block) turns `async fn f(..) -> R { body }` into a plain `fn`
/// returning a boxed future whose block is
/// `Box::pin(async move { …; let __ret: R = { body }; __ret })`.
/// Find that inner `{ body }` and its `R`, so the attempt loop goes around
/// the user's body inside the boxed future.
fn async_trait_body(block: &mut Block) -> Option<(&mut syn::Expr, Type)> {
    let [Stmt::Expr(Expr::Call(call), None)] = block.stmts.as_mut_slice() else {
        return None;
    };
    let is_pin = matches!(&*call.func, Expr::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "pin"));
    if !is_pin || call.args.len() != 1 {
        return None;
    }
    let Some(Expr::Async(inner)) = call.args.first_mut() else {
        return None;
    };
    inner.block.stmts.iter_mut().find_map(|stmt| match stmt {
        Stmt::Local(Local {
            pat: Pat::Type(PatType { pat, ty, .. }),
            init: Some(init),
            ..
        }) if matches!(&**pat, Pat::Ident(i) if i.ident == "__ret") => {
            let ty = (**ty).clone();
            Some((&mut *init.expr, ty))
        }
        _ => None,
    })
}

pub(crate) fn expand(attr_tokens: TokenStream, item: TokenStream) -> TokenStream {
    let mut function = match parse_function(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let error = e.into_compile_error();
            return quote!(#error #item);
        }
    };
    let mut errors = Errors::default();
    let attr = model::parse(attr_tokens, &mut errors);
    check::attr(&attr, &mut errors);
    if function.sig.asyncness.is_none() {
        if let Some((user_block, ret)) = async_trait_body(&mut function.block) {
            let mut sig = function.sig.clone();
            sig.asyncness = Some(Default::default());
            sig.output = ReturnType::Type(Default::default(), Box::new(ret));
            check::signature(&sig, &mut errors);
            let block: Block = syn::parse_quote!({ #user_block });
            let wrapped = expand::body(&attr, &sig, &block, &mut errors);
            *user_block = syn::parse_quote!(#wrapped);
            if let Err(e) = errors.finish() {
                let error = e.into_compile_error();
                return quote!(#error #item);
            }
            let Function {
                attrs,
                vis,
                defaultness,
                sig,
                block,
            } = function;
            return quote! {
                #(#attrs)*
                #vis #defaultness #sig #block
            };
        }
    }
    check::signature(&function.sig, &mut errors);
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
