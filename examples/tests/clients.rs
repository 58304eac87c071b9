//! The clients against the fault-injecting provider over real HTTP on
//! 127.0.0.1.
//!
//! Buttress clients share the process-wide "payments" breaker and budget,
//! so every test here holds one lock and starts with
//! `reset_shared_state()`.

use std::time::{Duration, Instant};

use buttress::{BreakerState, Registry};
use buttress_examples::clients::lab::{reset_shared_state, LabClient, Variant};
use buttress_examples::clients::payments::{ChargeRequest, PaymentsClient, PaymentsError};
use buttress_examples::clients::peer::PeerClient;
use buttress_examples::clients::voice::{CallRequest, VoiceClient};
use buttress_examples::provider::{
    draw_index, fault_roll, Latency, Phase, ProviderServer, Schedule,
};
use tokio::sync::{Mutex, MutexGuard};

static SHARED_STATE: Mutex<()> = Mutex::const_new(());

async fn exclusive() -> MutexGuard<'static, ()> {
    let guard = SHARED_STATE.lock().await;
    reset_shared_state();
    guard
}

fn fixed(ms: u64) -> Latency {
    Latency::fixed(Duration::from_millis(ms))
}

async fn start(phase: Phase, seed: u64) -> ProviderServer {
    ProviderServer::start(Schedule::constant(Duration::from_secs(3), phase), seed)
        .await
        .unwrap()
}

fn charge_request(key: &str, operation: u64) -> ChargeRequest {
    ChargeRequest {
        amount: 2500,
        currency: "usd".into(),
        customer: "cus_42".into(),
        idempotency_key: key.into(),
        operation: Some(operation),
    }
}

#[tokio::test]
async fn payments_client_round_trip() {
    let _guard = exclusive().await;
    let server = start(Phase::Healthy { latency: fixed(1) }, 1).await;
    let client = PaymentsClient::new(&server.url);

    let charge = client
        .create_charge(&charge_request("order-1", 1))
        .await
        .unwrap();
    assert_eq!(charge.amount, 2500);
    assert_eq!(charge.status, "succeeded");
    // The caller resends the same operation: the same charge.
    let again = client
        .create_charge(&charge_request("order-1", 1))
        .await
        .unwrap();
    assert_eq!(again, charge);
    assert_eq!(client.get_charge(&charge.id).await.unwrap(), charge);

    let refund = client.refund(&charge.id, "refund-1").await.unwrap();
    assert_eq!(refund.charge, charge.id);
    assert_eq!(
        client.refund(&charge.id, "refund-1").await.unwrap(),
        refund,
        "same key, same refund"
    );

    let missing = client.get_charge("ch_missing").await.unwrap_err();
    assert!(
        matches!(&missing, PaymentsError::Http(e) if e.status() == 404),
        "{missing:?}"
    );

    let stats = server.stats();
    assert_eq!(stats.effects, 2, "one charge, one refund");
    assert_eq!(stats.duplicates, 0);
    assert_eq!(stats.requests, 6, "a 404 is permanent: not retried");
    server.shutdown().await;
}

