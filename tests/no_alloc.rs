//! Proof that the happy path of a wrapped call allocates nothing and takes
//! no buttress lock, after warm-up, through timeout + deadline + retry +
//! budget + breaker + bulkhead + rate limit.
//!
//! A counting global allocator needs its own test binary (no libtest
//! harness, which allocates on other threads while tests run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buttress::bulkhead::BulkheadConfig;
use buttress::rate_limit::RateLimitConfig;
use buttress::{Error, Policy, Registry};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What `#[resilient]` expands to: the attempt loop with the body inline.
async fn wrapped<F, Fut>(policy: &Policy, body: F) -> Result<u64, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u64, Error>>,
{
    let mut call = policy.call::<u64, Error>();
    loop {
        if let ControlFlow::Break(result) = call.attempt(body()).await {
            return result;
        }
    }
}

async fn ready() -> Result<u64, Error> {
    Ok(std::hint::black_box(1))
}

async fn yield_once() -> Result<u64, Error> {
    tokio::task::yield_now().await;
    Ok(std::hint::black_box(1))
}

struct Case {
    name: &'static str,
    allocations: u64,
    locks: u64,
}

fn measure(name: &'static str, policy: &Policy, yields: bool) -> Case {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let run = |n: u32| async move {
            for _ in 0..n {
                let value = if yields {
                    wrapped(policy, yield_once).await
                } else {
                    wrapped(policy, ready).await
                };
                assert_eq!(value.unwrap(), 1);
            }
        };
        run(1_000).await; // warm-up: timer wheel, deferred-waker list, thread-locals
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let locks = buttress::__private::locks_taken_on_this_thread();
        run(10_000).await;
        Case {
            name,
            allocations: ALLOCATIONS.load(Ordering::Relaxed) - allocations,
            locks: buttress::__private::locks_taken_on_this_thread() - locks,
        }
    })
}

fn main() {
    let registry = Registry::new();
    let default_stack = Policy::builder("no-alloc-default")
        .build_in(&registry)
        .unwrap();
    let full_stack = Policy::builder("no-alloc-full")
        .timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(10))
        .bulkhead(
            BulkheadConfig::new()
                .with_max_concurrent(32)
                .with_max_wait(Duration::from_millis(50)),
        )
        .rate_limit(
            RateLimitConfig::new()
                .with_per_second(1_000_000_000)
                .with_burst(1_000_000),
        )
        .build_in(&registry)
        .unwrap();
    let cases = [
        measure("default stack, ready body", &default_stack, false),
        measure("default stack, yielding body", &default_stack, true),
        measure("full stack, ready body", &full_stack, false),
        measure("full stack, yielding body", &full_stack, true),
    ];
    let mut failed = 0;
    for case in &cases {
        let ok = case.allocations == 0 && case.locks == 0;
        if !ok {
            failed += 1;
        }
        println!(
            "test {} ... {} ({} allocations, {} locks in 10000 calls)",
            case.name,
            if ok { "ok" } else { "FAILED" },
            case.allocations,
            case.locks
        );
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; 0 filtered out\n",
        if failed == 0 { "ok" } else { "FAILED" },
        cases.len() - failed,
        failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
