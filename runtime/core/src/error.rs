//! The errors buttress itself produces, and configuration errors.

use std::sync::Arc;
use std::time::Duration;

use crate::class::{Classify, ErrorClass};

/// An error raised by a buttress policy rather than by the provider.
///
/// A wrapped call returns the user's own error type; these arrive in it
/// through `From<buttress::Error>`. Every variant names the provider it
/// concerns, so a log line says which dependency misbehaved.
///
/// Classification (see [`Classify`]): [`Error::Timeout`] is
/// [`ErrorClass::OutcomeUnknown`] (the provider may have acted); every other
/// variant is a local decision and is [`ErrorClass::Permanent`] for any outer
/// layer, so nested wrappers never multiply retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
// A full-word tag puts every field on an 8-byte boundary: results that
// carry an `Error` are then moved in whole words, without the partial
// stores and wide loads that stall store forwarding on every call.
#[repr(u64)]
pub enum Error {
    /// One attempt took longer than the per-attempt `timeout`.
    #[error("{provider}: attempt {attempt} timed out after {timeout:?}; the provider may still act on it")]
    #[non_exhaustive]
    Timeout {
        /// The provider called.
        provider: Arc<str>,
        /// The per-attempt timeout that elapsed.
        timeout: Duration,
        /// The attempt that timed out (1 for the first).
        attempt: u32,
    },
    /// The overall deadline of the call passed while an attempt was running
    /// (or before one could start).
    #[error("{provider}: deadline of {deadline:?} exceeded after {attempts} attempt(s)")]
    #[non_exhaustive]
    DeadlineExceeded {
        /// The provider called.
        provider: Arc<str>,
        /// The overall deadline of the call.
        deadline: Duration,
        /// How many attempts were started.
        attempts: u32,
    },
    /// The provider's circuit breaker is open: the call was not sent.
    #[error("{provider}: circuit breaker is open; call not sent{}", fmt_retry_in(*.retry_in))]
    #[non_exhaustive]
    CircuitOpen {
        /// The provider whose breaker rejected the call.
        provider: Arc<str>,
        /// When the breaker will next admit a probe, if known.
        retry_in: Option<Duration>,
    },
    /// The adaptive throttle refused the call locally (the provider has
    /// been accepting too few of the recent requests).
    #[error("{provider}: throttled locally; the provider accepted too few of the recent requests, so some are not sent")]
    #[non_exhaustive]
    Throttled {
        /// The provider concerned.
        provider: Arc<str>,
    },
    /// The provider's retry budget is spent. A wrapped call returns the last
    /// provider error instead; this variant is what telemetry and
    /// [`crate::Policy`] users see.
    #[error(
        "{provider}: retry budget exhausted; retries are paused until successful calls refill it"
    )]
    #[non_exhaustive]
    BudgetExhausted {
        /// The provider whose budget is spent.
        provider: Arc<str>,
    },
    /// The local rate limit for the provider would have made the call wait
    /// past its deadline.
    #[error("{provider}: local rate limit reached; next slot in {retry_after:?}, past the call's deadline")]
    #[non_exhaustive]
    RateLimited {
        /// The provider whose limiter rejected the call.
        provider: Arc<str>,
        /// How long until the limiter would admit the call.
        retry_after: Duration,
    },
    /// The provider's bulkhead was full for longer than `max_wait`.
    #[error("{provider}: bulkhead full ({max_concurrent} calls in flight); waited {waited:?}")]
    #[non_exhaustive]
    BulkheadFull {
        /// The provider whose bulkhead rejected the call.
        provider: Arc<str>,
        /// The bulkhead's concurrency limit.
        max_concurrent: u32,
        /// How long the call waited for a slot.
        waited: Duration,
    },
    /// The same idempotency key is being processed elsewhere (409 semantics).
    #[error("{provider}: an operation with idempotency key #{key_hash} is already in flight")]
    #[non_exhaustive]
    InFlight {
        /// The provider called.
        provider: Arc<str>,
        /// A short hash of the key (the key itself is never shown).
        key_hash: String,
    },
    /// The idempotency key was reused with different arguments (422 semantics).
    #[error("{provider}: idempotency key #{key_hash} was already used with different arguments")]
    #[non_exhaustive]
    KeyReused {
        /// The provider called.
        provider: Arc<str>,
        /// A short hash of the key (the key itself is never shown).
        key_hash: String,
    },
    /// The call site's policy is invalid (a configuration loaded at run time
    /// that the compile-time checks could not see).
    #[error("{provider}: invalid policy: {message}")]
    #[non_exhaustive]
    InvalidPolicy {
        /// The provider called.
        provider: Arc<str>,
        /// The configuration error (`path: reason`).
        message: String,
    },
    /// The idempotency or dead-letter store failed.
    #[error("{provider}: store error: {message}")]
    #[non_exhaustive]
    Store {
        /// The provider called.
        provider: Arc<str>,
        /// What went wrong, without secrets.
        message: String,
    },
}

