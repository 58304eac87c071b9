//! # buttress
//!
//! Calls to third-party providers (payments, voice, messaging, LLM APIs)
//! that survive slow, flaky, rate-limiting and failing providers: per-attempt
//! timeouts and overall deadlines, bounded retries with backoff and jitter
//! under a retry budget, circuit breakers with half-open probing, bulkheads
//! and rate limits.
//!
//! This crate is the one to depend on. It re-exports the core
//! ([`buttress-core`](https://docs.rs/buttress-core): the policies, the
//! registry, idempotency and dead letters, telemetry, the macros) and, by
//! cargo feature, the backends:
//!
//! | feature | crate | adds |
//! |---|---|---|
//! | `redis` | `buttress-redis` | `idempotency::RedisStore`, `dlq::RedisSink`, `shared_quota` |
//! | `postgres` | `buttress-postgres` | `idempotency::PostgresStore`, `dlq::PostgresSink` |
//! | `webhook` | `buttress-webhook` | `webhook`: verified, deduplicated inbound webhooks |
//! | `axum` | `buttress-webhook` | `webhook::axum`: the extractor |
//! | `tower` | `buttress-tower` | `tower::ResilienceLayer`: every request of a tower service (hyper, tonic) as one resilient call |
//! | `reqwest-middleware` | `buttress-reqwest-middleware` | `reqwest_middleware::Resilience`: every request of a `ClientWithMiddleware` as one resilient call |
//!
//! See the core's documentation, re-exported below, for everything else.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[doc(inline)]
pub use buttress_core::*;

/// Idempotency keys and their stores: see the core's
/// [`idempotency`](buttress_core::idempotency) module, plus the Redis and
/// PostgreSQL stores when their features are on.
pub mod idempotency {
    #[doc(inline)]
    pub use buttress_core::idempotency::*;
    #[cfg(feature = "postgres")]
    #[doc(inline)]
    pub use buttress_postgres::PostgresStore;
    #[cfg(feature = "redis")]
    #[doc(inline)]
    pub use buttress_redis::RedisStore;
}

/// Dead letters: see the core's [`dlq`](buttress_core::dlq) module, plus
/// the Redis and PostgreSQL sinks when their features are on.
pub mod dlq {
    #[doc(inline)]
    pub use buttress_core::dlq::*;
    #[cfg(feature = "postgres")]
    #[doc(inline)]
    pub use buttress_postgres::PostgresSink;
    #[cfg(feature = "redis")]
    #[doc(inline)]
    pub use buttress_redis::RedisSink;
}

#[cfg(feature = "webhook")]
#[doc(inline)]
pub use buttress_webhook as webhook;

#[cfg(feature = "reqwest-middleware")]
#[doc(inline)]
pub use buttress_reqwest_middleware as reqwest_middleware;

#[cfg(feature = "tower")]
#[doc(inline)]
pub use buttress_tower as tower;

/// The book's chapters, compiled and run as doctests so no example can rot.
#[cfg(doctest)]
mod book {
    #[doc = include_str!("../../book/src/getting-started.md")]
    struct GettingStarted;
    #[doc = include_str!("../../book/src/resilient.md")]
    struct Resilient;
    #[doc = include_str!("../../book/src/classify.md")]
    struct ClassifyChapter;
    #[doc = include_str!("../../book/src/policies.md")]
    struct Policies;
    #[cfg(feature = "redis")]
    #[doc = include_str!("../../book/src/shared-quota.md")]
    struct SharedQuotaChapter;
    #[doc = include_str!("../../book/src/idempotency.md")]
    struct Idempotency;
    #[doc = include_str!("../../book/src/dead-letters.md")]
    struct DeadLetters;
    #[cfg(all(feature = "http", feature = "reqwest"))]
    #[doc = include_str!("../../book/src/http-clients.md")]
    struct HttpClients;
    #[cfg(feature = "reqwest-middleware")]
    #[doc = include_str!("../../book/src/middleware.md")]
    struct Middleware;
    #[cfg(all(feature = "tower", feature = "http"))]
    #[doc = include_str!("../../book/src/tower.md")]
    struct Tower;
    #[cfg(feature = "metrics")]
    #[doc = include_str!("../../book/src/observability.md")]
    struct Observability;
    #[cfg(feature = "serde-config")]
    #[doc = include_str!("../../book/src/configuration.md")]
    struct Configuration;
    #[cfg(feature = "serde-config")]
    #[doc = include_str!("../../book/src/runbook.md")]
    struct Runbook;
    #[cfg(all(feature = "webhook", feature = "axum"))]
    #[doc = include_str!("../../book/src/webhooks.md")]
    struct Webhooks;
}
