//! What a policy costs per call, against the body alone and against a bare
//! `tokio::time::timeout`.
//!
//! Groups:
//! - `overhead/ready/<row>`: a body ready on its first poll;
//! - `overhead/yield_once/<row>`: a body that yields once, then completes;
//! - `overhead/retry/resilient_macro_twice`: two zero-backoff retries of a
//!   body that fails at once, then its answer (no budget, no breaker);
//! - `overhead/contended/<row>_2x64`: 64 tasks on a 2-worker runtime, all
//!   through one shared policy, yield-once body; wall-clock time per call.
//!
//! Rows: `bare` (the body awaited directly), `tokio_timeout` (the body under
//! `tokio::time::timeout(10 s)`), `default_stack` (the default policy of an
//! empty `#[resilient]`, driven by the `Call::attempt` loop a macro expands
//! to), `full_stack` (the defaults plus a bulkhead and a rate limiter
//! that never limits), `resilient_macro` (an empty `#[resilient]`).
//!
//! `overhead/observed/<body>_full_stack` (with `--features metrics`): the
//! full stack with a Prometheus recorder installed and a `tracing`
//! subscriber (a `fmt` layer at INFO writing to a sink), so every call
//! opens and closes its spans and records its metrics. The other rows run
//! with neither.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use buttress::Policy;
use common::{
    current_thread, default_stack, drive, full_stack, macro_ready, macro_yield_once, ready,
    retry_twice, with_tokio_timeout, yield_once, Out,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use tokio::runtime::Runtime;

/// Tasks in the contended rows.
const TASKS: u64 = 64;

/// What an observed service runs: spans and events formatted at INFO.
#[cfg(feature = "metrics")]
fn observing_subscriber() -> impl tracing::Subscriber + Send + Sync {
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(tracing_subscriber::filter::LevelFilter::INFO)
}

fn two_workers() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a 2-worker runtime")
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// The four rows for one body, on a current-thread runtime.
fn single<Fut>(
    c: &mut Criterion,
    rt: &Runtime,
    body_name: &'static str,
    body: impl Fn() -> Fut + Copy,
) where
    Fut: Future<Output = Out>,
{
    let default_policy = default_stack(match body_name {
        "ready" => "bench-default-ready",
        _ => "bench-default-yield",
    });
    let full_policy = full_stack(match body_name {
        "ready" => "bench-full-ready",
        _ => "bench-full-yield",
    });

    let mut group = c.benchmark_group(format!("overhead/{body_name}"));
    configure(&mut group);
    group.bench_function("bare", |b| b.to_async(rt).iter(body));
    group.bench_function("tokio_timeout", |b| {
        b.to_async(rt).iter(|| with_tokio_timeout(body));
    });
    group.bench_function("default_stack", |b| {
        b.to_async(rt).iter(|| drive(&default_policy, body));
    });
    group.bench_function("full_stack", |b| {
        b.to_async(rt).iter(|| drive(&full_policy, body));
    });
    group.bench_function("resilient_macro", |b| {
        b.to_async(rt).iter(|| async {
            if body_name == "ready" {
                macro_ready().await
            } else {
                macro_yield_once().await
            }
        });
    });
    group.finish();
}

/// Run `iters` calls spread over [`TASKS`] tasks and return the wall-clock
/// time, scaled to exactly `iters` calls (each task makes `iters / TASKS`
/// calls, rounded up).
async fn contended<Call, Fut>(iters: u64, call: Call) -> Duration
where
    Call: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Out> + Send,
{
    let per_task = iters.div_ceil(TASKS);
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let _ = black_box(call().await);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a bench task panicked");
    }
    let elapsed = start.elapsed().as_nanos();
    let made = u128::from(per_task * TASKS);
    let scaled = elapsed * u128::from(iters) / made;
    Duration::from_nanos(u64::try_from(scaled).unwrap_or(u64::MAX))
}

fn bench_ready(c: &mut Criterion) {
    let rt = current_thread();
    single(c, &rt, "ready", ready);
}

fn bench_yield_once(c: &mut Criterion) {
    let rt = current_thread();
    single(c, &rt, "yield_once", yield_once);
}

/// Two zero-backoff retries through `#[resilient]` (no budget, no
/// breaker): the retry path alone, as the peers bench's retry rows.
fn bench_retry(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("overhead/retry");
    configure(&mut group);
    group.bench_function("resilient_macro_twice", |b| {
        b.to_async(&rt).iter(retry_twice);
    });
    group.finish();
}

fn bench_contended(c: &mut Criterion) {
    let rt = two_workers();
    // `'static`, like the policy a macro keeps in a `static`: the tasks share
    // it without touching a reference count per call.
    let policy: &'static Policy = Box::leak(Box::new(full_stack("bench-full-contended")));

    let mut group = c.benchmark_group("overhead/contended");
    configure(&mut group);
    group.bench_function("tokio_timeout_2x64", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| contended(iters, || with_tokio_timeout(yield_once)));
    });
    group.bench_function("full_stack_2x64", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| contended(iters, move || drive(policy, yield_once)));
    });
    group.finish();
}

/// The full stack observed: a Prometheus recorder and a `tracing`
/// subscriber. Last, because installing a subscriber, even a scoped one,
/// leaves every callsite's interest to be asked again on each call.
#[cfg(feature = "metrics")]
fn bench_observed(c: &mut Criterion) {
    let rt = current_thread();
    let recorder: &'static metrics_exporter_prometheus::PrometheusRecorder = Box::leak(Box::new(
        metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
    ));
    let _metrics = metrics::set_default_local_recorder(recorder);
    let _tracing = tracing::subscriber::set_default(observing_subscriber());
    let ready_policy = full_stack("bench-observed-ready");
    let yield_policy = full_stack("bench-observed-yield");
    let mut group = c.benchmark_group("overhead/observed");
    configure(&mut group);
    group.bench_function("ready_full_stack", |b| {
        b.to_async(&rt).iter(|| drive(&ready_policy, ready));
    });
    group.bench_function("yield_once_full_stack", |b| {
        b.to_async(&rt).iter(|| drive(&yield_policy, yield_once));
    });
    group.finish();
}

#[cfg(not(feature = "metrics"))]
fn bench_observed(_: &mut Criterion) {}

criterion_group!(
    benches,
    bench_ready,
    bench_yield_once,
    bench_retry,
    bench_contended,
    bench_observed
);
criterion_main!(benches);
