//! What a wrapped call tells operators: `tracing` spans and events,
//! metrics through the `metrics` facade (feature `metrics`), in-code hooks
//! ([`crate::events`]), and redaction of secrets.
//!
//! # Spans
//! One `buttress.call` span (level INFO) per logical call, with the fields
//! `provider`, `operation`, `correlation_id`, and, when the call ends,
//! `attempts`, `outcome` (see [`crate::CallOutcome::as_str`]),
//! `error.type` (the last error's class) and `otel.status_code` (`OK` or
//! `ERROR`, the field `tracing-opentelemetry` maps to the span status).
//! Inside it, one `buttress.attempt` span per attempt with `attempt`,
//! `backoff_ms` (the wait before this attempt), `breaker_state` (at
//! admission) and, when it ends, `error.class` (`ok` or the class). The body
//! runs inside the attempt span, so its own events carry both.
//!
//! Events: breaker transitions (WARN when it opens, INFO otherwise), retry
//! budget exhaustion (WARN), retries scheduled and local rejections (DEBUG).
//!
//! With no subscriber, a span costs one relaxed atomic load and allocates
//! nothing; the correlation id is generated only when a span records it.
//!
//! # Metrics
//! With the `metrics` feature, every call site registers its handles once,
//! on its first call (install the recorder before that), labelled
//! `provider` and `operation` — a bounded set, one per call site:
//!
//! | name | type | extra label |
//! |---|---|---|
//! | `buttress_calls_total` | counter | `outcome`: `ok`, `error`, `rejected` |
//! | `buttress_attempts_total` | counter | `class`: `ok`, `transient`, `rate_limited`, `outcome_unknown`, `permanent` |
//! | `buttress_retries_total` | counter | |
//! | `buttress_rejections_total` | counter | `reason`: `circuit_open`, `budget`, `rate_limit`, `bulkhead`, `deadline`, `in_flight`, `cooldown`, `queue_full`, `throttled` |
//! | `buttress_call_duration_seconds` | histogram | |
//! | `buttress_attempt_duration_seconds` | histogram | |
//! | `buttress_breaker_state` | gauge | 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed |
//!
//!
//! Per provider (label `provider` only), from its [recovery gate](crate::recovery):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `buttress_waiting_calls` | gauge | calls waiting for the provider to recover |
//! | `buttress_released_total` | counter | waiting calls admitted |
//! | `buttress_gave_up_total` | counter | waiting calls that left at their deadline (or were cancelled) |
//! | `buttress_cooldowns_total` | counter | pauses started by a provider's `Retry-After` |
//! | `buttress_learned_quota` | gauge | the rate learned from `429`s, calls per second (0: none) |
//!
//! Each metric comes with its unit and a HELP text (given to the recorder
//! at a call site's first call). For `histogram_quantile` in Prometheus,
//! give the two duration histograms buckets: [`DURATION_BUCKETS`] suits
//! calls to remote providers.
//!
//! ```ignore
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//! let handle = PrometheusBuilder::new()
//!     .set_buckets_for_metric(
//!         Matcher::Suffix("_duration_seconds".into()),
//!         buttress::telemetry::DURATION_BUCKETS,
//!     )?
//!     .install_recorder()?;
//! ```
//!
//! A call or attempt that completed on its first poll waited for nothing
//! and is recorded as taking 0 s: measuring it would cost two clock reads
//! on the happy path, for a sub-microsecond figure.
//!
//! # Secrets
//! Idempotency keys never appear in spans, events or errors: a short hash
//! ([`redact`]) stands in for them. buttress records no request headers;
//! wrap values you log yourself in [`redact`].

#[cfg(feature = "metrics")]
mod metrics;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::class::ErrorClass;
use crate::outcome::CallOutcome;

/// Bucket bounds, in seconds, for `buttress_call_duration_seconds` and
/// `buttress_attempt_duration_seconds`: from 5 ms to a minute, dense
/// where calls to remote providers spend their time.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A secret shown as a short, stable hash (`#1a2b3c4d`): the same secret
/// always gives the same hash, so log lines can still be correlated.
#[derive(Clone, Copy)]
pub struct Redacted<'a>(&'a str);