fn fmt_retry_in(retry_in: Option<Duration>) -> String {
    retry_in.map_or_else(String::new, |d| format!("; next probe in {d:?}"))
}

impl Error {
    /// The provider this error concerns.
    #[must_use]
    pub fn provider(&self) -> &str {
        match self {
            Self::Timeout { provider, .. }
            | Self::DeadlineExceeded { provider, .. }
            | Self::CircuitOpen { provider, .. }
            | Self::Throttled { provider }
            | Self::BudgetExhausted { provider }
            | Self::RateLimited { provider, .. }
            | Self::BulkheadFull { provider, .. }
            | Self::InFlight { provider, .. }
            | Self::KeyReused { provider, .. }
            | Self::InvalidPolicy { provider, .. }
            | Self::Store { provider, .. } => provider,
        }
    }

    /// A short, stable name for the variant (`timeout`, `deadline`,
    /// `circuit_open`, `throttled`, `budget`, `rate_limit`, `bulkhead`, `in_flight`,
    /// `key_reused`, `invalid_policy`, `store`), used in telemetry labels.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::DeadlineExceeded { .. } => "deadline",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Throttled { .. } => "throttled",
            Self::BudgetExhausted { .. } => "budget",
            Self::RateLimited { .. } => "rate_limit",
            Self::BulkheadFull { .. } => "bulkhead",
            Self::InFlight { .. } => "in_flight",
            Self::KeyReused { .. } => "key_reused",
            Self::InvalidPolicy { .. } => "invalid_policy",
            Self::Store { .. } => "store",
        }
    }

    /// Whether the call was rejected locally, without reaching the provider.
    #[must_use]
    pub const fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::CircuitOpen { .. }
                | Self::Throttled { .. }
                | Self::BudgetExhausted { .. }
                | Self::RateLimited { .. }
                | Self::BulkheadFull { .. }
                | Self::InFlight { .. }
                | Self::KeyReused { .. }
        )
    }
}

impl Error {
    pub(crate) fn invalid_policy(provider: &str, error: &ConfigError) -> Self {
        Self::InvalidPolicy {
            provider: Arc::from(provider),
            message: error.to_string(),
        }
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Timeout { .. } => ErrorClass::OutcomeUnknown,
            _ => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::CircuitOpen { retry_in, .. } => *retry_in,
            _ => None,
        }
    }
}

/// An invalid policy configuration: which setting, and why.
///
/// `Display` reads `path: reason`, for example
/// `breaker.failure_rate: must be in (0, 1], got 1.5: it is the fraction
/// of calls in the window`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    path: String,
    reason: String,
}

impl ConfigError {
    /// A configuration error for the setting at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The dotted path of the offending setting (`breaker.failure_rate`).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Why the value was rejected.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// `Ok`, or the error for `path` carrying `rule`'s reason (see
    /// `buttress_settings::rules`).
    pub(crate) fn check(path: &str, rule: buttress_settings::rules::Rule) -> Result<(), Self> {
        rule.map_err(|reason| Self::new(path, reason))
    }

    /// The same error, one level deeper (`prefix.path`).
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = format!("{prefix}.{}", self.path);
        self
    }
}
