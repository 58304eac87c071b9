//! The fault-injecting provider over real HTTP on 127.0.0.1: each phase,
//! idempotency keys, and the measurements.

use std::time::{Duration, Instant};

use buttress::{Classify, ErrorClass};
use buttress_examples::clients::http_client;
use buttress_examples::provider::{
    fault_roll, Latency, Phase, ProviderServer, Schedule, BUCKET, LAB_OPERATION_HEADER,
};
use serde_json::{json, Value};

const MS: Duration = Duration::from_millis(1);

fn fixed(ms: u64) -> Latency {
    Latency::fixed(MS * u32::try_from(ms).unwrap())
}

async fn start(phase: Phase) -> ProviderServer {
    ProviderServer::start(Schedule::constant(Duration::from_secs(2), phase), 7)
        .await
        .unwrap()
}

/// `POST /v1/charges` with an optional key and operation.
async fn charge(
    http: &reqwest::Client,
    server: &ProviderServer,
    key: Option<&str>,
    operation: Option<u64>,
    amount: u64,
) -> reqwest::Result<reqwest::Response> {
    let mut request = http
        .post(format!("{}/v1/charges", server.url))
        .json(&json!({ "amount": amount, "currency": "usd", "customer": "cus_1" }));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(op) = operation {
        request = request.header(LAB_OPERATION_HEADER, op);
    }
    request.send().await
}

