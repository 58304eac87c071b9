//! Generate the wrapper: a `static` call site built once, and a short
//! attempt loop that re-runs the user's block inline.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Block, FnArg, Pat, ReturnType, Signature, Type};

use super::attr::{
    Attr, BackoffArg, DlqArg, DlqOn, Dur, JitterArg, Num, PolicyArg, Switch, WindowArg,
};
use super::errors::Errors;
use crate::duration;

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

/// The `PolicyConfig` constant expression for the call site.
fn config(attr: &Attr, sig: &Signature) -> TokenStream {
    let p = crate::runtime_path();
    let operation = sig.ident.to_string();
    let provider = match &attr.provider {
        Some(lit) => quote!(#lit),
        None => quote!(::core::concat!(::core::module_path!(), "::", #operation)),
    };
    let mut chain = quote!(#p::PolicyConfig::named(#provider, #operation));
    if let Some(t) = &attr.timeout {
        let t = dur(t);
        chain = quote!(#chain.with_timeout(#p::Some(#t)));
    }
    if let Some(d) = &attr.deadline {
        let d = dur(d);
        chain = quote!(#chain.with_deadline(#p::Some(#d)));
    }
    match &attr.retry {
        Some(Switch::Off) => chain = quote!(#chain.with_retry(#p::RetryConfig::off())),
        Some(Switch::On(r)) => {
            let mut retry = quote!(#p::RetryConfig::new());
            if let Some(n) = &r.max_attempts {
                let n = u(n);
                retry = quote!(#retry.with_max_attempts(#n));
            }
            if let Some(b) = &r.backoff {
                let backoff = match b {
                    BackoffArg::Exponential { base, max, .. } => {
                        let (base, max) = (dur(base), dur(max));
                        quote!(#p::Backoff::exponential(#base, #max))
                    }
                    BackoffArg::Decorrelated { base, max, .. } => {
                        let (base, max) = (dur(base), dur(max));
                        quote!(#p::Backoff::decorrelated(#base, #max))
                    }
                    BackoffArg::Constant(d) => {
                        let d = dur(d);
                        quote!(#p::Backoff::constant(#d))
                    }
                };
                retry = quote!(#retry.with_backoff(#backoff));
            }
            if let Some(j) = r.jitter {
                let jitter = match j {
                    JitterArg::Full => quote!(#p::Jitter::Full),
                    JitterArg::Equal => quote!(#p::Jitter::Equal),
                    JitterArg::None => quote!(#p::Jitter::None),
                };
                retry = quote!(#retry.with_jitter(#jitter));
            }
            match &r.budget {
                Some(Switch::Off) => retry = quote!(#retry.with_budget(#p::None)),
                Some(Switch::On(b)) => {
                    let ratio = f(&b.ratio);
                    let mut budget = quote!(#p::BudgetConfig::new().with_ratio(#ratio));
                    if let Some(cap) = &b.cap {
                        let cap = u(cap);
                        budget = quote!(#budget.with_cap(#cap));
                    }
                    retry = quote!(#retry.with_budget(#p::Some(#budget)));
                }
                None => {}
            }
            chain = quote!(#chain.with_retry(#retry));
        }
        None => {}
    }
    match &attr.breaker {
        Some(Switch::Off) => chain = quote!(#chain.with_breaker(#p::None)),
        Some(Switch::On(b)) => {
            let mut breaker = quote!(#p::BreakerConfig::new());
            if let Some(r) = &b.failure_rate {
                let r = f(r);
                breaker = quote!(#breaker.with_failure_rate(#r));
            }
            if let (Some(rate), Some(call)) = (&b.slow_rate, &b.slow_call) {
                let (rate, call) = (f(rate), dur(call));
                breaker = quote!(#breaker.with_slow_calls(#rate, #call));
            }
            match &b.window {
                Some(WindowArg::Count(n)) => {
                    let n = u(n);
                    breaker = quote!(#breaker.with_window(#p::Window::Count(#n)));
                }
                Some(WindowArg::Time(d)) => {
                    let d = dur(d);
                    breaker = quote!(#breaker.with_window(#p::Window::Time(#d)));
                }
                None => {}
            }
            if let Some(n) = &b.min_calls {
                let n = u(n);
                breaker = quote!(#breaker.with_min_calls(#n));
            }
            if let Some(n) = &b.consecutive_failures {
                let n = u(n);
                breaker = quote!(#breaker.with_consecutive_failures(#n));
            }
            if let Some(d) = &b.open_for {
                let d = dur(d);
                breaker = quote!(#breaker.with_open_for(#d));
            }
            if let Some(d) = &b.probe_interval {
                let d = dur(d);
                breaker = quote!(#breaker.with_probe_interval(#d));
            }
            if let Some(d) = &b.max_probe_interval {
                let d = dur(d);
                breaker = quote!(#breaker.with_max_probe_interval(#d));
            }
            if let Some(n) = &b.half_open_probes {
                let n = u(n);
                breaker = quote!(#breaker.with_half_open_probes(#n));
            }
            chain = quote!(#chain.with_breaker(#p::Some(#breaker)));
        }
        None => {}
    }
    if let Some(b) = &attr.bulkhead {
        let mut bulkhead = quote!(#p::BulkheadConfig::new());
        if let Some(n) = &b.max_concurrent {
            let n = u(n);
            bulkhead = quote!(#bulkhead.with_max_concurrent(#n));
        }
        if let Some(d) = &b.max_wait {
            let d = dur(d);
            bulkhead = quote!(#bulkhead.with_max_wait(#d));
        }
        chain = quote!(#chain.with_bulkhead(#p::Some(#bulkhead)));
    }
    if let Some(r) = attr
        .rate_limit
        .as_ref()
        // `rate_limit(shared = …)` alone limits through the shared quota
        // only; a local limit needs its own numbers.
        .filter(|r| r.shared.is_none() || r.per_second.is_some() || r.burst.is_some())
    {
        let mut limit = quote!(#p::RateLimitConfig::new());
        if let Some(n) = &r.per_second {
            let n = u(n);
            limit = quote!(#limit.with_per_second(#n));
        }
        if let Some(n) = &r.burst {
            let n = u(n);
            limit = quote!(#limit.with_burst(#n));
        }
        chain = quote!(#chain.with_rate_limit(#p::Some(#limit)));
    }
    if let Some(r) = &attr.recovery {
        let mut recovery = if r.fail_fast {
            quote!(#p::RecoveryConfig::fail_fast())
        } else {
            quote!(#p::RecoveryConfig::new())
        };
        if let Some(w) = r.wait {
            recovery = quote!(#recovery.with_wait(#w));
        }
        if let Some(n) = &r.max_waiting {
            let n = u(n);
            recovery = quote!(#recovery.with_max_waiting(#n));
        }
        if let Some(x) = &r.pace {
            let x = f(x);
            recovery = quote!(#recovery.with_pace(#x));
        }
        if let Some(x) = &r.min_rate {
            let x = f(x);
            recovery = quote!(#recovery.with_min_rate(#x));
        }
        if let Some(d) = &r.slow_start {
            let d = dur(d);
            recovery = quote!(#recovery.with_slow_start(#d));
        }
        if let Some(b) = r.learn_quota {
            recovery = quote!(#recovery.with_learn_quota(#b));
        }
        chain = quote!(#chain.with_recovery(#recovery));
    }
    match &attr.throttle {
        Some(Switch::On(t)) => {
            let mut throttle = quote!(#p::ThrottleConfig::new());
            if let Some(k) = &t.k {
                let k = f(k);
                throttle = quote!(#throttle.with_k(#k));
            }
            if let Some(d) = &t.window {
                let d = dur(d);
                throttle = quote!(#throttle.with_window(#d));
            }
            chain = quote!(#chain.with_throttle(#p::Some(#throttle)));
        }
        Some(Switch::Off) | None => {}
    }
    match &attr.adaptive_timeout {
        Some(Switch::On(a)) => {
            let mut adaptive = quote!(#p::AdaptiveTimeoutConfig::new());
            if let Some(d) = &a.min {
                let d = dur(d);
                adaptive = quote!(#adaptive.with_min(#d));
            }
            if let Some(d) = &a.max {
                let d = dur(d);
                adaptive = quote!(#adaptive.with_max(#d));
            } else if let Some(deadline) = &attr.deadline {
                // A deadline shorter than the default `max` bounds it.
                let max = super::check::default_adaptive_max(deadline.value);
                if max == deadline.value {
                    let d = duration::tokens(max);
                    adaptive = quote!(#adaptive.with_max(#d));
                }
            }
            if let Some(x) = &a.percentile {
                let x = f(x);
                adaptive = quote!(#adaptive.with_percentile(#x));
            }
            if let Some(x) = &a.multiplier {
                let x = f(x);
                adaptive = quote!(#adaptive.with_multiplier(#x));
            }
            chain = quote!(#chain.with_adaptive_timeout(#p::Some(#adaptive)));
        }
        Some(Switch::Off) | None => {}
    }
    if attr.idempotent.is_some() {
        chain = quote!(#chain.with_idempotent(true));
    }
    match attr.hedge {
        Some((true, _)) => chain = quote!(#chain.with_hedge(true)),
        Some((false, _)) => chain = quote!(#chain.with_hedge(false)),
        None => {}
    }
    chain
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
            (quote!(), quote!(#p::Ok::<_, #p::Error>(#begin)))
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
            let begin = if nameable {
                quote_spanned!(span=> #p::begin::<#ret>(&__BUTTRESS_SITE))
            } else {
                quote_spanned!(span=> #p::begin_inferred(&__BUTTRESS_SITE))
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
            let mut __buttress_call = match #begin {
                #p::Ok(__buttress_call) => __buttress_call,
                #p::Err(__buttress_error) => {
                    return #p::Err(::core::convert::From::from(__buttress_error));
                }
            };
            #key
            #shared_quota
            #claim
            #finish
        }
    }
}
