//! What can be wrong with a delivery or a secret.

use std::time::Duration;

/// Why a delivery was rejected. Never carries a secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("the `{header}` header is missing; the request was not signed by this scheme's sender (check the endpoint's scheme and any proxy that strips headers)")]
    MissingHeader {
        /// The header's name.
        header: &'static str,
    },
    /// A header is present but cannot be read.
    #[error("the `{header}` header is malformed: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The signed timestamp is too far from the receiver's clock: a replay
    /// of an old request, or a clock out of sync.
    #[error("the signed timestamp {timestamp} is more than {tolerance:?} away from the receiver's clock ({now}); reject it as a possible replay, or check both clocks")]
    TimestampOutsideTolerance {
        /// The signed timestamp (seconds since the epoch).
        timestamp: i64,
        /// The receiver's clock (seconds since the epoch).
        now: i64,
        /// The accepted distance.
        tolerance: Duration,
    },
    /// No signature matches the body under any configured secret.
    #[error("none of the {checked} signature(s) matches the body under the {secrets} configured secret(s); check the endpoint's secret, and verify the raw body as received (not a re-serialized one)")]
    NoMatchingSignature {
        /// How many signatures of a supported version the header carried.
        checked: usize,
        /// How many secrets were tried.
        secrets: usize,
    },
    /// The body verified but carries no event id where the scheme keeps it
    /// (Stripe: the JSON body's `id` field).
    #[error("the verified body has no event id (a JSON string field `id`), so it cannot be deduplicated")]
    MissingEventId,
}

/// Why a secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is empty.
    #[error("the webhook secret is empty; copy the endpoint's signing secret from the provider's dashboard")]
    Empty,
    /// A Standard Webhooks secret is not base64 (after the `whsec_` prefix).
    #[error("the webhook secret is not valid base64 after its `whsec_` prefix; copy it whole from the provider's dashboard")]
    NotBase64,
}
