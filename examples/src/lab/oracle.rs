//! The oracle: the best any client could do against a schedule, sending one
//! request per operation at the best moment inside its deadline.
//!
//! Operations are issued open loop (operation `i` at `i / rate`), each with
//! the lab's deadline [`DEADLINE`]. Time runs in 1 ms steps; at each step
//! the phase running then says how many requests it can serve:
//!
//! - healthy (any latency), `Errors503`, `Resets` and `LateAnswers` with a
//!   rate below 1: as many as are waiting (the oracle knows which requests
//!   would be the lucky ones);
//! - `Down` (or one of the above with rate 1): none;
//! - `RateLimited`: what its token bucket holds (one second's allowance,
//!   full when the phase starts, refilled at the allowance per second), as
//!   the provider's own bucket.
//!
//! Waiting operations are served earliest deadline first (open loop, so
//! oldest first); an operation not served before its deadline fails. No
//! per-attempt timeout binds the oracle. An operation's latency is the wait
//! until it is served plus a draw from the serving phase's latency
//! distribution (one fixed draw per operation: the oracle picks the best
//! moment, it cannot make the provider answer faster); a failed one counts
//! the whole deadline.
//!
//! The *paced* oracle also keeps the storm bound the lab asks of every
//! client: no 100 ms window of the run (aligned to the provider's
//! [`BUCKET`]s) carries more requests than [`PACE`] × the operations issued
//! in it, rounded down (5 operations a window allow 7 requests). This is
//! exactly the check clients are held to (`peak_window_amplification` ≤
//! 1.5): an allowance carried from one window to the next (7, 8, 7, 8, …)
//! would let the oracle reach 1.6 in every other window. Once the run has stopped
//! issuing there is no rate to compare with, and the bound lifts (the
//! peak measure skips those windows too). It is the reference the
//! checks use: an oracle that sends every held operation at the instant of
//! recovery is not a bound any provider-protecting client can reach.
//!
//! The *learning* oracle ([`learning_oracle`]) keeps the pace and also
//! knows no more than the provider tells a client, which is what any real
//! client faces; it is the reference for latency (`p99`):
//!
//! - in a phase that fails a fraction of requests (`Errors503`, `Resets`),
//!   each request it sends is the provider's next arrival and fails on the
//!   provider's own draw for that arrival; the operation learns it when
//!   the answer comes (after the phase's latency draw, as the provider
//!   answers) and waits again, in its earliest-deadline place;
//! - after a phase that serves nothing (`Down`), it learns of the recovery
//!   from an answer: one request at the first instant of the healthy
//!   phase, and nothing more until that answer is back (the most generous
//!   probing any client could do);
//! - in a `RateLimited` phase it knows neither the allowance nor when the
//!   limit lifts: it sends what the pace allows until a request finds the
//!   provider's bucket empty; that request is answered `429` with the
//!   phase's `Retry-After`, which it honours for every operation (the
//!   provider-wide cooldown the lab asks of clients), and then it sends
//!   again. It learns that the limit lifted from a request beyond the
//!   allowance that is not refused: no client that honours `Retry-After`
//!   can learn it otherwise, since while the limit holds such a request is
//!   refused and pauses everything. (With the lab's bucket of one second's
//!   allowance and `Retry-After: 1`, the pause costs no throughput while
//!   the limit lasts: the bucket refills meanwhile. What it costs is at
//!   the end: a refusal just before the limit lifts keeps the backlog
//!   waiting for up to one `Retry-After` after it, which the clairvoyant
//!   oracle does not wait);
//! - it spaces its requests by its window's allowance (7 a window: one
//!   per 14 ms at the most), as a client must that does not know where the
//!   measure's 100 ms windows start;
//! - its requests take the provider's own draws (fault roll and latency)
//!   for their operation and place among its requests
//!   ([`draw_index`]), as the clients' do, so
//!   its latencies and the clients' come from the same luck (the
//!   clairvoyant oracles take one fixed latency draw per operation);
//! - in a `LateAnswers` phase, a request the provider answers late says
//!   nothing until an answer in time would have come (the phase's p99
//!   latency, the shortest wait that rules out most answers in time);
//!   then the operation resends, under its key, and the provider replays
//!   what it committed. No client can tell a late answer sooner, and none
//!   knows the phase's p99 exactly, so this oracle is, if anything, too
//!   good.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::provider::{draw_index, request_draws, Phase, Schedule, BUCKET};

