//! Error classification: the one question every policy asks of an error.
//!
//! Every retry, breaker and dead-letter decision keys off [`ErrorClass`]. A
//! provider's error type says which class each of its errors belongs to by
//! implementing [`Classify`] (usually with `#[derive(Classify)]`).

use std::io;
use std::time::Duration;

/// What an error means for the decision to try again.
///
/// | class | meaning | retried? |
/// |---|---|---|
/// | `Transient` | the provider certainly did not act | yes |
/// | `RateLimited` | the provider asks us to slow down | yes, not before `retry_after` |
/// | `OutcomeUnknown` | the request may have been acted on | only when the call is idempotent |
/// | `Permanent` | retrying cannot help | never |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The provider certainly did not act on the request (connection refused,
    /// 503 before processing). Safe to retry.
    Transient,
    /// The provider asks the caller to slow down (429, quota). Retried, but
    /// never before the provider's `retry_after`.
    RateLimited,
    /// The request may have been acted on (timeout after send, connection
    /// reset mid-response). Retried only when the call is idempotent.
    OutcomeUnknown,
    /// Retrying cannot help (validation, authentication, declined). Never
    /// retried; counts as a success for the circuit breaker, since the
    /// provider answered.
    Permanent,
}

impl ErrorClass {
    /// Whether a call that failed with this class may be retried.
    ///
    /// `idempotent` says whether repeating the operation is safe; it only
    /// matters for [`ErrorClass::OutcomeUnknown`].
    #[must_use]
    pub const fn is_retryable(self, idempotent: bool) -> bool {
        match self {
            Self::Transient | Self::RateLimited => true,
            Self::OutcomeUnknown => idempotent,
            Self::Permanent => false,
        }
    }

    /// Whether this class counts as a provider failure for the circuit
    /// breaker. `Permanent` errors are the caller's fault: the provider
    /// answered, so they count as successes.
    #[must_use]
    pub const fn is_provider_failure(self) -> bool {
        !matches!(self, Self::Permanent)
    }

    /// A short, stable, lower-case name (`transient`, `rate_limited`,
    /// `outcome_unknown`, `permanent`), used in telemetry labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::RateLimited => "rate_limited",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Permanent => "permanent",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an error for retry and breaker decisions.
///
/// Implement it by hand or with `#[derive(Classify)]`.
///
/// ```
/// use std::time::Duration;
/// use buttress::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// enum MailError { Throttled(Duration), Bounced }
///
/// impl Classify for MailError {
///     fn class(&self) -> ErrorClass {
///         match self {
///             MailError::Throttled(_) => ErrorClass::RateLimited,
///             MailError::Bounced => ErrorClass::Permanent,
///         }
///     }
///     fn retry_after(&self) -> Option<Duration> {
///         match self {
///             MailError::Throttled(d) => Some(*d),
///             MailError::Bounced => None,
///         }
///     }
/// }
/// assert_eq!(MailError::Bounced.class(), ErrorClass::Permanent);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `buttress::Classify`",
    label = "buttress needs to know which errors of `{Self}` are worth retrying",
    note = "add `#[derive(buttress::Classify)]` to `{Self}` and mark each variant with `#[classify(transient | rate_limited | outcome_unknown | permanent | delegate)]`, or implement `buttress::Classify` by hand"
)]
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;

    /// How long the provider asked us to wait before trying again, if it
    /// said so (a `Retry-After` header, a quota reset time).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl<T: Classify + ?Sized> Classify for &T {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
    fn retry_after(&self) -> Option<Duration> {
        (**self).retry_after()
    }
}

impl<T: Classify + ?Sized> Classify for Box<T> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
    fn retry_after(&self) -> Option<Duration> {
        (**self).retry_after()
    }
}

/// I/O errors by kind: refusals before anything was sent are `Transient`,
/// breaks after the request may have left are `OutcomeUnknown`, the rest is
/// `Permanent`.
impl Classify for io::Error {
    fn class(&self) -> ErrorClass {
        classify_io_kind(self.kind())
    }
}

/// The classification of an [`io::ErrorKind`], shared by every integration
/// that wraps an I/O error.
#[must_use]
pub const fn classify_io_kind(kind: io::ErrorKind) -> ErrorClass {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionRefused | K::NotConnected | K::AddrNotAvailable | K::WouldBlock => {
            ErrorClass::Transient
        }
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::TimedOut
        | K::UnexpectedEof
        | K::Interrupted => ErrorClass::OutcomeUnknown,
        _ => ErrorClass::Permanent,
    }
}
