//! # buttress
//!
//! Calls to third-party providers (payments, voice, messaging, LLM APIs)
//! that survive slow, flaky, rate-limiting and failing providers: per-attempt
//! timeouts and overall deadlines, bounded retries with backoff and jitter
//! under a retry budget, circuit breakers with half-open probing, bulkheads
//! and rate limits.
//!
//! Every policy is shared per provider through the [`Registry`], so every
//! call site of "stripe" trips one breaker and spends one retry budget. The
//! happy path of a call allocates nothing and takes no lock: policy state is
//! atomics, the timeout arms no timer while the body is ready on its first
//! poll, and a healthy count-window breaker records a success with three
//! loads.
//!
//! ## With the macro
//!
//! ```
//! use std::time::Duration;
//! use buttress::{resilient, Classify};
//!
//! #[derive(Debug, thiserror::Error, Classify)]
//! pub enum MapsError {
//!     #[error("throttled")]
//!     #[classify(rate_limited)]
//!     Throttled(#[retry_after] Option<Duration>),
//!     #[error("unavailable")]
//!     #[classify(transient)]
//!     Unavailable,
//!     #[error("no such address")]
//!     #[classify(permanent)]
//!     NotFound,
//!     #[error(transparent)]
//!     #[classify(delegate)]
//!     Resilience(#[from] buttress::Error),
//! }
//!
//! #[resilient(provider = "maps", timeout = "500ms", deadline = "3s", retry(max_attempts = 4))]
//! async fn geocode(address: &str) -> Result<(f64, f64), MapsError> {
//!     if address.is_empty() {
//!         return Err(MapsError::NotFound);
//!     }
//!     Ok((48.85, 2.35))
//! }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! assert_eq!(geocode("Paris").await.unwrap(), (48.85, 2.35));
//! # }
//! ```
//!
//! ### What `#[resilient]` expands to
//!
//! A `static` call site (its policy built on first use, and again only after
//! the registry's settings change, such as a configuration file reloaded; a
//! call reads two atomics and takes no lock) and a short loop that re-runs the body inline, once per
//! attempt, so the body may borrow `self` and the arguments:
//!
//! ```ignore
//! async fn geocode(address: &str) -> Result<(f64, f64), MapsError> {
//!     static __BUTTRESS_SITE: ::buttress::__private::Site = ::buttress::__private::Site::new(
//!         ::buttress::__private::PolicyConfig::named("maps", "geocode")
//!             .with_timeout(::buttress::__private::Some(::buttress::__private::Duration::new(0, 500_000_000)))
//!             .with_deadline(::buttress::__private::Some(::buttress::__private::Duration::new(3, 0)))
//!             .with_retry(::buttress::__private::RetryConfig::new().with_max_attempts(4u32)),
//!     );
//!     let mut __buttress_call =
//!         match ::buttress::__private::begin::<Result<(f64, f64), MapsError>>(&__BUTTRESS_SITE) {
//!             ::buttress::__private::Ok(call) => call,
//!             ::buttress::__private::Err(e) => return ::buttress::__private::Err(::core::convert::From::from(e)),
//!         };
//!     loop {
//!         if let ::buttress::__private::ControlFlow::Break(result) =
//!             __buttress_call.attempt(async { /* the original body */ }).await
//!         {
//!             break result;
//!         }
//!     }
//! }
//! ```
//!
//! [`Call::attempt`] does the rest: admission (breaker, rate limit,
//! bulkhead), the timeout, recording the outcome, and the retry decision
//! with its backoff sleep.
//!
//! ## Without the macro
//!
//! ```
//! use std::time::Duration;
//! use buttress::{Classify, Error, ErrorClass, Policy};
//! use buttress::breaker::BreakerConfig;
//! use buttress::retry::{Backoff, Jitter, RetryConfig};
//!
//! #[derive(Debug)]
//! enum SmsError { Busy, BadNumber, Buttress(Error) }
//!
//! impl Classify for SmsError {
//!     fn class(&self) -> ErrorClass {
//!         match self {
//!             SmsError::Busy => ErrorClass::Transient,
//!             SmsError::BadNumber => ErrorClass::Permanent,
//!             SmsError::Buttress(e) => e.class(),
//!         }
//!     }
//! }
//! impl From<Error> for SmsError {
//!     fn from(e: Error) -> Self { SmsError::Buttress(e) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let policy = Policy::builder("sms")
//!     .timeout(Duration::from_secs(2))
//!     .deadline(Duration::from_secs(10))
//!     .retry(RetryConfig::new()
//!         .with_max_attempts(4)
//!         .with_backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2)))
//!         .with_jitter(Jitter::Full))
//!     .breaker(BreakerConfig::new().with_failure_rate(0.5).with_min_calls(10))
//!     .build()
//!     .expect("valid policy");
//!
//! let mut busy_left = 2;
//! let sent = policy
//!     .run(|| {
//!         let busy = busy_left > 0;
//!         busy_left -= 1;
//!         async move { if busy { Err(SmsError::Busy) } else { Ok("queued") } }
//!     })
//!     .await;
//! assert_eq!(sent.unwrap(), "queued");
//! # }
//! ```
//!
//! ## Policy order
//!
//! Outermost first: idempotency dedup → deadline → retry (with budget) →
//! breaker → rate limit → bulkhead → per-attempt timeout → body. Every
//! attempt passes the breaker and the rate limiter; waiting for the rate
//! limiter or the bulkhead spends the deadline.
//!
//! ## Modules
//!
//! One module per policy, each documenting what it guarantees:
//! [`retry`], [`budget`], [`breaker`], [`bulkhead`], [`rate_limit`],
//! [`timeout`](crate::Call) (inside the call driver), [`idempotency`],
//! [`dlq`] (dead letters and replay), and the [`Registry`].
//! With the `serde-config` feature, `config` loads providers' and
//! operations' policies from TOML, YAML or JSON files and reloads them at
//! run time; with the `webhook` feature, `webhook` verifies and
//! deduplicates inbound webhooks.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod adaptive_timeout;
mod bound;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
mod call;
mod circuit;
mod class;
mod clock;
#[cfg(feature = "serde-config")]
pub mod config;
#[cfg(feature = "redis")]
mod connection;
mod context;
pub mod dlq;
mod error;
pub mod events;
pub mod idempotency;
mod integrations;
#[cfg(feature = "http")]
pub use integrations::http;
#[cfg(feature = "reqwest")]
pub use integrations::reqwest;
#[cfg(all(test, buttress_loom))]
mod loom_models;
mod macro_support;
mod outcome;
mod policy;
mod policy_config;
pub mod rate_limit;
pub mod recovery;
mod registry;
pub mod retry;
mod rng;
#[cfg(feature = "redis")]
pub mod shared_quota;
mod site;
mod sync;
pub mod telemetry;
pub mod throttle;
mod timeout;

