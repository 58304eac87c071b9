//! Driving the clients against the provider: one open-loop run per
//! (scenario, client).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clients::lab::{reset_shared_state, LabClient, Variant};
use crate::provider::{
    seeded_scenario, Bucket, Phase, ProviderServer, ProviderStats, Schedule, SCENARIOS,
};

use super::oracle::{learning_oracle, seeded_oracle, Oracle, DEADLINE};

/// The default rate of logical operations, per second.
pub const DEFAULT_RATE: u32 = 50;
/// The default seed: the same seed gives the same schedules and the same
/// fault decisions.
pub const DEFAULT_SEED: u64 = 42;
/// How long a run waits, after its last operation was issued, for the
/// operations still in flight. Every client gives up on an operation well
/// before this (the buttress and tower clients' deadline is 5 s, the naive client's
/// four 500 ms attempts take at most 2.3 s); an operation still running then
/// is counted as a failure and abandoned.
pub const STRAGGLER_WAIT: Duration = Duration::from_secs(6);
/// The highest accepted `rate`.
pub const MAX_RATE: u32 = 1000;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// Scenario names (each one of [`SCENARIOS`]), in order.
    pub scenarios: Vec<String>,
    /// The clients to compare.
    pub clients: Vec<Variant>,
    /// Logical operations issued per second, whatever the completions.
    pub rate: u32,
    /// Seed of the provider's fault decisions.
    pub seed: u64,
    /// The ~5 s schedules instead of the ~12 s ones.
    pub quick: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            scenarios: SCENARIOS.iter().map(|s| (*s).to_owned()).collect(),
            clients: Variant::ALL.to_vec(),
            rate: DEFAULT_RATE,
            seed: DEFAULT_SEED,
            quick: false,
        }
    }
}

impl LabOptions {
    /// The default options with the quick schedules.
    #[must_use]
    pub fn quick() -> Self {
        Self {
            quick: true,
            ..Self::default()
        }
    }

    /// Only these scenarios.
    #[must_use]
    pub fn with_scenarios(mut self, scenarios: &[&str]) -> Self {
        self.scenarios = scenarios.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Check the options and resolve the scenarios' schedules.
    ///
    /// # Errors
    /// An unknown scenario name, no client, or a rate of 0 or above [`MAX_RATE`].
    pub fn schedules(&self) -> Result<Vec<(String, Schedule)>, LabError> {
        if self.rate == 0 || self.rate > MAX_RATE {
            return Err(LabError::Rate(self.rate));
        }
        if self.clients.is_empty() || self.scenarios.is_empty() {
            return Err(LabError::Nothing);
        }
        self.scenarios
            .iter()
            .map(|name| {
                seeded_scenario(name, self.quick, self.seed)
                    .map(|s| (name.clone(), s))
                    .ok_or_else(|| LabError::UnknownScenario(name.clone()))
            })
            .collect()
    }
}

/// One row of the scorecard: exactly the fields of the JSON output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// The scenario's name.
    pub scenario: String,
    /// The client: `buttress`, `tower`, `naive` or `none`.
    pub client: String,
    /// Logical operations issued (each one charge the caller wanted made).
    pub logical_requests: u64,
    /// Requests the provider received, retries included.
    pub provider_calls: u64,
    /// `provider_calls / logical_requests`: the load the client put on the
    /// provider per operation.
    pub amplification: f64,
    /// Fraction of logical operations that succeeded, in `[0, 1]`.
    pub success_rate: f64,
    /// Median latency of a logical operation, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency of a logical operation, in milliseconds.
    pub p99_ms: f64,
    /// Extra side effects: operations the provider carried out more than once.
    pub duplicates: u64,
    /// Times the client's circuit breaker opened.
    pub breaker_opens: u64,
    /// `provider_calls / logical_requests` during the incident only
    /// (requests received then, per operation issued then); `None` without
    /// an incident.
    pub incident_amplification: Option<f64>,
    /// The highest requests ÷ operations issued over any 100 ms window from
    /// each incident's start to 1 s after its end; `None` without an
    /// incident.
    pub peak_window_amplification: Option<f64>,
    /// The worst incident's recovery: from the later of its end and the
    /// expiry of the last `Retry-After` sent to this client, until the
    /// client's `2xx` answers stay at 90 % of the offered rate per 100 ms
    /// for 500 ms. `None` without an incident.
    pub recovery_ms: Option<f64>,
    /// `429` answers the provider gave this client.
    pub provider_429s: u64,
    /// `success_rate` ÷ the paced oracle's (see [`super::oracle`]); `None`
    /// for the oracle rows.
    pub oracle_success_rate: Option<f64>,
    /// The paced oracle's p99 latency, in milliseconds.
    pub oracle_p99_ms: f64,
    /// The learning oracle's p99 latency, in milliseconds: the reference
    /// of the latency check (see [`super::oracle::learning_oracle`]).
    pub learning_oracle_p99_ms: f64,
}

