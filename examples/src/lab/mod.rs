//! The outage lab: what buttress does when a provider fails, side by side
//! with naive code.
//!
//! For every scenario (a [`Schedule`](crate::provider::Schedule) of provider
//! phases: healthy, latency spike, a burst of 503s, a 429 storm, an outage,
//! late answers, flapping) and every client
//! ([`Variant`](crate::clients::lab::Variant): `buttress`, `tower`, `naive`,
//! `none`),
//! [`run_lab`] starts a fresh [`ProviderServer`](crate::provider::ProviderServer)
//! on 127.0.0.1 with the same schedule and seed, and drives it *open loop*:
//! logical operations are issued at a fixed rate, whatever the answers, as
//! real traffic arrives. It measures, per (scenario, client), the
//! [`Score`]: the load on the provider, what the callers saw, and the
//! duplicate side effects.
//!
//! The binary `lab` prints the [scorecard](report::scorecard), and can write
//! it as JSON and plot each scenario ([`plot::write_plots`]). It also runs
//! two pure simulations: [`backoff`] (the AWS "Exponential Backoff And
//! Jitter" contention experiment, with buttress's own backoff code) and
//! [`amplification`] (retries multiplying through layers of services).
//!
//! ```no_run
//! use buttress_examples::lab::{report, run_lab, LabOptions};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = LabOptions::quick().with_scenarios(&["outage"]);
//! let results = run_lab(&options, None).await?;
//! print!("{}", report::scorecard(&results));
//! # Ok(()) }
//! ```

pub mod amplification;
pub mod backoff;
pub mod check;
pub mod metrics;
pub mod oracle;
pub mod plot;
pub mod report;
mod run;
pub mod shared_quota;

pub use run::{
    incident_spans, operations_for, parse_client, percentile, run_lab, run_scenario, LabError,
    LabOptions, RunResult, Sample, ScenarioRuns, Score, DEFAULT_RATE, DEFAULT_SEED, MAX_RATE,
    STRAGGLER_WAIT,
};
