//! A tonic client whose channel is wrapped by the layer in one line,
//! against a flaky gRPC server on 127.0.0.1 (no protoc: the messages and
//! the client are written by hand, in `tests/support/greeter.rs`).
//!
//! ```text
//! cargo run -p buttress-tower --example grpc --features tonic
//! ```

#[path = "../tests/support/greeter.rs"]
#[allow(dead_code)]
mod greeter;

use std::time::Duration;

use buttress_core::retry::{Backoff, RetryConfig};
use buttress_core::Policy;
use buttress_tower::ResilienceLayer;
use greeter::{Greeter, GreeterClient, HelloRequest};
use tonic::transport::Channel;
use tonic::Status;
use tower::ServiceBuilder;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server fails twice with UNAVAILABLE, then answers.
    let greeter = Greeter::scripted([
        Status::unavailable("warming up"),
        Status::unavailable("warming up"),
    ]);
    let addr = greeter.clone().serve().await;

    let policy = Policy::builder("greeter")
        .timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(5))
        .retry(
            RetryConfig::new()
                .with_max_attempts(4)
                .with_backoff(Backoff::exponential(
                    Duration::from_millis(50),
                    Duration::from_secs(1),
                )),
        )
        .build()?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let channel = ServiceBuilder::new()
        .layer(ResilienceLayer::new(policy))
        .service(channel);

    let mut client = GreeterClient::new(channel);
    let reply = client
        .say_hello(tonic::Request::new(HelloRequest { name: "ada".into() }))
        .await?;
    println!(
        "{} (after {} calls to the server)",
        reply.into_inner().message,
        greeter.calls()
    );
    Ok(())
}
