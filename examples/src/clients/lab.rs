//! The clients the outage lab compares, all creating charges
//! (`POST /v1/charges`) against the same provider:
//!
//! - [`Variant::Buttress`]: [`PaymentsClient::create_charge`], the
//!   `#[resilient]` method: per-attempt timeout, deadline, jittered
//!   exponential backoff honouring `Retry-After`, a retry budget, a circuit
//!   breaker, and one idempotency key per operation.
//! - [`Variant::Peer`] (`tower`): [`PeerClient::create_charge`], the same
//!   operation built from published crates the way their documentation
//!   shows (tower's retry, retry budget, timeout and concurrency limit, the
//!   `tower-resilience` circuit breaker), with buttress's settings wherever
//!   those crates can express them, and one idempotency key per operation.
//!   See [`peer`](super::peer) for what they cannot express.
//! - [`Variant::Naive`]: what many hand-written clients do: up to 3 retries
//!   after any failure, a fixed 100 ms apart (no jitter, no budget, no
//!   breaker, `Retry-After` ignored), and an idempotency key generated per
//!   request, so each retry looks like a new charge to the provider.
//! - [`Variant::None`]: one attempt, no retry.
//!
//! All of them use the same 500 ms per-attempt timeout, and send
//! `X-Lab-Operation` so the provider can count effects per operation.
//! [`Variant::settings`] gives each one's settings in a line.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use buttress::Registry;

use super::http_client;
use super::payments::{with_operation, ChargeRequest, PaymentsClient, PaymentsError};
use super::peer::PeerClient;

/// The provider name the Buttress variant's shared state is registered under.
const PROVIDER: &str = "payments";

/// The per-attempt timeout of every variant.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);

/// The naive loop's attempts (1 + 3 retries) and its fixed delay.
const NAIVE_ATTEMPTS: u32 = 4;
const NAIVE_DELAY: Duration = Duration::from_millis(100);

/// Which client the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The `#[resilient]` [`PaymentsClient`].
    Buttress,
    /// The [`PeerClient`], from tower and tower-resilience; named `tower`.
    Peer,
    /// A hand-written retry loop.
    Naive,
    /// A single attempt.
    None,
}

impl Variant {
    /// Every variant, in presentation order.
    pub const ALL: [Self; 4] = [Self::Buttress, Self::Peer, Self::Naive, Self::None];

    /// `"buttress"`, `"tower"`, `"naive"` or `"none"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Buttress => "buttress",
            Self::Peer => "tower",
            Self::Naive => "naive",
            Self::None => "none",
        }
    }

    /// The variant's settings, in one line.
    #[must_use]
    pub const fn settings(self) -> &'static str {
        match self {
            Self::Buttress => {
                "#[resilient] PaymentsClient: 500 ms per attempt, adaptive between 100 ms and \
                 2 s (1.5x the p95 of recent answers; a cut attempt is kept running beside its retries), 5 s deadline, up to 5 \
                 attempts, exponential backoff 25 ms-2 s with full jitter and never sooner than \
                 a 429's Retry-After, retry budget ratio 0.2 (cap 50), breaker opening after 10 \
                 failures in a row or at a 90% failure rate over a 500 ms window once 10 calls \
                 were seen, open 50 ms then probing with one call every 50 ms; default \
                 recovery: calls wait inside their deadline, released earliest deadline first \
                 at 1.5x the rate of new calls, one cooldown per Retry-After; one idempotency \
                 key per operation"
            }
            Self::Peer => {
                "tower 0.5 + tower-resilience 0.13 (circuitbreaker): 5 s deadline \
                 (tokio::time::timeout) > Retry (up to 5 attempts; TpsBudget::default(): 10 s \
                 window, 10 retries/s reserve, 20% of successes; backoff 25 ms-2 s with full \
                 jitter; retries connection errors, timeouts, 5xx, 409, 429; Retry-After ignored, \
                 tower has no support for it) > breaker (opening after 10 failures in a row: \
                 tower-resilience takes one failure model, a rate or a streak, not both; open \
                 50 ms, 1 half-open probe) > ConcurrencyLimit 256 > Timeout 500 ms per \
                 attempt; one idempotency key per operation"
            }
            Self::Naive => {
                "hand-written loop: 500 ms per attempt, up to 3 retries a fixed 100 ms apart after any \
                 error, no jitter, no budget, no breaker, Retry-After ignored, a new idempotency \
                 key per attempt"
            }
            Self::None => "one 500 ms attempt, no retry, no idempotency key",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`Variant`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown client variant `{0}` (expected buttress, tower, naive or none)")]
pub struct UnknownVariant(pub String);

impl FromStr for Variant {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        // `peer` is accepted too, for the tower variant.
        if name.eq_ignore_ascii_case("peer") {
            return Ok(Self::Peer);
        }
        Self::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownVariant(s.to_owned()))
    }
}

/// How one logical operation ended, as its caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The charge was created (the caller got a 2xx).
    pub ok: bool,
    /// How long the caller waited, retries included.
    pub latency: Duration,
    /// The operation ended with the client refusing to send (an open
    /// circuit breaker, a full bulkhead, a local rate limit) rather than
    /// with a provider error: a fast failure that spared the provider. An
    /// operation refused before its first attempt never reached the
    /// provider; one refused on a retry had sent its earlier attempts.
    /// Always `false` for the naive and single-attempt clients; for the
    /// tower client, `true` when its breaker refused an attempt.
    pub rejected_locally: bool,
}

/// Distinguishes the idempotency keys of clients in one process, so two lab
/// runs against the same provider never share keys.
static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
enum Inner {
    Buttress(PaymentsClient),
    Peer(PeerClient),
    Plain { http: reqwest::Client, base: String },
}

