//! The middleware against a real local provider and a real reqwest client:
//! what is retried, how often, with which headers, and what the caller
//! gets back. Every assertion is on what the provider saw or on the
//! caller's result, never on how long something took (except for lower
//! bounds a wait cannot undercut).

mod support;

use std::time::Duration;

use buttress_core::breaker::BreakerConfig;
use buttress_core::retry::{Backoff, Jitter, RetryConfig};
use buttress_core::{BreakerState, Policy, Registry};
use buttress_reqwest_middleware::{buttress_error, Idempotent, Resilience};
use reqwest::StatusCode;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

use support::{cut_mid_response, reqwest_client, Provider, Reply};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Up to `attempts` attempts, straight after one another.
fn retries(attempts: u32) -> RetryConfig {
    RetryConfig::new()
        .with_max_attempts(attempts)
        .with_backoff(Backoff::constant(Duration::ZERO))
        .with_jitter(Jitter::None)
}

/// A policy for `provider` (a name no other test uses): 3 attempts, no
/// backoff, a 2 s timeout and a 5 s deadline as safety nets.
fn policy(provider: &'static str) -> Policy {
    Policy::builder(provider)
        .timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(5))
        .retry(retries(3))
        .build()
        .unwrap()
}

fn client(policy: Policy) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest_client())
        .with(Resilience::new(policy))
        .build()
}

const UNKNOWN_OUTCOMES: [u16; 3] = [500, 502, 504];

#[tokio::test]
async fn a_503_then_a_200_is_retried() {
    let provider = Provider::start(vec![Reply::Status(503), Reply::Status(200)]).await;
    let client = client(policy("mw-503-then-200"));

    let response = client.get(&provider.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "attempt 2");
    assert_eq!(provider.seen().len(), 2);
}

#[tokio::test]
async fn a_503_is_retried_even_for_a_post() {
    // 503 says the provider did nothing: safe to resend anything.
    let provider = Provider::start(vec![Reply::Status(503), Reply::Status(201)]).await;
    let client = client(policy("mw-503-post"));

    let response = client.post(&provider.url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let seen = provider.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.body == "{}"),
        "the body is resent whole"
    );
}

#[tokio::test]
async fn a_post_answered_500_502_or_504_is_not_retried() {
    let client = client(policy("mw-post-unknown"));
    for code in UNKNOWN_OUTCOMES {
        let provider = Provider::start(vec![Reply::Status(code), Reply::Status(200)]).await;

        let response = client.post(&provider.url).body("charge").send().await;
        let response = response.expect("the provider's answer comes back as a response");
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(provider.seen().len(), 1, "{code}: sent once, not retried");
    }
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried_with_the_same_key() {
    let provider = Provider::start(vec![
        Reply::Status(500),
        Reply::Status(502),
        Reply::Status(504),
        Reply::Status(201),
    ])
    .await;
    let policy = Policy::builder("mw-post-keyed")
        .retry(retries(4))
        .build()
        .unwrap();
    let client = client(policy);

    let response = client
        .post(&provider.url)
        .header("Idempotency-Key", "order-7")
        .body("charge")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let seen = provider.seen();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.header("idempotency-key"), Some("order-7"));
        assert_eq!(request.body, "charge");
    }
}

#[tokio::test]
async fn idempotent_methods_are_retried_after_500_502_or_504() {
    let client = client(policy("mw-get-unknown"));
    for code in UNKNOWN_OUTCOMES {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let provider = Provider::start(vec![Reply::Status(code), Reply::Status(200)]).await;

            let response = client
                .request(method.clone(), &provider.url)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{method} after {code}");
            assert_eq!(provider.seen().len(), 2, "{method} after {code}");
        }
    }
}