/// Show `secret` (an idempotency key, an `Authorization` value) as a short
/// hash in logs, spans and error messages.
#[must_use]
pub const fn redact(secret: &str) -> Redacted<'_> {
    Redacted(secret)
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", crate::idempotency::key_hash(self.0))
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The telemetry label of an attempt's result.
pub(crate) const fn class_label(class: Option<ErrorClass>) -> &'static str {
    match class {
        None => "ok",
        Some(class) => class.as_str(),
    }
}

/// How a call ended, for `buttress_calls_total`'s `outcome` label.
pub(crate) const fn call_label(outcome: CallOutcome, ok: bool) -> &'static str {
    match outcome {
        CallOutcome::Rejected(_) => "rejected",
        CallOutcome::Deduplicated if !ok => "rejected",
        _ if ok => "ok",
        _ => "error",
    }
}

/// Per-call-site telemetry: the provider and operation it reports for,
/// known when built, and the metric handles, registered on the first call.
pub(crate) struct SiteTelemetry {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    provider: Arc<str>,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    operation: Cow<'static, str>,
    /// The provider's breaker, for the state gauge's first value.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    breaker: Arc<Breaker>,
    #[cfg(feature = "metrics")]
    metrics: std::sync::OnceLock<metrics::SiteMetrics>,
}

impl fmt::Debug for SiteTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteTelemetry")
            .field("provider", &self.provider)
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]
impl SiteTelemetry {
    /// The telemetry of `operation`'s calls to `provider`, whose breaker
    /// is `breaker`. Registers nothing until the first call.
    pub(crate) fn new(
        provider: Arc<str>,
        operation: Cow<'static, str>,
        breaker: Arc<Breaker>,
    ) -> Self {
        Self {
            provider,
            operation,
            breaker,
            #[cfg(feature = "metrics")]
            metrics: std::sync::OnceLock::new(),
        }
    }

    #[cfg(feature = "metrics")]
    fn handles(&self) -> &metrics::SiteMetrics {
        self.metrics.get_or_init(|| {
            metrics::SiteMetrics::register(&self.provider, &self.operation, self.breaker.state())
        })
    }

    /// An attempt ended (`class` `None` for a success) after `took`.
    #[inline]
    pub(crate) fn attempt_ended(&self, class: Option<ErrorClass>, took: Option<Duration>) {
        #[cfg(feature = "metrics")]
        self.handles().attempt_ended(class, took);
    }

    /// A retry was scheduled.
    #[inline]
    pub(crate) fn retried(&self) {
        #[cfg(feature = "metrics")]
        self.handles().retried();
    }

    /// A call or retry was refused locally; `reason` is one of the
    /// `buttress_rejections_total` labels.
    #[inline]
    pub(crate) fn rejected(&self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        self.handles().rejected(reason);
    }

    /// The call ended.
    #[inline]
    pub(crate) fn call_ended(&self, outcome: &'static str, took: Option<Duration>) {
        #[cfg(feature = "metrics")]
        self.handles().call_ended(outcome, took);
    }

    /// Whether durations are recorded (so the driver knows whether an
    /// attempt that waited must read the clock when it ends).
    #[inline]
    pub(crate) const fn measures(&self) -> bool {
        cfg!(feature = "metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerState;
    use crate::outcome::Rejection;

    #[test]
    fn redaction_hides_the_secret_and_is_stable() {
        let shown = redact("Bearer sk_live_4242").to_string();
        assert!(shown.starts_with('#'));
        assert_eq!(shown.len(), 9);
        assert!(!shown.contains("4242"));
        assert_eq!(shown, format!("{:?}", redact("Bearer sk_live_4242")));
    }

    #[test]
    fn labels_are_the_documented_ones() {
        assert_eq!(class_label(None), "ok");
        assert_eq!(class_label(Some(ErrorClass::RateLimited)), "rate_limited");
        assert_eq!(call_label(CallOutcome::Ok, true), "ok");
        assert_eq!(call_label(CallOutcome::AttemptsExhausted, false), "error");
        assert_eq!(
            call_label(CallOutcome::Rejected(Rejection::Bulkhead), false),
            "rejected"
        );
        assert_eq!(BreakerState::ForcedClosed.gauge_value(), 4);
    }
}