#[tokio::test]
async fn healthy_provider_serves_the_api() {
    let server = start(Phase::Healthy { latency: fixed(1) }).await;
    let http = http_client();

    let created: Value = charge(&http, &server, None, None, 2500)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["amount"], 2500);
    assert_eq!(created["status"], "succeeded");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ch_"));

    let read = http
        .get(format!("{}/v1/charges/{id}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap(), created);
    let missing = http
        .get(format!("{}/v1/charges/ch_nope", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let refund = http
        .post(format!("{}/v1/refunds", server.url))
        .json(&json!({ "charge": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(refund.status(), 200);
    let refund: Value = refund.json().await.unwrap();
    assert_eq!(refund["charge"], id.as_str());
    assert!(refund["id"].as_str().unwrap().starts_with("re_"));
    let bad_refund = http
        .post(format!("{}/v1/refunds", server.url))
        .json(&json!({ "charge": "ch_nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_refund.status(), 404);

    let call: Value = http
        .post(format!("{}/v1/calls", server.url))
        .json(&json!({ "to": "+15550001", "from": "+15550002" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(call["status"], "queued");
    let call_id = call["id"].as_str().unwrap();
    let status: Value = http
        .get(format!("{}/v1/calls/{call_id}", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["id"], call_id);

    let invalid = http
        .post(format!("{}/v1/charges", server.url))
        .json(&json!({ "amount": -5, "currency": "usd", "customer": "c" }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let unknown = http
        .get(format!("{}/v2/nothing", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let stats = server.stats();
    assert_eq!(stats.requests, 9);
    assert_eq!(stats.effects, 3, "a charge, a refund and a call");
    assert_eq!(stats.ok, 5);
    assert_eq!(stats.errors, 4);
    assert_eq!(stats.duplicates, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn errors_503_hit_the_seeded_fraction_before_any_effect() {
    let rate = 0.4;
    let server = start(Phase::Errors503 {
        rate,
        latency: fixed(0),
    })
    .await;
    let http = http_client();
    let n: u64 = 150;
    let mut unavailable: u64 = 0;
    for _ in 0..n {
        let response = charge(&http, &server, None, None, 100).await.unwrap();
        match response.status().as_u16() {
            503 => unavailable += 1,
            200 => {}
            other => panic!("unexpected {other}"),
        }
    }
    // Sequential requests arrive in order: exactly the seeded ones fail.
    let expected = (0..n).filter(|i| fault_roll(7, *i) < rate).count() as u64;
    assert_eq!(unavailable, expected);
    let fraction = unavailable as f64 / n as f64;
    assert!((0.28..0.52).contains(&fraction), "{fraction}");
    let stats = server.stats();
    assert_eq!(stats.unavailable, unavailable);
    assert_eq!(stats.effects, n - unavailable, "503s create nothing");
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_counts_violations() {
    let server = start(Phase::RateLimited {
        allow_per_second: 3,
        retry_after: Duration::from_millis(1500),
        latency: fixed(0),
    })
    .await;
    let http = http_client();
    let mut statuses = Vec::new();
    for op in 0..3 {
        statuses.push(
            charge(&http, &server, None, Some(op), 100)
                .await
                .unwrap()
                .status(),
        );
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // Over the allowance: 429, Retry-After in whole seconds, rounded up.
    let limited = charge(&http, &server, None, Some(10), 100).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "2");
    assert_eq!(
        buttress::http::retry_after(limited.headers()),
        Some(Duration::from_secs(2))
    );
    // The same operation comes back at once: a violation.
    let again = charge(&http, &server, None, Some(10), 100).await.unwrap();
    assert_eq!(again.status(), 429);
    // Another operation was never told to wait: no violation, even though
    // it is limited too. Nor is a request without an operation.
    assert_eq!(
        charge(&http, &server, None, Some(11), 100)
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        charge(&http, &server, None, None, 100)
            .await
            .unwrap()
            .status(),
        429
    );

    let stats = server.stats();
    assert_eq!(stats.rate_limited, 4);
    assert_eq!(stats.retry_after_violations, 1);
    assert_eq!(stats.effects, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn down_answers_503_at_once() {
    let server = start(Phase::Down).await;
    let http = http_client();
    let started = Instant::now();
    let response = charge(&http, &server, Some("k1"), Some(1), 100)
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_millis(300));
    // The key was not consumed: once the provider is back, the same key is
    // processed (checked through the stats: no replay, no effect).
    let stats = server.stats();
    assert_eq!(stats.effects, 0);
    assert_eq!(stats.unavailable, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn resets_drop_the_connection_without_an_effect() {
    let server = ProviderServer::start(
        Schedule::new(
            Duration::from_secs(2),
            vec![
                (
                    Duration::ZERO,
                    Phase::Resets {
                        rate: 1.0,
                        latency: fixed(5),
                    },
                ),
                (
                    Duration::from_millis(400),
                    Phase::Healthy { latency: fixed(1) },
                ),
            ],
        ),
        1,
    )
    .await
    .unwrap();
    let http = http_client();
    let error = charge(&http, &server, Some("k-reset"), Some(1), 100)
        .await
        .unwrap_err();
    assert!(!error.is_connect() && !error.is_timeout(), "{error:?}");
    assert_eq!(
        error.class(),
        ErrorClass::OutcomeUnknown,
        "the client cannot know: {error:?}"
    );
    let stats = server.stats();
    assert_eq!(stats.resets, 1);
    assert_eq!(stats.effects, 0);
    assert_eq!(stats.timeline[0].resets, 1);

    // After the phase, the same key is processed normally: a reset does
    // not consume it.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let ok = charge(&http, &server, Some("k-reset"), Some(1), 100)
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("idempotent-replayed").is_none());
    assert_eq!(server.stats().effects, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn late_answers_commit_then_answer_late() {
    let server = start(Phase::LateAnswers {
        rate: 1.0,
        delay: Duration::from_millis(600),
        latency: fixed(5),
    })
    .await;
    let http = http_client();

    // The client gives up first, but the charge is made.
    let impatient = tokio::time::timeout(
        Duration::from_millis(200),
        charge(&http, &server, Some("k-late"), Some(1), 100),
    )
    .await;
    assert!(impatient.is_err(), "answered too early");
    let stats = server.stats();
    assert_eq!(stats.effects, 1, "committed before answering");
    assert_eq!(stats.late_answers, 1);

    // A retry with the same key gets the stored answer, at once.
    let started = Instant::now();
    let replay = charge(&http, &server, Some("k-late"), Some(1), 100)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");

    // A patient client gets its answer after the delay.
    let started = Instant::now();
    let patient = charge(&http, &server, None, Some(2), 100).await.unwrap();
    assert_eq!(patient.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(600));

    let stats = server.stats();
    assert_eq!(stats.effects, 2);
    assert_eq!(stats.replays, 1);
    assert_eq!(stats.duplicates, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn idempotency_keys_replay_conflict_and_refuse_reuse() {
    let server = start(Phase::Healthy {
        latency: fixed(200),
    })
    .await;
    let http = http_client();

    // In flight: the second request with the key gets 409.
    let first = {
        let http = http.clone();
        let url = server.url.clone();
        tokio::spawn(async move {
            http.post(format!("{url}/v1/charges"))
                .header("Idempotency-Key", "k1")
                .json(&json!({ "amount": 100, "currency": "usd", "customer": "cus_1" }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    let conflict = charge(&http, &server, Some("k1"), None, 100).await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert!(conflict
        .text()
        .await
        .unwrap()
        .contains("idempotency_in_progress"));
    let first = first.await.unwrap();

    // Done: the same request gets the first answer back, no new effect.
    let replay = charge(&http, &server, Some("k1"), None, 100).await.unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);

    // The same key for a different charge: 422.
    let reused = charge(&http, &server, Some("k1"), None, 999).await.unwrap();
    assert_eq!(reused.status(), 422);

    // Another key: a new charge.
    let other: Value = charge(&http, &server, Some("k2"), None, 100)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(other["id"], first["id"]);

    let stats = server.stats();
    assert_eq!(stats.effects, 2);
    assert_eq!(stats.replays, 1);
    assert_eq!(stats.in_progress, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn duplicates_are_counted_per_operation() {
    let server = start(Phase::Healthy { latency: fixed(0) }).await;
    let http = http_client();
    // Operation 1 sent three times without a key: three charges.
    for _ in 0..3 {
        charge(&http, &server, None, Some(1), 100).await.unwrap();
    }
    // Operation 2 twice with one key: one charge.
    for _ in 0..2 {
        charge(&http, &server, Some("op-2"), Some(2), 100)
            .await
            .unwrap();
    }
    // Operation 3 twice without a key: two charges.
    for _ in 0..2 {
        charge(&http, &server, None, Some(3), 100).await.unwrap();
    }
    // Without an operation: effects, but nothing to call a duplicate.
    for _ in 0..2 {
        charge(&http, &server, None, None, 100).await.unwrap();
    }
    let stats = server.stats();
    assert_eq!(stats.requests, 9);
    assert_eq!(stats.effects, 8);
    assert_eq!(stats.duplicates, 2 + 1);
    server.shutdown().await;
}

#[tokio::test]
async fn timeline_buckets_follow_the_schedule() {
    let server = ProviderServer::start(
        Schedule::new(
            Duration::from_millis(600),
            vec![
                (Duration::ZERO, Phase::Down),
                (
                    Duration::from_millis(300),
                    Phase::Healthy { latency: fixed(1) },
                ),
            ],
        ),
        3,
    )
    .await
    .unwrap();
    let http = http_client();
    for _ in 0..3 {
        assert_eq!(
            charge(&http, &server, None, None, 1)
                .await
                .unwrap()
                .status(),
            503
        );
    }
    let wait = Duration::from_millis(350).saturating_sub(server.elapsed());
    tokio::time::sleep(wait).await;
    for _ in 0..2 {
        assert_eq!(
            charge(&http, &server, None, None, 1)
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let stats = server.stats();
    assert!(stats.timeline.len() >= 6, "covers the schedule");
    for (i, bucket) in stats.timeline.iter().enumerate() {
        assert_eq!(bucket.start, BUCKET * u32::try_from(i).unwrap());
    }
    let early: Vec<_> = stats.timeline[..3].iter().collect();
    let late: Vec<_> = stats.timeline[3..].iter().collect();
    assert_eq!(early.iter().map(|b| b.requests).sum::<u32>(), 3);
    assert_eq!(early.iter().map(|b| b.errors).sum::<u32>(), 3);
    assert_eq!(early.iter().map(|b| b.ok).sum::<u32>(), 0);
    assert_eq!(late.iter().map(|b| b.requests).sum::<u32>(), 2);
    assert_eq!(late.iter().map(|b| b.ok).sum::<u32>(), 2);
    assert_eq!(stats.timeline.iter().map(|b| b.resets).sum::<u32>(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn latency_follows_the_phase() {
    let server = start(Phase::Healthy {
        latency: Latency::new(Duration::from_millis(60), Duration::from_millis(120)),
    })
    .await;
    let http = http_client();
    let mut took = Vec::new();
    for _ in 0..12 {
        let started = Instant::now();
        charge(&http, &server, None, None, 1).await.unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median >= Duration::from_millis(35) && median < Duration::from_millis(200),
        "{took:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let server = start(Phase::healthy()).await;
    let url = server.url.clone();
    server.shutdown().await;
    let error = http_client()
        .get(format!("{url}/v1/charges/x"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}
