//! The metric handles of one call site, registered once.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};

use crate::circuit::BreakerState;
use crate::class::ErrorClass;
use crate::events::{self, PolicyEvent};

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
    pub(crate) fn register(provider: &Arc<str>, operation: &str, state: BreakerState) -> Self {
        describe();
        let name = Arc::clone(provider);
        let provider = provider.to_string();
        let operation = operation.to_owned();
        let labels = || {
            [
                ("provider", provider.clone()),
                ("operation", operation.clone()),
            ]
        };
        let gauge: Gauge = gauge!("buttress_breaker_state", &labels());
        gauge.set(f64::from(state.gauge_value()));
        follow_transitions(name, &operation, gauge);
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

/// What a metric measures.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric buttress reports: its name, kind, unit and HELP text.
const DESCRIPTIONS: [(&str, Kind, Unit, &str); 14] = [
    ("buttress_calls_total", Kind::Counter, Unit::Count, "Logical calls ended, by outcome (ok, error, rejected)."),
    ("buttress_attempts_total", Kind::Counter, Unit::Count, "Attempts ended, by error class (ok when it succeeded)."),
    ("buttress_retries_total", Kind::Counter, Unit::Count, "Retries scheduled after a failed attempt."),
    ("buttress_rejections_total", Kind::Counter, Unit::Count, "Calls or retries refused locally, by reason."),
    ("buttress_call_duration_seconds", Kind::Histogram, Unit::Seconds, "Duration of logical calls, retries, backoff and waiting included (0 when the body was ready at once)."),
    ("buttress_attempt_duration_seconds", Kind::Histogram, Unit::Seconds, "Duration of single attempts (0 when the body was ready at once)."),
    ("buttress_breaker_state", Kind::Gauge, Unit::Count, "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed."),
    ("buttress_waiting_calls", Kind::Gauge, Unit::Count, "Calls waiting for the provider to recover."),
    ("buttress_released_total", Kind::Counter, Unit::Count, "Waiting calls admitted."),
    ("buttress_gave_up_total", Kind::Counter, Unit::Count, "Waiting calls that left at their deadline or were cancelled."),
    ("buttress_cooldowns_total", Kind::Counter, Unit::Count, "Pauses started by a provider's Retry-After."),
    ("buttress_learned_quota", Kind::Gauge, Unit::CountPerSecond, "Rate learned from the provider's 429 answers, calls per second (0: none)."),
    ("buttress_shared_quota_fallback", Kind::Gauge, Unit::Count, "1 while the shared quota admits on the local share because Redis is unavailable."),
    ("buttress_shared_quota_fallbacks_total", Kind::Counter, Unit::Count, "Times the shared quota fell back to the local share."),
];

/// Give the recorder the name, unit and HELP text of every buttress
/// metric (Prometheus prints them as `# HELP` and `# TYPE`). Done at each
/// call site's first call, so it reaches the recorder installed then.
fn describe() {
    for (name, kind, unit, help) in DESCRIPTIONS {
        match kind {
            Kind::Counter => describe_counter!(name, unit, help),
            Kind::Gauge => describe_gauge!(name, unit, help),
            Kind::Histogram => describe_histogram!(name, unit, help),
        }
    }
}

/// The breaker state gauges, one per provider and operation, set from the
/// breaker's transitions as `events` delivers them (the one channel).
static GAUGES: Mutex<Vec<StateGauge>> = Mutex::new(Vec::new());

/// A provider, an operation, and its `buttress_breaker_state` gauge.
type StateGauge = (Arc<str>, Box<str>, Gauge);

/// Keep `gauge` at the state of `provider`'s breaker. A call site's new
/// policy (after a reload) replaces its operation's earlier gauge, so each
/// transition sets each gauge once.
fn follow_transitions(provider: Arc<str>, operation: &str, gauge: Gauge) {
    static LISTENING: OnceLock<()> = OnceLock::new();
    LISTENING.get_or_init(|| events::subscribe(on_event).forever());
    let mut gauges = GAUGES.lock().unwrap_or_else(PoisonError::into_inner);
    match gauges
        .iter_mut()
        .find(|(p, o, _)| **p == *provider && **o == *operation)
    {
        Some(entry) => entry.2 = gauge,
        None => gauges.push((provider, operation.into(), gauge)),
    }
}

fn on_event(event: &PolicyEvent<'_>) {
    if let PolicyEvent::BreakerTransition { provider, to, .. } = event {
        let gauges = GAUGES.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, _, gauge) in gauges.iter().filter(|(p, _, _)| **p == **provider) {
            gauge.set(f64::from(to.gauge_value()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload gives a call site a new policy, which registers its
    /// metrics again: the operation keeps one gauge, which follows the
    /// breaker's transitions as the events channel delivers them, and the
    /// provider's other operations follow too.
    #[test]
    fn each_operation_keeps_one_gauge_that_follows_the_breaker() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let provider: Arc<str> = Arc::from("gauge-test");
        let count = || {
            GAUGES
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _, _)| **p == *provider)
                .count()
        };
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..50 {
                drop(SiteMetrics::register(&provider, "op", BreakerState::Closed));
            }
            drop(SiteMetrics::register(
                &provider,
                "other-op",
                BreakerState::Closed,
            ));
            assert_eq!(count(), 2);
            let breaker = crate::breaker::Breaker::new(
                "gauge-test",
                crate::breaker::BreakerConfig::new().with_consecutive_failures(1),
            );
            breaker.force_open();
        });
        assert_eq!(count(), 2);
        let text = handle.render();
        for operation in ["op", "other-op"] {
            let line = format!(
                "buttress_breaker_state{{provider=\"gauge-test\",operation=\"{operation}\"}} 3"
            );
            assert!(text.contains(&line), "no `{line}` in:\n{text}");
        }
    }
}
