//! The `shared_quota` scenario: four replicas of one service, as four OS
//! processes, share one provider account whose quota is 30 requests per
//! second (`Retry-After: 1` past it) while 50 operations per second arrive
//! in all (12.5 per replica).
//!
//! Three rows, each against a fresh provider:
//! - `buttress`: [`PaymentsClient`] with a [`SharedQuota`] in Redis (30/s,
//!   burst 30: one second of it, as the provider allows; 4 replicas): one limit for the account;
//! - `buttress_local`: the same client with a local limiter only
//!   ([`SharedQuota::local_only`]: a quarter of the quota per replica), what
//!   a deployment without a shared limit can do;
//! - `tower`: the peer stack ([`PeerClient`]), which has no notion of a
//!   quota and ignores `Retry-After`.
//!
//! `#[resilient]` keeps its state per process, so in-process replicas would
//! share one limiter and prove nothing: each replica is its own process
//! (the `lab` binary re-executed with [`REPLICA_ENV`] set), and they start
//! issuing at one agreed instant.
//!
//! The oracle is the lab's: every operation served earliest deadline first
//! from the provider's own token bucket (30, refilled at 30/s), within the
//! 5 s deadline: 30 × (the run + 5 s) + 30 of the operations.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buttress::shared_quota::{SharedQuota, SharedQuotaConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

use super::oracle::{oracle, Oracle, DEADLINE};
use super::run::percentile;
use crate::clients::payments::{ChargeRequest, PaymentsClient};
use crate::clients::peer::PeerClient;
use crate::provider::{Latency, Phase, ProviderServer, Schedule};

/// Set in a replica process's environment: its [`ReplicaArgs`] as JSON.
pub const REPLICA_ENV: &str = "BUTTRESS_LAB_REPLICA";
/// The account's quota, in requests per second.
pub const ALLOWANCE: u32 = 30;
/// Operations per second across the replicas.
pub const RATE: u32 = 50;
/// Replicas (processes).
pub const REPLICAS: u32 = 4;
/// The shared limiter's burst.
pub const BURST: u32 = 30;

/// One row's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// `PaymentsClient` with the Redis-shared quota.
    Shared,
    /// `PaymentsClient` with a local share of the quota only.
    Local,
    /// The tower peer stack.
    Tower,
}

impl Mode {
    /// Every mode, in presentation order.
    pub const ALL: [Self; 3] = [Self::Shared, Self::Local, Self::Tower];

    /// The row's name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Shared => "buttress",
            Self::Local => "buttress_local",
            Self::Tower => "tower",
        }
    }
}

/// What a replica process is told to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaArgs {
    /// The client.
    pub mode: Mode,
    /// The provider's base URL.
    pub provider: String,
    /// The Redis URL of the shared quota.
    pub redis: String,
    /// The key prefix of this run (fresh per run).
    pub prefix: String,
    /// This replica's number, `0..replicas`.
    pub index: u32,
    /// Operations issued in all (every replica).
    pub total: u64,
    /// The first operation's number.
    pub first_op: u64,
    /// When operation 0 is issued, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u128,
}

/// One operation as a replica saw it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReplicaSample {
    /// Its number within the run (`0..total`).
    pub op: u64,
    /// How long it took, in microseconds.
    pub latency_us: u64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// One row of the scenario.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaRow {
    /// `buttress`, `buttress_local` or `tower`.
    pub client: String,
    /// Operations issued.
    pub logical_requests: u64,
    /// Requests the provider received.
    pub provider_calls: u64,
    /// Of which answered `429`.
    pub provider_429s: u64,
    /// `provider_429s / provider_calls`.
    pub share_429: f64,
    /// Operations that succeeded within the deadline, once.
    pub success_rate: f64,
    /// `success_rate` / the oracle's.
    pub oracle_share: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Operations carried out more than once.
    pub duplicates: u64,
    /// Replicas whose shared quota fell back to the local share.
    pub fallbacks: u64,
}

/// The run's length: 12 s, or 5 s when `quick`.
#[must_use]
pub const fn duration(quick: bool) -> Duration {
    if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(12)
    }
}

/// The provider's schedule: the account's quota for the whole run.
#[must_use]
pub fn schedule(quick: bool) -> Schedule {
    Schedule::new(
        duration(quick),
        vec![(
            Duration::ZERO,
            Phase::RateLimited {
                allow_per_second: ALLOWANCE,
                retry_after: Duration::from_secs(1),
                latency: Latency::typical(),
            },
        )],
    )
}

/// The oracle of the scenario.
#[must_use]
pub fn scenario_oracle(quick: bool) -> Oracle {
    oracle(&schedule(quick), RATE, true)
}

