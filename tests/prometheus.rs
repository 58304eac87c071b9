//! What Prometheus's own tools say of buttress's metrics: every metric has
//! a HELP and a TYPE line, the duration histograms have the `_bucket`
//! series the book's p99 alert reads, and `promtool check metrics` (from
//! Debian's `prometheus` package; `.ci/run` installs it) accepts the
//! output. Without promtool the last check skips with a message, or fails
//! under `BUTTRESS_REQUIRE_SERVICES=1`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use buttress::breaker::BreakerConfig;
use buttress::recovery::RecoveryConfig;
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::Policy;
use common::ProviderError;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

mod common;

/// A run that touches every call-site metric: successes, a retried
/// failure, a breaker that opens and rejects.
async fn traffic() {
    let policy = Policy::builder("prom-check")
        .operation("charge")
        .retry(
            RetryConfig::new()
                .with_max_attempts(2)
                .with_backoff(Backoff::Constant(Duration::from_millis(1)))
                .with_jitter(Jitter::None),
        )
        .breaker(BreakerConfig::new().with_consecutive_failures(2))
        // Rejected at once while the breaker is open, not held waiting.
        .recovery(RecoveryConfig::fail_fast())
        .build()
        .unwrap();
    for _ in 0..3 {
        let _: Result<(), ProviderError> = policy.run(|| async { Ok(()) }).await;
    }
    for _ in 0..3 {
        let _: Result<(), ProviderError> = policy
            .run(|| async { Err(ProviderError::Unavailable) })
            .await;
    }
}

#[test]
fn the_metrics_carry_help_types_and_buckets_and_promtool_accepts_them() {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            buttress::telemetry::DURATION_BUCKETS,
        )
        .unwrap()
        .install_recorder()
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(traffic());
    let text = handle.render();
    for name in [
        "buttress_calls_total",
        "buttress_attempts_total",
        "buttress_retries_total",
        "buttress_rejections_total",
        "buttress_call_duration_seconds",
        "buttress_attempt_duration_seconds",
        "buttress_breaker_state",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name} in:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name} in:\n{text}"
        );
    }
    assert!(
        text.contains("buttress_call_duration_seconds_bucket{provider=\"prom-check\",operation=\"charge\",le=\"0.005\"}"),
        "no buckets for the p99 alert in:\n{text}"
    );

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut promtool = match promtool {
        Ok(child) => child,
        Err(e) => {
            let why =
                format!("promtool is not installed ({e}); `apt-get install prometheus` has it");
            assert!(
                std::env::var("BUTTRESS_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "required (BUTTRESS_REQUIRE_SERVICES=1) but {why}"
            );
            eprintln!("skipped the promtool check: {why}");
            return;
        }
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics refused the output ({}):\n{said}\n--- the output:\n{text}",
        out.status
    );
}
