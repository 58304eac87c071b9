//! Telemetry of a scripted run: the spans and events a subscriber sees, the
//! metrics a recorder gets, the hooks, and what never shows up in clear.
//!
//! One global subscriber and one global recorder serve every test of this
//! binary; each test uses its own provider names and reads only what
//! carries them.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use buttress::breaker::BreakerConfig;
use buttress::budget::BudgetConfig;
use buttress::events::{self, PolicyEvent};
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{BreakerState, Policy};
use common::{constant_retry, ms, registry, ProviderError};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

// ---------------------------------------------------------------------------
// Capturing spans and events.

#[derive(Debug, Clone, Default)]
struct SpanRec {
    name: String,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
    closed: bool,
}

#[derive(Debug, Clone)]
struct EventRec {
    level: tracing::Level,
    span: Option<u64>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Captured {
    spans: BTreeMap<u64, SpanRec>,
    events: Vec<EventRec>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

struct Capture(Arc<Mutex<Captured>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut rec = SpanRec {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.id().into_u64()),
            ..SpanRec::default()
        };
        attrs.record(&mut Fields(&mut rec.fields));
        self.0.lock().unwrap().spans.insert(id.into_u64(), rec);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(rec) = self.0.lock().unwrap().spans.get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut rec.fields));
        }
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let span = ctx.event_span(event).map(|s| s.id().into_u64());
        self.0.lock().unwrap().events.push(EventRec {
            level: *event.metadata().level(),
            span,
            fields,
        });
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(rec) = self.0.lock().unwrap().spans.get_mut(&id.into_u64()) {
            rec.closed = true;
        }
    }
}

struct Telemetry {
    captured: Arc<Mutex<Captured>>,
    snapshotter: Snapshotter,
    /// Metric values seen so far (a snapshot resets the recorder's).
    metrics: Mutex<BTreeMap<String, Metric>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Metric {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// The recorder's snapshots reset what they read (gauges included), so the
/// tests of this binary take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let captured = Arc::new(Mutex::new(Captured::default()));
        let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&captured)));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("one global recorder");
        Telemetry {
            captured,
            snapshotter,
            metrics: Mutex::new(BTreeMap::new()),
        }
    })
}

/// The call spans of `provider`, in creation order, with their attempts.
fn calls_of(provider: &str) -> Vec<(SpanRec, Vec<SpanRec>)> {
    let captured = telemetry().captured.lock().unwrap();
    captured
        .spans
        .iter()
        .filter(|(_, s)| {
            s.name == "buttress.call"
                && s.fields.get("provider").map(String::as_str) == Some(provider)
        })
        .map(|(id, call)| {
            let attempts = captured
                .spans
                .values()
                .filter(|s| s.name == "buttress.attempt" && s.parent == Some(*id))
                .cloned()
                .collect();
            (call.clone(), attempts)
        })
        .collect()
}

fn events_of(provider: &str) -> Vec<EventRec> {
    telemetry()
        .captured
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.fields.get("provider").map(String::as_str) == Some(provider))
        .cloned()
        .collect()
}

/// `name{label=value,...}` → value, for the metrics labelled `provider`.
fn metrics_of(provider: &str) -> BTreeMap<String, Metric> {
    let t = telemetry();
    let mut all = t.metrics.lock().unwrap();
    for (key, _, _, value) in t.snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let entry = all.entry(name);
        match value {
            DebugValue::Counter(n) => {
                let slot = entry.or_insert(Metric::Counter(0));
                if let Metric::Counter(total) = slot {
                    *total += n;
                }
            }
            DebugValue::Gauge(v) => {
                entry.insert_entry(Metric::Gauge(v.into_inner()));
            }
            DebugValue::Histogram(values) => {
                let slot = entry.or_insert(Metric::Histogram(Vec::new()));
                if let Metric::Histogram(all) = slot {
                    all.extend(values.into_iter().map(|v| v.into_inner()));
                }
            }
        }
    }
    let tag = format!("provider={provider}");
    all.iter()
        .filter(|(name, _)| name.contains(&tag))
        .map(|(name, value)| {
            (
                name.replace(&format!(",{tag}"), "").replace(&tag, ""),
                value.clone(),
            )
        })
        .collect()
}

