//! What the provider does, and when: phases, latency distributions,
//! schedules and the named scenarios of the outage lab.

use std::time::Duration;

use super::rng::SplitMix64;

/// A latency distribution given by its median and 99th percentile.
///
/// Samples come from a log-normal distribution with that median and p99
/// (the usual shape of service latencies: most calls near the median, a long
/// tail to the right), capped at four times the p99 so one unlucky draw
/// cannot stall a scenario. [`Latency::fixed`] always answers the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Half the requests take less than this.
    pub median: Duration,
    /// 99 % of the requests take less than this.
    pub p99: Duration,
}

/// The 99th percentile of the standard normal distribution.
const Z_99: f64 = 2.326_347_874;

impl Latency {
    /// A distribution with this median and 99th percentile. A `p99` below
    /// the median is taken as the median (a fixed latency).
    #[must_use]
    pub const fn new(median: Duration, p99: Duration) -> Self {
        Self { median, p99 }
    }

    /// Always `d`.
    #[must_use]
    pub const fn fixed(d: Duration) -> Self {
        Self { median: d, p99: d }
    }

    /// A typical healthy payments API seen from the same region: 40 ms
    /// median, 150 ms p99.
    #[must_use]
    pub const fn typical() -> Self {
        Self::new(Duration::from_millis(40), Duration::from_millis(150))
    }

    /// One sample, drawn from `rng`.
    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> Duration {
        // Draw the normal variate even for a fixed latency, so that the
        // random stream of a request does not depend on the phase's numbers.
        let z = rng.standard_normal();
        let median = self.median.as_secs_f64();
        let p99 = self.p99.as_secs_f64();
        if median <= 0.0 || p99 <= median {
            return self.median;
        }
        let sigma = (p99 / median).ln() / Z_99;
        let secs = (median * (sigma * z).exp()).min(4.0 * p99);
        Duration::from_secs_f64(secs)
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::typical()
    }
}

/// What the provider does during one window of time.
///
/// Faults marked "before any effect" are decided when the request arrives
/// and answered without processing it: no charge or call is created, and an
/// `Idempotency-Key` is neither claimed nor consumed. Which requests fail is
/// drawn from a random stream seeded by the server's seed and the request's
/// arrival number, so a run is repeatable as far as arrival order allows.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Every request is processed, after a latency drawn from `latency`.
    Healthy {
        /// The response time.
        latency: Latency,
    },
    /// A fraction `rate` of the requests is answered `503 Service
    /// Unavailable` after `latency`, before any effect; the rest are
    /// processed normally.
    Errors503 {
        /// The fraction of requests answered 503, in `[0, 1]`.
        rate: f64,
        /// The response time (of the 503s and of the processed requests).
        latency: Latency,
    },
    /// Requests over `allow_per_second` (a token bucket holding one second's
    /// allowance, full when the phase starts) are answered `429 Too Many
    /// Requests` with a `Retry-After` header of `retry_after` in
    /// delta-seconds, rounded up to whole seconds, before any effect.
    RateLimited {
        /// The allowance, in requests per second.
        allow_per_second: u32,
        /// The wait announced in `Retry-After` (rounded up to whole seconds).
        retry_after: Duration,
        /// The response time.
        latency: Latency,
    },
    /// The provider is down. A live listener cannot refuse connections, so
    /// this phase answers every request at once with `503 Service
    /// Unavailable` (what a load balancer with no healthy backend answers,
    /// which is what clients of a hosted API see during an outage), before
    /// any effect. Like a refused connection, it is fast and certainly had
    /// no effect, so clients classify it as transient.
    Down,
    /// A fraction `rate` of the requests has its connection dropped (TCP
    /// reset) after `latency`, before any effect. The client cannot tell
    /// whether the request was acted on: the outcome is unknown to it.
    Resets {
        /// The fraction of requests reset, in `[0, 1]`.
        rate: f64,
        /// When the reset (or the normal answer) happens.
        latency: Latency,
    },
    /// A fraction `rate` of the requests that create something is processed
    /// (the side effect is committed, and stored under its
    /// `Idempotency-Key`), and then answered only after a further `delay`:
    /// the provider's call to a downstream system hangs after the commit.
    /// With `delay` longer than the client's timeout, the client gives up on
    /// a request that did take effect. Reads, and replays of a stored
    /// idempotency key, never touch that downstream system and answer
    /// normally.
    LateAnswers {
        /// The fraction of creating requests answered late, in `[0, 1]`.
        rate: f64,
        /// The extra delay after the commit.
        delay: Duration,
        /// The response time before the commit.
        latency: Latency,
    },
}