/// One completed (or abandoned) logical operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was issued, since the start of the run.
    pub issued: Duration,
    /// How long it took (until abandoned, for an operation that never finished).
    pub latency: Duration,
    /// Whether it succeeded.
    pub ok: bool,
    /// Whether the client refused it locally, without calling the provider.
    pub rejected_locally: bool,
    /// Whether it was still running when the run ended.
    pub abandoned: bool,
}

/// Everything measured in one (scenario, client) run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The scorecard row.
    pub score: Score,
    /// Requests that came back before the `Retry-After` they were given.
    pub retry_after_violations: u64,
    /// Operations refused locally (breaker open, budget or limiter).
    pub rejected_locally: u64,
    /// Operations still running when the run ended.
    pub abandoned: u64,
    /// The provider's load, per 100 ms.
    pub timeline: Vec<Bucket>,
    /// Every logical operation, in issue order.
    pub samples: Vec<Sample>,
}

/// A run's results for the plots: one scenario, every client.
#[derive(Debug, Clone)]
pub struct ScenarioRuns {
    /// The scenario's name.
    pub scenario: String,
    /// Its schedule.
    pub schedule: Schedule,
    /// One result per client, in the order asked.
    pub runs: Vec<RunResult>,
    /// The paced oracle: the reference of the checks.
    pub oracle: Oracle,
    /// The oracle without the storm bound.
    pub oracle_unpaced: Oracle,
    /// The paced oracle that knows only what the provider's answers say:
    /// the reference of the latency check.
    pub oracle_learning: Oracle,
}

/// Why the lab could not run.
#[derive(Debug)]
pub enum LabError {
    /// Not one of [`SCENARIOS`].
    UnknownScenario(String),
    /// Not `buttress`, `tower`, `naive` or `none`.
    UnknownClient(String),
    /// Rate out of range.
    Rate(u32),
    /// No scenario or no client.
    Nothing,
    /// The provider could not start.
    Provider(std::io::Error),
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::UnknownScenario(name) => write!(
                f,
                "unknown scenario `{name}`; the scenarios are: {}",
                SCENARIOS.join(", ")
            ),
            LabError::UnknownClient(name) => write!(
                f,
                "unknown client `{name}`; the clients are: {}",
                Variant::ALL.map(Variant::name).join(", ")
            ),
            LabError::Rate(rate) => write!(
                f,
                "rate must be between 1 and {MAX_RATE} operations per second, got {rate}"
            ),
            LabError::Nothing => write!(f, "nothing to run: no scenario or no client selected"),
            LabError::Provider(e) => write!(f, "the provider could not start on 127.0.0.1: {e}"),
        }
    }
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LabError::Provider(e) => Some(e),
            _ => None,
        }
    }
}

/// Parse a client name.
///
/// # Errors
/// [`LabError::UnknownClient`].
pub fn parse_client(name: &str) -> Result<Variant, LabError> {
    Variant::from_str(name).map_err(|_| LabError::UnknownClient(name.to_owned()))
}

