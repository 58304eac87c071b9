//! The lab's Prometheus endpoint serves the buttress metrics of real calls.

use std::time::Duration;

use buttress::Policy;
use buttress_examples::lab::metrics;

#[derive(Debug, PartialEq)]
struct Flaky;

impl buttress::Classify for Flaky {
    fn class(&self) -> buttress::ErrorClass {
        buttress::ErrorClass::Transient
    }
}

impl From<buttress::Error> for Flaky {
    fn from(_: buttress::Error) -> Self {
        Self
    }
}

#[tokio::test]
async fn the_endpoint_serves_buttress_metrics() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    metrics::serve(addr).await.unwrap();

    let policy = Policy::builder("lab-metrics-test")
        .operation("charge")
        .retry(
            buttress::retry::RetryConfig::new()
                .with_max_attempts(2)
                .with_backoff(buttress::retry::Backoff::constant(Duration::ZERO)),
        )
        .build()
        .unwrap();
    let mut first = true;
    let _ = policy
        .run(|| {
            let fail = std::mem::take(&mut first);
            async move {
                if fail {
                    Err(Flaky)
                } else {
                    Ok(())
                }
            }
        })
        .await;

    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"buttress_calls_total{provider="lab-metrics-test",operation="charge",outcome="ok"} 1"#,
        r#"buttress_attempts_total{provider="lab-metrics-test",operation="charge",class="transient"} 1"#,
        r#"buttress_retries_total{provider="lab-metrics-test",operation="charge"} 1"#,
        r#"buttress_breaker_state{provider="lab-metrics-test",operation="charge"} 0"#,
    ] {
        assert!(body.contains(line), "missing {line} in:\n{body}");
    }
    assert!(body.contains("buttress_call_duration_seconds"), "{body}");

    let refused = metrics::serve("0.0.0.0:9".parse().unwrap())
        .await
        .unwrap_err();
    assert!(refused.contains("loopback"), "{refused}");
}