/// Run every mode (each against a fresh provider on 127.0.0.1, its four
/// replicas spawned by `spawn`, which must start a process that calls
/// [`replica`] with the [`ReplicaArgs`] in [`REPLICA_ENV`]).
///
/// # Errors
/// A provider or replica that could not start or report.
pub async fn run(
    quick: bool,
    seed: u64,
    redis: &str,
    spawn: &(dyn Fn() -> tokio::process::Command + Sync),
) -> Result<Vec<QuotaRow>, String> {
    run_modes(quick, seed, redis, spawn, &Mode::ALL).await
}

/// As [`run`], for some of the modes only.
///
/// # Errors
/// A provider or replica that could not start or report.
pub async fn run_modes(
    quick: bool,
    seed: u64,
    redis: &str,
    spawn: &(dyn Fn() -> tokio::process::Command + Sync),
    modes: &[Mode],
) -> Result<Vec<QuotaRow>, String> {
    let oracle = scenario_oracle(quick);
    let mut rows = Vec::new();
    let total = super::run::operations_for(duration(quick), RATE);
    for (n, &mode) in modes.iter().enumerate() {
        let server = ProviderServer::start(schedule(quick), seed)
            .await
            .map_err(|e| format!("the provider could not start: {e}"))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let start = nanos + 1_500_000_000;
        let first_op = 1_000_000 * (n as u64 + 1);
        let mut children = Vec::new();
        for index in 0..REPLICAS {
            let args = ReplicaArgs {
                mode,
                provider: server.url.clone(),
                redis: redis.to_owned(),
                prefix: format!("buttress:lab:{}:{nanos}:", std::process::id()),
                index,
                total,
                first_op,
                start_unix_nanos: start,
            };
            let json = serde_json::to_string(&args).map_err(|e| e.to_string())?;
            let mut command = spawn();
            command
                .env(REPLICA_ENV, json)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            let child = command
                .spawn()
                .map_err(|e| format!("replica {index} could not start: {e}"))?;
            children.push(child);
        }
        let mut samples: HashMap<u64, ReplicaSample> = HashMap::new();
        let mut fallbacks = 0;
        for (index, mut child) in children.into_iter().enumerate() {
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut lines = BufReader::new(stdout).lines();
            let mut done = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("done ") {
                    fallbacks += rest.trim().parse::<u64>().unwrap_or(0);
                    done = true;
                } else if let Ok(sample) = serde_json::from_str::<ReplicaSample>(&line) {
                    samples.insert(sample.op, sample);
                }
            }
            let status = child.wait().await.map_err(|e| e.to_string())?;
            if !status.success() || !done {
                return Err(format!(
                    "replica {index} of {} failed: {status}",
                    mode.name()
                ));
            }
        }
        let stats = server.stats();
        server.shutdown().await;
        let mut latencies = Vec::with_capacity(total as usize);
        let mut succeeded = 0;
        for op in 0..total {
            let effects = stats
                .effects_per_operation
                .get(&(first_op + op))
                .copied()
                .unwrap_or(0);
            match samples.get(&op) {
                Some(s) => {
                    let latency = Duration::from_micros(s.latency_us);
                    latencies.push(latency);
                    if s.ok && latency <= DEADLINE && effects <= 1 {
                        succeeded += 1;
                    }
                }
                None => latencies.push(DEADLINE),
            }
        }
        latencies.sort_unstable();
        let success = succeeded as f64 / total.max(1) as f64;
        rows.push(QuotaRow {
            client: mode.name().to_owned(),
            logical_requests: total,
            provider_calls: stats.requests,
            provider_429s: stats.rate_limited,
            share_429: round(stats.rate_limited as f64 / stats.requests.max(1) as f64, 4),
            success_rate: round(success, 4),
            oracle_share: round(success / oracle.success_rate.max(1e-9), 4),
            p99_ms: round(percentile(&latencies, 0.99).as_secs_f64() * 1000.0, 1),
            duplicates: stats.duplicates,
            fallbacks,
        });
    }
    Ok(rows)
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// One replica: issue operations `index, index + replicas, …` of the run
/// at their instants, print one JSON [`ReplicaSample`] per operation on
/// stdout, then `done <fallbacks>`.
///
/// # Errors
/// Invalid arguments or settings.
pub async fn replica(args: &ReplicaArgs) -> Result<(), String> {
    let config = SharedQuotaConfig::new()
        .with_per_second(ALLOWANCE)
        .with_burst(BURST)
        .with_replicas(REPLICAS)
        .with_prefix(args.prefix.clone());
    let quota = match args.mode {
        Mode::Shared => Some(
            SharedQuota::new(&args.redis, "payments", "lab-account", config)
                .map_err(|e| e.to_string())?,
        ),
        Mode::Local => Some(
            SharedQuota::local_only("payments", "lab-account", config)
                .map_err(|e| e.to_string())?,
        ),
        Mode::Tower => None,
    };
    if let Some(q) = &quota {
        // Connect before the run starts, so the first calls do not pay for it.
        q.connect().await;
    }
    let payments = quota
        .clone()
        .map(|q| PaymentsClient::new(&args.provider).with_quota(q));
    let peer = (args.mode == Mode::Tower).then(|| PeerClient::new(&args.provider));
    let client = std::sync::Arc::new((payments, peer));

    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let until_start = Duration::from_nanos(
        u64::try_from(args.start_unix_nanos.saturating_sub(now_unix)).unwrap_or(0),
    );
    let start = Instant::now() + until_start;
    let period = Duration::from_secs(1) / RATE;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut op = u64::from(args.index);
    while op < args.total {
        let at = start + period * u32::try_from(op).unwrap_or(u32::MAX);
        tokio::time::sleep_until(at).await;
        let client = std::sync::Arc::clone(&client);
        let tx = tx.clone();
        let operation = args.first_op + op;
        let this = op;
        tokio::spawn(async move {
            let request = ChargeRequest {
                amount: 1_000 + operation % 9_000,
                currency: "usd".to_owned(),
                customer: format!("cus_{:05}", operation % 100_000),
                idempotency_key: format!("lab-quota-{operation}"),
                operation: Some(operation),
            };
            let began = Instant::now();
            let ok = match &*client {
                (Some(payments), _) => payments.create_charge(&request).await.is_ok(),
                (None, Some(peer)) => peer.create_charge(&request).await.is_ok(),
                (None, None) => false,
            };
            let latency_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
            let _ = tx.send(ReplicaSample {
                op: this,
                latency_us,
                ok,
            });
        });
        op += u64::from(REPLICAS);
    }
    drop(tx);
    let give_up = Instant::now() + DEADLINE + Duration::from_secs(1);
    let mut out = String::new();
    while let Ok(Some(sample)) = tokio::time::timeout_at(give_up, rx.recv()).await {
        out.push_str(&serde_json::to_string(&sample).map_err(|e| e.to_string())?);
        out.push('\n');
    }
    let fallbacks = quota.as_ref().map_or(0, |q| u64::from(q.fallbacks() > 0));
    println!("{out}done {fallbacks}");
    Ok(())
}

