//! How a call ended, and why one was refused locally: what telemetry
//! reports and what dead-letter routing keys off.

use crate::class::ErrorClass;

/// How a call ended: what telemetry reports and what dead-letter routing
/// keys off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallOutcome {
    /// The provider answered with success.
    Ok,
    /// An error that is not retried: `Permanent`, or `OutcomeUnknown` on a
    /// call that is not idempotent. Carries the error's class.
    NotRetryable(ErrorClass),
    /// Retryable errors until `max_attempts` attempts were made.
    AttemptsExhausted,
    /// A retry was due but the provider's retry budget was spent.
    BudgetExhausted,
    /// The deadline passed during an attempt, or left no room for another.
    DeadlineExceeded,
    /// Refused locally before reaching the provider (breaker open, rate
    /// limit or bulkhead past the deadline).
    Rejected(Rejection),
    /// Answered by the idempotency layer without calling the provider (a
    /// stored result, `InFlight`, `KeyReused` or a store error).
    Deduplicated,
}

/// Why a call was refused locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The circuit breaker was open (or had all its probes out).
    CircuitOpen,
    /// The rate limiter's next slot was past the deadline.
    RateLimit,
    /// The bulkhead stayed full past `max_wait` or the deadline.
    Bulkhead,
    /// The provider asked for a pause (`Retry-After`) that outlasts the
    /// deadline (or the policy fails fast).
    Cooldown,
    /// The provider's waiting queue was full.
    QueueFull,
    /// The adaptive throttle refused it.
    Throttled,
}

impl Rejection {
    /// The telemetry label: `circuit_open`, `rate_limit`, `bulkhead`,
    /// `cooldown`, `queue_full` or `throttled`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::RateLimit => "rate_limit",
            Self::Bulkhead => "bulkhead",
            Self::Cooldown => "cooldown",
            Self::QueueFull => "queue_full",
            Self::Throttled => "throttled",
        }
    }
}

impl CallOutcome {
    /// Whether the call failed after reaching (or trying to reach) the
    /// provider in a way worth keeping for later: every outcome but
    /// [`CallOutcome::Ok`] and [`CallOutcome::Deduplicated`].
    #[must_use]
    pub const fn is_failure(self) -> bool {
        !matches!(self, Self::Ok | Self::Deduplicated)
    }

    /// A short label: `ok`, `not_retryable`, `attempts_exhausted`,
    /// `budget_exhausted`, `deadline_exceeded`, `rejected`, `deduplicated`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotRetryable(_) => "not_retryable",
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::BudgetExhausted => "budget_exhausted",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Rejected(_) => "rejected",
            Self::Deduplicated => "deduplicated",
        }
    }
}
