//! A voice client: place a call, read its status. `#[resilient]` under
//! provider `"voice"`: its breaker and budget are separate from the
//! payments provider's, so a voice outage does not stop payments.

use buttress::reqwest::{error_for_status, HttpError, IdempotencyKeyExt};
use buttress::{resilient, Classify};
use serde::{Deserialize, Serialize};

use super::payments::with_operation;
use super::{http_client, is_in_progress};

/// Everything that can go wrong calling the voice provider.
#[derive(Debug, thiserror::Error, Classify)]
pub enum VoiceError {
    /// The provider is still processing an earlier request with the same
    /// idempotency key (`409`): transient.
    #[error("the provider is still processing this idempotency key: {0}")]
    #[classify(transient)]
    InProgress(HttpError),
    /// An error status, classified by its status.
    #[error(transparent)]
    #[classify(delegate)]
    Http(HttpError),
    /// The connection failed.
    #[error(transparent)]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    /// buttress's own errors.
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

impl From<HttpError> for VoiceError {
    fn from(error: HttpError) -> Self {
        if is_in_progress(&error) {
            Self::InProgress(error)
        } else {
            Self::Http(error)
        }
    }
}

/// A call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// The number to call (E.164).
    pub to: String,
    /// The caller id (E.164).
    pub from: String,
    /// The operation's idempotency key, sent as `Idempotency-Key`: calling
    /// someone twice because a timeout hid the first call is the voice
    /// equivalent of a double charge.
    pub idempotency_key: String,
    /// Lab instrumentation: the logical operation, sent as `X-Lab-Operation`.
    pub operation: Option<u64>,
}

/// A call, as the provider describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The call's id (`call_…`).
    pub id: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
}

#[derive(Serialize)]
struct CallBody<'a> {
    to: &'a str,
    from: &'a str,
}

/// A client of the voice provider: 800 ms per attempt, 5 s per call, up to
/// 3 attempts (exponential backoff 100 ms to 1 s, full jitter), a breaker
/// opening at half of the last 20 calls failed.
#[derive(Debug, Clone)]
pub struct VoiceClient {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// The provider's base URL, without a trailing slash.
    pub base: String,
}

impl VoiceClient {
    /// A client of the provider at `base`.
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
        }
    }

    /// Place a call, at most once per [`CallRequest::idempotency_key`].
    ///
    /// # Errors
    /// The provider's last error when retrying could not help, or
    /// [`VoiceError::Resilience`] when buttress refused to send the call.
    #[resilient(
        provider = "voice",
        timeout = "800ms",
        deadline = "5s",
        retry(max_attempts = 3, backoff = exponential(base = "100ms", max = "1s"), jitter = full),
        breaker(failure_rate = 0.5, window = 20, min_calls = 10, open_for = "2s", half_open_probes = 2),
        idempotent(key = req.idempotency_key),
    )]
    pub async fn place_call(&self, req: &CallRequest) -> Result<Call, VoiceError> {
        let request = self
            .http
            .post(format!("{}/v1/calls", self.base))
            .idempotency_key(&req.idempotency_key)
            .json(&CallBody {
                to: &req.to,
                from: &req.from,
            });
        let response = send(with_operation(request, req.operation)).await?;
        Ok(response.json().await?)
    }

    /// Read a call's status (a read: naturally idempotent).
    ///
    /// # Errors
    /// As [`place_call`](Self::place_call); an unknown call is a permanent
    /// `404`.
    #[resilient(
        provider = "voice",
        timeout = "800ms",
        deadline = "5s",
        retry(max_attempts = 3, backoff = exponential(base = "100ms", max = "1s"), jitter = full),
        breaker(failure_rate = 0.5, window = 20, min_calls = 10, open_for = "2s", half_open_probes = 2),
        idempotent,
    )]
    pub async fn get_call_status(&self, id: &str) -> Result<Call, VoiceError> {
        let request = self.http.get(format!("{}/v1/calls/{id}", self.base));
        let response = send(request).await?;
        Ok(response.json().await?)
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, VoiceError> {
    Ok(error_for_status(request.send().await?).await?)
}
