//! Idempotency store throughput, and round trips per call counted on the
//! real stores (Redis and PostgreSQL on 127.0.0.1, when the `redis` /
//! `postgres` features are on and the services answer).
//!
//! `cargo bench -p buttress --bench idempotency --all-features`

use std::hint::black_box;
use std::time::Duration;

use buttress::idempotency::{Claim, ClaimRequest, DedupOptions, IdempotencyStore, MemoryStore};
use buttress::{Error, Policy, Registry};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn request(key: &str) -> ClaimRequest<'_> {
    ClaimRequest {
        key,
        fingerprint: Some(7),
        lease: Duration::from_secs(30),
        ttl: Duration::from_secs(3600),
    }
}

fn memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let keys: Vec<String> = (0..1_000_000).map(|i| format!("order-{i}")).collect();
    let mut group = c.benchmark_group("idempotency/memory");
    group.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    group.bench_function("claim_complete", |b| {
        b.to_async(&rt).iter(|| {
            let key = &keys[next % keys.len()];
            next += 1;
            let store = &store;
            async move {
                let Claim::Acquired { fence } = store.claim(request(key)).await.unwrap() else {
                    // A key seen a million operations ago may still be held.
                    return;
                };
                black_box(
                    store
                        .complete(key, fence, b"{\"id\":1}", Duration::from_secs(3600))
                        .await
                        .unwrap(),
                );
            }
        });
    });
    group.bench_function("replay_completed", |b| {
        b.to_async(&rt).iter(|| {
            let store = &store;
            async move { black_box(store.claim(request("order-1")).await.unwrap()) }
        });
    });
    group.finish();
}

/// Calls per second through `run_idempotent` with distinct keys, and the
/// store's own count of requests per call.
#[allow(dead_code)]
fn through_policy<S: IdempotencyStore>(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: &S,
    round_trips: impl Fn() -> u64,
) {
    let policy = Policy::builder(format!("bench-{name}"))
        .build_in(&Registry::new())
        .unwrap();
    let run_id = std::process::id();
    let calls = 500u64;
    let before = round_trips();
    rt.block_on(async {
        for i in 0..calls {
            let r: Result<u64, Error> = policy
                .run_idempotent(
                    store,
                    format!("rt-{run_id}-{i}"),
                    &DedupOptions::new(),
                    || async { Ok(i) },
                )
                .await;
            r.unwrap();
        }
    });
    let per_call = (round_trips() - before) as f64 / calls as f64;
    println!("idempotency/{name}: {per_call:.2} round trips per call (counted over {calls} calls)");
    let mut group = c.benchmark_group(format!("idempotency/{name}"));
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut i = 0u64;
    group.bench_function("run_idempotent", |b| {
        b.to_async(rt).iter(|| {
            i += 1;
            let key = format!("bench-{run_id}-{i}");
            let policy = &policy;
            async move {
                let r: Result<u64, Error> = policy
                    .run_idempotent(store, key, &DedupOptions::new(), || async { Ok(1) })
                    .await;
                black_box(r.unwrap())
            }
        });
    });
    group.finish();
}

fn remote(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    #[cfg(feature = "redis")]
    {
        let url = std::env::var("BUTTRESS_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
        match rt.block_on(buttress::idempotency::RedisStore::connect(&url)) {
            Ok(store) => through_policy(c, "redis", &rt, &store, || store.round_trips()),
            Err(e) => println!("idempotency/redis: skipped ({e})"),
        }
    }
    #[cfg(feature = "postgres")]
    {
        let url = std::env::var("BUTTRESS_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        match rt.block_on(buttress::idempotency::PostgresStore::connect(&url)) {
            Ok(store) => through_policy(c, "postgres", &rt, &store, || store.round_trips()),
            Err(e) => println!("idempotency/postgres: skipped ({e})"),
        }
    }
    let _ = (&rt, c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = memory, remote
}
criterion_main!(benches);
