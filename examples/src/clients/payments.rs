//! A payments client: charges, refunds, reads. Every method is
//! `#[resilient]` under provider `"payments"`, so all of them share one
//! circuit breaker and one retry budget.
//!
//! Creating calls take an idempotency key from the caller
//! ([`ChargeRequest::idempotency_key`], the `key` of [`PaymentsClient::refund`])
//! and send it as `Idempotency-Key` on every attempt: a retry after a timeout
//! is recognised by the provider and cannot charge twice. The key must stay
//! the same when the caller itself resends the operation (an order id, a
//! job id), and must differ between operations.

use buttress::reqwest::{error_for_status, HttpError, IdempotencyKeyExt};
use buttress::shared_quota::SharedQuota;
use buttress::{resilient, Classify};
use serde::{Deserialize, Serialize};

use super::{http_client, is_in_progress};
use crate::provider::LAB_OPERATION_HEADER;

/// Everything that can go wrong calling the payments provider.
#[derive(Debug, thiserror::Error, Classify)]
pub enum PaymentsError {
    /// The provider is still processing an earlier request with the same
    /// idempotency key (`409`). This request did nothing, and a later retry
    /// gets the first request's result: transient.
    #[error("the provider is still processing this idempotency key: {0}")]
    #[classify(transient)]
    InProgress(HttpError),
    /// An error status: `429` is rate-limited (with its `Retry-After`), `5xx`
    /// transient, other `4xx` permanent.
    #[error(transparent)]
    #[classify(delegate)]
    Http(HttpError),
    /// The connection failed: refused (transient), or broke or timed out
    /// after the request was sent (outcome unknown).
    #[error(transparent)]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    /// buttress's own errors: a per-attempt timeout (outcome unknown), an
    /// open breaker, the deadline.
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

impl From<HttpError> for PaymentsError {
    fn from(error: HttpError) -> Self {
        if is_in_progress(&error) {
            Self::InProgress(error)
        } else {
            Self::Http(error)
        }
    }
}

/// A charge to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The amount, in the currency's smallest unit (cents).
    pub amount: u64,
    /// An ISO currency code, lower case (`"usd"`).
    pub currency: String,
    /// The customer to charge.
    pub customer: String,
    /// The operation's idempotency key, sent as `Idempotency-Key`: the same
    /// on every attempt and every resend of this charge, different for every
    /// other charge.
    pub idempotency_key: String,
    /// Lab instrumentation: the logical operation this charge belongs to,
    /// sent as `X-Lab-Operation` so the provider can count effects per
    /// operation. `None` outside the lab.
    pub operation: Option<u64>,
}

/// What the provider sends back for a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The charge's id (`ch_…`).
    pub id: String,
    /// The amount charged.
    pub amount: u64,
    /// `"succeeded"`.
    pub status: String,
}

/// What the provider sends back for a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The refund's id (`re_…`).
    pub id: String,
    /// The refunded charge.
    pub charge: String,
}

#[derive(Serialize)]
struct ChargeBody<'a> {
    amount: u64,
    currency: &'a str,
    customer: &'a str,
}

#[derive(Serialize)]
struct RefundBody<'a> {
    charge: &'a str,
}

/// A client of the payments provider.
///
/// Policies, per attempt and per call (the breaker, retry budget and
/// recovery gate are shared by every method, and by every client in the
/// process): 500 ms per attempt, adapted between 100 ms and 2 s to 1.5 ×
/// the p95 of the provider's recent answers (an attempt cut by it is kept
/// running beside its retries: `hedge`), 5 s per call, up to 5 attempts
/// with exponential backoff from 25 ms to 2 s and full jitter (never sooner
/// than a 429's `Retry-After`), a retry budget of 0.2 per call (cap 50),
/// and a breaker opening after 10 failures in a row or when 90 % of the
/// last 500 ms of calls failed (once 10 were seen), open 50 ms, then
/// probing with one call every 50 ms. While it is open, or the provider
/// asked for a pause, calls wait inside their deadline (the default
/// recovery) and come back earliest deadline first at 1.5 × the rate of
/// new calls.
#[derive(Debug, Clone)]
pub struct PaymentsClient {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// The provider's base URL, without a trailing slash.
    pub base: String,
    /// The account's quota shared with the other replicas through Redis
    /// (`None`: no shared quota; see [`PaymentsClient::with_quota`]).
    pub quota: Option<SharedQuota>,
}

