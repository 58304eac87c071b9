//! `reload_storm`: a call site's policy redefined again and again while
//! calls run under each version, watching the policies alive and the
//! process's memory.
//!
//! ```text
//! reload_storm [--reloads 100000] [--in-flight 64] [--every 10000]
//! ```
//!
//! Each reload gives the `#[resilient]` call site a new timeout, and a call
//! starts under it and stays in flight until `--in-flight` later reloads
//! have happened, so every policy is held by a call for a while and then
//! released. Every `--every` reloads a row shows the policies alive in the
//! process (`buttress::diagnostics::live_policies`) and the RSS. At the end
//! the calls are all released; the policies alive must come back to the
//! ones in force, and the RSS must not grow by more than 1 MiB over the
//! second half of the storm; the exit code is 1 otherwise. Everything runs in
//! this process, on no network, for a few seconds.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buttress::retry::RetryConfig;
use buttress::{Classify, Error, ErrorClass, PolicyConfig, Registry};
use clap::Parser;
use tokio::sync::Notify;

#[derive(Parser, Debug)]
#[command(about = "Reload a call site's policy again and again with calls in flight")]
struct Args {
    /// Reloads in all.
    #[arg(long, default_value_t = 100_000)]
    reloads: u64,
    /// Calls held in flight at once, each under its own policy.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Print a row every this many reloads.
    #[arg(long, default_value_t = 10_000)]
    every: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StormError(String);

impl Classify for StormError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

impl From<Error> for StormError {
    fn from(e: Error) -> Self {
        Self(e.to_string())
    }
}

#[buttress::resilient(provider = "reload-storm", policy = "reload-storm-op", timeout = "10s", retry = off)]
async fn held(release: Arc<Notify>) -> Result<(), StormError> {
    release.notified().await;
    Ok(())
}

fn rss_kb() -> u64 {
    buttress_examples::rss_kib().unwrap_or(0)
}

fn define(i: u64) {
    Registry::global()
        .define_policy(
            "reload-storm-op",
            PolicyConfig::named("reload-storm", "op")
                .with_timeout(Some(Duration::from_secs(10) + Duration::from_micros(i)))
                .with_retry(RetryConfig::off()),
        )
        .expect("a valid policy");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let start = Instant::now();
    // The call site resolved once, under its inline settings.
    let first = Arc::new(Notify::new());
    first.notify_one();
    held(first).await.expect("the first call");
    let before = buttress::diagnostics::live_policies();
    println!(
        "reload_storm: {} reloads, {} calls in flight, each under its own policy",
        args.reloads, args.in_flight
    );
    println!(
        "{:>9} {:>14} {:>10}",
        "reloads", "live policies", "RSS (KiB)"
    );
    println!("{:>9} {:>14} {:>10}", 0, before, rss_kb());
    let mut flight = VecDeque::with_capacity(args.in_flight + 1);
    let mut peak_live = before;
    let mut rss_at_half = 0;
    for i in 1..=args.reloads {
        define(i);
        let release = Arc::new(Notify::new());
        let call = tokio::spawn(held(release.clone()));
        flight.push_back((release, call));
        if flight.len() > args.in_flight {
            let (release, call) = flight.pop_front().expect("a call in flight");
            release.notify_one();
            call.await
                .expect("the call did not panic")
                .expect("a released call succeeds");
        }
        // Let the new call start under this policy before the next reload.
        tokio::task::yield_now().await;
        peak_live = peak_live.max(buttress::diagnostics::live_policies());
        if i == args.reloads / 2 {
            rss_at_half = rss_kb();
        }
        if i % args.every == 0 {
            println!(
                "{:>9} {:>14} {:>10}",
                i,
                buttress::diagnostics::live_policies(),
                rss_kb()
            );
        }
    }
    for (release, call) in flight {
        release.notify_one();
        call.await
            .expect("the call did not panic")
            .expect("a released call succeeds");
    }
    let after = buttress::diagnostics::live_policies();
    let rss_end = rss_kb();
    println!(
        "after every call ended: {after} policies alive (before the storm: {before}; peak {peak_live}); RSS {} KiB; {:.1} s",
        rss_end,
        start.elapsed().as_secs_f64()
    );
    let growth = rss_end.saturating_sub(rss_at_half);
    println!("RSS over the second half of the storm: +{growth} KiB");
    if after > before {
        println!("verdict: replaced policies leak");
        return ExitCode::FAILURE;
    }
    // A byte per reload would be 50 KiB over the second half of 100,000;
    // the allocator's own noise stays well below 1 MiB.
    if growth > 1_024 {
        println!("verdict: memory grows with reloads");
        return ExitCode::FAILURE;
    }
    println!("verdict: flat; every replaced policy was freed once its last call ended");
    ExitCode::SUCCESS
}