/// The rows as a table, with the oracle's row.
#[must_use]
pub fn table(rows: &[QuotaRow], oracle: &Oracle) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "shared_quota: {REPLICAS} replicas (processes), {RATE} ops/s in all, one account allowing {ALLOWANCE} requests/s (Retry-After: 1)\n{:<16} {:>5} {:>6} {:>5} {:>6} {:>8} {:>8} {:>7} {:>5} {:>9}\n",
        "client", "ops", "calls", "429s", "429 %", "success", "/oracle", "p99 ms", "dups", "fallbacks"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<16} {:>5} {:>6} {:>5} {:>5.1}% {:>7.1}% {:>8.1} {:>7.0} {:>5} {:>9}",
            r.client,
            r.logical_requests,
            r.provider_calls,
            r.provider_429s,
            r.share_429 * 100.0,
            r.success_rate * 100.0,
            r.oracle_share * 100.0,
            r.p99_ms,
            r.duplicates,
            r.fallbacks
        );
    }
    let _ = writeln!(
        out,
        "{:<16} {:>5} {:>6} {:>5} {:>6} {:>7.1}% {:>8} {:>7.0} {:>5} {:>9}",
        "oracle",
        oracle.operations,
        "-",
        "-",
        "-",
        oracle.success_rate * 100.0,
        "-",
        oracle.p99_ms,
        "-",
        "-"
    );
    out
}

/// The promises of the `buttress` row: 429s on at most 1 % of its calls,
/// at least 95 % of the oracle's success, no duplicates.
#[must_use]
pub fn violations(rows: &[QuotaRow]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = rows.iter().find(|r| r.client == "buttress") {
        if r.share_429 > 0.01 {
            out.push(format!(
                "shared_quota: {:.1}% of the calls were answered 429 (at most 1%)",
                r.share_429 * 100.0
            ));
        }
        if r.oracle_share < 0.95 {
            out.push(format!(
                "shared_quota: success {:.1}% of the oracle's (at least 95%)",
                r.oracle_share * 100.0
            ));
        }
        if r.duplicates > 0 {
            out.push(format!("shared_quota: {} duplicates", r.duplicates));
        }
    }
    out
}
