//! The `expand` stage of `#[resilient(...)]`: generate the wrapper, a
//! `static` call site built once (its `PolicyConfig` in `config`), and a
//! short attempt loop that re-runs the user's block inline.

mod config;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Block, FnArg, Pat, ReturnType, Signature, Type};

use super::model::{Attr, DlqArg, DlqOn, Dur, Num, PolicyArg};
use crate::duration;
use crate::errors::Errors;
use config::config;

fn dur(d: &Dur) -> TokenStream {
    duration::tokens(d.value)
}

fn u(n: &Num<u32>) -> TokenStream {
    let v = n.value;
    quote!(#v)
}

fn f(n: &Num<f64>) -> TokenStream {
    let v = n.value;
    quote!(#v)
}

fn contains_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    finder.0
}

/// The arguments to pass on to a fallback: `self` and each parameter name.
fn forwarded_args(sig: &Signature, errors: &mut Errors) -> Vec<TokenStream> {
    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                let token = r.self_token;
                args.push(quote!(#token));
            }
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(p) if p.subpat.is_none() => {
                    let ident = &p.ident;
                    args.push(quote!(#ident));
                }
                other => errors.on(
                    other,
                    "with `fallback`, every argument must be a plain name (the fallback is called with the same arguments); bind this pattern inside the body instead",
                ),
            },
        }
    }
    args
}

/// Wrap the attempt loop so that a failure the `dlq` key covers is built
/// into a dead letter (arguments serialized only then) and sent to the sink.
fn dead_letter(
    dlq: &DlqArg,
    sig: &Signature,
    span: proc_macro2::Span,
    attempt_loop: TokenStream,
    errors: &mut Errors,
) -> TokenStream {
    let p = crate::runtime_path();
    let Some(sink) = &dlq.sink else {
        return attempt_loop;
    };
    let on = match dlq.on.unwrap_or(DlqOn::Any) {
        DlqOn::Permanent => quote!(#p::DeadLetterOn::Permanent),
        DlqOn::Exhausted => quote!(#p::DeadLetterOn::Exhausted),
        DlqOn::Any => quote!(#p::DeadLetterOn::Any),
    };
    let mut pushes = Vec::new();
    for input in &sig.inputs {
        let FnArg::Typed(typed) = input else {
            continue;
        };
        match &*typed.pat {
            Pat::Ident(pat) if pat.subpat.is_none() => {
                let ident = &pat.ident;
                let name = ident.to_string();
                let name = name.trim_start_matches("r#");
                pushes.push(quote_spanned!(typed.ty.span()=> __buttress_args.push(#name, &#ident);));
            }
            other => errors.on(
                other,
                "with `dlq`, every argument must be a plain name (the arguments are kept in the dead letter by name); bind this pattern inside the body instead",
            ),
        }
    }
    let entry = quote_spanned!(span=> #p::dead_letter_entry(&__buttress_call, __buttress_error, __buttress_args));
    let send = quote_spanned!(sink.span()=> #p::send_dead_letter(&(#sink), __buttress_dead_letter));
    quote! {{
        let __buttress_result = #attempt_loop;
        let __buttress_dead_letter = match &__buttress_result {
            #p::Err(__buttress_error) if #p::dead_letter_due(&__buttress_call, #on) => {
                let mut __buttress_args = #p::DeadLetterArgs::new();
                #(#pushes)*
                #p::Some(#entry)
            }
            _ => #p::None,
        };
        if let #p::Some(__buttress_dead_letter) = __buttress_dead_letter {
            #send.await;
        }
        __buttress_result
    }}
}

/// The new body of the function.
pub(crate) fn body(
    attr: &Attr,
    sig: &Signature,
    block: &Block,
    errors: &mut Errors,
) -> TokenStream {
    let p = crate::runtime_path();
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => &**ty,
        ReturnType::Default => return quote!(#block),
    };
    let span = ret.span();
    let nameable = !contains_impl_trait(ret);
    let (site, begin) = match &attr.policy {
        Some(PolicyArg::Expr(expr)) => {
            let begin = if nameable {
                quote_spanned!(span=> #p::begin_with::<#ret>(#expr))
            } else {
                quote_spanned!(span=> #p::begin_with_inferred(#expr))
            };
            (quote!(), quote!(let mut __buttress_call = #begin;))
        }
        policy => {
            let config = config(attr, sig);
            let site = match policy {
                Some(PolicyArg::Named(name)) => quote!(#p::Site::named(#name, #config)),
                _ => quote!(#p::Site::new(#config)),
            };
            let site = quote! {
                static __BUTTRESS_SITE: #p::Site = #site;
            };
            // The call is built in place in its match arm (moving it out
            // of a `Result` would copy the whole call).
            let start = if nameable {
                quote_spanned!(span=> __buttress_policy.begin::<#ret>())
            } else {
                quote_spanned!(span=> __buttress_policy.begin_inferred())
            };
            // Only the start carries the return type's span (its trait
            // errors point there); the rest is the macro's own code, which
            // lints leave alone.
            let begin = quote! {
                let mut __buttress_call = match #p::site_policy(&__BUTTRESS_SITE) {
                    #p::Ok(__buttress_policy) => #start,
                    #p::Err(__buttress_error) => {
                        return #p::Err(::core::convert::From::from(__buttress_error));
                    }
                };
            };
            (site, begin)
        }
    };
    let key =
        attr.idempotent.as_ref().and_then(|i| i.key.as_ref()).map(
            |key| quote_spanned!(key.span()=> __buttress_call.set_key(#p::key_string(&(#key)));),
        );
    let shared_quota = attr.rate_limit.as_ref().map(|r| {
        let shared = r
            .shared
            .as_ref()
            .map(|q| quote_spanned!(q.span()=> __buttress_call.set_shared_quota(&(#q));));
        let cost = r
            .cost
            .as_ref()
            .map(|c| quote_spanned!(c.span()=> __buttress_call.set_quota_cost(#c);));
        quote!(#shared #cost)
    });
    let attempt_loop = if matches!(attr.hedge, Some((true, _))) {
        // A cut attempt stays in `__buttress_kept` while the retries run
        // (see `Call::attempt_keeping`); its type is the block's.
        quote! {{
            let mut __buttress_kept = #p::pin!(#p::None);
            loop {
                if let #p::ControlFlow::Break(__buttress_result) = __buttress_call
                    .attempt_keeping(__buttress_kept.as_mut(), async #block)
                    .await
                {
                    break __buttress_result;
                }
            }
        }}
    } else {
        quote! {
            loop {
                if let #p::ControlFlow::Break(__buttress_result) = __buttress_call.attempt(async #block).await {
                    break __buttress_result;
                }
            }
        }
    };
    let (claim, attempt_loop) = match attr
        .idempotent
        .as_ref()
        .and_then(|i| i.store.as_ref().map(|s| (i, s)))
    {
        None => (quote!(), attempt_loop),
        Some((idem, store)) => {
            let mut options = quote!(#p::DedupOptions::new());
            if let Some(ttl) = &idem.ttl {
                let ttl = dur(ttl);
                options = quote!(#options.with_ttl(#ttl));
            }
            if let Some(wait) = &idem.wait {
                let wait = dur(wait);
                options = quote!(#options.with_wait(#wait));
            }
            if let Some((_, true)) = &idem.proceed_on_store_error {
                options = quote!(#options.with_on_store_error(#p::OnStoreError::Proceed));
            }
            if let Some(fingerprint) = &idem.fingerprint {
                options = quote_spanned!(fingerprint.span()=> #options.with_fingerprint(#p::fingerprint_of(&(#fingerprint))));
            }
            let store_binding = quote_spanned!(store.span()=> let __buttress_store = #store;);
            let claim_call = quote_spanned!(span=> __buttress_call.claim(&__buttress_store, &__buttress_dedup_options));
            let claim = quote! {
                #store_binding
                let __buttress_dedup_options = #options;
                let __buttress_dedup = match #claim_call.await {
                    #p::ControlFlow::Continue(__buttress_dedup) => __buttress_dedup,
                    #p::ControlFlow::Break(__buttress_answer) => return __buttress_answer,
                };
            };
            let attempt_loop = quote! {{
                let __buttress_result = #attempt_loop;
                __buttress_dedup.finish(&__buttress_result).await;
                __buttress_result
            }};
            (claim, attempt_loop)
        }
    };
    let attempt_loop = match &attr.dlq {
        Some(dlq) => dead_letter(dlq, sig, span, attempt_loop, errors),
        None => attempt_loop,
    };
    let finish = match &attr.fallback {
        Some(fallback) => {
            let args = forwarded_args(sig, errors);
            quote! {
                match #attempt_loop {
                    #p::Ok(__buttress_value) => #p::Ok(__buttress_value),
                    #p::Err(__buttress_error) => #fallback(#(#args,)* __buttress_error).await,
                }
            }
        }
        None => attempt_loop,
    };
    quote! {
        {
            #site
            #begin
            #key
            #shared_quota
            #claim
            #finish
        }
    }
}
