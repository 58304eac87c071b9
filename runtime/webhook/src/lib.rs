//! Inbound webhooks: verified, then handled once.
//!
//! A provider calling *you* has the same failure modes as you calling it,
//! seen from the other side: it times out and redelivers, it sends the same
//! event twice at once, and anyone who knows the URL can post to it. This
//! module guarantees:
//!
//! - **Authenticity**: an event is accepted only if one of its signatures is
//!   the HMAC-SHA256 of the raw body (and the delivery's id and timestamp)
//!   under one of the configured secrets. Signatures are compared in
//!   constant time ([`subtle`]). Several secrets may be active at once, so
//!   a secret can be rotated without dropping events.
//! - **Freshness**: the signed timestamp must be within a tolerance of the
//!   receiver's clock (default 5 minutes, in both directions), so a
//!   captured request cannot be replayed later.
//! - **No panic on any input**: every header and body is untrusted; what
//!   cannot be read is a typed [`VerifyError`].
//! - **Once per event id** (with a [`WebhookReceiver`]): the event id is
//!   claimed in an [`IdempotencyStore`](buttress_core::IdempotencyStore) (memory,
//!   Redis or PostgreSQL) under `webhook:<scheme>:<id>`. A redelivery of a
//!   handled event is acknowledged without running the handler again; a
//!   duplicate that arrives while the first is still being handled is
//!   answered "in flight" (409) so the sender retries later; a failed
//!   handler releases the claim, so the sender's next redelivery runs it
//!   again, and the failure is reported to the
//!   [`on_failure`](WebhookReceiver::on_failure) hook.
//!
//! Two signature schemes are built in: [`StandardWebhooks`] (the
//! `webhook-id` / `webhook-timestamp` / `webhook-signature` headers used by
//! many providers) and [`Stripe`] (`Stripe-Signature`). Both implement
//! [`Scheme`].
//!
//! Verification needs the body exactly as received: a body parsed and
//! serialized again (different spacing, key order or escapes) does not
//! verify. With the `axum` feature, [`Webhook`](axum::Webhook) reads the
//! raw body itself before anything parses it.
//!
//! Secrets never appear in `Debug` output or in errors.

#[cfg(feature = "axum")]
pub mod axum;
mod dedup;
mod error;
mod headers;
mod secret;
mod standard;
mod stripe;

pub use dedup::{Delivery, FailedEvent, ReceiveError, ReceiverConfig, WebhookReceiver};
pub use error::{SecretError, VerifyError};
pub use headers::HeaderSource;
pub use secret::Secret;
pub use standard::StandardWebhooks;
pub use stripe::Stripe;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default timestamp tolerance: 5 minutes, in both directions.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The longest event id accepted (bytes); longer ids are malformed.
pub const MAX_ID_LEN: usize = 256;

/// A delivery whose signature and timestamp were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    id: String,
    timestamp: i64,
}

impl Verified {
    /// The event id the sender keeps across redeliveries (the deduplication
    /// key).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The signed timestamp, in seconds since the Unix epoch.
    #[must_use]
    pub const fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

/// A webhook signature scheme: how a delivery is signed and where its
/// event id is.
///
/// Implemented by [`StandardWebhooks`] and [`Stripe`]; implement it for
/// another provider's scheme to use it with a [`WebhookReceiver`].
pub trait Scheme: Send + Sync + 'static {
    /// A short name used in deduplication keys (`webhook:<name>:<id>`), so
    /// two schemes sharing a store never collide.
    fn name(&self) -> &'static str;

    /// Verify a delivery against the clock reading `now`.
    ///
    /// # Errors
    /// A [`VerifyError`] saying what was wrong; never a panic.
    fn verify_at(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError>;

    /// Verify a delivery against the system clock.
    ///
    /// # Errors
    /// A [`VerifyError`] saying what was wrong; never a panic.
    fn verify(&self, headers: &dyn HeaderSource, body: &[u8]) -> Result<Verified, VerifyError> {
        self.verify_at(headers, body, SystemTime::now())
    }
}

/// Seconds since the epoch (negative before it).
fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Parse a decimal timestamp of ASCII digits (an optional leading `-`).
fn parse_timestamp(raw: &[u8]) -> Option<i64> {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// Reject a timestamp further than `tolerance` from `now` (inclusive bound).
fn check_tolerance(
    timestamp: i64,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let now = unix_seconds(now);
    if timestamp.abs_diff(now) > tolerance.as_secs() {
        return Err(VerifyError::TimestampOutsideTolerance {
            timestamp,
            now,
            tolerance,
        });
    }
    Ok(())
}

/// Check an event id is usable as a key: non-empty, bounded, printable.
fn check_id(header: &'static str, id: &str) -> Result<(), VerifyError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(VerifyError::MalformedHeader {
            header,
            reason: "the event id must be 1 to 256 bytes without control characters",
        });
    }
    Ok(())
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length; the error branch cannot happen, and an
    // empty MAC simply matches nothing.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Constant-time equality of a computed MAC and a candidate signature.
fn mac_matches(expected: &[u8; 32], candidate: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    candidate.len() == expected.len() && bool::from(expected.as_slice().ct_eq(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_plain_decimal_seconds() {
        assert_eq!(parse_timestamp(b"1614265330"), Some(1_614_265_330));
        assert_eq!(parse_timestamp(b"-5"), Some(-5));
        assert_eq!(
            parse_timestamp(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        for bad in [
            &b""[..],
            b"-",
            b"+5",
            b" 5",
            b"5 ",
            b"1e9",
            b"0x10",
            b"1000000000000000000",
            b"\xff",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tolerance_survives_extreme_clocks_and_timestamps() {
        let minute = Duration::from_secs(60);
        let before_epoch = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(unix_seconds(before_epoch), -10);
        assert!(check_tolerance(-10, before_epoch, minute).is_ok());
        for timestamp in [i64::MIN, i64::MAX, -999_999_999_999_999_999] {
            assert!(check_tolerance(timestamp, UNIX_EPOCH, minute).is_err());
            assert!(check_tolerance(timestamp, before_epoch, Duration::MAX).is_ok());
        }
        assert!(check_tolerance(60, UNIX_EPOCH, minute).is_ok());
        assert!(check_tolerance(61, UNIX_EPOCH, minute).is_err());
        assert!(check_tolerance(-61, UNIX_EPOCH, minute).is_err());
    }

    #[test]
    fn macs_compare_only_equal_lengths() {
        let mac = hmac_sha256(b"key", &[b"a", b".", b"b"]);
        assert_eq!(mac, hmac_sha256(b"key", &[b"a.b"]));
        assert!(mac_matches(&mac, &mac));
        assert!(!mac_matches(&mac, &mac[..31]));
        assert!(!mac_matches(&mac, &[]));
        let mut flipped = mac;
        flipped[31] ^= 1;
        assert!(!mac_matches(&mac, &flipped));
    }
}
