//! Admissions per second through a `SharedQuota` against the Redis on
//! 127.0.0.1 (`BUTTRESS_REDIS_URL`, default `redis://127.0.0.1:6379/`), and
//! the round trips each one costs, one caller and 16 concurrent callers;
//! and the local share, for comparison.
//!
//! `cargo bench -p buttress --bench shared_quota --features redis`

#[cfg(feature = "redis")]
mod bench {
    use std::hint::black_box;
    use std::time::Duration;

    use buttress::shared_quota::{SharedQuota, SharedQuotaConfig};
    use criterion::{Criterion, Throughput};

    fn config(prefix: &str) -> SharedQuotaConfig {
        // Never the limit: what is measured is the admission itself.
        SharedQuotaConfig::new()
            .with_per_second(1_000_000)
            .with_burst(1_000_000)
            .with_replicas(4)
            .with_prefix(format!("buttress:bench:{}:{prefix}:", std::process::id()))
    }

    pub fn shared(c: &mut Criterion) {
        let url = std::env::var("BUTTRESS_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let quota = SharedQuota::new(&url, "bench", "acct", config("one")).unwrap();
        if !rt.block_on(quota.connect()) {
            eprintln!("skipped: Redis is not reachable at {url}");
            return;
        }
        let mut group = c.benchmark_group("shared_quota");
        group.throughput(Throughput::Elements(1));
        group.bench_function("redis_admit_one_caller", |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(quota.admit(1, Duration::ZERO).await) });
        });
        let before = (quota.round_trips(), quota.fallbacks());
        let n = 10_000u64;
        rt.block_on(async {
            for _ in 0..n {
                black_box(quota.admit(1, Duration::ZERO).await);
            }
        });
        let trips = quota.round_trips() - before.0;
        eprintln!(
            "shared_quota: {:.3} round trips per admission over {n} admissions ({} fallbacks)",
            trips as f64 / n as f64,
            quota.fallbacks() - before.1
        );
        group.throughput(Throughput::Elements(16));
        group.bench_function("redis_admit_16_concurrent", |b| {
            b.to_async(&rt).iter(|| async {
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let quota = quota.clone();
                        tokio::spawn(async move { quota.admit(1, Duration::ZERO).await })
                    })
                    .collect();
                for task in tasks {
                    black_box(task.await.unwrap());
                }
            });
        });
        let local = SharedQuota::local_only("bench", "acct", config("local")).unwrap();
        group.throughput(Throughput::Elements(1));
        group.bench_function("local_share_admit", |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(local.admit(1, Duration::ZERO).await) });
        });
        group.finish();
    }
}

#[cfg(feature = "redis")]
criterion::criterion_group!(benches, bench::shared);
#[cfg(feature = "redis")]
criterion::criterion_main!(benches);

#[cfg(not(feature = "redis"))]
fn main() {
    eprintln!("skipped: the shared quota needs the `redis` feature");
}
