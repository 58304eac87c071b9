//! reqwest support (feature `reqwest`, implies `http`).
//!
//! - [`Classify`] for [`reqwest::Error`](::reqwest::Error): whether the
//!   request could have reached the provider decides between `Transient`
//!   and `OutcomeUnknown`.
//! - [`error_for_status`]: an error response becomes an [`HttpError`] that
//!   keeps the status, the `Retry-After` and the start of the body.
//! - [`IdempotencyKeyExt::idempotency_key`] and
//!   [`with_current_idempotency_key`]: send the call's key as an
//!   `Idempotency-Key` header.
//!
//! ```no_run
//! use buttress::reqwest::{error_for_status, with_current_idempotency_key, HttpError};
//! use buttress::{resilient, Classify};
//!
//! #[derive(Debug, thiserror::Error, Classify)]
//! enum ApiError {
//!     #[error(transparent)]
//!     #[classify(delegate)]
//!     Status(#[from] HttpError),
//!     #[error(transparent)]
//!     #[classify(delegate)]
//!     Http(#[from] reqwest::Error),
//!     #[error(transparent)]
//!     #[classify(delegate)]
//!     Resilience(#[from] buttress::Error),
//! }
//!
//! #[resilient(provider = "api", timeout = "2s", idempotent)]
//! async fn create(http: &reqwest::Client) -> Result<String, ApiError> {
//!     let request = with_current_idempotency_key(http.post("https://api.example.com/things"));
//!     let response = error_for_status(request.send().await?).await?;
//!     Ok(response.text().await?)
//! }
//! ```

use std::error::Error as StdError;
use std::io;

use ::reqwest::{RequestBuilder, Response};

use crate::http::retry_after;
use crate::{classify_io_kind, Classify, ErrorClass};

pub use crate::integrations::http::HttpError;

/// The header a provider reads the idempotency key from.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// How much of an error body [`error_for_status`] reads: the 1 KiB an
/// [`HttpError`] keeps, plus room for a character cut at the end.
const BODY_READ_LIMIT: usize = 1024 + 4;

/// The errors that caused `error`, nearest first.
fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(error.source(), |e| (*e).source())
}

/// Whether a decode error was caused by the transport (the body stopped
/// arriving: reset, truncated, timed out) rather than by its content.
fn decode_failed_in_transport(error: &::reqwest::Error) -> bool {
    causes(error).any(|cause| {
        cause.is::<io::Error>()
            || cause
                .downcast_ref::<::reqwest::Error>()
                .is_some_and(|inner| inner.is_body() || inner.is_request())
    })
}

/// reqwest errors by whether the request could have reached the provider.
///
/// The rules, in the order they are checked:
///
/// | error | class | why |
/// |---|---|---|
/// | a status error (`Response::error_for_status`) | the status's class | the provider answered; see `Classify for StatusCode` in [`buttress::http`](crate::http) |
/// | `is_builder()`, `is_redirect()` | `Permanent` | a malformed request (bad URL, invalid header value) or a redirect loop: the same request fails the same way |
/// | `is_connect()` (refused, DNS, connect timeout, TLS handshake) | `Transient` | no connection, so nothing was sent |
/// | `is_timeout()` | `OutcomeUnknown` | the request may have been sent and acted on; only the answer is missing |
/// | `is_decode()`, caused by the body stopping (reset, truncation) | `OutcomeUnknown` | the provider was already answering, so it acted; the answer was lost |
/// | `is_decode()`, otherwise (invalid JSON) | `Permanent` | the provider answered with a body we cannot read; asking again gets the same body |
/// | `is_body()`, `is_request()` (reset or closed after sending) | `OutcomeUnknown` | the connection broke after the request may have left |
/// | anything else, with an `std::io::Error` among its causes | [`classify_io_kind`] | the I/O error says how far it got |
/// | anything else | `OutcomeUnknown` | it happened after sending, so the provider may have acted |
///
/// `OutcomeUnknown` is retried only for idempotent calls: send an
/// `Idempotency-Key` ([`with_current_idempotency_key`]) and mark the call
/// `idempotent` to have those retried safely.
///
/// reqwest reports its overall `timeout` the same way whether it fired while
/// connecting or after sending, so such an error is `OutcomeUnknown`. Set a
/// shorter `ClientBuilder::connect_timeout` as well: a connect that times out
/// is then reported as a connect error, `Transient`, and retried even for a
/// call that is not idempotent.
///
/// A `reqwest::Error` carries no headers, so its `retry_after` is always
/// `None`: use [`error_for_status`] instead of
/// `reqwest::Response::error_for_status` to keep the provider's
/// `Retry-After`.
impl Classify for ::reqwest::Error {
    fn class(&self) -> ErrorClass {
        if let Some(status) = self.status() {
            return status.class();
        }
        if self.is_builder() || self.is_redirect() {
            return ErrorClass::Permanent;
        }
        // Before `is_timeout`: a connect timeout is both, and nothing was sent.
        if self.is_connect() {
            return ErrorClass::Transient;
        }
        if self.is_timeout() {
            return ErrorClass::OutcomeUnknown;
        }
        if self.is_decode() {
            return if decode_failed_in_transport(self) {
                ErrorClass::OutcomeUnknown
            } else {
                ErrorClass::Permanent
            };
        }
        if self.is_body() || self.is_request() {
            return ErrorClass::OutcomeUnknown;
        }
        causes(self)
            .find_map(|cause| cause.downcast_ref::<io::Error>())
            .map_or(ErrorClass::OutcomeUnknown, |io| classify_io_kind(io.kind()))
    }
}

