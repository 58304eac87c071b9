//! The lab's Prometheus endpoint: every buttress metric of the running lab
//! (calls, attempts, retries, rejections, latencies, breaker states),
//! served on 127.0.0.1 while the lab runs.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Where the lab serves its metrics unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// Install the Prometheus recorder for this process and serve it at
/// `http://{addr}/metrics`. Call it once, inside a Tokio runtime, before
/// the first wrapped call (call sites register their metrics on their
/// first call).
///
/// # Errors
/// When `addr` is not a loopback address (the lab never listens beyond
/// this machine), when the port is taken, or when a recorder is already
/// installed.
pub async fn serve(addr: SocketAddr) -> Result<PrometheusHandle, String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--metrics-addr {addr}: the lab serves metrics on a loopback address only (127.0.0.1 or ::1)"
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("--metrics-addr {addr}: cannot listen there ({e}); pick a free port or pass --no-metrics")
    })?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            buttress::telemetry::DURATION_BUCKETS,
        )
        .map_err(|e| format!("cannot set the duration buckets: {e}"))?
        .install_recorder()
        .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let render = handle.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { render.render() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("lab: the metrics endpoint stopped: {e}");
        }
    });
    Ok(handle)
}