impl PaymentsClient {
    /// A client of the provider at `base` (`http://127.0.0.1:1234`).
    #[must_use]
    pub fn new(base: &str) -> Self {
        Self::with_client(http_client(), base)
    }

    /// A client of the provider at `base` over an existing reqwest client.
    #[must_use]
    pub fn with_client(http: reqwest::Client, base: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            quota: None,
        }
    }

    /// Admit every charge and refund through `quota`, the account's quota
    /// shared with the other replicas (`rate_limit(shared = self.quota)`).
    #[must_use]
    pub fn with_quota(mut self, quota: SharedQuota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Create a charge, at most once per [`ChargeRequest::idempotency_key`].
    ///
    /// # Errors
    /// The provider's last error when the retries could not help (a
    /// permanent error, the attempts, budget or deadline spent), or
    /// [`PaymentsError::Resilience`] when buttress refused to send the call
    /// (an open breaker) or the deadline cut the last attempt.
    #[resilient(
        provider = "payments",
        timeout = "500ms",
        adaptive_timeout(min = "100ms", max = "2s", percentile = 0.95),
        deadline = "5s",
        retry(max_attempts = 5, backoff = exponential(base = "25ms", max = "2s"), jitter = full, budget = ratio(0.2, cap = 50)),
        breaker(failure_rate = 0.9, window = "500ms", min_calls = 10, consecutive_failures = 10, open_for = "50ms", half_open_probes = 1),
        idempotent(key = req.idempotency_key),
        hedge,
        rate_limit(shared = self.quota),
    )]
    pub async fn create_charge(&self, req: &ChargeRequest) -> Result<Charge, PaymentsError> {
        let request = self
            .http
            .post(format!("{}/v1/charges", self.base))
            .idempotency_key(&req.idempotency_key)
            .json(&ChargeBody {
                amount: req.amount,
                currency: &req.currency,
                customer: &req.customer,
            });
        let response = send(with_operation(request, req.operation)).await?;
        Ok(response.json().await?)
    }

    /// Refund a charge, at most once per `key`.
    ///
    /// # Errors
    /// As [`create_charge`](Self::create_charge); an unknown charge is a
    /// permanent `404`.
    #[resilient(
        provider = "payments",
        timeout = "500ms",
        adaptive_timeout(min = "100ms", max = "2s", percentile = 0.95),
        deadline = "5s",
        retry(max_attempts = 5, backoff = exponential(base = "25ms", max = "2s"), jitter = full, budget = ratio(0.2, cap = 50)),
        breaker(failure_rate = 0.9, window = "500ms", min_calls = 10, consecutive_failures = 10, open_for = "50ms", half_open_probes = 1),
        idempotent(key = key),
        hedge,
        rate_limit(shared = self.quota),
    )]
    pub async fn refund(&self, charge_id: &str, key: &str) -> Result<Refund, PaymentsError> {
        let request = self
            .http
            .post(format!("{}/v1/refunds", self.base))
            .idempotency_key(key)
            .json(&RefundBody { charge: charge_id });
        let response = send(request).await?;
        Ok(response.json().await?)
    }

    /// Read a charge. A read is naturally idempotent: retried even after a
    /// timeout.
    ///
    /// # Errors
    /// As [`create_charge`](Self::create_charge); an unknown charge is a
    /// permanent `404`.
    #[resilient(
        provider = "payments",
        timeout = "500ms",
        adaptive_timeout(min = "100ms", max = "2s", percentile = 0.95),
        deadline = "5s",
        retry(max_attempts = 5, backoff = exponential(base = "25ms", max = "2s"), jitter = full, budget = ratio(0.2, cap = 50)),
        breaker(failure_rate = 0.9, window = "500ms", min_calls = 10, consecutive_failures = 10, open_for = "50ms", half_open_probes = 1),
        idempotent,
        hedge,
    )]
    pub async fn get_charge(&self, id: &str) -> Result<Charge, PaymentsError> {
        let request = self.http.get(format!("{}/v1/charges/{id}", self.base));
        let response = send(request).await?;
        Ok(response.json().await?)
    }
}

/// Adds the lab's operation header when there is one.
pub(crate) fn with_operation(
    request: reqwest::RequestBuilder,
    operation: Option<u64>,
) -> reqwest::RequestBuilder {
    match operation {
        Some(op) => request.header(LAB_OPERATION_HEADER, op),
        None => request,
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, PaymentsError> {
    Ok(error_for_status(request.send().await?).await?)
}
