//! What the layer costs on a service that answers at once, next to the
//! stacks a tower user would otherwise build, in the same run:
//!
//! - `bare`: the `service_fn` alone;
//! - `tower_timeout`: `tower::timeout::Timeout` (10s);
//! - `tower_retry_timeout`: tower's `Retry` (3 attempts, a policy that
//!   clones the request) over `Timeout`;
//! - `resilience_layer`: `ResilienceLayer` under the default policy
//!   (10s timeout, 30s deadline, 3 attempts under a retry budget, a
//!   breaker).
//!
//! Each iteration clones the stack and sends one request with `oneshot`,
//! in the bench profile (release, no debug info).
//!
//! ```text
//! cargo bench -p buttress-tower --bench layer
//! ```

use std::future::{ready, Ready};
use std::io;
use std::time::Duration;

use buttress_core::Policy;
use buttress_tower::{ByError, ResilienceLayer};
use criterion::{criterion_group, criterion_main, Criterion};
use tower::{service_fn, Layer, ServiceExt};

#[derive(Clone, Copy)]
struct Attempts(u32);

impl tower::retry::Policy<u32, u32, tower::BoxError> for Attempts {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _: &mut u32,
        result: &mut Result<u32, tower::BoxError>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, request: &u32) -> Option<u32> {
        Some(*request)
    }
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let body = service_fn(|n: u32| ready(Ok::<u32, io::Error>(n + 1)));
    let mut group = c.benchmark_group("layer");

    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| body.oneshot(1));
    });

    let timeout = tower::timeout::TimeoutLayer::new(Duration::from_secs(10)).layer(body);
    group.bench_function("tower_timeout", |b| {
        b.to_async(&rt).iter(|| timeout.clone().oneshot(1));
    });

    let retry = tower::retry::RetryLayer::new(Attempts(3)).layer(timeout.clone());
    group.bench_function("tower_retry_timeout", |b| {
        b.to_async(&rt).iter(|| retry.clone().oneshot(1));
    });

    let policy = Policy::builder("bench-tower-layer").build().unwrap();
    let resilient = ResilienceLayer::new(policy)
        .classify_with(ByError)
        .layer(body);
    group.bench_function("resilience_layer", |b| {
        b.to_async(&rt).iter(|| resilient.clone().oneshot(1));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = layer
}
criterion_main!(benches);