/// The seed of the oracle's latency draws.
const LATENCY_SEED: u64 = 0x0_5ac1e;

use super::run::percentile;

/// The lab's deadline for every operation of every client.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The storm bound: requests per 100 ms window over operations issued in it.
pub const PACE: f64 = 1.5;

/// What the oracle achieves in one scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Oracle {
    /// Operations issued.
    pub operations: u64,
    /// Operations served inside their deadline.
    pub served: u64,
    /// `served / operations`.
    pub success_rate: f64,
    /// The 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
}

/// The oracle for `schedule` at `rate` operations per second; `paced` keeps
/// the [`PACE`] bound. Latencies come from a fixed seed: see
/// [`seeded_oracle`] for those of a provider's seed.
#[must_use]
pub fn oracle(schedule: &Schedule, rate: u32, paced: bool) -> Oracle {
    seeded_oracle(schedule, rate, paced, LATENCY_SEED)
}

/// [`oracle`], with each operation's latency the one a provider seeded
/// with `seed` draws for that operation's first request (see
/// [`draw_index`]): the latency every client's first attempt meets.
#[must_use]
pub fn seeded_oracle(schedule: &Schedule, rate: u32, paced: bool, seed: u64) -> Oracle {
    simulate(schedule, rate, paced, seed, false)
}

/// The learning oracle (see the module docs) for `schedule` at `rate`
/// operations per second, against a provider drawing its faults from
/// `seed`: paced, and knowing only what the provider's answers say.
#[must_use]
pub fn learning_oracle(schedule: &Schedule, rate: u32, seed: u64) -> Oracle {
    simulate(schedule, rate, true, seed, true)
}

/// What the learning oracle knows and waits for.
#[derive(Default)]
struct Learning {
    /// The pace window of the last send, and the requests sent in it.
    window: Option<u128>,
    window_sent: f64,
    /// When the last request was sent.
    last_send: Option<Duration>,
    /// Requests sent so far: the provider's arrival numbers.
    sent: u64,
    /// Requests sent so far per operation.
    tries: HashMap<u64, u64>,
    /// Operations the provider committed and answers late: a resend is
    /// answered with a replay, in time.
    committed: HashSet<u64>,
    /// Operations whose request failed, back in the queue at the instant
    /// their answer arrives: (instant, operation, issued at).
    answering: Vec<(Duration, u64, Duration)>,
    /// The phase whose recovery has been seen (or that needed none).
    seen: Option<usize>,
    /// Nothing is sent before this instant (a probe's answer, a cooldown).
    blind_until: Duration,
}

/// `true` when `phase` serves no request at all.
fn serves_nothing(phase: &Phase) -> bool {
    match *phase {
        Phase::Down => true,
        Phase::Errors503 { rate, .. } | Phase::Resets { rate, .. } => rate >= 1.0,
        Phase::LateAnswers { rate, .. } => rate >= 1.0,
        _ => false,
    }
}

