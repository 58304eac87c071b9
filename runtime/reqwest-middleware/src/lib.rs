//! buttress for [`reqwest_middleware`]: every request a
//! [`ClientWithMiddleware`](reqwest_middleware::ClientWithMiddleware) sends
//! becomes one call under a buttress [`Policy`](buttress_core::Policy), in
//! one line.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use buttress_core::retry::RetryConfig;
//! use buttress_core::Policy;
//! use buttress_reqwest_middleware::Resilience;
//! use reqwest_middleware::ClientBuilder;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The provider's policy: its breaker, retry budget, rate limit and
//!     // bulkhead are shared with every other user of "maps" in the process.
//!     let policy = Policy::builder("maps")
//!         .timeout(Duration::from_secs(2))
//!         .deadline(Duration::from_secs(10))
//!         .retry(RetryConfig::new().with_max_attempts(4))
//!         .build()?;
//!     let client = ClientBuilder::new(reqwest::Client::new())
//!         .with(Resilience::new(policy))
//!         .build();
//!
//!     // A GET is idempotent: retried after a 503, a 504 or a timeout alike.
//!     let route = client
//!         .get("https://maps.example.com/v1/route?from=a&to=b")
//!         .send()
//!         .await?;
//!     println!("{}", route.status());
//!
//!     // A POST is retried after a 500, 502, 504 or a timeout only with an
//!     // `Idempotency-Key`, sent unchanged on every attempt.
//!     let saved = client
//!         .post("https://maps.example.com/v1/places")
//!         .header("Idempotency-Key", "place-42")
//!         .body(r#"{"name":"home"}"#)
//!         .send()
//!         .await?;
//!     println!("{}", saved.status());
//!     Ok(())
//! }
//! ```
//!
//! # What a request goes through
//!
//! A request is one logical call. Each attempt passes, outermost first,
//! the deadline, the retry policy with its budget, the breaker, the rate
//! limit and the bulkhead, and runs under the per-attempt timeout, as a
//! `#[resilient]` function does. The policy's telemetry (a span per call
//! and per attempt, the metrics) comes with it.
//!
//! A request that meets an open breaker or a provider-wide `Retry-After`
//! pause waits for recovery inside its deadline, sending nothing, when the
//! policy's recovery says so (the default); it is refused at once when the
//! pause cannot end before its deadline, or with
//! `RecoveryConfig::fail_fast()`.
//!
//! The per-attempt timeout covers the rest of the middleware stack and
//! reqwest until the response's head arrives; reading the body happens
//! later, in the caller, so bound it with reqwest's own `timeout`.
//!
//! # Which requests are retried
//!
//! Failures are classified by buttress's rules: statuses by
//! `Classify for http::StatusCode`, transport errors by
//! `Classify for reqwest::Error`.
//!
//! - **Transient** (408, 425, 503, connection refused) and **rate
//!   limited** (429) failures are retried for any request, a 429's or 503's
//!   `Retry-After` honoured (no retry sooner; none at all if the wait does
//!   not fit in the deadline).
//! - **Outcome unknown** failures (500, 502, 504, a timeout or a reset
//!   after the request was sent) may have been acted on. They are retried
//!   only for an idempotent request: a method idempotent by RFC 9110 (GET,
//!   HEAD, OPTIONS, TRACE, PUT, DELETE), or a request with an
//!   `Idempotency-Key` header, or any request when the policy is
//!   `idempotent(true)`. A POST or PATCH without a key is never resent after
//!   such a failure. The [`Idempotent`] marker in a request's extensions
//!   overrides all of these, either way.
//! - **Permanent** failures (every other 4xx and 5xx) are not retried.
//!
//! An `Idempotency-Key` header is also the call's idempotency key
//! (`buttress_core::Call::set_key`), and, being part of the request, is
//! sent unchanged on every attempt.
//!
//! # What the caller gets back
//!
//! - A response, whatever its status, when the provider answered: on
//!   success, and also when the retries end on an error status (attempts,
//!   deadline or budget exhausted, or a status that is not retried). The
//!   last response is returned as is, as `reqwest-retry` does, so
//!   `response.error_for_status()` and the body work as without the
//!   middleware.
//! - `reqwest_middleware::Error::Reqwest` for reqwest's own errors
//!   (refused, reset, ...) when the retries end on one, and whatever a
//!   middleware added after this one returned.
//! - `reqwest_middleware::Error::Middleware` wrapping a
//!   [`buttress_core::Error`] when buttress ended the call: a local refusal
//!   (`CircuitOpen`, `BudgetExhausted`, `BulkheadFull`, `RateLimited`,
//!   `Throttled`), `DeadlineExceeded`, or `Timeout` (the last attempt's
//!   per-attempt timeout). Get it with [`buttress_error`], or
//!   `anyhow::Error::downcast_ref::<buttress_core::Error>()`.
//!
//! ```no_run
//! use buttress_reqwest_middleware::buttress_error;
//!
//! async fn route(client: &reqwest_middleware::ClientWithMiddleware) -> Option<String> {
//!     match client.get("https://maps.example.com/v1/route").send().await {
//!         Ok(response) if response.status().is_success() => response.text().await.ok(),
//!         Ok(response) => {
//!             eprintln!("the provider said {}", response.status());
//!             None
//!         }
//!         Err(error) => {
//!             match buttress_error(&error) {
//!                 Some(refused) if refused.is_rejection() => eprintln!("not sent: {refused}"),
//!                 Some(ended) => eprintln!("given up: {ended}"),
//!                 None => eprintln!("transport: {error}"),
//!             }
//!             None
//!         }
//!     }
//! }
//! ```
//!
//! # Bodies that cannot be sent twice
//!
//! Every attempt sends a copy of the request (`Request::try_clone`): cheap
//! for buffered bodies (bytes, strings, JSON), which are reference counted.
//! A streaming body (`reqwest::Body::wrap_stream`) is consumed as it is
//! sent, so such a request gets **one attempt only**: it still goes
//! through the breaker, rate limit, bulkhead and timeout, and its failure
//! comes back as it is. Buffer the body to have it retried.
//!
//! # A deadline that travels
//!
//! [`Resilience::with_deadline_header`] sends, on every attempt, the time
//! that attempt has left in milliseconds, so that a provider that reads it
//! can stop working on an answer nobody will wait for.
//!
//! # Placing it in the stack
//!
//! Add `Resilience` before (outside) the middleware that should run once
//! per attempt (tracing of each attempt, authentication that signs each
//! request), and do not stack another retrying middleware with it: retries
//! would multiply. The policy's `hedge` setting is not used here.

#![deny(missing_docs)]

mod failure;
mod idempotent;
mod middleware;

pub use idempotent::{is_idempotent_method, Idempotent};
pub use middleware::{buttress_error, Resilience};