/// Operation numbers are unique in the process, so no two runs (nor a
/// process-wide idempotency store) ever see the same one.
static NEXT_OPERATION: AtomicU64 = AtomicU64::new(1);

/// Run every (scenario, client) of `options`. The clients of one scenario
/// run at the same time, each against its own fresh provider with the same
/// schedule and seed; the scenarios run one after the other, so only one
/// buttress client (whose breaker and budget are process-wide) runs at a
/// time. With `progress`, one bar per running (scenario, client).
///
/// # Errors
/// Invalid options, or a provider that could not start.
pub async fn run_lab(
    options: &LabOptions,
    progress: Option<&MultiProgress>,
) -> Result<Vec<ScenarioRuns>, LabError> {
    let schedules = options.schedules()?;
    let mut out = Vec::with_capacity(schedules.len());
    for (name, schedule) in schedules {
        let mut runs = run_scenario(&name, &schedule, options, progress).await?;
        let paced = seeded_oracle(&schedule, options.rate, true, options.seed);
        let unpaced = seeded_oracle(&schedule, options.rate, false, options.seed);
        let learning = learning_oracle(&schedule, options.rate, options.seed);
        for run in &mut runs {
            run.score.oracle_p99_ms = paced.p99_ms;
            run.score.learning_oracle_p99_ms = learning.p99_ms;
            run.score.oracle_success_rate = Some(if paced.success_rate > 0.0 {
                round_to(run.score.success_rate / paced.success_rate, 4)
            } else {
                1.0
            });
        }
        out.push(ScenarioRuns {
            scenario: name,
            schedule,
            runs,
            oracle: paced,
            oracle_unpaced: unpaced,
            oracle_learning: learning,
        });
    }
    Ok(out)
}

