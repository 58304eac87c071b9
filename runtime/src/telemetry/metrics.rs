//! The metric handles of one call site, registered once.

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::breaker::Breaker;
use crate::class::ErrorClass;

const CLASSES: [&str; 5] = [
    "ok",
    "transient",
    "rate_limited",
    "outcome_unknown",
    "permanent",
];
const OUTCOMES: [&str; 3] = ["ok", "error", "rejected"];
const REASONS: [&str; 9] = [
    "circuit_open",
    "budget",
    "rate_limit",
    "bulkhead",
    "deadline",
    "in_flight",
    "cooldown",
    "queue_full",
    "throttled",
];

pub(crate) struct SiteMetrics {
    calls: [Counter; 3],
    attempts: [Counter; 5],
    retries: Counter,
    rejections: [Counter; 9],
    call_duration: Histogram,
    attempt_duration: Histogram,
}

impl SiteMetrics {
    pub(crate) fn register(provider: &str, operation: &str, breaker: &Breaker) -> Self {
        let provider = provider.to_owned();
        let operation = operation.to_owned();
        let labels = || {
            [
                ("provider", provider.clone()),
                ("operation", operation.clone()),
            ]
        };
        let state: Gauge = gauge!("buttress_breaker_state", &labels());
        state.set(f64::from(breaker.state().gauge_value()));
        // One listener per operation: a reload's new policy for the call
        // site replaces the old one's.
        breaker.on_transition_keyed(&operation, move |event| {
            state.set(f64::from(event.to.gauge_value()));
        });
        let with = |key: &'static str, value: &'static str| {
            let mut all = labels().to_vec();
            all.push((key, value.to_owned()));
            all
        };
        Self {
            calls: OUTCOMES.map(|o| counter!("buttress_calls_total", &with("outcome", o))),
            attempts: CLASSES.map(|c| counter!("buttress_attempts_total", &with("class", c))),
            retries: counter!("buttress_retries_total", &labels()),
            rejections: REASONS.map(|r| counter!("buttress_rejections_total", &with("reason", r))),
            call_duration: histogram!("buttress_call_duration_seconds", &labels()),
            attempt_duration: histogram!("buttress_attempt_duration_seconds", &labels()),
        }
    }

    pub(crate) fn attempt_ended(&self, class: Option<ErrorClass>, took: Option<Duration>) {
        let index = match class {
            None => 0,
            Some(ErrorClass::Transient) => 1,
            Some(ErrorClass::RateLimited) => 2,
            Some(ErrorClass::OutcomeUnknown) => 3,
            Some(ErrorClass::Permanent) => 4,
        };
        self.attempts[index].increment(1);
        self.attempt_duration
            .record(took.map_or(0.0, |d| d.as_secs_f64()));
    }

    pub(crate) fn retried(&self) {
        self.retries.increment(1);
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.rejections[i].increment(1);
        }
    }

    pub(crate) fn call_ended(&self, outcome: &'static str, took: Option<Duration>) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.calls[i].increment(1);
        }
        self.call_duration
            .record(took.map_or(0.0, |d| d.as_secs_f64()));
    }
}