#[tokio::test]
async fn the_idempotent_marker_overrides_the_method() {
    let client = client(policy("mw-marker"));

    let provider = Provider::start(vec![Reply::Status(502), Reply::Status(200)]).await;
    let response = client
        .post(&provider.url)
        .with_extension(Idempotent(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        provider.seen().len(),
        2,
        "a POST marked idempotent is retried"
    );

    let provider = Provider::start(vec![Reply::Status(504), Reply::Status(200)]).await;
    let response = client
        .get(&provider.url)
        .header("Idempotency-Key", "k")
        .with_extension(Idempotent(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        provider.seen().len(),
        1,
        "a GET marked not idempotent is not"
    );
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let provider = Provider::start(vec![Reply::RetryAfter(429, "1"), Reply::Status(200)]).await;
    // No backoff of its own: any wait is the provider's.
    let client = client(policy("mw-429-retry-after"));

    let response = client.post(&provider.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = provider.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_returns_the_429_at_once() {
    let provider = Provider::start(vec![Reply::RetryAfter(429, "30"), Reply::Status(200)]).await;
    let client = client(policy("mw-429-past-deadline"));

    let response = client.get(&provider.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(provider.seen().len(), 1);
}

#[tokio::test]
async fn exhausted_retries_return_the_last_response() {
    let provider = Provider::start(vec![Reply::Status(503)]).await;
    let client = client(policy("mw-exhausted"));

    let response = client.get(&provider.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text().await.unwrap(), "attempt 3", "the last one");
    assert_eq!(provider.seen().len(), 3);
}

#[tokio::test]
async fn a_permanent_status_is_returned_at_once() {
    let provider = Provider::start(vec![Reply::Status(422), Reply::Status(200)]).await;
    let client = client(policy("mw-permanent"));

    let response = client.put(&provider.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(provider.seen().len(), 1);
}

/// A policy whose attempts are cut after 100 ms.
fn short_timeout(provider: &'static str) -> Policy {
    Policy::builder(provider)
        .timeout(ms(100))
        .deadline(Duration::from_secs(5))
        .retry(retries(2))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_hanging_provider_hits_the_per_attempt_timeout() {
    let provider = Provider::start(vec![Reply::Hang]).await;
    let client = client(short_timeout("mw-hang-get"));

    // A GET is idempotent: the timeout (an unknown outcome) is retried.
    let error = client.get(&provider.url).send().await.unwrap_err();
    let error = buttress_error(&error).expect("buttress ended the call");
    assert_eq!(error.reason(), "timeout", "{error}");
    assert_eq!(provider.count_settled(2).await, 2);
}

#[tokio::test]
async fn a_post_that_times_out_is_not_resent() {
    let provider = Provider::start(vec![Reply::Hang]).await;
    let client = client(short_timeout("mw-hang-post"));

    let error = client.post(&provider.url).send().await.unwrap_err();
    assert_eq!(buttress_error(&error).map(|e| e.reason()), Some("timeout"));
    // The call is over, so no resend can come; the one request may be
    // recorded a moment after the client gave up on it.
    assert_eq!(provider.count_settled(1).await, 1);
}

#[tokio::test]
async fn a_connection_lost_mid_response_is_retried_only_when_idempotent() {
    let (url, count) = cut_mid_response().await;
    let client = client(policy("mw-cut"));

    let error = client.get(&url).send().await.unwrap_err();
    assert!(
        matches!(error, reqwest_middleware::Error::Reqwest(_)),
        "{error:?}"
    );
    assert_eq!(*count.lock().unwrap(), 3, "a GET: every attempt made");

    *count.lock().unwrap() = 0;
    let error = client.post(&url).send().await.unwrap_err();
    assert!(
        matches!(error, reqwest_middleware::Error::Reqwest(_)),
        "{error:?}"
    );
    assert_eq!(*count.lock().unwrap(), 1, "a POST: sent once");
}

#[tokio::test]
async fn failures_open_the_breaker_which_then_refuses_locally() {
    let provider = Provider::start(vec![Reply::Status(503)]).await;
    // The breaker stays open 30 s, longer than the 5 s deadline: a call
    // that meets it is refused at once rather than held for it.
    let policy = Policy::builder("mw-breaker")
        .timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(5))
        .retry(RetryConfig::off())
        .breaker(BreakerConfig::new().with_consecutive_failures(2))
        .build()
        .unwrap();
    let client = client(policy);

    for _ in 0..2 {
        let response = client.get(&provider.url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        Registry::global().breaker("mw-breaker").state(),
        BreakerState::Open
    );

    let error = client.get(&provider.url).send().await.unwrap_err();
    let refusal = buttress_error(&error).expect("refused by buttress");
    assert_eq!(refusal.reason(), "circuit_open");
    assert!(refusal.is_rejection());
    assert_eq!(provider.seen().len(), 2, "the refused request was not sent");
}

#[tokio::test]
async fn the_breaker_is_the_providers_shared_with_other_call_sites() {
    let provider = Provider::start(vec![Reply::Status(200)]).await;
    let client = client(policy("mw-shared"));
    assert_eq!(
        client.get(&provider.url).send().await.unwrap().status(),
        StatusCode::OK
    );

    // An operator (or any other user of "mw-shared") opens it.
    Registry::global().breaker("mw-shared").force_open();
    let error = client.get(&provider.url).send().await.unwrap_err();
    assert_eq!(
        buttress_error(&error).map(|e| e.reason()),
        Some("circuit_open")
    );
    let other: Result<(), buttress_core::Error> =
        policy("mw-shared").run(|| async { Ok(()) }).await;
    assert_eq!(other.unwrap_err().reason(), "circuit_open");
    assert_eq!(provider.seen().len(), 1);

    Registry::global().breaker("mw-shared").reset();
    assert_eq!(
        client.get(&provider.url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(provider.seen().len(), 2);
}

#[tokio::test]
async fn a_streaming_body_is_sent_once() {
    let provider = Provider::start(vec![Reply::Status(503)]).await;
    let client = client(policy("mw-stream"));

    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("part one, "), Ok("part two")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    // A PUT is idempotent and 503 is transient: only the body stops a retry.
    let response = client.put(&provider.url).body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let seen = provider.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, "part one, part two");

    // The same request with a buffered body is retried.
    let provider = Provider::start(vec![Reply::Status(503)]).await;
    let response = client
        .put(&provider.url)
        .body("part one, part two")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(provider.seen().len(), 3);
}

#[tokio::test]
async fn the_deadline_header_carries_the_time_each_attempt_has() {
    let provider = Provider::start(vec![Reply::Status(503), Reply::Status(200)]).await;
    let policy = Policy::builder("mw-deadline-header")
        .timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(5))
        .retry(retries(2))
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest_client())
        .with(
            Resilience::new(policy)
                .with_deadline_header(http::HeaderName::from_static("x-request-timeout")),
        )
        .build();

    let response = client
        .get(&provider.url)
        .header("x-request-timeout", "999999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = provider.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        let budget: u64 = request
            .header("x-request-timeout")
            .expect("the header on every attempt")
            .parse()
            .expect("whole milliseconds");
        // The 2 s timeout is the tighter bound; the caller's value is replaced.
        assert!(budget > 0 && budget <= 2000, "{budget}");
    }
}

#[tokio::test]
async fn without_the_option_no_deadline_header_is_sent() {
    let provider = Provider::start(vec![Reply::Status(200)]).await;
    let client = client(policy("mw-no-deadline-header"));

    client.get(&provider.url).send().await.unwrap();
    let seen = provider.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header("x-request-timeout").is_none());
}
