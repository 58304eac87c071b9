//! A fault-injecting payments and voice provider: a real HTTP server on
//! `127.0.0.1`, following a [`Schedule`] of [`Phase`]s (healthy, 503s, 429s
//! with `Retry-After`, down, connection resets, late answers).
//!
//! It speaks a small Stripe-like JSON API:
//!
//! | endpoint | body | answer |
//! |---|---|---|
//! | `POST /v1/charges` | `{"amount", "currency", "customer"}` | `200 {"id", "amount", "currency", "customer", "status": "succeeded"}` |
//! | `GET /v1/charges/{id}` | | `200` the charge, or `404` |
//! | `POST /v1/refunds` | `{"charge"}` | `200 {"id", "charge", "amount"}`, or `404` for an unknown charge |
//! | `POST /v1/calls` | `{"to", "from"}` | `200 {"id", "to", "from", "status": "queued"}` |
//! | `GET /v1/calls/{id}` | | `200` the call (`queued`, then `in_progress`, then `completed`), or `404` |
//!
//! Malformed bodies get `400`. Errors are `{"error": {"type", "message"}}`.
//!
//! **Idempotency**, as Stripe does it: a `POST` with an `Idempotency-Key`
//! header claims the key when it starts processing. A later request with the
//! same key and the same method, path and JSON body gets the first response
//! back (with `Idempotent-Replayed: true`) and creates nothing; while the
//! first is still processing it gets `409` (`"type": "idempotency_in_progress"`);
//! with a different body it gets `422` (`"type": "idempotency_key_reused"`).
//! Faults decided before processing (503, 429, resets, down) do not touch
//! the key, so the retry of a request that failed that way is processed.
//!
//! **Measurement**: the lab sends `X-Lab-Operation: <n>` on every attempt of
//! logical operation `n`. The provider uses it only to measure what a real
//! provider's customers would find out the hard way: how many side effects
//! each operation had ([`ProviderStats::duplicates`]), and whether a client
//! came back before the `Retry-After` it was given
//! ([`ProviderStats::retry_after_violations`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use buttress_examples::provider::{Phase, ProviderServer, Schedule};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let schedule = Schedule::constant(Duration::from_secs(5), Phase::Down);
//! let provider = ProviderServer::start(schedule, 42).await?;
//! // ... point a client at provider.url ...
//! println!("{} requests", provider.stats().requests);
//! provider.shutdown().await;
//! # Ok(()) }
//! ```

mod net;
pub(crate) mod rng;
mod schedule;
mod server;

pub use schedule::{
    scenario, seeded_scenario, Latency, Phase, Schedule, HEALTHY_TAIL, SCENARIOS,
    STORM_ALLOW_PER_SECOND,
};
pub use server::{Bucket, ProviderServer, ProviderStats, BUCKET, LAB_OPERATION_HEADER};

/// The fault roll of draw number `draw` (see [`draw_index`]) on a server
/// started with `seed`: uniform in `[0, 1)`. A request whose roll is below
/// its phase's `rate` gets the phase's fault (503, reset, late answer).
/// Tests use it to pick seeds that fail exactly the requests they want.
#[must_use]
pub fn fault_roll(seed: u64, draw: u64) -> f64 {
    rng::SplitMix64::for_request(seed, draw).unit()
}

/// The draws of request `draw` (see [`draw_index`]) on a server started
/// with `seed` in `phase`: its fault roll ([`fault_roll`]), then its
/// latency. The server and the lab's oracles take them alike.
pub(crate) fn request_draws(seed: u64, draw: u64, phase: &Phase) -> (f64, std::time::Duration) {
    let mut rng = rng::SplitMix64::for_request(seed, draw);
    let roll = rng.unit();
    (roll, phase.latency().sample(&mut rng))
}

/// Which of the seed's draws (fault roll, then latency) a request takes.
///
/// A request that names its logical operation ([`LAB_OPERATION_HEADER`])
/// takes the draw of its place among that operation's requests (`nth`: 0
/// for the first): every client, and the lab's learning oracle, then meets
/// the same provider luck for the same operation's first request, second
/// request, and so on, whatever else it sent meanwhile (common random
/// numbers, so rows differ by what the clients do, not by which draws
/// they happened to get). Other requests take the draw of their arrival
/// number (0 for the first to arrive).
#[must_use]
pub const fn draw_index(arrival: u64, operation: Option<(u64, u64)>) -> u64 {
    match operation {
        // Operations up to 2^55 and 255 requests each are told apart; the
        // top bit keeps them apart from arrival numbers.
        Some((op, nth)) => (1 << 63) | (op << 8) | if nth < 255 { nth } else { 255 },
        None => arrival,
    }
}
