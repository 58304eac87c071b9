//! The outage lab: a fault-injecting provider on 127.0.0.1, three clients
//! (buttress, a tower stack, naive retries, no retries), one scorecard.
//!
//! ```text
//! cargo run --release -p buttress-examples --bin lab              # every scenario, ~1.5 min
//! cargo run --release -p buttress-examples --bin lab -- --quick   # shorter schedules, < 1 min
//! cargo run --release -p buttress-examples --bin lab -- experiment backoff
//! cargo run --release -p buttress-examples --bin lab -- experiment amplification
//! ```
//!
//! While the scorecard runs, the buttress metrics are served in Prometheus
//! format at <http://127.0.0.1:9464/metrics> (`--metrics-addr`, `--no-metrics`).

use std::fs::File;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use buttress_examples::lab::{
    self, amplification, backoff, parse_client, plot, report, LabOptions, DEFAULT_RATE,
    DEFAULT_SEED,
};
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressDrawTarget};

const ABOUT: &str =
    "The outage lab: what buttress does when a provider fails, side by side with naive code";

const LONG_ABOUT: &str = "\
The outage lab: what buttress does when a provider fails, side by side with naive code.

For every scenario and every client, the lab starts a fresh fault-injecting payments
provider on 127.0.0.1 (same schedule, same seed) and sends it charges open-loop: a fixed
number per second, whatever the answers, like real traffic. It then prints a scorecard:
the load each client put on the provider, the success rate and latency its callers saw,
duplicate charges, and circuit-breaker openings.

Scenarios: healthy, latency_spike, burst_503, storm_429, outage, late_answers, flapping.
Clients:   buttress (500 ms per attempt, 5 s deadline, up to 5 attempts with jittered backoff
                     under a retry budget, Retry-After honoured, a circuit breaker, one
                     idempotency key per operation),
           tower    (the same operation from tower 0.5 and tower-resilience 0.13: deadline,
                     retry with tower's TpsBudget and full-jitter backoff, circuit breaker,
                     concurrency limit, 500 ms timeout, one idempotency key per operation;
                     Retry-After ignored; `--client peer` also selects it),
           naive    (500 ms per attempt, up to 3 retries 100 ms apart after any error,
                     Retry-After ignored, a new idempotency key per request),
           none     (500 ms, one attempt).

Without a subcommand the scorecard runs (about 1.5 minutes; --quick: under one).
`lab experiment backoff` and `lab experiment amplification` run two pure simulations.";

#[derive(Debug, Parser)]
#[command(name = "lab", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Run only this scenario (repeatable; default: all seven)
    #[arg(
        long = "scenario",
        value_name = "NAME",
        long_help = "Run only this scenario (repeatable; default: all seven, in this order):\n\
                     healthy, latency_spike, burst_503, storm_429, outage, late_answers, flapping"
    )]
    scenarios: Vec<String>,

    /// Run only this client (repeatable; default: buttress, tower, naive, none)
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,

    /// Logical operations issued per second, whatever the answers
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE)]
    rate: u32,

    /// Shorter schedules (~5 s per scenario instead of ~12 s)
    #[arg(long, global = true)]
    quick: bool,

    /// Seed of the provider's fault decisions and of the simulations (same seed, same run)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED, global = true)]
    seed: u64,

    /// Also write the scorecard to PATH as a JSON array
    #[arg(long, value_name = "PATH", global = true)]
    json: Option<PathBuf>,

    /// Also write one SVG chart per scenario into DIR (created if missing)
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,

    /// No progress bars (they are also hidden when stdout is not a terminal)
    #[arg(long, short)]
    quiet: bool,

    /// Serve the buttress metrics (Prometheus text format) at http://ADDR/metrics while the lab runs
    #[arg(long, value_name = "ADDR", default_value = lab::metrics::DEFAULT_ADDR)]
    metrics_addr: std::net::SocketAddr,

    /// Do not serve metrics
    #[arg(long, conflicts_with = "metrics_addr")]
    no_metrics: bool,

    /// Check the buttress row against its promises (oracle share, amplification, peak, p99,
    /// recovery, duplicates) and exit non-zero when one is broken
    #[arg(long, global = true)]
    check: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one of the lab's two simulations (virtual time, deterministic)
    Experiment {
        #[command(subcommand)]
        which: Experiment,
    },
    /// Four replicas (OS processes) sharing one account's quota through Redis
    ///
    /// 50 operations/s in all against an account allowing 30 requests/s
    /// (Retry-After: 1): buttress with the quota shared in Redis, buttress
    /// with a local quarter of it per replica, and the tower stack, each
    /// against a fresh provider; then the oracle. About 1 min (--quick: 30 s).
    SharedQuota {
        /// The Redis server of the shared quota
        #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379/")]
        redis: String,
    },
}

#[derive(Debug, Subcommand)]
enum Experiment {
    /// Backoff and jitter under contention (the AWS Architecture Blog experiment)
    ///
    /// 50 and 100 clients each make one optimistic-concurrency write to the same
    /// row; a conflict means backing off and trying again. Compares no backoff,
    /// exponential without jitter, full, equal and decorrelated jitter, with every
    /// delay computed by buttress::retry::Backoff and a seeded buttress::Rng, in
    /// virtual time. Prints the work (write calls) and the completion time.
    Backoff {
        /// Trials averaged per (strategy, clients)
        #[arg(long, value_name = "N", default_value_t = 100)]
        trials: u32,
    },
    /// Retry amplification through 1 to 5 layers of retrying services
    ///
    /// The provider at the bottom is down; 1000 requests enter the top layer.
    /// Naive layers make 4 attempts each (4^depth provider calls per request);
    /// buttress layers run real Policies with a retry budget (ratio 0.2, cap 10),
    /// with and without treating an inner layer's failure as permanent.
    Amplification,
}

