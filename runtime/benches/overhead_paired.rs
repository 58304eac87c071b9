//! The `overhead` rows measured as paired differences, for a figure that
//! run-to-run drift does not move.
//!
//! On a shared machine the level of every row drifts by tens of
//! nanoseconds over the seconds between criterion's rows, more than the
//! differences being measured. Here every round runs each row for
//! [`CALLS`] calls back to back (in an order rotated each round), and
//! reports each row's difference from `tokio::time::timeout` within the
//! same round: drift common to a round cancels out. The median and the
//! 10th–90th percentiles of those differences over [`ROUNDS`] rounds are
//! printed, with each row's median ns per call.
//!
//! `cargo bench -p buttress --bench overhead_paired`

#[allow(dead_code)] // the retry row is measured by `overhead` and `icount`
mod common;

use std::future::Future;
use std::hint::black_box;
use std::time::Instant;

use common::{
    current_thread, default_stack, drive, full_stack, macro_ready, macro_yield_once, ready,
    with_tokio_timeout, yield_once, Out,
};
use tokio::runtime::Runtime;

/// Calls per row per round.
const CALLS: u32 = 20_000;
/// Rounds measured, after [`WARM_UP_ROUNDS`] discarded.
const ROUNDS: usize = 60;
const WARM_UP_ROUNDS: usize = 5;

const ROWS: [&str; 4] = [
    "tokio_timeout",
    "default_stack",
    "full_stack",
    "resilient_macro",
];

/// Nanoseconds per call of `call`, over [`CALLS`] calls.
fn measure<Fut>(rt: &Runtime, call: impl Fn() -> Fut) -> f64
where
    Fut: Future<Output = Out>,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..CALLS {
            let _ = black_box(call().await);
        }
        start.elapsed().as_nanos() as f64 / f64::from(CALLS)
    })
}

/// The value at fraction `q` of the sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn report(body: &str, samples: &[[f64; 4]]) {
    println!("overhead_paired/{body}: median ns per call over {ROUNDS} rounds of {CALLS} calls;");
    println!("  difference from tokio_timeout in the same round: median [p10, p90]");
    for (row, name) in ROWS.iter().enumerate() {
        let own = sorted(samples.iter().map(|s| s[row]).collect());
        if row == 0 {
            println!("  {name:<16} {:>8.1}", quantile(&own, 0.5));
            continue;
        }
        let diffs = sorted(samples.iter().map(|s| s[row] - s[0]).collect());
        println!(
            "  {name:<16} {:>8.1}   {:+7.1} [{:+.1}, {:+.1}]",
            quantile(&own, 0.5),
            quantile(&diffs, 0.5),
            quantile(&diffs, 0.1),
            quantile(&diffs, 0.9),
        );
    }
}

/// Run every row once per round, rotating the order.
fn rounds(mut row: impl FnMut(usize) -> f64) -> Vec<[f64; 4]> {
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..WARM_UP_ROUNDS + ROUNDS {
        let mut sample = [0.0; 4];
        for step in 0..ROWS.len() {
            let index = (round + step) % ROWS.len();
            sample[index] = row(index);
        }
        if round >= WARM_UP_ROUNDS {
            samples.push(sample);
        }
    }
    samples
}

fn main() {
    // `cargo bench` passes `--bench`; a filter, if any, selects bodies.
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    let rt = current_thread();

    if "ready".contains(filter.as_str()) || filter.is_empty() {
        let default_policy = default_stack("paired-default-ready");
        let full_policy = full_stack("paired-full-ready");
        let samples = rounds(|row| match row {
            0 => measure(&rt, || with_tokio_timeout(ready)),
            1 => measure(&rt, || drive(&default_policy, ready)),
            2 => measure(&rt, || drive(&full_policy, ready)),
            _ => measure(&rt, macro_ready),
        });
        report("ready", &samples);
    }
    if "yield_once".contains(filter.as_str()) || filter.is_empty() {
        let default_policy = default_stack("paired-default-yield");
        let full_policy = full_stack("paired-full-yield");
        let samples = rounds(|row| match row {
            0 => measure(&rt, || with_tokio_timeout(yield_once)),
            1 => measure(&rt, || drive(&default_policy, yield_once)),
            2 => measure(&rt, || drive(&full_policy, yield_once)),
            _ => measure(&rt, macro_yield_once),
        });
        report("yield_once", &samples);
    }
}
