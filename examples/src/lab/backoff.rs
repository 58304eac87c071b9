//! Experiment: backoff and jitter under contention.
//!
//! The model of the AWS Architecture Blog post "Exponential Backoff And
//! Jitter" (Marc Brooker, 2015): `N` clients each have to make exactly one
//! write to a single row guarded by optimistic concurrency control. A client
//! reads the row's version, then writes with that version; the write wins
//! only if nobody else wrote in between, otherwise the client backs off and
//! starts over with a fresh read. Every message crosses a network whose
//! one-way delay is `|Normal(10 ms, 2 ms)|`.
//!
//! The backoff delays are computed by buttress itself
//! ([`buttress::retry::Backoff::delay`] with a [`buttress::retry::Jitter`]),
//! drawing from a seeded [`buttress::Rng`]; the simulation runs in virtual
//! time (an event queue, no sleeping), so it is fast and deterministic.
//!
//! The blog's parameters are `base = 5 ms`, `cap = 2 s` and
//! `sleep = min(cap, base × 2^attempt)`, which is buttress's
//! `exponential(10ms, 2s)` (buttress's first delay is the base);
//! decorrelated jitter is `min(cap, uniform(base, 3 × previous sleep))`,
//! buttress's `decorrelated(5ms, 2s)`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::time::Duration;

use buttress::retry::{Backoff, Jitter};
use buttress::Rng;

/// How a client waits after a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Retry at once.
    NoBackoff,
    /// Capped exponential backoff, no jitter.
    Exponential,
    /// Capped exponential backoff, full jitter: uniform in `[0, delay]`.
    FullJitter,
    /// Capped exponential backoff, equal jitter: `delay/2 + uniform(0, delay/2)`.
    EqualJitter,
    /// Decorrelated jitter: uniform in `[base, 3 × previous]`, capped.
    Decorrelated,
}

impl Strategy {
    /// Every strategy, in the order the tables show them.
    pub const ALL: [Strategy; 5] = [
        Strategy::NoBackoff,
        Strategy::Exponential,
        Strategy::FullJitter,
        Strategy::EqualJitter,
        Strategy::Decorrelated,
    ];

    /// A short name for tables.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::NoBackoff => "no backoff",
            Strategy::Exponential => "exponential, no jitter",
            Strategy::FullJitter => "full jitter",
            Strategy::EqualJitter => "equal jitter",
            Strategy::Decorrelated => "decorrelated jitter",
        }
    }

    /// The buttress backoff and jitter this strategy uses (`None`: no wait).
    #[must_use]
    pub const fn policy(self) -> Option<(Backoff, Jitter)> {
        const BASE: Duration = Duration::from_millis(5);
        const CAP: Duration = Duration::from_secs(2);
        // The blog sleeps base × 2^attempt; buttress sleeps base × 2^(attempt − 1).
        const EXPONENTIAL: Backoff = Backoff::exponential(Duration::from_millis(10), CAP);
        match self {
            Strategy::NoBackoff => None,
            Strategy::Exponential => Some((EXPONENTIAL, Jitter::None)),
            Strategy::FullJitter => Some((EXPONENTIAL, Jitter::Full)),
            Strategy::EqualJitter => Some((EXPONENTIAL, Jitter::Equal)),
            Strategy::Decorrelated => Some((Backoff::decorrelated(BASE, CAP), Jitter::None)),
        }
    }

    /// What the blog post reports about this strategy.
    #[must_use]
    pub const fn published(self) -> &'static str {
        match self {
            Strategy::NoBackoff => "work grows as N^2 (every client competes every round)",
            Strategy::Exponential => "the clear loser among backoffs: most work, most time",
            Strategy::FullJitter => "least work",
            Strategy::EqualJitter => "slightly more work than full, much longer",
            Strategy::Decorrelated => "a little more work than full, a little less time",
        }
    }
}

/// The averages of one strategy at one level of contention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentionResult {
    /// The strategy.
    pub strategy: Strategy,
    /// Clients contending.
    pub clients: u32,
    /// Trials averaged.
    pub trials: u32,
    /// Write calls made (the work), mean per trial.
    pub calls: f64,
    /// Time until the last client succeeded, mean per trial.
    pub completion: Duration,
}

/// The network: one-way delays `|Normal(mean, sd)|`.
struct Net {
    rng: Rng,
    mean_ns: f64,
    sd_ns: f64,
}