/// One client variant, pointed at one provider.
#[derive(Debug)]
pub struct LabClient {
    variant: Variant,
    inner: Inner,
    nonce: String,
    opens_at_start: u64,
}

impl LabClient {
    /// A client of `variant` for the provider at `base_url`.
    ///
    /// Buttress clients share the process-wide `"payments"` breaker and
    /// retry budget: run one at a time, after [`reset_shared_state`]. A
    /// tower client has its own breaker and budget, fresh with the client.
    #[must_use]
    pub fn new(variant: Variant, base_url: &str) -> Self {
        let inner = match variant {
            Variant::Buttress => Inner::Buttress(PaymentsClient::new(base_url)),
            Variant::Peer => Inner::Peer(PeerClient::new(base_url)),
            Variant::Naive | Variant::None => Inner::Plain {
                http: http_client(),
                base: base_url.trim_end_matches('/').to_owned(),
            },
        };
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            NEXT_CLIENT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            variant,
            inner,
            nonce,
            opens_at_start: times_opened(),
        }
    }

    /// The client's variant.
    #[must_use]
    pub const fn variant(&self) -> Variant {
        self.variant
    }

    /// The charge request of logical operation `operation`: the same on
    /// every call with that number (for the Buttress and tower variants,
    /// the same idempotency key), distinct between operations.
    #[must_use]
    pub fn request(&self, operation: u64) -> ChargeRequest {
        ChargeRequest {
            amount: 1_000 + operation % 9_000,
            currency: "usd".to_owned(),
            customer: format!("cus_{:05}", operation % 100_000),
            idempotency_key: format!("lab-{}-{operation}", self.nonce),
            operation: Some(operation),
        }
    }

    /// Run logical operation `operation` (one charge) to its end.
    pub async fn charge(&self, operation: u64) -> Outcome {
        let started = Instant::now();
        let request = self.request(operation);
        let (ok, rejected_locally) = match &self.inner {
            Inner::Buttress(client) => match client.create_charge(&request).await {
                Ok(_) => (true, false),
                Err(error) => {
                    if std::env::var_os("LAB_DEBUG").is_some() {
                        eprintln!("DBG {:?} {error}", started.elapsed());
                    }
                    (false, rejected_locally(&error))
                }
            },
            Inner::Peer(client) => match client.create_charge(&request).await {
                Ok(_) => (true, false),
                Err(error) => (false, error.is_rejected_locally()),
            },
            Inner::Plain { http, base } => {
                let attempts = match self.variant {
                    Variant::Naive => NAIVE_ATTEMPTS,
                    _ => 1,
                };
                let mut ok = false;
                for attempt in 1..=attempts {
                    // Naive code: the key is made where the request is
                    // built, so every retry gets a new one.
                    let key = (self.variant == Variant::Naive)
                        .then(|| format!("{}-attempt-{attempt}", request.idempotency_key));
                    if plain_attempt(http, base, &request, key.as_deref()).await {
                        ok = true;
                        break;
                    }
                    if attempt < attempts {
                        tokio::time::sleep(NAIVE_DELAY).await;
                    }
                }
                (ok, false)
            }
        };
        Outcome {
            ok,
            latency: started.elapsed(),
            rejected_locally,
        }
    }

    /// How many times the client's breaker opened since the client was
    /// made: the shared `"payments"` breaker for Buttress, the client's own
    /// for tower, 0 for the others.
    #[must_use]
    pub fn breaker_opens(&self) -> u64 {
        match &self.inner {
            Inner::Buttress(_) => times_opened().saturating_sub(self.opens_at_start),
            Inner::Peer(client) => client.breaker_opens(),
            Inner::Plain { .. } => 0,
        }
    }
}

/// One request of the naive and single-attempt clients: `true` on a 2xx
/// whose body arrived within the timeout.
async fn plain_attempt(
    http: &reqwest::Client,
    base: &str,
    request: &ChargeRequest,
    key: Option<&str>,
) -> bool {
    let mut builder = http
        .post(format!("{base}/v1/charges"))
        .json(&serde_json::json!({
            "amount": request.amount,
            "currency": request.currency,
            "customer": request.customer,
        }));
    if let Some(key) = key {
        builder = builder.header("Idempotency-Key", key);
    }
    let builder = with_operation(builder, request.operation);
    let attempt = async {
        let response = builder.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.bytes().await.ok()
    };
    matches!(
        tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await,
        Ok(Some(_))
    )
}

fn rejected_locally(error: &PaymentsError) -> bool {
    matches!(
        error,
        PaymentsError::Resilience(
            buttress::Error::CircuitOpen { .. }
                | buttress::Error::BulkheadFull { .. }
                | buttress::Error::RateLimited { .. }
        )
    )
}

fn times_opened() -> u64 {
    // `get`, not `Registry::breaker`: the latter would register "payments"
    // with default settings if no call ran yet, and the client's own
    // settings would then be ignored.
    Registry::global()
        .get(PROVIDER)
        .map_or(0, |provider| provider.breaker().stats().times_opened)
}

/// Reset the process-wide `"payments"` state that Buttress clients share:
/// the breaker back to closed with an empty window, the retry budget full,
/// the recovery gate without cooldown, pace or learned quota.
/// Call before each lab run so each starts fresh.
///
/// Before the first Buttress call there is nothing to reset (the state is
/// created, fresh, by that call with the client's settings), so this does
/// not create it: creating it here would fix the defaults instead.
pub fn reset_shared_state() {
    if let Some(provider) = Registry::global().get(PROVIDER) {
        provider.breaker().reset();
        if let Some(budget) = provider.budget() {
            budget.refill();
        }
        provider.recovery().reset();
    }
}