/// Run every client of `options` on one scenario, at the same time.
///
/// # Errors
/// A provider that could not start.
pub async fn run_scenario(
    name: &str,
    schedule: &Schedule,
    options: &LabOptions,
    progress: Option<&MultiProgress>,
) -> Result<Vec<RunResult>, LabError> {
    // The buttress client's breaker and budget are process-wide: start
    // every scenario from a clean slate (one buttress client at a time).
    reset_shared_state();
    let mut tasks = Vec::new();
    for &variant in &options.clients {
        let bar = progress.map(|multi| {
            let expected = operations_for(schedule.duration(), options.rate);
            let bar = multi.add(ProgressBar::new(expected));
            bar.set_style(bar_style());
            bar.set_prefix(format!("{name} / {}", variant.name()));
            bar
        });
        let server = ProviderServer::start(schedule.clone(), options.seed)
            .await
            .map_err(LabError::Provider)?;
        let name = name.to_owned();
        let rate = options.rate;
        let schedule = schedule.clone();
        tasks.push(tokio::spawn(async move {
            let result = drive(&name, &schedule, server, variant, rate, bar.as_ref()).await;
            if let Some(bar) = bar {
                bar.finish_with_message(summary(&result.score));
            }
            result
        }));
    }
    let mut runs = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(result) => runs.push(result),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    Ok(runs)
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>24} [{bar:30.cyan/blue}] {pos:>4}/{len:4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn summary(score: &Score) -> String {
    format!(
        "ok {:>5.1}%  x{:.2}  p99 {:.0} ms",
        score.success_rate * 100.0,
        score.amplification,
        score.p99_ms
    )
}

/// How many operations a run of `duration` at `rate` per second issues.
#[must_use]
pub fn operations_for(duration: Duration, rate: u32) -> u64 {
    (duration.as_secs_f64() * f64::from(rate)).round() as u64
}

/// One open-loop run: issue `rate` operations per second for `duration`,
/// never waiting for one to finish before issuing the next, then wait for
/// the stragglers (at most [`STRAGGLER_WAIT`]).
async fn drive(
    scenario: &str,
    schedule: &Schedule,
    server: ProviderServer,
    variant: Variant,
    rate: u32,
    bar: Option<&ProgressBar>,
) -> RunResult {
    let duration = schedule.duration();
    let client = Arc::new(LabClient::new(variant, &server.url));
    let total = operations_for(duration, rate);
    let first_op = NEXT_OPERATION.fetch_add(total, Ordering::Relaxed);
    // Every client meets the same draws for its operation i (and the
    // learning oracle too): common random numbers across the rows.
    server.number_operations_from(first_op);
    let period = Duration::from_secs(1) / rate;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut handles = Vec::with_capacity(total as usize);
    let mut collected = Collector {
        samples: vec![None; total as usize],
        done: 0,
        ok: 0,
        bar,
    };
    let start = Instant::now();

    for i in 0..total {
        let at = start + period * u32::try_from(i).unwrap_or(u32::MAX);
        // Collect what finished while waiting for the next issue time.
        loop {
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(at) => break,
                Some((index, sample)) = rx.recv() => collected.record(index, sample),
            }
        }
        let client = Arc::clone(&client);
        let tx = tx.clone();
        let issued = at.saturating_duration_since(start);
        handles.push(tokio::spawn(async move {
            let outcome = client.charge(first_op + i).await;
            let _ = tx.send((
                i as usize,
                Sample {
                    issued,
                    latency: outcome.latency,
                    ok: outcome.ok,
                    rejected_locally: outcome.rejected_locally,
                    abandoned: false,
                },
            ));
        }));
    }
    drop(tx);

    let cutoff = Instant::now() + STRAGGLER_WAIT;
    while collected.done < total {
        match tokio::time::timeout_at(cutoff, rx.recv()).await {
            Ok(Some((index, sample))) => collected.record(index, sample),
            Ok(None) | Err(_) => break,
        }
    }
    for handle in &handles {
        handle.abort();
    }
    let end = start.elapsed();
    let samples: Vec<Sample> = collected
        .samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.unwrap_or_else(|| {
                let issued = period * u32::try_from(i).unwrap_or(u32::MAX);
                Sample {
                    issued,
                    latency: end.saturating_sub(issued),
                    ok: false,
                    rejected_locally: false,
                    abandoned: true,
                }
            })
        })
        .collect();

    let stats = server.stats();
    let breaker_opens = client.breaker_opens();
    server.shutdown().await;

    // One deadline for every client: a success after issue + D, or an
    // operation the provider carried out more than once, is a failure.
    let samples: Vec<Sample> = samples
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let effects = stats
                .effects_per_operation
                .get(&(first_op + i as u64))
                .copied()
                .unwrap_or(0);
            if s.latency > DEADLINE || effects > 1 {
                s.ok = false;
            }
            s
        })
        .collect();

    if let Some(dir) = std::env::var_os("BUTTRESS_LAB_TRACE") {
        let dir = std::path::Path::new(&dir);
        let requests: Vec<u64> = (0..samples.len() as u64)
            .map(|i| {
                stats
                    .requests_per_operation
                    .get(&(first_op + i))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        trace_samples(dir, scenario, variant.name(), &samples, &requests);
        trace_timeline(dir, scenario, variant.name(), &stats.timeline);
    }

    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort_unstable();
    let logical = samples.len() as u64;
    let succeeded = samples.iter().filter(|s| s.ok).count() as u64;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    RunResult {
        score: Score {
            scenario: scenario.to_owned(),
            client: variant.name().to_owned(),
            logical_requests: logical,
            provider_calls: stats.requests,
            amplification: round_to(ratio(stats.requests, logical), 3),
            success_rate: round_to(ratio(succeeded, logical), 4),
            p50_ms: round_to(millis(percentile(&latencies, 0.50)), 1),
            p99_ms: round_to(millis(percentile(&latencies, 0.99)), 1),
            duplicates: stats.duplicates,
            breaker_opens,
            incident_amplification: incident_amplification(schedule, &stats.timeline, &samples),
            peak_window_amplification: peak_window_amplification(
                schedule,
                &stats.timeline,
                &samples,
            ),
            recovery_ms: recovery_ms(schedule, &stats, rate, duration),
            provider_429s: stats.rate_limited,
            oracle_success_rate: None,
            oracle_p99_ms: 0.0,
            learning_oracle_p99_ms: 0.0,
        },
        retry_after_violations: stats.retry_after_violations,
        rejected_locally: samples.iter().filter(|s| s.rejected_locally).count() as u64,
        abandoned: samples.iter().filter(|s| s.abandoned).count() as u64,
        timeline: stats.timeline,
        samples,
    }
}

/// The spans `[from, to)` of `schedule`'s phases other than the ordinary
/// healthy one (the last one ends with the schedule).
#[must_use]
pub fn incident_spans(schedule: &Schedule) -> Vec<(Duration, Duration)> {
    let phases = schedule.phases();
    let healthy = Phase::healthy();
    let mut spans: Vec<(Duration, Duration)> = Vec::new();
    for (i, (from, phase)) in phases.iter().enumerate() {
        if *phase == healthy {
            continue;
        }
        let to = phases
            .get(i + 1)
            .map_or(schedule.duration(), |(next, _)| *next);
        match spans.last_mut() {
            Some(last) if last.1 == *from => last.1 = to,
            _ => spans.push((*from, to)),
        }
    }
    spans
}

fn incident_amplification(
    schedule: &Schedule,
    timeline: &[Bucket],
    samples: &[Sample],
) -> Option<f64> {
    let spans = incident_spans(schedule);
    let inside = |t: Duration| spans.iter().any(|(from, to)| *from <= t && t < *to);
    let ops = samples.iter().filter(|s| inside(s.issued)).count();
    if ops == 0 {
        return None;
    }
    let calls: u64 = timeline
        .iter()
        .filter(|b| inside(b.start))
        .map(|b| u64::from(b.requests))
        .sum();
    Some(round_to(calls as f64 / ops as f64, 3))
}

/// The highest requests ÷ operations issued over the aligned 100 ms
/// windows from each incident's start to 1 s after its end.
fn peak_window_amplification(
    schedule: &Schedule,
    timeline: &[Bucket],
    samples: &[Sample],
) -> Option<f64> {
    let spans = incident_spans(schedule);
    if spans.is_empty() {
        return None;
    }
    let width = crate::provider::BUCKET;
    let index = |t: Duration| (t.as_millis() / width.as_millis()) as usize;
    let mut issued = vec![0u32; timeline.len().max(1)];
    for s in samples {
        if let Some(n) = issued.get_mut(index(s.issued)) {
            *n += 1;
        }
    }
    let mut peak: f64 = 0.0;
    for (from, to) in spans {
        let last = index(to + Duration::from_secs(1)).min(timeline.len().saturating_sub(1));
        for w in index(from)..=last {
            let ops = issued.get(w).copied().unwrap_or(0);
            if ops == 0 {
                continue; // past the last issue: nothing to compare with
            }
            let calls = timeline.get(w).map_or(0, |b| b.requests);
            peak = peak.max(f64::from(calls) / f64::from(ops));
        }
    }
    Some(round_to(peak, 3))
}

/// The worst incident's recovery time, in milliseconds (see
/// [`Score::recovery_ms`]); a run whose answers never recover counts the
/// time to `end`.
fn recovery_ms(
    schedule: &Schedule,
    stats: &ProviderStats,
    rate: u32,
    end: Duration,
) -> Option<f64> {
    let spans = incident_spans(schedule);
    if spans.is_empty() {
        return None;
    }
    let window = Duration::from_millis(100);
    let need = (0.9 * f64::from(rate) / 10.0).floor() as usize;
    let ok = &stats.ok_at;
    let count = |from: Duration| {
        let lo = ok.partition_point(|t| *t < from);
        let hi = ok.partition_point(|t| *t < from + window);
        hi - lo
    };
    let mut worst: f64 = 0.0;
    for (from, to) in spans {
        let t_prime = stats
            .retry_after
            .iter()
            .filter(|(sent, _)| *sent >= from && *sent < to)
            .map(|(_, until)| *until)
            .fold(to, Duration::max);
        let mut r = t_prime;
        let recovered = loop {
            if r + window * 5 > end {
                break None;
            }
            if (0..5).all(|k| count(r + window * k) >= need) {
                break Some(r);
            }
            r += Duration::from_millis(10);
        };
        let took = recovered.unwrap_or(end).saturating_sub(t_prime);
        worst = worst.max(took.as_secs_f64() * 1000.0);
    }
    Some(round_to(worst, 0))
}

struct Collector<'a> {
    samples: Vec<Option<Sample>>,
    done: u64,
    ok: u64,
    bar: Option<&'a ProgressBar>,
}

