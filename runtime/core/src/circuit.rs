//! A circuit breaker's states and the reasons it changes state: the
//! vocabulary the breaker, its events and telemetry share (re-exported from
//! [`breaker`](crate::breaker)).

use std::fmt;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are recorded.
    Closed,
    /// Calls are rejected until `open_for` has passed.
    Open,
    /// A few probes are let through to test the provider.
    HalfOpen,
    /// An operator forced it open: every call is rejected.
    ForcedOpen,
    /// An operator forced it closed: every call flows, nothing is recorded.
    ForcedClosed,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`, `forced_open`, `forced_closed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::ForcedClosed => "forced_closed",
        }
    }

    /// The value of the `buttress_breaker_state` gauge: 0 closed, 1 open,
    /// 2 half-open, 3 forced open, 4 forced closed.
    #[must_use]
    pub const fn gauge_value(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::ForcedClosed => 4,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure rate reached the threshold.
    FailureRate,
    /// The slow-call rate reached the threshold.
    SlowCallRate,
    /// `consecutive_failures` failures in a row.
    ConsecutiveFailures,
    /// `open_for` passed; the first call after it probes.
    OpenTimeElapsed,
    /// A half-open probe failed.
    ProbeFailed,
    /// All half-open probes succeeded.
    ProbesSucceeded,
    /// An operator forced or reset the breaker.
    Operator,
}
