//! A reload storm: a call site's settings changed a thousand times while
//! calls run under each of them. Every call keeps the policy it started
//! with, and a replaced policy is freed as soon as its last call ends, so
//! the process holds only the policies in use. One test in its own binary:
//! it counts every policy alive in the process.

mod common;

use std::time::Duration;

use buttress::retry::RetryConfig;
use buttress::{PolicyConfig, Registry};
use common::{ms, ProviderError};
use std::sync::Arc;

use tokio::sync::Notify;

#[buttress::resilient(provider = "reload-storm", policy = "reload-storm-op", timeout = "10s", retry = off)]
async fn held(release: Arc<Notify>) -> Result<Duration, ProviderError> {
    let start = tokio::time::Instant::now();
    release.notified().await;
    Ok(start.elapsed())
}

#[buttress::resilient(provider = "reload-storm", policy = "reload-storm-op", timeout = "10s", retry = off)]
async fn sleeps(for_: Duration) -> Result<(), ProviderError> {
    tokio::time::sleep(for_).await;
    Ok(())
}

fn define(timeout: Duration) {
    Registry::global()
        .define_policy(
            "reload-storm-op",
            PolicyConfig::named("reload-storm", "op")
                .with_timeout(Some(timeout))
                .with_retry(RetryConfig::off()),
        )
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn replaced_policies_are_freed_when_their_last_call_ends() {
    const RELOADS: u64 = 1_000;
    // Both call sites resolved once, under their inline settings.
    sleeps(ms(1)).await.unwrap();
    let release = Arc::new(Notify::new());
    release.notify_one();
    held(release).await.unwrap();
    let before = buttress::diagnostics::live_policies();

    // Each reload gives the site a new timeout (100 ms + i ms), and a call
    // starts under it and stays in flight: every policy is still held.
    let mut in_flight = Vec::new();
    for i in 0..RELOADS {
        let timeout = ms(100 + i);
        define(timeout);
        let tx = Arc::new(Notify::new());
        let call = tokio::spawn(held(tx.clone()));
        tokio::task::yield_now().await; // the call starts under this policy
        in_flight.push((timeout, tx, call));
    }
    let holding = buttress::diagnostics::live_policies();
    assert!(
        holding >= RELOADS as usize,
        "{holding} policies alive with {RELOADS} calls in flight under distinct ones (from {before})"
    );

    // Calls under the first half time out, each at its own policy's
    // timeout: the policy a call started with is the one it keeps.
    let started = tokio::time::Instant::now();
    tokio::time::sleep(ms(100 + RELOADS / 2)).await;
    let elapsed_at_half = started.elapsed();
    let mut late = Vec::new();
    for (timeout, tx, call) in in_flight {
        if call.is_finished() {
            let err = call.await.unwrap().unwrap_err();
            assert!(matches!(err, ProviderError::Buttress(ref why, _) if why == "timeout"));
            assert!(timeout <= elapsed_at_half + ms(RELOADS), "{timeout:?}");
        } else {
            late.push((timeout, tx, call));
        }
    }
    assert!(!late.is_empty() && late.len() < RELOADS as usize);
    // The rest are released: they succeed.
    for (_, tx, call) in late {
        tx.notify_one();
        call.await.unwrap().unwrap();
    }

    // Every call has ended: each site holds only its policy in force (the
    // `held` site's inline policy went as soon as it was replaced).
    let after = buttress::diagnostics::live_policies();
    assert!(
        after <= before,
        "{after} policies alive after {RELOADS} reloads and every call ended (from {before}): replaced policies leak"
    );

    // Returning to settings still in force reuses the policy: no growth.
    for _ in 0..100 {
        define(ms(100 + RELOADS - 1));
        sleeps(ms(1)).await.unwrap();
    }
    assert!(buttress::diagnostics::live_policies() <= before);
}