fn main() -> ExitCode {
    if let Ok(args) = std::env::var(lab::shared_quota::REPLICA_ENV) {
        // A replica process of `lab shared-quota`.
        return replica(&args);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = match &cli.command {
        Some(Command::Experiment {
            which: Experiment::Backoff { trials },
        }) => {
            if *trials == 0 {
                Err("--trials must be at least 1".to_owned())
            } else {
                emit(&backoff::table(&backoff::run(*trials, cli.seed)))
            }
        }
        Some(Command::SharedQuota { redis }) => runtime.block_on(shared_quota(&cli, redis)),
        Some(Command::Experiment {
            which: Experiment::Amplification,
        }) => {
            let rows = runtime.block_on(amplification::run());
            emit(&amplification::table(&rows))
        }
        None => runtime.block_on(scorecard(&cli)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// Write to stdout; a closed pipe (`lab | head`) is not an error.
fn emit(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
}

fn fail(message: &str) -> ExitCode {
    let _ = std::io::stdout().flush();
    eprintln!("lab: error: {message}");
    ExitCode::from(2)
}

async fn scorecard(cli: &Cli) -> Result<(), String> {
    let mut options = LabOptions {
        rate: cli.rate,
        seed: cli.seed,
        quick: cli.quick,
        ..LabOptions::default()
    };
    if !cli.scenarios.is_empty() {
        options.scenarios.clone_from(&cli.scenarios);
    }
    if !cli.clients.is_empty() {
        options.clients = cli
            .clients
            .iter()
            .map(|c| parse_client(c))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    }
    // Check everything before spending a minute running: names, rate, and
    // that the outputs can be written.
    options.schedules().map_err(|e| e.to_string())?;
    let json = cli.json.as_deref().map(open_json).transpose()?;
    if let Some(dir) = &cli.plot {
        check_plot_dir(dir)?;
    }
    if !cli.no_metrics {
        lab::metrics::serve(cli.metrics_addr).await?;
        eprintln!(
            "lab: metrics at http://{}/metrics while the lab runs",
            cli.metrics_addr
        );
    }

    let progress = (!cli.quiet && std::io::stdout().is_terminal())
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let results = lab::run_lab(&options, progress.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(progress) = &progress {
        let _ = progress.clear();
    }

    let settings: String = options
        .clients
        .iter()
        .map(|c| format!("  {:<9}{}\n", c.name(), c.settings()))
        .collect();
    emit(&format!(
        "outage lab: {} scenario(s), {} op/s, seed {}{}, deadline {} s for every client\n\n\
         client settings:\n{settings}\n{}",
        results.len(),
        options.rate,
        options.seed,
        if options.quick { ", quick" } else { "" },
        lab::oracle::DEADLINE.as_secs(),
        report::scorecard(&results)
    ))?;

    if let Some((path, mut file)) = json {
        let text = report::json(&results);
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        emit(&format!("\nscorecard written to {}\n", path.display()))?;
    }
    if let Some(dir) = &cli.plot {
        let written = plot::write_plots(&results, dir).map_err(|e| e.to_string())?;
        emit(&format!(
            "{} chart(s) written to {}\n",
            written.len(),
            dir.display()
        ))?;
    }
    if cli.check {
        let broken = lab::check::violations(&results);
        if !broken.is_empty() {
            let lines: String = broken.iter().map(|b| format!("  {b}\n")).collect();
            emit(&format!("\nbroken promises:\n{lines}"))?;
            return Err(format!(
                "{} promise(s) of the buttress row broken",
                broken.len()
            ));
        }
        emit("\nevery promise of the buttress row holds\n")?;
    }
    Ok(())
}

fn open_json(path: &Path) -> Result<(PathBuf, File), String> {
    File::create(path)
        .map(|f| (path.to_owned(), f))
        .map_err(|e| format!("cannot write the JSON scorecard to {}: {e}", path.display()))
}

fn check_plot_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the plot directory {}: {e}", dir.display()))?;
    let probe = dir.join(".lab-write-check");
    File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            format!(
                "cannot write into the plot directory {}: {e}",
                dir.display()
            )
        })
}

fn replica(args: &str) -> ExitCode {
    let args: lab::shared_quota::ReplicaArgs = match serde_json::from_str(args) {
        Ok(args) => args,
        Err(e) => return fail(&format!("invalid replica arguments: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(lab::shared_quota::replica(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn shared_quota(cli: &Cli, redis: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the lab binary: {e}"))?;
    let spawn = move || tokio::process::Command::new(&exe);
    let rows = lab::shared_quota::run(cli.quick, cli.seed, redis, &spawn).await?;
    let oracle = lab::shared_quota::scenario_oracle(cli.quick);
    emit(&lab::shared_quota::table(&rows, &oracle))?;
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if cli.check {
        let broken = lab::shared_quota::violations(&rows);
        if !broken.is_empty() {
            return Err(format!("broken promises:\n  {}", broken.join("\n  ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use buttress_examples::provider::SCENARIOS;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "lab",
            "--quick",
            "--scenario",
            "outage",
            "--client",
            "naive",
        ]);
        assert!(cli.quick && cli.command.is_none());
        assert_eq!(cli.scenarios, ["outage"]);
        let cli = Cli::parse_from(["lab", "experiment", "backoff", "--seed", "7"]);
        assert_eq!(cli.seed, 7);
        assert!(SCENARIOS.contains(&"flapping"));
    }
}