impl Phase {
    /// A short name for legends and logs: `healthy`, `errors_503`,
    /// `rate_limited`, `down`, `resets`, `late_answers`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Healthy { .. } => "healthy",
            Self::Errors503 { .. } => "errors_503",
            Self::RateLimited { .. } => "rate_limited",
            Self::Down => "down",
            Self::Resets { .. } => "resets",
            Self::LateAnswers { .. } => "late_answers",
        }
    }

    /// The phase's response-time distribution (zero for [`Phase::Down`]).
    #[must_use]
    pub const fn latency(&self) -> Latency {
        match self {
            Self::Healthy { latency }
            | Self::Errors503 { latency, .. }
            | Self::RateLimited { latency, .. }
            | Self::Resets { latency, .. }
            | Self::LateAnswers { latency, .. } => *latency,
            Self::Down => Latency::fixed(Duration::ZERO),
        }
    }

    /// Healthy with the [typical](Latency::typical) latency.
    #[must_use]
    pub const fn healthy() -> Self {
        Self::Healthy {
            latency: Latency::typical(),
        }
    }
}

/// A timeline of phases: phase `i` runs from its offset until the next
/// phase's offset, and the last one until the end of the schedule (and
/// beyond: a provider outliving its schedule stays in the last phase).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    total: Duration,
    phases: Vec<(Duration, Phase)>,
}

impl Schedule {
    /// A schedule lasting `total`, with `phases` given as `(offset, phase)`.
    ///
    /// The phases are sorted by offset. Before the first offset the first
    /// phase applies; an empty list means healthy throughout, with the
    /// [typical](Latency::typical) latency.
    #[must_use]
    pub fn new(total: Duration, mut phases: Vec<(Duration, Phase)>) -> Self {
        phases.sort_by_key(|(offset, _)| *offset);
        if phases.is_empty() {
            phases.push((Duration::ZERO, Phase::healthy()));
        }
        Self { total, phases }
    }

    /// One phase for the whole of `total`.
    #[must_use]
    pub fn constant(total: Duration, phase: Phase) -> Self {
        Self::new(total, vec![(Duration::ZERO, phase)])
    }

    /// The index (into [`phases`](Self::phases)) of the phase running at
    /// `elapsed` since the start.
    #[must_use]
    pub fn phase_index_at(&self, elapsed: Duration) -> usize {
        self.phases
            .partition_point(|(offset, _)| *offset <= elapsed)
            .saturating_sub(1)
    }

    /// The phase running at `elapsed` since the start.
    #[must_use]
    pub fn phase_at(&self, elapsed: Duration) -> &Phase {
        &self.phases[self.phase_index_at(elapsed)].1
    }

    /// The schedule's length.
    #[must_use]
    pub const fn duration(&self) -> Duration {
        self.total
    }

    /// The phases, as `(offset, phase)`, sorted by offset.
    #[must_use]
    pub fn phases(&self) -> &[(Duration, Phase)] {
        &self.phases
    }
}

/// The named scenarios of the outage lab, in presentation order.
pub const SCENARIOS: [&str; 7] = [
    "healthy",
    "latency_spike",
    "burst_503",
    "storm_429",
    "outage",
    "late_answers",
    "flapping",
];

/// The allowance of [`scenario`]`("storm_429")`, in requests per second.
pub const STORM_ALLOW_PER_SECOND: u32 = 20;

/// The schedule of a named scenario (one of [`SCENARIOS`]), about 12 s
/// long, or about 5 s when `quick`. `None` for an unknown name.
///
/// Every scenario starts and ends healthy, with the
/// [typical](Latency::typical) latency (40 ms median, 150 ms p99), so each
/// run shows the incident and the recovery:
///
/// | name | the incident (middle of the run) |
/// |---|---|
/// | `healthy` | none |
/// | `latency_spike` | latency 350 ms median, 1.5 s p99: about a quarter of the requests outlast a 500 ms timeout, and are still processed |
/// | `burst_503` | 30 % of the requests answered 503 |
/// | `storm_429` | an allowance of [`STORM_ALLOW_PER_SECOND`] requests per second, `Retry-After: 1` |
/// | `outage` | [`Phase::Down`], then recovery |
/// | `late_answers` | 30 % of the charges committed, then answered 1.5 s late |
/// | `flapping` | healthy and [`Phase::Down`] alternating every 1–2 s (0.6–1.2 s when quick) |
///
/// These are the nominal schedules; the lab runs [`seeded_scenario`], which
/// moves each incident by the seed.
#[must_use]
pub fn scenario(name: &str, quick: bool) -> Option<Schedule> {
    build(name, quick, &mut Jitter::none())
}

