//! HTTP status codes and `Retry-After` (feature `http`).
//!
//! - [`Classify`] for [`StatusCode`]: which error statuses are worth retrying.
//! - [`parse_retry_after`] and [`retry_after`]: the provider's requested wait,
//!   as delta-seconds or an HTTP-date, capped at [`MAX_RETRY_AFTER`].
//! - [`HttpError`]: an error status with its `Retry-After` and the start of
//!   its body, for clients that do not want to define their own type.
//!
//! ```
//! use std::time::Duration;
//! use buttress::{Classify, ErrorClass};
//! use buttress::http::HttpError;
//! use http::{HeaderMap, HeaderValue, StatusCode};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
//! let wait = buttress::http::retry_after(&headers);
//! assert_eq!(wait, Some(Duration::from_secs(7)));
//!
//! let error = HttpError::new(StatusCode::TOO_MANY_REQUESTS, wait, "slow down");
//! assert_eq!(error.class(), ErrorClass::RateLimited);
//! assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
//! assert_eq!(error.to_string(), "HTTP 429 Too Many Requests: slow down");
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use ::http::{header::RETRY_AFTER, HeaderMap, HeaderValue, StatusCode};

use crate::{Classify, ErrorClass};

/// The longest wait a `Retry-After` header can ask for: one hour.
///
/// A provider that asks for more (a day, a year, a number too large for a
/// `u64`) gets this instead. Any sane call has a deadline far shorter than
/// an hour, so the retry is not started and the caller gets the provider's
/// error promptly either way; the cap only keeps a broken or hostile header
/// from turning into an absurd sleep anywhere a caller honours it by hand.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// The class of an HTTP status, shared by [`StatusCode`] and [`HttpError`].
const fn class_of(status: u16) -> ErrorClass {
    match status {
        429 => ErrorClass::RateLimited,
        408 | 425 | 503 => ErrorClass::Transient,
        500 | 502 | 504 => ErrorClass::OutcomeUnknown,
        _ => ErrorClass::Permanent,
    }
}

/// Error statuses by what they say about retrying.
///
/// | status | class | why |
/// |---|---|---|
/// | 429 Too Many Requests | `RateLimited` | the provider asks us to slow down (pair it with [`retry_after`]) |
/// | 408 Request Timeout | `Transient` | the server gave up waiting for the request before acting on it |
/// | 425 Too Early | `Transient` | the server refused to process a replayable early-data request |
/// | 503 Service Unavailable | `Transient` | overloaded or in maintenance, the canonical "try again" |
/// | 500 Internal Server Error | `OutcomeUnknown` | a crash that may have happened after the provider acted (while writing the response) |
/// | 502 Bad Gateway | `OutcomeUnknown` | a proxy lost its upstream, possibly after forwarding the request |
/// | 504 Gateway Timeout | `OutcomeUnknown` | a proxy stopped waiting; the upstream may still have acted |
/// | 501 and every other 4xx/5xx | `Permanent` | the request itself is wrong (validation, auth, not found, not implemented); resending it cannot help |
/// | 1xx, 2xx, 3xx | `Permanent` | not errors; only error statuses are meant to be classified |
///
/// `Transient` statuses say the provider did nothing, so they are retried
/// for any call. A 500, 502 or 504 does not say that: the provider (or the
/// upstream behind a gateway) may have acted before the failure, so
/// retrying a charge on a 504 can charge twice. They are retried only for
/// idempotent calls: mark the call `idempotent` and send a provider-side
/// key (`Idempotency-Key`) so that a retry is harmless. If you know your
/// provider answers 500 only before acting, classify it as `Transient` in
/// your own error type (match on the status before delegating).
///
/// ```
/// use buttress::{Classify, ErrorClass};
/// use http::StatusCode;
///
/// assert_eq!(StatusCode::SERVICE_UNAVAILABLE.class(), ErrorClass::Transient);
/// assert_eq!(StatusCode::TOO_MANY_REQUESTS.class(), ErrorClass::RateLimited);
/// assert_eq!(StatusCode::GATEWAY_TIMEOUT.class(), ErrorClass::OutcomeUnknown);
/// assert!(!StatusCode::GATEWAY_TIMEOUT.class().is_retryable(false));
/// assert_eq!(StatusCode::NOT_IMPLEMENTED.class(), ErrorClass::Permanent);
/// assert_eq!(StatusCode::NOT_FOUND.class(), ErrorClass::Permanent);
/// ```
impl Classify for StatusCode {
    fn class(&self) -> ErrorClass {
        class_of(self.as_u16())
    }
}