impl Net {
    fn delay(&self) -> u64 {
        // Box-Muller from two uniforms in (0, 1].
        let u1 = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let u2 = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (self.mean_ns + self.sd_ns * z).abs() as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A read reaches the server.
    Read,
    /// The read's answer reaches the client, which sends its write.
    ReadReply { version: u64 },
    /// A write reaches the server.
    Write { version: u64 },
    /// The write's answer reaches the client.
    WriteReply { ok: bool },
}

struct Client {
    attempt: u32,
    previous: Duration,
}

/// Run `trials` simulations of `clients` contending clients with `strategy`
/// and average them. Deterministic for a given `seed`.
#[must_use]
pub fn simulate(strategy: Strategy, clients: u32, trials: u32, seed: u64) -> ContentionResult {
    let mut calls = 0u64;
    let mut completion_ns = 0u128;
    for trial in 0..trials {
        let trial_seed = mix(seed, (u64::from(clients) << 32) | u64::from(trial));
        let (c, t) = one_trial(strategy, clients, trial_seed);
        calls += c;
        completion_ns += u128::from(t);
    }
    let trials_f = f64::from(trials.max(1));
    ContentionResult {
        strategy,
        clients,
        trials,
        calls: calls as f64 / trials_f,
        completion: Duration::from_nanos((completion_ns / u128::from(trials.max(1))) as u64),
    }
}

/// Returns (write calls, completion time in ns).
fn one_trial(strategy: Strategy, clients: u32, seed: u64) -> (u64, u64) {
    // The network and the jitter draw from separate generators, so every
    // strategy sees the same network for the same seed.
    let net = Net {
        rng: Rng::seeded(seed),
        mean_ns: 10e6,
        sd_ns: 2e6,
    };
    let jitter_rng = Rng::seeded(mix(seed, 0x6a69_7474_6572));
    let policy = strategy.policy();

    let mut version = 0u64;
    let mut calls = 0u64;
    let mut now = 0u64;
    let mut seq = 0u64;
    let mut state: Vec<Client> = (0..clients)
        .map(|_| Client {
            attempt: 0,
            previous: Duration::ZERO,
        })
        .collect();
    let mut queue = BinaryHeap::new();
    let mut push = |queue: &mut BinaryHeap<_>, at: u64, client: u32, event: Event| {
        seq += 1;
        queue.push(Reverse((at, seq, client, event)));
    };
    for client in 0..clients {
        push(&mut queue, net.delay(), client, Event::Read);
    }
    while let Some(Reverse((at, _, client, event))) = queue.pop() {
        debug_assert!(at >= now);
        now = at;
        match event {
            Event::Read => push(
                &mut queue,
                now + net.delay(),
                client,
                Event::ReadReply { version },
            ),
            Event::ReadReply { version } => {
                push(
                    &mut queue,
                    now + net.delay(),
                    client,
                    Event::Write { version },
                );
            }
            Event::Write { version: seen } => {
                calls += 1;
                let ok = seen == version;
                if ok {
                    version += 1;
                }
                push(
                    &mut queue,
                    now + net.delay(),
                    client,
                    Event::WriteReply { ok },
                );
            }
            Event::WriteReply { ok: true } => {}
            Event::WriteReply { ok: false } => {
                let c = &mut state[client as usize];
                c.attempt += 1;
                let sleep = policy.map_or(Duration::ZERO, |(backoff, jitter)| {
                    backoff.delay(jitter, c.attempt, c.previous, &jitter_rng)
                });
                c.previous = sleep;
                let sleep_ns = u64::try_from(sleep.as_nanos()).unwrap_or(u64::MAX);
                push(
                    &mut queue,
                    now + net.delay() + sleep_ns,
                    client,
                    Event::Read,
                );
            }
        }
    }
    (calls, now)
}

/// SplitMix-style mixing of a seed with a stream number.
fn mix(seed: u64, stream: u64) -> u64 {
    Rng::seeded(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

/// The client counts the experiment compares.
pub const CLIENT_COUNTS: [u32; 2] = [50, 100];

/// Every strategy at every client count in [`CLIENT_COUNTS`].
#[must_use]
pub fn run(trials: u32, seed: u64) -> Vec<ContentionResult> {
    let mut out = Vec::new();
    for clients in CLIENT_COUNTS {
        for strategy in Strategy::ALL {
            out.push(simulate(strategy, clients, trials, seed));
        }
    }
    out
}

/// The results as a table, next to what the blog post reports.
#[must_use]
pub fn table(results: &[ContentionResult]) -> String {
    let mut s = String::new();
    let trials = results.first().map_or(0, |r| r.trials);
    let _ = writeln!(
        s,
        "Backoff under contention: N clients, one OCC write each (mean of {trials} trials)\n"
    );
    let mut counts: Vec<u32> = results.iter().map(|r| r.clients).collect();
    counts.dedup();
    let _ = write!(s, "{:<24}", "strategy");
    for n in &counts {
        let _ = write!(
            s,
            " {:>10} {:>10}",
            format!("calls@{n}"),
            format!("time@{n}")
        );
    }
    let _ = writeln!(s, "  published (AWS blog)");
    for strategy in Strategy::ALL {
        let _ = write!(s, "{:<24}", strategy.name());
        for n in &counts {
            if let Some(r) = results
                .iter()
                .find(|r| r.strategy == strategy && r.clients == *n)
            {
                let _ = write!(
                    s,
                    " {:>10.0} {:>10}",
                    r.calls,
                    format!("{:.0}ms", r.completion.as_secs_f64() * 1000.0)
                );
            }
        }
        let _ = writeln!(s, "  {}", strategy.published());
    }
    let _ = writeln!(
        s,
        "\ncalls: write attempts made by all clients (the work the database did); \
         time: until the last client succeeded.\nbuttress computes every delay: \
         exponential(10ms, 2s) with Jitter::{{None, Full, Equal}}, decorrelated(5ms, 2s)."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_delays_look_normal() {
        let net = Net {
            rng: Rng::seeded(1),
            mean_ns: 10e6,
            sd_ns: 2e6,
        };
        let samples: Vec<f64> = (0..20_000).map(|_| net.delay() as f64 / 1e6).collect();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / samples.len() as f64;
        assert!((mean - 10.0).abs() < 0.1, "{mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.1, "{var}");
    }

    #[test]
    fn one_client_needs_one_call() {
        for strategy in Strategy::ALL {
            let r = simulate(strategy, 1, 3, 9);
            assert!((r.calls - 1.0).abs() < f64::EPSILON, "{r:?}");
        }
    }
}
