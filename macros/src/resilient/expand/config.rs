//! The call site's `PolicyConfig`: a constant expression built from the
//! attribute's settings, for the `static` site of the wrapper.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Signature;

use super::{dur, f, u};
use crate::duration;
use crate::resilient::model::{Attr, BackoffArg, JitterArg, Switch, WindowArg};

/// The `PolicyConfig` constant expression for the call site.
pub(super) fn config(attr: &Attr, sig: &Signature) -> TokenStream {
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
        .filter(|r| {
            r.shared.is_none() || r.per_second.is_some() || r.burst.is_some() || r.clock.is_some()
        })
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
        if let Some(clock) = r.clock {
            let clock = proc_macro2::Ident::new(clock, proc_macro2::Span::call_site());
            limit = quote!(#limit.with_clock(#p::LimiterClock::#clock));
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
                let max = crate::resilient::check::default_adaptive_max(deadline.value);
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
