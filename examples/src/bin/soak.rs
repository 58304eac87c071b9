//! `soak`: a buttress client at the lab's rate through recurring incidents,
//! for minutes, watching its own memory, file descriptors, tasks and
//! registry entries.
//!
//! ```text
//! soak [--minutes 10] [--rate 50] [--every 10] [--seed 42]
//! ```
//!
//! The fault-injecting provider runs in a child process (this binary with
//! `--provider`) on 127.0.0.1, so its own bookkeeping (every charge it
//! made) does not count against the client. Its schedule cycles through
//! the lab's scenarios (each seeded differently per cycle) for the whole
//! run. The client is the lab's buttress client (`PaymentsClient`, one
//! logical charge per operation, open loop at `--rate` per second).
//!
//! Every `--every` seconds a row is printed: RSS (`VmRSS` in
//! `/proc/self/status`), open file descriptors (`/proc/self/fd`), live tokio
//! tasks, provider entries in the global registry, operations in flight
//! and the success rate of the interval. Each operation in flight is a
//! task, so the verdict on tasks looks at the tasks beyond them. At the end, each series gets a
//! least-squares slope over the second half of the samples (the first half
//! is warm-up: pools, caches, the allocator reaching its working set), and
//! a verdict: *flat* when the fitted rise over that half stays within the
//! tolerance, else *growing*. The exit code is 1 when anything grows.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress::Registry;
use buttress_examples::clients::lab::{LabClient, Variant};
use buttress_examples::lab::{DEFAULT_RATE, DEFAULT_SEED, MAX_RATE};
use buttress_examples::provider::{seeded_scenario, ProviderServer, Schedule, SCENARIOS};
use clap::Parser;
use tokio::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "Soak a buttress client at the lab's rate through recurring incidents")]
struct Cli {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Logical operations per second.
    #[arg(long, default_value_t = DEFAULT_RATE, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RATE)))]
    rate: u32,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Seed of the schedules and the provider's fault decisions.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Internal: run the provider for this many seconds and print its URL.
    #[arg(long, hide = true)]
    provider: Option<u64>,
}

/// The lab's scenarios one after another, each seeded anew per cycle,
/// until `total` is covered.
fn recurring_incidents(total: Duration, seed: u64) -> Schedule {
    let mut phases = Vec::new();
    let mut offset = Duration::ZERO;
    let mut cycle = 0u64;
    while offset < total {
        for name in SCENARIOS {
            let Some(schedule) = seeded_scenario(name, false, seed.wrapping_add(cycle)) else {
                continue;
            };
            for (at, phase) in schedule.phases() {
                phases.push((offset + *at, phase.clone()));
            }
            offset += schedule.duration();
        }
        cycle += 1;
    }
    Schedule::new(offset, phases)
}

/// The provider process: serve `secs` of recurring incidents, print the
/// URL, exit when stdin closes (the parent went away) or the time is up.
async fn provider(secs: u64, seed: u64) -> ExitCode {
    let schedule = recurring_incidents(Duration::from_secs(secs), seed);
    let server = match ProviderServer::start(schedule, seed).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("soak: the provider could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", server.url);
    let _ = std::io::stdout().flush();
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    let limit = Duration::from_secs(secs.saturating_add(60));
    let _ = tokio::time::timeout(limit, stdin_closed).await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kb: f64,
    fds: f64,
    tasks: f64,
    registry: f64,
    in_flight: u64,
    ok_percent: f64,
}

fn rss_kb() -> f64 {
    buttress_examples::rss_kib().map_or(f64::NAN, |kib| kib as f64)
}

fn open_fds() -> f64 {
    std::fs::read_dir("/proc/self/fd").map_or(f64::NAN, |dir| dir.count() as f64)
}