/// Parses one `Retry-After` header value into how long to wait from `now`.
///
/// Accepts both forms of RFC 9110 §10.2.3:
///
/// - **delta-seconds**: ASCII digits only, surrounding whitespace ignored
///   (`"120"`, `" 0 "`). A sign, a fraction or an empty value (`"-1"`,
///   `"+5"`, `"1.5"`, `""`) is not delta-seconds and gives `None`. A number
///   too large for a `u64` is still a number of seconds, just a huge one: it
///   is capped like any other, not rejected.
/// - **HTTP-date**, in the three formats HTTP allows and
///   [`httpdate::parse_http_date`] accepts: IMF-fixdate
///   (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
///   (`Sunday, 06-Nov-94 08:49:37 GMT`, two-digit years 70–99 are 19xx and
///   00–69 are 20xx) and asctime (`Sun Nov  6 08:49:37 1994`). The weekday
///   must match the date. A date at or before `now` gives
///   `Some(Duration::ZERO)`: the provider is ready now.
///
/// The result is capped at [`MAX_RETRY_AFTER`]. Anything else (garbage,
/// bytes that are not UTF-8) gives `None`. Never panics.
///
/// `now` is a parameter so that callers (and tests) can pin the clock;
/// [`retry_after`] passes `SystemTime::now()`.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use buttress::http::{parse_retry_after, MAX_RETRY_AFTER};
/// use http::HeaderValue;
///
/// let now = SystemTime::now();
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("120"), now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("1.5"), now), None);
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("99999999"), now), Some(MAX_RETRY_AFTER));
///
/// // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
/// let just_before = UNIX_EPOCH + Duration::from_secs(784_111_777 - 30);
/// let date = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
/// assert_eq!(parse_retry_after(&date, just_before), Some(Duration::from_secs(30)));
/// assert_eq!(parse_retry_after(&date, now), Some(Duration::ZERO));
/// ```
#[must_use]
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let bytes = value.as_bytes().trim_ascii();
    if bytes.is_empty() {
        return None;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        // Saturating: a number of seconds too large for a u64 is capped
        // below like any other large number.
        let seconds = bytes.iter().fold(0_u64, |acc, digit| {
            acc.saturating_mul(10)
                .saturating_add(u64::from(digit - b'0'))
        });
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let at = httpdate::parse_http_date(text).ok()?;
    // An error means the date is not after `now`: ready at once.
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The wait a response's `Retry-After` header asks for, from now.
///
/// Reads every `Retry-After` value in order and returns the first that
/// [`parse_retry_after`] understands (a response should carry one, but a
/// proxy may add its own); `None` when there is none, or none parses.
///
/// ```
/// use std::time::Duration;
/// use http::{header::RETRY_AFTER, HeaderMap, HeaderValue};
///
/// let mut headers = HeaderMap::new();
/// headers.append(RETRY_AFTER, HeaderValue::from_static("soon"));
/// headers.append(RETRY_AFTER, HeaderValue::from_static("3"));
/// assert_eq!(buttress::http::retry_after(&headers), Some(Duration::from_secs(3)));
/// assert_eq!(buttress::http::retry_after(&HeaderMap::new()), None);
/// ```
#[must_use]
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let now = SystemTime::now();
    headers
        .get_all(RETRY_AFTER)
        .iter()
        .find_map(|value| parse_retry_after(value, now))
}

/// The most of a response body an [`HttpError`] keeps, in bytes.
const BODY_LIMIT: usize = 1024;
/// The most of the body's first line that [`HttpError`]'s `Display` shows,
/// in characters.
const DISPLAY_LIMIT: usize = 200;

/// Truncates `text` to at most `limit` bytes, at a character boundary.
pub(crate) fn truncate_at_char_boundary(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// An HTTP error response: its status, the `Retry-After` it carried and the
/// start of its body.
///
/// Classified by its status (see the [`Classify`] impl of [`StatusCode`]),
/// with [`Classify::retry_after`] from the header, so it can be returned
/// from a `#[resilient]` body directly or wrapped in a
/// `#[classify(delegate)]` variant. With the `reqwest` feature,
/// `buttress::reqwest::error_for_status` builds one from a response.
///
/// The body is kept to its first 1 KiB (cut at a character boundary), enough
/// for a provider's error code and message without holding an error page in
/// memory. `Display` shows the status and the first non-blank line of the
/// body, at most 200 characters, with control characters replaced by
/// spaces so a body cannot forge log lines: `HTTP 503 Service Unavailable:
/// upstream overloaded`.
#[derive(Debug, Clone)]
pub struct HttpError {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: String,
}

impl HttpError {
    /// An error for `status`, with the wait the provider asked for and the
    /// response body (truncated to 1 KiB at a character boundary).
    #[must_use]
    pub fn new(status: StatusCode, retry_after: Option<Duration>, body: impl Into<String>) -> Self {
        let mut body = body.into();
        truncate_at_char_boundary(&mut body, BODY_LIMIT);
        Self {
            status,
            retry_after,
            body,
        }
    }

    /// The response's status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The wait the response's `Retry-After` asked for, if any.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The start of the response body (at most 1 KiB), empty if there was
    /// none or it could not be read.
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status.as_u16())?;
        if let Some(reason) = self.status.canonical_reason() {
            write!(f, " {reason}")?;
        }
        let first_line = self
            .body
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty());
        if let Some(line) = first_line {
            f.write_str(": ")?;
            for c in line.chars().take(DISPLAY_LIMIT) {
                let c = if c.is_control() { ' ' } else { c };
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for HttpError {}

/// The status's class (see [`StatusCode`]'s impl), and the `Retry-After`
/// the response carried.
impl Classify for HttpError {
    fn class(&self) -> ErrorClass {
        class_of(self.status.as_u16())
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}