fn simulate(schedule: &Schedule, rate: u32, paced: bool, seed: u64, learns: bool) -> Oracle {
    let mut learning = learns.then(Learning::default);
    let step = Duration::from_millis(1);
    let issued_for = schedule.duration();
    let operations = super::operations_for(issued_for, rate);
    let period = Duration::from_secs(1) / rate.max(1);
    let issue_at = |i: u64| period * u32::try_from(i).unwrap_or(u32::MAX);
    let window_of = |t: Duration| (t.as_millis() / BUCKET.as_millis()) as u64;
    // Operations issued per window, known in advance (open loop).
    let windows = window_of(issued_for + DEADLINE) as usize + 2;
    let mut issued_in = vec![0u32; windows];
    for i in 0..operations {
        issued_in[window_of(issue_at(i)) as usize] += 1;
    }

    let mut latencies = Vec::with_capacity(operations as usize);
    let mut waiting: VecDeque<(u64, Duration)> = VecDeque::new();
    let mut next = 0u64;
    let mut served = 0u64;
    let mut bucket: Option<(usize, f64)> = None; // (phase, tokens)
    let mut window = u64::MAX;
    let mut window_left = f64::INFINITY;
    let end = issued_for + DEADLINE;
    let mut t = Duration::ZERO;
    while t < end {
        while next < operations && issue_at(next) <= t {
            waiting.push_back((next, issue_at(next)));
            next += 1;
        }
        while waiting.front().is_some_and(|(_, at)| t >= *at + DEADLINE) {
            waiting.pop_front();
            latencies.push(DEADLINE);
        }
        if paced && window_of(t) != window {
            window = window_of(t);
            if t >= issued_for {
                // Nothing is issued any more: there is no rate to compare
                // with (the peak measure skips these windows too).
                window_left = f64::INFINITY;
            } else {
                // The same bound as the peak check: no window above
                // `PACE` × its operations, nothing carried over.
                window_left = (PACE * f64::from(issued_in[window as usize]) + 1e-9).floor();
            }
        }
        let index = schedule.phase_index_at(t);
        let phase = &schedule.phases()[index].1;
        if let Some(l) = learning.as_mut() {
            // Failed requests whose answers are back wait again, in their
            // earliest-deadline place (the queue is ordered by issue time).
            let mut i = 0;
            while i < l.answering.len() {
                if l.answering[i].0 <= t {
                    let (_, op, at) = l.answering.swap_remove(i);
                    let place = waiting.partition_point(|(o, _)| *o < op);
                    waiting.insert(place, (op, at));
                } else {
                    i += 1;
                }
            }
            while waiting.front().is_some_and(|(_, at)| t >= *at + DEADLINE) {
                waiting.pop_front();
                latencies.push(DEADLINE);
            }
        }
        let capacity = match *phase {
            Phase::Down => 0.0,
            Phase::Errors503 { rate, .. } | Phase::Resets { rate, .. } if rate >= 1.0 => 0.0,
            Phase::LateAnswers { rate, .. } if rate >= 1.0 => 0.0,
            Phase::RateLimited {
                allow_per_second, ..
            } => {
                let allow = f64::from(allow_per_second);
                let tokens = match bucket {
                    Some((phase, tokens)) if phase == index => {
                        (tokens + allow * step.as_secs_f64()).min(allow)
                    }
                    _ => allow,
                };
                bucket = Some((index, tokens));
                tokens.floor()
            }
            _ => f64::INFINITY,
        };
        if let Some(l) = learning.as_mut() {
            serve_learning(
                l,
                seed,
                schedule,
                index,
                t,
                &mut window_left,
                &mut bucket,
                &mut waiting,
                &mut latencies,
                &mut served,
            );
            t += step;
            continue;
        }
        let mut n = capacity.min(window_left).min(waiting.len() as f64) as usize;
        if n > 0 {
            if let (Phase::RateLimited { .. }, Some((_, tokens))) = (phase, bucket.as_mut()) {
                *tokens -= n as f64;
            }
            window_left -= n as f64;
            while n > 0 {
                let Some((op, at)) = waiting.pop_front() else {
                    break;
                };
                // The provider's latency for this operation's first
                // request, in the serving phase (the same on every run).
                let (_, took) = request_draws(seed, draw_index(0, Some((op, 0))), phase);
                latencies.push(t.saturating_sub(at) + took);
                served += 1;
                n -= 1;
            }
        }
        t += step;
    }
    latencies.extend(waiting.iter().map(|_| DEADLINE));
    if let Some(l) = &learning {
        latencies.extend(l.answering.iter().map(|_| DEADLINE));
    }
    latencies.sort_unstable();
    let ratio = if operations == 0 {
        0.0
    } else {
        served as f64 / operations as f64
    };
    Oracle {
        operations,
        served,
        success_rate: (ratio * 10_000.0).round() / 10_000.0,
        p99_ms: (percentile(&latencies, 0.99).as_secs_f64() * 10_000.0).round() / 10.0,
    }
}