/// A series judged at the end: its name, how to read it from a sample, and
/// the absolute tolerance of its fitted rise.
type Series = (&'static str, fn(&Sample) -> f64, f64);

/// Least-squares slope of `ys` over `xs` (per unit of x).
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

#[derive(Default)]
struct Counters {
    issued: AtomicU64,
    finished: AtomicU64,
    ok: AtomicU64,
}

async fn soak(cli: &Cli) -> ExitCode {
    let total = Duration::from_secs_f64(cli.minutes.max(0.1) * 60.0);
    let every = Duration::from_secs(cli.every.max(1));
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("soak: cannot find its own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut child = match Command::new(exe)
        .args([
            "--provider",
            &total.as_secs().saturating_add(30).to_string(),
        ])
        .args(["--seed", &cli.seed.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("soak: cannot start the provider process: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut url = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut url);
    }
    let url = url.trim().to_owned();
    if !url.starts_with("http://127.0.0.1:") {
        eprintln!("soak: the provider process did not print its URL");
        let _ = child.kill();
        let _ = child.wait();
        return ExitCode::FAILURE;
    }

    println!(
        "soak: {:.1} min at {} operations/s against {url} (release build: {}), a sample every {}s",
        total.as_secs_f64() / 60.0,
        cli.rate,
        !cfg!(debug_assertions),
        every.as_secs()
    );
    println!(
        "{:>7} {:>10} {:>5} {:>7} {:>9} {:>10} {:>7}",
        "t (s)", "RSS (kB)", "fds", "tasks", "registry", "in flight", "ok %"
    );

    let client = Arc::new(LabClient::new(Variant::Buttress, &url));
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let period = Duration::from_secs(1) / cli.rate;
    let driver = {
        let (client, counters) = (Arc::clone(&client), Arc::clone(&counters));
        tokio::spawn(async move {
            let mut operation = 0u64;
            loop {
                let at = start + period * u32::try_from(operation).unwrap_or(u32::MAX);
                if at.duration_since(start) >= total {
                    break;
                }
                tokio::time::sleep_until(at).await;
                counters.issued.fetch_add(1, Ordering::Relaxed);
                let (client, counters) = (Arc::clone(&client), Arc::clone(&counters));
                tokio::spawn(async move {
                    let outcome = client.charge(operation).await;
                    if outcome.ok {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    counters.finished.fetch_add(1, Ordering::Relaxed);
                });
                operation += 1;
            }
        })
    };

    let metrics = tokio::runtime::Handle::current().metrics();
    let mut samples = Vec::new();
    let (mut last_finished, mut last_ok) = (0u64, 0u64);
    let mut tick = 1u32;
    loop {
        let at = start + every * tick;
        if at.duration_since(start) > total {
            break;
        }
        tokio::time::sleep_until(at).await;
        tick += 1;
        let (finished, ok) = (
            counters.finished.load(Ordering::Relaxed),
            counters.ok.load(Ordering::Relaxed),
        );
        let sample = Sample {
            at: start.elapsed(),
            rss_kb: rss_kb(),
            fds: open_fds(),
            tasks: metrics.num_alive_tasks() as f64,
            registry: Registry::global().providers().len() as f64,
            in_flight: counters.issued.load(Ordering::Relaxed) - finished,
            ok_percent: if finished > last_finished {
                100.0 * (ok - last_ok) as f64 / (finished - last_finished) as f64
            } else {
                f64::NAN
            },
        };
        (last_finished, last_ok) = (finished, ok);
        println!(
            "{:>7.0} {:>10.0} {:>5.0} {:>7.0} {:>9.0} {:>10} {:>7.1}",
            sample.at.as_secs_f64(),
            sample.rss_kb,
            sample.fds,
            sample.tasks,
            sample.registry,
            sample.in_flight,
            sample.ok_percent
        );
        samples.push(sample);
    }
    let _ = driver.await;
    drop(child.stdin.take());
    let _ = child.wait();

    let second_half = &samples[samples.len() / 2..];
    let xs: Vec<f64> = second_half
        .iter()
        .map(|s| s.at.as_secs_f64() / 60.0)
        .collect();
    let span = xs.last().copied().unwrap_or(0.0) - xs.first().copied().unwrap_or(0.0);
    println!(
        "\nsecond half: {} samples over {span:.1} min; least-squares slope per minute, and the rise it fits over that half:",
        second_half.len()
    );
    let series: [Series; 4] = [
        ("RSS (kB)", |s| s.rss_kb, 2048.0),
        ("open fds", |s| s.fds, 4.0),
        // Every operation in flight is a task: the rest are the runtime's
        // own (connections, the provider's breaker and timers' helpers).
        ("tasks - in flight", |s| s.tasks - s.in_flight as f64, 25.0),
        ("registry entries", |s| s.registry, 0.5),
    ];
    let mut growing = false;
    for (name, value, tolerance) in series {
        let ys: Vec<f64> = second_half.iter().map(value).collect();
        let per_minute = slope(&xs, &ys);
        let rise = per_minute * span;
        let mean = ys.iter().sum::<f64>() / ys.len().max(1) as f64;
        let allowed = tolerance.max(0.05 * mean);
        let verdict = if rise > allowed { "growing" } else { "flat" };
        growing |= rise > allowed;
        println!(
            "  {name:<17} slope {per_minute:>+10.2}/min  rise {rise:>+10.1} (tolerance {allowed:.1})  {verdict}"
        );
    }
    let (issued, ok) = (
        counters.issued.load(Ordering::Relaxed),
        counters.ok.load(Ordering::Relaxed),
    );
    println!(
        "operations: {issued} issued, {ok} succeeded ({:.2} %)",
        100.0 * ok as f64 / issued.max(1) as f64
    );
    println!("verdict: {}", if growing { "GROWING" } else { "flat" });
    if growing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("soak: cannot build the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.provider {
        Some(secs) => runtime.block_on(provider(secs, cli.seed)),
        None => runtime.block_on(soak(&cli)),
    }
}