/// Turns a non-success response into an [`HttpError`].
///
/// A 2xx response is returned as is. Any other status (including a 3xx that
/// the client did not follow) becomes an `HttpError` with the status, the
/// wait its `Retry-After` asks for (see [`crate::http::retry_after`]) and the
/// start of the body: at most the first 1 KiB is read, so an error page of
/// any size costs little. An error while reading the body gives an empty
/// body, never a different error: the status is what matters.
///
/// Reading the body waits for the provider to send it; the client's
/// `timeout` and the call's per-attempt timeout bound that wait.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use buttress::{Classify, ErrorClass};
///
/// let response = reqwest::get("https://api.example.com/health").await?;
/// match buttress::reqwest::error_for_status(response).await {
///     Ok(response) => println!("{}", response.text().await?),
///     Err(e) if e.class() == ErrorClass::RateLimited => println!("wait {:?}", e.retry_after()),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The [`HttpError`] for a non-2xx status.
pub async fn error_for_status(mut response: Response) -> Result<Response, HttpError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let wait = retry_after(response.headers());
    let body = match read_prefix(&mut response, BODY_READ_LIMIT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    Err(HttpError::new(status, wait, body))
}

/// Reads at most `limit` bytes of the body.
async fn read_prefix(response: &mut Response, limit: usize) -> Result<Vec<u8>, ::reqwest::Error> {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let room = limit - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(bytes)
}

/// Sets the `Idempotency-Key` header on a request.
///
/// ```
/// use buttress::reqwest::IdempotencyKeyExt;
///
/// let request = reqwest::Client::new()
///     .post("https://api.example.com/charges")
///     .idempotency_key("order-42")
///     .build()
///     .unwrap();
/// assert_eq!(request.headers()["idempotency-key"], "order-42");
/// ```
pub trait IdempotencyKeyExt {
    /// Sets the `Idempotency-Key` header to `key`. A key that is not a valid
    /// header value (control characters) makes the request fail with a
    /// builder error (`Permanent`) when it is sent, never a panic.
    #[must_use]
    fn idempotency_key(self, key: &str) -> Self;
}

impl IdempotencyKeyExt for RequestBuilder {
    fn idempotency_key(self, key: &str) -> Self {
        self.header(IDEMPOTENCY_KEY, key)
    }
}

/// Sets the `Idempotency-Key` header to the current call's key
/// ([`crate::idempotency_key`]) when called inside a wrapped body that has
/// one; returns `builder` unchanged otherwise.
///
/// The key is the same on every attempt of the call, so a provider that
/// honours the header acts once however many times the request is resent.
///
/// ```
/// let builder = reqwest::Client::new().post("https://api.example.com/charges");
/// // Outside a `#[resilient]` body there is no key: the request is unchanged.
/// let request = buttress::reqwest::with_current_idempotency_key(builder).build().unwrap();
/// assert!(request.headers().get("idempotency-key").is_none());
/// ```
pub fn with_current_idempotency_key(builder: RequestBuilder) -> RequestBuilder {
    match crate::idempotency_key() {
        Some(key) => builder.idempotency_key(&key),
        None => builder,
    }
}
