//! Every row of a group measured as paired differences from
//! `tokio::time::timeout` within the same round, as
//! `runtime/benches/overhead_paired.rs` does for buttress alone.
//!
//! On a shared machine the level of every row drifts by tens of
//! nanoseconds between runs and within one. Here every round runs each
//! row for `CALLS` calls back to back (in an order rotated each round),
//! and reports each row's difference from the group's baseline within the
//! same round: drift common to a round cancels out. The median and the
//! 10th–90th percentiles of those differences over `ROUNDS` rounds are
//! printed as a markdown table, with each row's median ns per call.
//!
//! `paired [filter]`: the group named `filter` (`ready`, `yield_once`,
//! `retry`, `retry_timer`; `yield` for `yield_once`), or else the groups
//! whose name contains it; all of them without one. Each group has its own
//! calls per round and rounds (`Group::default_size`); `PEERS_CALLS` and
//! `PEERS_ROUNDS` override them for every group.

use buttress_peers_bench::{current_thread, Group, NamedRow};
use tokio::runtime::Runtime;

/// Rounds run first and discarded.
const WARM_UP_ROUNDS: usize = 5;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// Every row once per round, rotating the order; one sample per round.
fn rounds(rt: &Runtime, rows: &mut [NamedRow], calls: u32, count: usize) -> Vec<Vec<f64>> {
    let mut samples = Vec::with_capacity(count);
    for round in 0..WARM_UP_ROUNDS + count {
        let mut sample = vec![0.0; rows.len()];
        for step in 0..rows.len() {
            let index = (round + step) % rows.len();
            sample[index] = rows[index].row.time(rt, calls);
        }
        if round >= WARM_UP_ROUNDS {
            samples.push(sample);
        }
    }
    samples
}

fn report(group: Group, rows: &[NamedRow], samples: &[Vec<f64>], calls: u32) {
    println!();
    println!(
        "### {} ({} rounds of {calls} calls per row)",
        group.name(),
        samples.len()
    );
    println!();
    println!(
        "| row | ns/call (median) | − {} (median) | p10 | p90 |",
        rows[0].name
    );
    println!("|---|---:|---:|---:|---:|");
    for (index, named) in rows.iter().enumerate() {
        let own = sorted(samples.iter().map(|s| s[index]).collect());
        if index == 0 {
            println!(
                "| {} (baseline) | {:.1} | | | |",
                named.name,
                quantile(&own, 0.5)
            );
            continue;
        }
        let diffs = sorted(samples.iter().map(|s| s[index] - s[0]).collect());
        println!(
            "| {} | {:.1} | {:+.1} | {:+.1} | {:+.1} |",
            named.name,
            quantile(&own, 0.5),
            quantile(&diffs, 0.5),
            quantile(&diffs, 0.1),
            quantile(&diffs, 0.9),
        );
    }
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    // A group's exact name selects it alone (`retry` without
    // `retry_timer`); otherwise every group whose name contains the filter.
    let exact = Group::parse(&filter);
    let rt = current_thread();
    let mut ran = false;
    for group in Group::ALL {
        let selected = match exact {
            Some(only) => group == only,
            None => group.name().contains(filter.as_str()),
        };
        if !selected {
            continue;
        }
        ran = true;
        let (calls, count) = group.default_size();
        let calls = env_or("PEERS_CALLS", calls).max(1);
        let count = env_or("PEERS_ROUNDS", count).max(1);
        let mut rows = group.rows(&rt);
        let samples = rounds(&rt, &mut rows, calls, count);
        report(group, &rows, &samples, calls);
    }
    if !ran {
        eprintln!("paired: no group matches `{filter}` (ready, yield_once, retry, retry_timer)");
        std::process::exit(2);
    }
}