/// The schedule of a named scenario as the lab runs it for `seed`: the
/// nominal one ([`scenario`]) with each incident's start and length moved
/// by up to ±20 % (flapping's steps each move by up to ±20 %), and the
/// storm's allowance drawn in 15–25 requests per second. The same seed
/// gives the same schedule; every schedule still starts healthy and ends
/// with at least [`HEALTHY_TAIL`] of healthy time, so recovery is seen.
#[must_use]
pub fn seeded_scenario(name: &str, quick: bool, seed: u64) -> Option<Schedule> {
    let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    build(name, quick, &mut Jitter::new(seed ^ salt))
}

/// The healthy time every schedule keeps at its end.
pub const HEALTHY_TAIL: Duration = Duration::from_millis(1200);

/// The seed's draws for one scenario (none for the nominal schedules).
struct Jitter(Option<SplitMix64>);

impl Jitter {
    const fn none() -> Self {
        Self(None)
    }

    const fn new(seed: u64) -> Self {
        Self(Some(SplitMix64::new(seed)))
    }

    /// A factor in `[1 − spread, 1 + spread]` (1 for the nominal schedule).
    fn factor(&mut self, spread: f64) -> f64 {
        self.0
            .as_mut()
            .map_or(1.0, |rng| 1.0 + spread * (2.0 * rng.unit() - 1.0))
    }

    /// The storm's allowance: 15–25 requests per second (20 nominal).
    fn allowance(&mut self) -> u32 {
        self.0.as_mut().map_or(STORM_ALLOW_PER_SECOND, |rng| {
            15 + u32::try_from(rng.next_u64() % 11).unwrap_or(0)
        })
    }
}

fn build(name: &str, quick: bool, jitter: &mut Jitter) -> Option<Schedule> {
    let total = if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(12)
    };
    let at = |fraction: f64| total.mul_f64(fraction);
    let healthy = Phase::healthy;
    let latest_end = total.saturating_sub(HEALTHY_TAIL);
    let incident = |jitter: &mut Jitter, from: f64, to: f64, phase: Phase| {
        let start = at(from).mul_f64(jitter.factor(0.2));
        let length = (at(to) - at(from)).mul_f64(jitter.factor(0.2));
        // A pause the provider announces outlasts the phase: keep the
        // healthy tail after it.
        let announced = match phase {
            Phase::RateLimited { retry_after, .. } => retry_after,
            _ => Duration::ZERO,
        };
        let end = (start + length).min(latest_end.saturating_sub(announced));
        Schedule::new(
            total,
            vec![
                (Duration::ZERO, healthy()),
                (start, phase),
                (end, healthy()),
            ],
        )
    };
    let schedule = match name {
        "healthy" => Schedule::constant(total, healthy()),
        "latency_spike" => incident(
            jitter,
            0.25,
            0.7,
            Phase::Healthy {
                latency: Latency::new(Duration::from_millis(350), Duration::from_millis(1500)),
            },
        ),
        "burst_503" => incident(
            jitter,
            0.25,
            0.55,
            Phase::Errors503 {
                rate: 0.3,
                latency: Latency::typical(),
            },
        ),
        "storm_429" => {
            let allow_per_second = jitter.allowance();
            incident(
                jitter,
                0.2,
                0.7,
                Phase::RateLimited {
                    allow_per_second,
                    retry_after: Duration::from_secs(1),
                    latency: Latency::typical(),
                },
            )
        }
        "outage" => incident(jitter, 0.25, 0.6, Phase::Down),
        "late_answers" => incident(
            jitter,
            0.2,
            0.7,
            Phase::LateAnswers {
                rate: 0.3,
                delay: Duration::from_millis(1500),
                latency: Latency::typical(),
            },
        ),
        "flapping" => flapping(total, quick, jitter),
        _ => return None,
    };
    Some(schedule)
}

