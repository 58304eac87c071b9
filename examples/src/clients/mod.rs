//! Realistic clients of the [provider](crate::provider), over reqwest.
//!
//! - [`payments`]: charges and refunds, every creating call `#[resilient]`
//!   and idempotent with a caller-chosen key sent as `Idempotency-Key`.
//! - [`voice`]: placing calls and reading their status.
//! - [`peer`]: the lab's charge built from tower and tower-resilience, the
//!   peers' way, with buttress's settings.
//! - [`lab`]: the clients the outage lab compares on the same operation
//!   (buttress, the tower peer, a naive retry loop, no retries at all).
//!
//! Every client sends `X-Lab-Operation` when its request says which logical
//! operation it belongs to. That header is lab instrumentation (the provider
//! counts effects per operation with it), not something a real provider
//! wants.

use std::time::Duration;

use buttress::reqwest::HttpError;

pub mod lab;
pub mod payments;
pub mod peer;
pub mod voice;

/// A reqwest client for the provider on `127.0.0.1`: no proxy (a proxy from
/// the environment would otherwise see loopback traffic), a short connect
/// timeout. Per-request timeouts are the callers' business.
///
/// # Panics
/// If reqwest cannot build a plain HTTP client (it always can without TLS).
#[must_use]
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("a plain HTTP client always builds")
}

/// Whether an error response is the provider's `409`: "a request with this
/// idempotency key is still being processed".
pub(crate) fn is_in_progress(error: &HttpError) -> bool {
    error.status() == http::StatusCode::CONFLICT && error.body().contains("idempotency_in_progress")
}
