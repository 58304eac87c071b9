//! What Prometheus's own tools say of buttress's metrics: every metric has
//! a HELP and a TYPE line, the duration histograms have the `_bucket`
//! series the book's p99 alert reads, `promtool check metrics` (from
//! Debian's `prometheus` package; `.ci/run` installs it) accepts the
//! output, and `promtool test rules` evaluates the book's alert rules on
//! it. Without promtool the promtool checks skip with a message, or fail
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

    the_book_alert_rules_fire_on(&text);
}

/// The alert rules of the book's "Observability" chapter, evaluated by
/// `promtool test rules` over series built from `text` (each counter and
/// bucket growing from 0 to its rendered value over ten minutes, each
/// gauge holding its value): the traffic above must fire the error-spike
/// and open-breaker alerts for its provider, and the p99 expression must
/// find the duration buckets (all calls took no time: the lowest bucket).
fn the_book_alert_rules_fire_on(text: &str) {
    let chapter = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/observability.md"),
    )
    .unwrap();
    let rules = chapter
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the chapter's alert rules");
    let dir = std::env::temp_dir().join(format!("buttress-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yml"), rules).unwrap();

    let mut series = String::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let metric = name.split('{').next().unwrap();
        let grows = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .any(|suffix| metric.ends_with(suffix));
        let values = if grows {
            format!("0+{}x10", value / 10.0)
        } else {
            format!("{value}x10")
        };
        series += &format!("      - series: '{name}'\n        values: '{values}'\n");
    }
    let tests = format!(
        r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{series}
    promql_expr_test:
      - expr: histogram_quantile(0.99, sum by (provider, le) (rate(buttress_call_duration_seconds_bucket{{provider="prom-check"}}[5m])))
        eval_time: 10m
        exp_samples:
          - labels: '{{provider="prom-check"}}'
            value: 0.00495
    alert_rule_test:
      - eval_time: 10m
        alertname: ProviderErrorSpike
        exp_alerts:
          - exp_labels: {{ severity: warning, provider: prom-check }}
            exp_annotations:
              summary: "prom-check: 40% of attempts rate-limited or unavailable"
      - eval_time: 10m
        alertname: CircuitBreakerOpen
        exp_alerts:
          - exp_labels: {{ severity: page, provider: prom-check }}
            exp_annotations:
              summary: "prom-check: circuit breaker open; calls are rejected locally"
      - eval_time: 10m
        alertname: ProviderLatencyP99
        exp_alerts: []
      - eval_time: 10m
        alertname: RetryBudgetExhausted
        exp_alerts: []
"#
    );
    std::fs::write(dir.join("tests.yml"), &tests).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "tests.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the book's alert rules do not evaluate as expected on the output:\n{}{}\n--- tests.yml:\n{tests}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