#[tokio::test]
async fn payments_client_retries_a_503() {
    let _guard = exclusive().await;
    // A seed whose first request fails and second succeeds.
    let rate = 0.5;
    let seed = (0..1000)
        .find(|s| {
            fault_roll(*s, draw_index(0, Some((1, 0)))) < rate
                && fault_roll(*s, draw_index(1, Some((1, 1)))) >= rate
        })
        .unwrap();
    let server = start(
        Phase::Errors503 {
            rate,
            latency: fixed(2),
        },
        seed,
    )
    .await;
    let client = PaymentsClient::new(&server.url);
    let charge = client
        .create_charge(&charge_request("order-503", 1))
        .await
        .unwrap();
    assert_eq!(charge.status, "succeeded");
    let stats = server.stats();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.unavailable, 1);
    assert_eq!(stats.effects, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn payments_client_honours_retry_after() {
    let _guard = exclusive().await;
    let server = start(
        Phase::RateLimited {
            allow_per_second: 1,
            retry_after: Duration::from_secs(1),
            latency: fixed(1),
        },
        1,
    )
    .await;
    let client = PaymentsClient::new(&server.url);
    client
        .create_charge(&charge_request("order-a", 1))
        .await
        .unwrap();
    // Over the allowance: 429 with Retry-After: 1, then a retry no sooner.
    let started = Instant::now();
    client
        .create_charge(&charge_request("order-b", 2))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let stats = server.stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.retry_after_violations, 0);
    assert_eq!(stats.effects, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn late_answers_idempotency_key_prevents_duplicates_the_naive_loop_does_not() {
    let _guard = exclusive().await;
    let server = start(
        Phase::LateAnswers {
            rate: 1.0,
            delay: Duration::from_secs(3),
            latency: fixed(5),
        },
        1,
    )
    .await;
    let client = PaymentsClient::new(&server.url);

    // Attempt 1 commits and times out (the adaptive timeout never waits
    // past its 2 s `max`, whatever the earlier tests taught it); the retry,
    // with the same key, gets the stored charge.
    let charge = client
        .create_charge(&charge_request("order-late", 1))
        .await
        .unwrap();
    assert_eq!(charge.status, "succeeded");
    let stats = server.stats();
    assert_eq!(stats.effects, 1);
    assert_eq!(stats.duplicates, 0);
    assert!(stats.replays >= 1);

    // The naive loop: a new key per attempt, so every attempt charges.
    let naive = LabClient::new(Variant::Naive, &server.url);
    let outcome = naive.charge(2).await;
    assert!(!outcome.ok, "every attempt timed out");
    assert!(!outcome.rejected_locally);
    let stats = server.stats();
    assert_eq!(stats.effects, 1 + 4);
    assert_eq!(stats.duplicates, 3);

    // No retries: one charge, and the caller thinks it failed.
    let none = LabClient::new(Variant::None, &server.url);
    let outcome = none.charge(3).await;
    assert!(!outcome.ok);
    assert!(outcome.latency < Duration::from_millis(800));
    let stats = server.stats();
    assert_eq!(stats.effects, 1 + 4 + 1);
    assert_eq!(stats.duplicates, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn lab_buttress_variant_zero_duplicates_on_late_answers() {
    let _guard = exclusive().await;
    let server = start(
        Phase::LateAnswers {
            rate: 1.0,
            delay: Duration::from_secs(1),
            latency: fixed(5),
        },
        1,
    )
    .await;
    let lab = LabClient::new(Variant::Buttress, &server.url);
    // Three operations at once, each timing out once and then replayed.
    let (a, b, c) = tokio::join!(lab.charge(1), lab.charge(2), lab.charge(3));
    let outcomes = [a, b, c];
    assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    let stats = server.stats();
    assert_eq!(stats.effects, 3);
    assert_eq!(stats.duplicates, 0);
    assert_eq!(lab.breaker_opens(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn lab_buttress_variant_opens_the_breaker_in_an_outage() {
    let _guard = exclusive().await;
    let server = start(Phase::Down, 1).await;
    let lab = std::sync::Arc::new(LabClient::new(Variant::Buttress, &server.url));
    // Open-loop traffic, as in the lab: 60 operations over 1.2 s.
    let mut tasks = tokio::task::JoinSet::new();
    for op in 0..60 {
        let lab = std::sync::Arc::clone(&lab);
        tasks.spawn(async move { lab.charge(op).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome.unwrap());
    }
    assert!(outcomes.iter().all(|o| !o.ok));
    assert!(lab.breaker_opens() >= 1);
    // Once open, the breaker sends nothing but its probes (3 every 100 ms):
    // the operations wait for a recovery that does not come, and give up at
    // their deadline, never sent or after a probe or two.
    let waited_in_vain = outcomes
        .iter()
        .filter(|o| o.rejected_locally && o.latency >= Duration::from_millis(4900))
        .count();
    assert!(waited_in_vain >= 10, "{outcomes:#?}");
    let stats = server.stats();
    // Without the breaker and budget: 60 operations × 5 attempts. The
    // probes of 6 s (the last deadline) are at most 3 × 62.
    assert!(stats.requests < 60 * 4, "{}", stats.requests);
    let late = stats
        .timeline
        .iter()
        .filter(|b| b.start >= Duration::from_millis(1500))
        .map(|b| b.requests)
        .max()
        .unwrap_or(0);
    assert!(late <= 6, "{late} requests in a 100 ms slice while open");
    assert_eq!(stats.effects, 0);

    // The next run starts fresh.
    reset_shared_state();
    assert_eq!(
        Registry::global().breaker("payments").state(),
        BreakerState::Closed
    );
    let fresh = LabClient::new(Variant::Buttress, &server.url);
    assert_eq!(fresh.breaker_opens(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn variants_by_name() {
    for variant in Variant::ALL {
        assert_eq!(variant.name().parse::<Variant>().unwrap(), variant);
        assert_eq!(variant.to_string(), variant.name());
    }
    assert_eq!(
        Variant::ALL.map(Variant::name),
        ["buttress", "tower", "naive", "none"]
    );
    assert_eq!("peer".parse::<Variant>().unwrap(), Variant::Peer);
    assert!(Variant::ALL.iter().all(|v| !v.settings().is_empty()));
    assert!("retry-harder".parse::<Variant>().is_err());
}

#[tokio::test]
async fn peer_client_one_key_per_operation_when_healthy() {
    let server = start(Phase::Healthy { latency: fixed(1) }, 1).await;
    let client = PeerClient::new(&server.url);
    let charge = client
        .create_charge(&charge_request("peer-order-1", 1))
        .await
        .unwrap();
    assert_eq!(charge.amount, 2500);
    assert_eq!(charge.status, "succeeded");
    // The caller resends the operation with its key: the same charge.
    let again = client
        .create_charge(&charge_request("peer-order-1", 1))
        .await
        .unwrap();
    assert_eq!(again, charge);

    let lab = LabClient::new(Variant::Peer, &server.url);
    let (a, b, c) = tokio::join!(lab.charge(2), lab.charge(3), lab.charge(4));
    assert!([a, b, c].iter().all(|o| o.ok && !o.rejected_locally));
    let stats = server.stats();
    assert_eq!(stats.requests, 5, "one attempt per call");
    assert_eq!(stats.effects, 4);
    assert_eq!(stats.duplicates, 0);
    assert!(stats.replays >= 1);
    assert_eq!(lab.breaker_opens(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn peer_client_retries_reuse_the_key_on_late_answers() {
    let server = start(
        Phase::LateAnswers {
            rate: 1.0,
            delay: Duration::from_secs(1),
            latency: fixed(5),
        },
        1,
    )
    .await;
    let lab = LabClient::new(Variant::Peer, &server.url);
    // Each operation's first attempt commits and times out (500 ms); the
    // retry, with the same key, gets the stored charge.
    let (a, b, c) = tokio::join!(lab.charge(1), lab.charge(2), lab.charge(3));
    let outcomes = [a, b, c];
    assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    let stats = server.stats();
    assert_eq!(stats.effects, 3);
    assert_eq!(stats.duplicates, 0);
    assert!(stats.replays >= 3, "{stats:?}");
    assert!(stats.requests >= 6);
    server.shutdown().await;
}

#[tokio::test]
async fn peer_client_breaker_refuses_calls_in_a_long_outage() {
    let server = start(Phase::Down, 1).await;
    let lab = std::sync::Arc::new(LabClient::new(Variant::Peer, &server.url));
    // Open-loop traffic, as in the lab: 60 operations over 1.2 s.
    let mut tasks = tokio::task::JoinSet::new();
    for op in 0..60 {
        let lab = std::sync::Arc::clone(&lab);
        tasks.spawn(async move { lab.charge(op).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome.unwrap());
    }
    assert!(outcomes.iter().all(|o| !o.ok));
    assert!(lab.breaker_opens() >= 1);
    let rejected = outcomes.iter().filter(|o| o.rejected_locally).count();
    assert!(rejected >= 10, "{outcomes:#?}");
    let stats = server.stats();
    // Without the breaker and budget: 60 operations × 5 attempts.
    assert!(stats.requests < 60 * 5, "{}", stats.requests);
    assert_eq!(stats.effects, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn voice_client_places_a_call_once() {
    let server = start(Phase::Healthy { latency: fixed(1) }, 1).await;
    let client = VoiceClient::new(&server.url);
    let request = CallRequest {
        to: "+15550001".into(),
        from: "+15550002".into(),
        idempotency_key: "call-1".into(),
        operation: Some(1),
    };
    let call = client.place_call(&request).await.unwrap();
    assert_eq!(call.status, "queued");
    assert_eq!(client.place_call(&request).await.unwrap(), call);
    let status = client.get_call_status(&call.id).await.unwrap();
    assert_eq!(status.id, call.id);
    let stats = server.stats();
    assert_eq!(stats.effects, 1);
    assert_eq!(stats.duplicates, 0);
    server.shutdown().await;
}