fn counter(metrics: &BTreeMap<String, Metric>, name: &str) -> u64 {
    match metrics.get(name) {
        Some(Metric::Counter(n)) => *n,
        None => 0,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn histogram_count(metrics: &BTreeMap<String, Metric>, name: &str) -> usize {
    match metrics.get(name) {
        Some(Metric::Histogram(v)) => v.len(),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

fn retrying(name: &str, attempts: u32) -> Policy {
    Policy::builder(name.to_owned())
        .operation("charge")
        .retry(constant_retry(attempts, ms(10)))
        .no_breaker()
        .build_in(registry())
        .unwrap()
}

/// Run one call whose attempts answer `script` in turn.
async fn scripted(
    policy: &Policy,
    script: &[Result<u32, ProviderError>],
) -> Result<u32, ProviderError> {
    let step = Arc::new(Mutex::new(0usize));
    policy
        .run(|| {
            let step = Arc::clone(&step);
            let script = script.to_vec();
            async move {
                tokio::task::yield_now().await;
                let mut i = step.lock().unwrap();
                *i += 1;
                script[*i - 1].clone()
            }
        })
        .await
}

// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_scripted_run_gives_the_documented_spans_and_metrics() {
    let _serial = SERIAL.lock().await;
    telemetry();
    let p = retrying("tel-script", 3);
    assert_eq!(scripted(&p, &[Ok(1)]).await, Ok(1));
    assert_eq!(
        scripted(&p, &[Err(ProviderError::Unavailable), Ok(2)]).await,
        Ok(2)
    );
    assert_eq!(
        scripted(&p, &[Err(ProviderError::Declined)]).await,
        Err(ProviderError::Declined)
    );

    let calls = calls_of("tel-script");
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let field = |span: &SpanRec, name: &str| span.fields.get(name).cloned().unwrap_or_default();
    let summary: Vec<_> = calls
        .iter()
        .map(|(call, _)| {
            (
                field(call, "operation"),
                field(call, "attempts"),
                field(call, "outcome"),
                field(call, "error.type"),
                field(call, "otel.status_code"),
            )
        })
        .collect();
    let row = |attempts: &str, outcome: &str, error: &str, status: &str| {
        (
            "charge".to_owned(),
            attempts.to_owned(),
            outcome.to_owned(),
            error.to_owned(),
            status.to_owned(),
        )
    };
    assert_eq!(
        summary,
        vec![
            row("1", "ok", "", "OK"),
            row("2", "ok", "", "OK"),
            row("1", "not_retryable", "permanent", "ERROR"),
        ]
    );
    for (call, _) in &calls {
        assert!(call.closed, "the call span closes when the call ends");
        assert_eq!(field(call, "correlation_id").len(), 36, "a UUID");
    }
    assert_ne!(
        field(&calls[0].0, "correlation_id"),
        field(&calls[1].0, "correlation_id")
    );

    let attempts: Vec<_> = calls
        .iter()
        .flat_map(|(_, attempts)| attempts.iter())
        .map(|a| {
            (
                field(a, "attempt"),
                field(a, "backoff_ms"),
                field(a, "breaker_state"),
                field(a, "error.class"),
            )
        })
        .collect();
    let attempt = |n: &str, backoff: &str, class: &str| {
        (
            n.to_owned(),
            backoff.to_owned(),
            "closed".to_owned(),
            class.to_owned(),
        )
    };
    assert_eq!(
        attempts,
        vec![
            attempt("1", "0", "ok"),
            attempt("1", "0", "transient"),
            attempt("2", "10", "ok"),
            attempt("1", "0", "permanent"),
        ]
    );

    let m = metrics_of("tel-script");
    assert_eq!(
        counter(&m, "buttress_calls_total{operation=charge,outcome=ok}"),
        2
    );
    assert_eq!(
        counter(&m, "buttress_calls_total{operation=charge,outcome=error}"),
        1
    );
    assert_eq!(
        counter(
            &m,
            "buttress_calls_total{operation=charge,outcome=rejected}"
        ),
        0
    );
    assert_eq!(
        counter(&m, "buttress_attempts_total{class=ok,operation=charge}"),
        2
    );
    assert_eq!(
        counter(
            &m,
            "buttress_attempts_total{class=transient,operation=charge}"
        ),
        1
    );
    assert_eq!(
        counter(
            &m,
            "buttress_attempts_total{class=permanent,operation=charge}"
        ),
        1
    );
    assert_eq!(counter(&m, "buttress_retries_total{operation=charge}"), 1);
    assert_eq!(
        histogram_count(&m, "buttress_call_duration_seconds{operation=charge}"),
        3
    );
    assert_eq!(
        histogram_count(&m, "buttress_attempt_duration_seconds{operation=charge}"),
        4
    );
    assert_eq!(
        m.get("buttress_breaker_state{operation=charge}"),
        Some(&Metric::Gauge(0.0))
    );
    let durations = match m.get("buttress_call_duration_seconds{operation=charge}") {
        Some(Metric::Histogram(v)) => v.clone(),
        _ => unreachable!(),
    };
    assert!(
        durations.iter().any(|d| (*d - 0.010).abs() < 1e-9),
        "the retried call took its 10 ms backoff: {durations:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_transitions_rejections_and_budget_are_seen() {
    let _serial = SERIAL.lock().await;
    telemetry();
    let reg = registry();
    let p = Policy::builder("tel-breaker")
        .operation("send")
        .retry(RetryConfig::off())
        .breaker(
            BreakerConfig::new()
                .with_consecutive_failures(2)
                .with_open_for(Duration::from_secs(30)),
        )
        .build_in(reg)
        .unwrap();
    for _ in 0..2 {
        let _ = scripted(&p, &[Err(ProviderError::Unavailable)]).await;
    }
    assert_eq!(reg.breaker("tel-breaker").state(), BreakerState::Open);
    assert!(scripted(&p, &[Ok(1)]).await.is_err(), "rejected while open");

    let opened: Vec<_> = events_of("tel-breaker")
        .into_iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("circuit breaker opened"))
        .collect();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].level, tracing::Level::WARN);
    assert_eq!(opened[0].fields.get("to").map(String::as_str), Some("open"));

    let m = metrics_of("tel-breaker");
    assert_eq!(
        m.get("buttress_breaker_state{operation=send}"),
        Some(&Metric::Gauge(1.0))
    );
    assert_eq!(
        counter(
            &m,
            "buttress_rejections_total{operation=send,reason=circuit_open}"
        ),
        1
    );
    assert_eq!(
        counter(&m, "buttress_calls_total{operation=send,outcome=rejected}"),
        1
    );
    assert_eq!(
        counter(&m, "buttress_calls_total{operation=send,outcome=error}"),
        2
    );
    let rejected = calls_of("tel-breaker");
    assert_eq!(
        rejected[2].0.fields.get("outcome").map(String::as_str),
        Some("rejected")
    );

    reg.breaker("tel-breaker").force_closed();
    let m = metrics_of("tel-breaker");
    assert_eq!(
        m.get("buttress_breaker_state{operation=send}"),
        Some(&Metric::Gauge(4.0))
    );

    // The budget: one token, then retries stop with a WARN event.
    let spent = Policy::builder("tel-budget")
        .operation("send")
        .retry(
            RetryConfig::new()
                .with_max_attempts(5)
                .with_backoff(Backoff::constant(Duration::ZERO))
                .with_jitter(Jitter::None)
                .with_budget(Some(BudgetConfig::new().with_ratio(0.0).with_cap(1))),
        )
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let _ = scripted(
        &spent,
        &[
            Err(ProviderError::Unavailable),
            Err(ProviderError::Unavailable),
            Ok(1),
        ],
    )
    .await;
    let m = metrics_of("tel-budget");
    assert_eq!(
        counter(
            &m,
            "buttress_rejections_total{operation=send,reason=budget}"
        ),
        1
    );
    assert_eq!(counter(&m, "buttress_retries_total{operation=send}"), 1);
    let warned: Vec<_> = events_of("tel-budget")
        .into_iter()
        .filter(|e| {
            e.level == tracing::Level::WARN
                && e.fields.get("reason").map(String::as_str) == Some("budget")
        })
        .collect();
    assert_eq!(warned.len(), 1);
    let call_span = calls_of("tel-budget")[0].0.clone();
    let span_of_event = warned[0].span.expect("the event is inside the call's span");
    let captured = telemetry().captured.lock().unwrap();
    assert_eq!(captured.spans[&span_of_event].fields, call_span.fields);
}

#[tokio::test(start_paused = true)]
async fn hooks_see_retries_rejections_and_transitions_until_unsubscribed() {
    let _serial = SERIAL.lock().await;
    telemetry();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let subscription = events::subscribe(move |event| {
        let line = match event {
            PolicyEvent::RetryScheduled {
                provider,
                attempt,
                class,
                delay,
                ..
            } if provider.starts_with("tel-hook") => {
                format!("retry {provider} after attempt {attempt} ({class}) in {delay:?}")
            }
            PolicyEvent::Rejected {
                provider, reason, ..
            } if provider.starts_with("tel-hook") => {
                format!("rejected {provider}: {reason}")
            }
            PolicyEvent::BreakerTransition {
                provider, from, to, ..
            } if provider.starts_with("tel-hook") => {
                format!("breaker {provider}: {} -> {}", from.as_str(), to.as_str())
            }
            _ => return,
        };
        sink.lock().unwrap().push(line);
    });

    let p = retrying("tel-hook", 2);
    let _ = scripted(&p, &[Err(ProviderError::Unavailable), Ok(1)]).await;
    let reg = registry();
    let q = Policy::builder("tel-hook-breaker").build_in(reg).unwrap();
    reg.breaker("tel-hook-breaker").force_open();
    let _ = scripted(&q, &[Ok(1)]).await;
    drop(subscription);
    let _ = scripted(&p, &[Err(ProviderError::Unavailable), Ok(1)]).await;

    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "retry tel-hook after attempt 1 (transient) in 10ms".to_owned(),
            "breaker tel-hook-breaker: closed -> forced_open".to_owned(),
            "rejected tel-hook-breaker: circuit_open".to_owned(),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn keys_and_authorization_headers_never_show_in_clear() {
    let _serial = SERIAL.lock().await;
    telemetry();
    const KEY: &str = "key-SECRET-7f3a";
    const TOKEN: &str = "Bearer sk_live_SECRET_91c2";
    let p = Policy::builder("tel-secret")
        .operation("charge")
        .idempotent(true)
        .retry(
            RetryConfig::new()
                .with_max_attempts(2)
                .with_backoff(Backoff::constant(ms(5)))
                .with_jitter(Jitter::None)
                .with_budget(None),
        )
        .build_in(registry())
        .unwrap();
    let mut call = p.call::<u32, ProviderError>().with_key(KEY);
    let mut answers = vec![Ok(1), Err(ProviderError::Lost)];
    loop {
        let answer = answers.pop().unwrap();
        let flow = call
            .attempt(async move {
                // What a client does with its secrets inside the body.
                let key = buttress::idempotency_key().unwrap();
                assert_eq!(&*key, KEY);
                tracing::info!(
                    authorization = %buttress::telemetry::redact(TOKEN),
                    idempotency_key = %buttress::telemetry::redact(&key),
                    "sending"
                );
                answer
            })
            .await;
        if let std::ops::ControlFlow::Break(result) = flow {
            assert_eq!(result, Ok(1));
            break;
        }
    }
    drop(call);

    let everything = {
        let captured = telemetry().captured.lock().unwrap();
        format!("{:?} {:?}", captured.spans, captured.events)
    };
    assert!(everything.contains("tel-secret"), "the run was captured");
    assert!(everything.contains(&buttress::telemetry::redact(KEY).to_string()));
    assert!(
        !everything.contains("SECRET"),
        "a secret leaked: {everything}"
    );
}

/// A real request with an `Authorization` header and an idempotency key,
/// through reqwest to a server on 127.0.0.1, with every event of every
/// crate captured: neither secret appears.
#[tokio::test]
async fn secrets_sent_over_http_never_show_in_clear() {
    use axum::http::HeaderMap;
    let _serial = SERIAL.lock().await;
    telemetry();
    const KEY: &str = "http-key-SECRET-55e1";
    const TOKEN: &str = "Bearer sk_live_SECRET_http_0b7d";
    let app = axum::Router::new().route(
        "/charge",
        axum::routing::post(|headers: HeaderMap| async move {
            let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(TOKEN)
                && headers.get("idempotency-key").and_then(|v| v.to_str().ok()) == Some(KEY);
            if ok {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::UNAUTHORIZED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/charge", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    let p = Policy::builder("tel-secret-http")
        .operation("charge")
        .idempotent(true)
        .build_in(registry())
        .unwrap();
    let mut call = p.call::<u16, ProviderError>().with_key(KEY);
    let status = loop {
        let flow = call
            .attempt(async {
                let key = buttress::idempotency_key().unwrap();
                let response = client
                    .post(&url)
                    .header("authorization", TOKEN)
                    .header("idempotency-key", &*key)
                    .send()
                    .await
                    .map_err(|_| ProviderError::Unavailable)?;
                Ok(response.status().as_u16())
            })
            .await;
        if let std::ops::ControlFlow::Break(result) = flow {
            break result.unwrap();
        }
    };
    assert_eq!(status, 200, "the server saw both secrets");
    drop(call);
    assert_eq!(calls_of("tel-secret-http").len(), 1);
    let everything = {
        let captured = telemetry().captured.lock().unwrap();
        format!("{:?} {:?}", captured.spans, captured.events)
    };
    assert!(
        !everything.contains("SECRET"),
        "a secret leaked: {everything}"
    );
}