impl Collector<'_> {
    fn record(&mut self, index: usize, sample: Sample) {
        self.done += 1;
        self.ok += u64::from(sample.ok);
        self.samples[index] = Some(sample);
        if let Some(bar) = self.bar {
            bar.set_position(self.done);
            if self.done.is_multiple_of(10) {
                bar.set_message(format!(
                    "ok {:>5.1}%",
                    self.ok as f64 * 100.0 / self.done as f64
                ));
            }
        }
    }
}

/// The nearest-rank percentile `q` (in `[0, 1]`) of sorted values; zero
/// when there are none.
#[must_use]
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// With `BUTTRESS_LAB_TRACE=<dir>`: every operation of a run as a CSV line
/// (issued and latency in ms, ok, refused locally, abandoned), in
/// `<dir>/<scenario>-<client>.csv`, to read a tail by eye.
fn trace_samples(
    dir: &std::path::Path,
    scenario: &str,
    client: &str,
    samples: &[Sample],
    requests: &[u64],
) {
    use std::fmt::Write as _;
    let mut out = String::from("issued_ms,latency_ms,ok,rejected_locally,abandoned,requests\n");
    for (s, requests) in samples.iter().zip(requests) {
        let _ = writeln!(
            out,
            "{:.1},{:.1},{},{},{},{requests}",
            s.issued.as_secs_f64() * 1000.0,
            s.latency.as_secs_f64() * 1000.0,
            s.ok,
            s.rejected_locally,
            s.abandoned
        );
    }
    let path = dir.join(format!("{scenario}-{client}.csv"));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, out)) {
        eprintln!("lab: cannot write the trace {}: {e}", path.display());
    }
}