/// One millisecond of the learning oracle: send what it may, as a client
/// that learns the provider from its answers (see the module docs).
#[allow(clippy::too_many_arguments)]
fn serve_learning(
    l: &mut Learning,
    seed: u64,
    schedule: &Schedule,
    index: usize,
    t: Duration,
    window_left: &mut f64,
    bucket: &mut Option<(usize, f64)>,
    waiting: &mut VecDeque<(u64, Duration)>,
    latencies: &mut Vec<Duration>,
    served: &mut u64,
) {
    let phases = schedule.phases();
    let phase = &phases[index].1;
    if serves_nothing(phase) || t < l.blind_until || waiting.is_empty() {
        return;
    }
    // The first instant of a phase after one that served nothing: one
    // request, and nothing else until its answer says the provider is back.
    let after_outage = index > 0 && serves_nothing(&phases[index - 1].1);
    let probing = after_outage && l.seen != Some(index);
    // It never knows whether a limit still holds: it sends whatever the
    // pace allows, and a refusal pauses it. Sends are spaced by the
    // window's allowance (7 a window: one per 14 ms at the most), as a
    // client must that does not know where the measure's windows start;
    // against a limit, a window's worth sent at its first instant would
    // also empty the provider's bucket before the bucket could refill.
    let window = t.as_millis() / BUCKET.as_millis();
    if l.window != Some(window) {
        l.window = Some(window);
        l.window_sent = 0.0;
    }
    let mut n = *window_left;
    if n.is_finite() {
        let allow = n + l.window_sent;
        let spacing = BUCKET.div_f64(allow.max(1.0));
        if l.last_send.is_some_and(|last| t < last + spacing) {
            return;
        }
        // At most the allowance's share of one millisecond.
        n = n.min((allow / BUCKET.as_millis() as f64).ceil());
    }
    if probing {
        n = n.min(1.0);
    }
    let mut n = n.min(waiting.len() as f64).max(0.0) as usize;
    while n > 0 {
        let Some((op, at)) = waiting.pop_front() else {
            break;
        };
        n -= 1;
        *window_left -= 1.0;
        l.window_sent += 1.0;
        l.last_send = Some(t);
        let arrival = l.sent;
        l.sent += 1;
        // The provider's draw for this operation's next request, as the
        // clients meet it (the same operation numbers, from 0).
        let tries = l.tries.entry(op).or_insert(0);
        let draw = draw_index(arrival, Some((op, *tries)));
        *tries += 1;
        let (roll, answer_after) = request_draws(seed, draw, phase);
        // When the operation learns that this request did not serve it,
        // and waits again.
        let back_at = match *phase {
            Phase::Errors503 { rate, .. } | Phase::Resets { rate, .. } if roll < rate => {
                Some(t + answer_after)
            }
            // A late answer: nothing says so but the wait. The soonest a
            // client can tell is when an answer in time would have come
            // (the phase's p99; not before the provider committed, which
            // a resend would only meet as "in progress"); then it resends,
            // under the same key, and the provider replays what it
            // committed, in time.
            Phase::LateAnswers { rate, latency, .. } if roll < rate && l.committed.insert(op) => {
                Some(t + latency.p99.max(answer_after))
            }
            Phase::RateLimited { retry_after, .. } => {
                let tokens = bucket.as_mut().map_or(0.0, |(_, tokens)| *tokens);
                if tokens >= 1.0 {
                    if let Some((_, tokens)) = bucket.as_mut() {
                        *tokens -= 1.0;
                    }
                    None
                } else {
                    // Refused: the 429's Retry-After pauses every operation.
                    l.blind_until = t + answer_after + retry_after;
                    n = 0;
                    Some(t + answer_after)
                }
            }
            _ => None,
        };
        if let Some(back_at) = back_at {
            l.answering.push((back_at, op, at));
            continue;
        }
        // The provider's own draw for this arrival, as the clients meet it.
        let took = answer_after;
        latencies.push(t.saturating_sub(at) + took);
        *served += 1;
        if probing {
            l.seen = Some(index);
            l.blind_until = t + took;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{scenario, seeded_scenario, Latency, SCENARIOS};
    use crate::provider::{Phase, Schedule};

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_unpaced_oracle_serves_everything_the_schedules_allow() {
        // Every incident of every schedule is shorter than the deadline and
        // followed by healthy time: every operation is achievable.
        for name in SCENARIOS {
            for quick in [true, false] {
                for seed in [42, 7, 1, 2026] {
                    let s = seeded_scenario(name, quick, seed).unwrap();
                    let o = oracle(&s, 50, false);
                    assert_eq!(o.served, o.operations, "{name} quick={quick} seed={seed}");
                }
            }
        }
    }

    #[test]
    fn a_down_phase_longer_than_the_deadline_loses_what_cannot_wait() {
        let s = Schedule::new(
            Duration::from_secs(10),
            vec![
                (Duration::ZERO, Phase::healthy()),
                (Duration::from_secs(1), Phase::Down),
                (Duration::from_secs(8), Phase::healthy()),
            ],
        );
        let o = oracle(&s, 10, false);
        // Issued in [1 s, 3 s] expire by 8 s (the deadline is exclusive):
        // 21 of 100 lost.
        assert_eq!(o.operations, 100);
        assert_eq!(o.served, 79);
        assert_eq!(o.p99_ms, 5000.0);
    }

    #[test]
    fn a_rate_limited_phase_serves_its_bucket_earliest_deadline_first() {
        // 10 ops/s for 10 s; 2 s in, a phase allowing 2/s for longer than
        // the deadline: its bucket (2, full at the start) and refill serve
        // the oldest waiting operations first.
        let s = Schedule::new(
            Duration::from_secs(10),
            vec![
                (Duration::ZERO, Phase::healthy()),
                (
                    Duration::from_secs(2),
                    Phase::RateLimited {
                        allow_per_second: 2,
                        retry_after: Duration::from_secs(1),
                        latency: Latency::fixed(ms(10)),
                    },
                ),
            ],
        );
        let o = oracle(&s, 10, false);
        // 20 before the phase, then 2 + 2 × 13 s of refill (until the
        // last deadline at 14.9 s) at most, and no more than were issued.
        assert_eq!(o.served, 20 + 2 + 25);
    }

    #[test]
    fn the_pace_bounds_every_window() {
        // Down for 3.5 s: 175 operations wait; afterwards the paced oracle
        // releases them oldest first at 7 (1.5 × 5, rounded down) per
        // 100 ms while new ones keep coming. It catches up 0.4 s of backlog
        // per second, faster than deadlines pass, so every operation is
        // still served; only later.
        let s = Schedule::new(
            Duration::from_secs(10),
            vec![
                (Duration::ZERO, Phase::healthy()),
                (Duration::from_secs(1), Phase::Down),
                (Duration::from_millis(4500), Phase::healthy()),
            ],
        );
        let unpaced = oracle(&s, 50, false);
        let paced = oracle(&s, 50, true);
        assert_eq!(unpaced.served, unpaced.operations);
        assert_eq!(paced.served, paced.operations, "{paced:?}");
        assert!(paced.p99_ms >= unpaced.p99_ms, "{paced:?} {unpaced:?}");
        // An outage longer than the deadline loses what cannot wait, and
        // the pace loses nothing more: released oldest first at 1.4 × the
        // arrival rate, the backlog's oldest issue time advances 1.4 s per
        // second while deadlines pass at 1 s per second.
        let long = Schedule::new(
            Duration::from_secs(12),
            vec![
                (Duration::ZERO, Phase::healthy()),
                (Duration::from_secs(1), Phase::Down),
                (Duration::from_secs(7), Phase::healthy()),
            ],
        );
        let unpaced = oracle(&long, 50, false);
        let paced = oracle(&long, 50, true);
        assert_eq!(paced.served, unpaced.served, "{paced:?} {unpaced:?}");
        assert!(unpaced.served < unpaced.operations);
        assert!(paced.p99_ms >= unpaced.p99_ms);
        // Healthy throughout: the pace never binds.
        let healthy = scenario("healthy", true).unwrap();
        assert_eq!(oracle(&healthy, 50, true).served, 250);
        // ... and its p99 is the provider's own (150 ms for the typical latency).
        let p99 = oracle(&healthy, 50, true).p99_ms;
        assert!((110.0..=190.0).contains(&p99), "{p99}");
    }

    #[test]
    fn the_learning_oracle_serves_what_the_paced_one_does_but_later() {
        // It knows less, so it is never faster; with these schedules it
        // still serves every operation.
        for name in SCENARIOS {
            for seed in [42, 7, 1, 2026] {
                let s = seeded_scenario(name, true, seed).unwrap();
                let paced = seeded_oracle(&s, 50, true, seed);
                let learning = learning_oracle(&s, 50, seed);
                assert_eq!(learning.served, paced.served, "{name} seed={seed}");
                assert!(
                    learning.p99_ms + 1e-9 >= paced.p99_ms,
                    "{name} seed={seed}: {learning:?} {paced:?}"
                );
            }
        }
        // Where the provider tells nothing new, it is the paced oracle.
        let healthy = scenario("healthy", true).unwrap();
        assert_eq!(
            learning_oracle(&healthy, 50, 3),
            seeded_oracle(&healthy, 50, true, 3)
        );
    }

    #[test]
    fn a_429_costs_the_learning_oracle_its_retry_after() {
        // 10 ops/s; from 1 s to 3 s a phase allowing 5/s with Retry-After
        // 1 s. The clairvoyant oracle spends the bucket (5) and then 5/s;
        // the learning one spends the bucket, is refused, and pauses 1 s
        // for every operation each time (the bucket refills meanwhile, up
        // to its 5): its tail is later by a good part of that second.
        let s = Schedule::new(
            Duration::from_secs(6),
            vec![
                (Duration::ZERO, Phase::healthy()),
                (
                    Duration::from_secs(1),
                    Phase::RateLimited {
                        allow_per_second: 5,
                        retry_after: Duration::from_secs(1),
                        latency: Latency::fixed(ms(10)),
                    },
                ),
                (Duration::from_secs(3), Phase::healthy()),
            ],
        );
        let paced = oracle(&s, 10, true);
        let learning = learning_oracle(&s, 10, 1);
        assert_eq!(learning.served, paced.served);
        assert!(
            learning.p99_ms >= paced.p99_ms + 300.0,
            "{learning:?} {paced:?}"
        );
    }

    #[test]
    fn the_learning_oracle_learns_that_a_limit_lifted_only_from_answers() {
        // 50 ops/s; from 1 s a phase allowing 20/s (bucket 20) with
        // Retry-After 1 s. Sending 5 a window, the bucket is empty near
        // 1.67 s: that request is refused and pauses everything until near
        // 2.7 s. If the limit lifts at 1.75 s, the clairvoyant oracle
        // drains the backlog from then on; the learning one cannot know
        // before its pause ends, a second of backlog later.
        let limited = |until_ms| {
            Schedule::new(
                Duration::from_secs(5),
                vec![
                    (Duration::ZERO, Phase::healthy()),
                    (
                        Duration::from_secs(1),
                        Phase::RateLimited {
                            allow_per_second: 20,
                            retry_after: Duration::from_secs(1),
                            latency: Latency::fixed(ms(10)),
                        },
                    ),
                    (ms(until_ms), Phase::healthy()),
                ],
            )
        };
        let lifts_in_pause = limited(1750);
        let paced = oracle(&lifts_in_pause, 50, true);
        let learning = learning_oracle(&lifts_in_pause, 50, 1);
        assert_eq!(learning.served, paced.served);
        assert!(
            learning.p99_ms >= paced.p99_ms + 700.0,
            "{learning:?} {paced:?}"
        );
        // Lifting before the bucket runs out, the limit costs it nothing.
        let lifts_early = limited(1500);
        assert_eq!(
            learning_oracle(&lifts_early, 50, 1).p99_ms,
            learning_oracle(&scenario("healthy", true).unwrap(), 50, 1).p99_ms
        );
    }

    #[test]
    fn failed_requests_and_recoveries_cost_the_learning_oracle_time() {
        // A 503 burst failing every other request: some operations need a
        // second request, after the first one's answer.
        let burst = Schedule::new(
            Duration::from_secs(4),
            vec![
                (Duration::ZERO, Phase::healthy()),
                (
                    Duration::from_secs(1),
                    Phase::Errors503 {
                        rate: 0.5,
                        latency: Latency::fixed(ms(100)),
                    },
                ),
                (Duration::from_secs(3), Phase::healthy()),
            ],
        );
        let paced = oracle(&burst, 50, true);
        let learning = learning_oracle(&burst, 50, 9);
        assert_eq!(learning.served, learning.operations);
        assert!(
            learning.p99_ms > paced.p99_ms + 100.0,
            "{learning:?} {paced:?}"
        );
        // After an outage it learns of the recovery from one answer: the
        // backlog starts draining one answer later than the clairvoyant's.
        let outage = Schedule::new(
            Duration::from_secs(4),
            vec![
                (Duration::ZERO, Phase::healthy()),
                (Duration::from_secs(1), Phase::Down),
                (
                    Duration::from_secs(2),
                    Phase::Healthy {
                        latency: Latency::fixed(ms(200)),
                    },
                ),
            ],
        );
        let paced = oracle(&outage, 50, true);
        let learning = learning_oracle(&outage, 50, 9);
        assert_eq!(learning.served, paced.served);
        assert!(learning.p99_ms > paced.p99_ms, "{learning:?} {paced:?}");
    }
}
