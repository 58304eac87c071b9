//! A tower [`Layer`](tower_layer::Layer) over buttress policies: every
//! request through the wrapped service is one logical call under a
//! [`buttress_core::Policy`] — per-attempt timeout, deadline, retries with
//! backoff under the provider's retry budget, breaker, rate limit and
//! bulkhead — sharing the provider's state with every `#[resilient]`
//! function and every other layer that names the same provider.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use buttress_core::Policy;
//! use buttress_core::retry::{Backoff, RetryConfig};
//! use buttress_tower::{ByError, ResilienceLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let policy = Policy::builder("crate-doc")
//!     .retry(RetryConfig::new().with_max_attempts(3).with_backoff(Backoff::constant(Duration::ZERO)))
//!     .build()
//!     .unwrap();
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = Arc::clone(&calls);
//! let flaky = service_fn(move |name: String| {
//!     let n = seen.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         if n == 0 {
//!             // Refused before anything was sent: `Transient`, retried.
//!             Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
//!         } else {
//!             Ok(format!("hello, {name}"))
//!         }
//!     }
//! });
//! let service = ServiceBuilder::new()
//!     .layer(ResilienceLayer::new(policy).classify_with(ByError))
//!     .service(flaky);
//! let answer = service.oneshot(String::from("ada")).await.unwrap();
//! assert_eq!(answer, "hello, ada");
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # }
//! ```
//!
//! # What it needs from the request, the response and the service
//!
//! - The request implements [`Replay`]: a copy per attempt (plain `Clone`
//!   types, `http::Request` with a replayable body, tonic's request body
//!   recorded as it is sent). A request that cannot be copied gets no
//!   further attempt. [`Replay::is_idempotent`] (an idempotent HTTP
//!   method, an `Idempotency-Key` header, the [`Idempotent`] extension)
//!   lets `OutcomeUnknown` failures be retried for that request.
//! - A [`ClassifyResponse`] says what each outcome means ([`Standard`] by
//!   default: HTTP statuses, `grpc-status`, transport errors by their
//!   source chain; [`ByError`] for error types implementing `Classify`).
//!   A failed *response* (a `503`) is retried like an error, and if the
//!   call gives up it is returned as the response, unchanged.
//! - The inner service is `Clone` (retries use a clone, made ready with
//!   `ServiceExt::ready`).
//!
//! # Errors
//!
//! The service's error is [`Error<S::Error>`](Error): the inner service's
//! error, or a local refusal (`CircuitOpen`, `BudgetExhausted`,
//! `BulkheadFull`, `RateLimited`, `Timeout`, `DeadlineExceeded`). It
//! implements `std::error::Error` with the inner error as its source, so
//! it converts into `tower::BoxError` and works as a tonic client's
//! transport (`Error: Into<StdError>`), while a caller that wants to tell
//! a refusal from the provider's failure can match on it without
//! downcasting — which a `BoxError` would force on every user.
//!
//! # `poll_ready`
//!
//! With [`Readiness::Honest`] (the default) the service is not ready while
//! the provider's breaker is open and not due a probe (woken when it is),
//! forced open, or while its bulkhead has no free slot (looked at again
//! every [`RECHECK`]). Under tower's `Balance`, an endpoint whose breaker
//! is open is then skipped for ready ones; under `Buffer`, requests wait
//! in the buffer (bounded by its capacity) until the breaker admits a
//! probe — put `tower::load_shed` in front, or choose
//! [`Readiness::FailFast`], for an immediate `CircuitOpen` instead.
//!
//! # Features
//!
//! - `http`: `http::Request`/`http::Response` support, gRPC status codes
//!   in response headers ([`grpc_code`]), `grpc-timeout` from the call's
//!   remaining time.
//! - `tonic`: tonic's request body replayed, `tonic::Status` classified.
#![deny(missing_docs)]

mod classify;
mod error;
#[cfg(feature = "tonic")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod grpc_code;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod replay;
mod service;

pub use classify::{
    classify_error_chain, ByError, ClassifyResponse, Failure, ResponseClass, Standard,
};
pub use error::Error;
pub use layer::{Readiness, ResilienceLayer};
pub use replay::{Idempotent, Replay, TimeLeft};
pub use service::{Resilience, ResponseFuture, RECHECK};