/// With `BUTTRESS_LAB_TRACE=<dir>`: the provider's load per 100 ms
/// (`start_ms,requests,ok,errors`) in `<dir>/<scenario>-<client>-load.csv`.
fn trace_timeline(
    dir: &std::path::Path,
    scenario: &str,
    client: &str,
    timeline: &[crate::provider::Bucket],
) {
    use std::fmt::Write as _;
    let mut out = String::from("start_ms,requests,ok,errors\n");
    for b in timeline {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            b.start.as_millis(),
            b.requests,
            b.ok,
            b.errors
        );
    }
    let path = dir.join(format!("{scenario}-{client}-load.csv"));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, out)) {
        eprintln!("lab: cannot write the trace {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let ms = |n| Duration::from_millis(n);
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 0.5), ms(50));
        assert_eq!(percentile(&v, 0.99), ms(99));
        assert_eq!(percentile(&v, 1.0), ms(100));
        assert_eq!(percentile(&[ms(7)], 0.99), ms(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn bad_options_are_errors() {
        let bad = LabOptions::quick().with_scenarios(&["nope"]);
        assert!(matches!(bad.schedules(), Err(LabError::UnknownScenario(_))));
        let bad = LabOptions {
            rate: 0,
            ..LabOptions::quick()
        };
        assert!(matches!(bad.schedules(), Err(LabError::Rate(0))));
        assert_eq!(
            LabOptions::quick().schedules().unwrap().len(),
            SCENARIOS.len()
        );
        assert_eq!(operations_for(Duration::from_secs(5), 50), 250);
    }
}