/// Healthy and down, alternating in uneven steps, ending healthy.
fn flapping(total: Duration, quick: bool, jitter: &mut Jitter) -> Schedule {
    let steps_ms: &[u64] = if quick {
        &[1000, 600, 800, 700, 1200, 600]
    } else {
        &[1500, 1000, 2000, 1200, 1800, 1000, 1500, 1300]
    };
    let mut phases = Vec::new();
    let mut offset = Duration::ZERO;
    let latest_end = total.saturating_sub(HEALTHY_TAIL);
    for (i, step) in steps_ms.iter().enumerate() {
        let down = i % 2 == 1;
        let step = Duration::from_millis(*step).mul_f64(jitter.factor(0.2));
        if down && offset + step > latest_end {
            break; // no room left for this outage and a healthy tail
        }
        let phase = if down { Phase::Down } else { Phase::healthy() };
        phases.push((offset, phase));
        offset += step;
    }
    // Whatever remains of the run is healthy again.
    if phases
        .last()
        .is_some_and(|(_, phase)| *phase == Phase::Down)
    {
        phases.push((offset, Phase::healthy()));
    }
    Schedule::new(total, phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_at_follows_offsets() {
        let s = Schedule::new(
            Duration::from_secs(3),
            vec![
                (Duration::from_secs(1), Phase::Down),
                (Duration::ZERO, Phase::healthy()),
                (Duration::from_secs(2), Phase::healthy()),
            ],
        );
        assert_eq!(s.phase_at(Duration::ZERO).name(), "healthy");
        assert_eq!(s.phase_at(Duration::from_millis(999)).name(), "healthy");
        assert_eq!(s.phase_at(Duration::from_secs(1)).name(), "down");
        assert_eq!(s.phase_at(Duration::from_millis(1999)).name(), "down");
        assert_eq!(s.phase_at(Duration::from_secs(2)).name(), "healthy");
        assert_eq!(s.phase_at(Duration::from_secs(60)).name(), "healthy");
        assert_eq!(s.duration(), Duration::from_secs(3));
        assert_eq!(s.phase_index_at(Duration::from_millis(1500)), 1);
    }

    #[test]
    fn before_the_first_offset_the_first_phase_applies() {
        let s = Schedule::new(
            Duration::from_secs(2),
            vec![(Duration::from_secs(1), Phase::Down)],
        );
        assert_eq!(s.phase_at(Duration::ZERO).name(), "down");
        let empty = Schedule::new(Duration::from_secs(1), Vec::new());
        assert_eq!(empty.phase_at(Duration::ZERO).name(), "healthy");
    }

    #[test]
    fn every_scenario_exists_and_has_the_right_length() {
        for name in SCENARIOS {
            let normal = scenario(name, false).expect(name);
            let quick = scenario(name, true).expect(name);
            assert_eq!(normal.duration(), Duration::from_secs(12), "{name}");
            assert_eq!(quick.duration(), Duration::from_secs(5), "{name}");
            for s in [&normal, &quick] {
                assert_eq!(s.phase_at(Duration::ZERO).name(), "healthy", "{name}");
                let last = s.phases().last().unwrap();
                assert!(last.0 < s.duration(), "{name}: last phase starts in time");
                assert_eq!(last.1.name(), "healthy", "{name} ends healthy");
            }
        }
        assert!(scenario("nope", false).is_none());
        let outage = scenario("outage", false).unwrap();
        assert_eq!(outage.phase_at(Duration::from_secs(5)).name(), "down");
    }

    #[test]
    fn flapping_alternates_every_one_to_two_seconds() {
        let s = scenario("flapping", false).unwrap();
        let phases = s.phases();
        assert!(phases.len() >= 6);
        for pair in phases.windows(2) {
            assert_ne!(pair[0].1.name(), pair[1].1.name());
            let step = pair[1].0 - pair[0].0;
            assert!(step >= Duration::from_secs(1) && step <= Duration::from_secs(2));
        }
    }

    #[test]
    fn latency_samples_match_median_and_p99() {
        let latency = Latency::new(Duration::from_millis(40), Duration::from_millis(150));
        let mut rng = SplitMix64::new(7);
        let mut samples: Vec<Duration> = (0..20_000).map(|_| latency.sample(&mut rng)).collect();
        samples.sort();
        let median = samples[samples.len() / 2].as_secs_f64();
        let p99 = samples[samples.len() * 99 / 100].as_secs_f64();
        assert!((median - 0.040).abs() < 0.003, "median {median}");
        assert!((p99 - 0.150).abs() < 0.020, "p99 {p99}");
        let fixed = Latency::fixed(Duration::from_millis(5));
        assert_eq!(fixed.sample(&mut rng), Duration::from_millis(5));
    }
}
