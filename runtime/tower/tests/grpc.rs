//! End to end over tonic: a hand-written gRPC server on 127.0.0.1 and a
//! client whose `Channel` is wrapped by the layer. The clock is paused, so
//! backoffs and pushback waits pass at once and are measured exactly; the
//! policies have no attempt timeout or deadline (those are tested over
//! `service_fn`), since a paused clock also jumps while sockets are busy.

#[path = "support/greeter.rs"]
mod greeter;

use std::time::Duration;

use buttress_core::retry::{Backoff, Jitter, RetryConfig};
use buttress_core::Policy;
use buttress_tower::{Idempotent, ResilienceLayer};
use greeter::{Greeter, GreeterClient, HelloRequest};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tower::ServiceBuilder;

fn policy(provider: &'static str) -> Policy {
    Policy::builder(provider)
        .no_timeout()
        .no_deadline()
        .no_breaker()
        .retry(
            RetryConfig::new()
                .with_max_attempts(4)
                .with_backoff(Backoff::constant(Duration::from_millis(100)))
                .with_jitter(Jitter::None)
                .with_budget(None),
        )
        .build()
        .unwrap()
}

async fn client(
    greeter: &Greeter,
    provider: &'static str,
) -> GreeterClient<buttress_tower::Resilience<Channel, buttress_tower::Standard>> {
    let addr = greeter.clone().serve().await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(ResilienceLayer::new(policy(provider)))
        .service(channel);
    GreeterClient::new(service)
}

fn hello(name: &str) -> Request<HelloRequest> {
    Request::new(HelloRequest { name: name.into() })
}

#[tokio::test(start_paused = true)]
async fn unavailable_twice_then_ok() {
    let greeter = Greeter::scripted([Status::unavailable("down"), Status::unavailable("down")]);
    let mut client = client(&greeter, "grpc-unavailable").await;
    let reply = client.say_hello(hello("ada")).await.unwrap();
    assert_eq!(reply.into_inner().message, "hello, ada");
    assert_eq!(greeter.calls(), 3);
    // Every attempt carried the same, complete request body.
    let seen = greeter.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.name == "ada"), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn invalid_argument_is_not_retried() {
    let greeter = Greeter::scripted([Status::invalid_argument("bad name")]);
    let mut client = client(&greeter, "grpc-invalid").await;
    let status = client.say_hello(hello("?")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "bad name",
        "the server's own status reaches the caller"
    );
    assert_eq!(greeter.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn resource_exhausted_is_paced_by_retry_info() {
    let greeter = Greeter::scripted([greeter::resource_exhausted(Duration::from_secs(2))]);
    let mut client = client(&greeter, "grpc-exhausted").await;
    let reply = client.say_hello(hello("grace")).await.unwrap();
    assert_eq!(reply.into_inner().message, "hello, grace");
    let seen = greeter.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, not after the 2s asked"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unknown_outcome_is_retried_only_for_a_request_marked_idempotent() {
    let greeter = Greeter::scripted([Status::internal("crashed"), Status::internal("crashed")]);
    let mut client = client(&greeter, "grpc-internal").await;
    let status = client.say_hello(hello("bob")).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(
        greeter.calls(),
        1,
        "a POST without the marker is not repeated"
    );

    let mut request = hello("bob");
    request.extensions_mut().insert(Idempotent);
    let reply = client.say_hello(request).await.unwrap();
    assert_eq!(reply.into_inner().message, "hello, bob");
    assert_eq!(
        greeter.calls(),
        3,
        "with the marker: the second INTERNAL is retried"
    );
}

#[tokio::test(start_paused = true)]
async fn each_attempt_carries_the_time_left_as_grpc_timeout() {
    let greeter = Greeter::scripted([Status::unavailable("down")]);
    let addr = greeter.clone().serve().await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let policy = Policy::builder("grpc-timeout-header")
        .timeout(Duration::from_secs(2000))
        .deadline(Duration::from_secs(2300))
        .retry(
            RetryConfig::new()
                .with_backoff(Backoff::constant(Duration::from_secs(600)))
                .with_jitter(Jitter::None)
                .with_budget(None),
        )
        .no_breaker()
        .build()
        .unwrap();
    let mut client = GreeterClient::new(
        ServiceBuilder::new()
            .layer(ResilienceLayer::new(policy))
            .service(channel),
    );
    client.say_hello(hello("eve")).await.unwrap();
    let seen = greeter.seen.lock().unwrap().clone();
    let timeouts: Vec<_> = seen.iter().map(|s| s.grpc_timeout.clone()).collect();
    // The first attempt: its timeout (2000s) is the tighter bound; the
    // second, after a 600s backoff: the deadline's 1700s left.
    assert_eq!(
        timeouts,
        [Some("2000000m".to_owned()), Some("1700000m".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_reaches_a_tonic_caller_with_the_refusal_as_its_source() {
    let greeter = Greeter::default();
    let addr = greeter.clone().serve().await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let layer =
        ResilienceLayer::new(policy("grpc-refused")).readiness(buttress_tower::Readiness::FailFast);
    let mut client = GreeterClient::new(ServiceBuilder::new().layer(layer).service(channel));
    buttress_core::Registry::global()
        .breaker("grpc-refused")
        .force_open();
    let status = client.say_hello(hello("zoe")).await.unwrap_err();
    buttress_core::Registry::global()
        .breaker("grpc-refused")
        .reset();
    let refusal = std::error::Error::source(&status)
        .and_then(|e| e.downcast_ref::<buttress_tower::Error<tonic::transport::Error>>());
    assert!(
        matches!(
            refusal,
            Some(buttress_tower::Error::Resilience(
                buttress_core::Error::CircuitOpen { .. }
            ))
        ),
        "{status:?}"
    );
    assert_eq!(greeter.calls(), 0, "nothing was sent");
}