pub use breaker::BreakerState;
pub use call::{Call, CallOutcome, Rejection};
pub use class::{classify_io_kind, Classify, ErrorClass};
#[cfg(feature = "serde-config")]
pub use config::ConfigErrors;
pub use context::{attempt, correlation_id, idempotency_key, remaining, with_correlation_id};
pub use dlq::DeadLetterSink;
pub use error::{ConfigError, Error};
pub use idempotency::IdempotencyStore;
pub use policy::{Policy, PolicyBuilder};
pub use policy_config::PolicyConfig;
pub use registry::{BreakerHandle, Provider, Registry, SharedConfig};
pub use rng::Rng;

/// Checks that show the library keeps its own promises, for tests,
/// benchmarks and operators: how many policies are alive (flat however
/// often a configuration is reloaded) and how many of buttress's locks a
/// thread has taken (none on the happy path of a call).
pub mod diagnostics {
    pub use crate::bound::live_policies;
    pub use crate::sync::locks_taken_on_this_thread;
}

/// Not public API: what generated code reaches for. Named after the crate's
/// version, which the macros put in every path they generate, so a macro
/// crate and a runtime of different versions do not build together.
#[doc(hidden)]
pub mod __private_0_1_0 {
    pub use crate::adaptive_timeout::AdaptiveTimeoutConfig;
    pub use crate::breaker::{BreakerConfig, Window};
    pub use crate::budget::BudgetConfig;
    pub use crate::bulkhead::BulkheadConfig;
    pub use crate::dlq::{DeadLetterArgs, DeadLetterOn};
    pub use crate::idempotency::{fingerprint_of, DedupOptions, OnStoreError};
    pub use crate::macro_support::{
        begin, begin_inferred, begin_with, begin_with_inferred, dead_letter_due, dead_letter_entry,
        key_string, send_dead_letter, site_policy, DeadLetterError, IsResult, ResilientError,
        RetryAfterField, SitePolicy,
    };
    pub use crate::rate_limit::{LimiterClock, RateLimitConfig};
    pub use crate::recovery::RecoveryConfig;
    pub use crate::retry::{Backoff, Jitter, RetryConfig};
    pub use crate::site::Site;
    pub use crate::throttle::ThrottleConfig;
    pub use crate::{Call, Classify, Error, ErrorClass, Policy, PolicyConfig};
    pub use core::ops::ControlFlow;
    pub use core::option::Option::{self, None, Some};
    pub use core::pin::pin;
    pub use core::result::Result::{self, Err, Ok};
    pub use core::time::Duration;
}

// The hidden module's name must follow the version (see `__private_0_1_0`).
const _: () = assert!(
    matches!(env!("CARGO_PKG_VERSION").as_bytes(), b"0.1.0"),
    "rename `__private_0_1_0` after the crate's version"
);

#[cfg(feature = "macros")]
pub use buttress_macros::{resilient, Classify};

/// Not public API: what the backend crates (`buttress-redis`,
/// `buttress-postgres`) share with the core. No semver guarantee.
#[doc(hidden)]
pub mod __backend {
    pub use crate::clock::later;
    #[cfg(feature = "redis")]
    pub use crate::connection::redis;
}
