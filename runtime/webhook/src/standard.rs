//! The Standard Webhooks scheme.

use std::time::{Duration, SystemTime};

use base64::Engine as _;

use crate::{
    check_id, check_tolerance, hmac_sha256, mac_matches, parse_timestamp, HeaderSource, Scheme,
    Secret, SecretError, Verified, VerifyError, DEFAULT_TOLERANCE,
};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

/// Verifies the Standard Webhooks scheme: headers `webhook-id`,
/// `webhook-timestamp` and `webhook-signature`; each signature is
/// `v1,<base64 of HMAC-SHA256(id.timestamp.body)>`, several separated by
/// spaces (signatures of other versions are ignored). The event id is the
/// `webhook-id` header.
///
/// # Default
/// The secrets given, a timestamp tolerance of 5 minutes
/// ([`DEFAULT_TOLERANCE`](crate::DEFAULT_TOLERANCE)) in both directions.
#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl StandardWebhooks {
    /// A verifier for one `whsec_…` secret.
    ///
    /// # Errors
    /// The secret is empty or not base64.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Ok(Self::from_secrets(vec![Secret::standard(secret)?]))
    }

    /// A verifier accepting a signature made with any of `secrets`.
    #[must_use]
    pub fn from_secrets(secrets: Vec<Secret>) -> Self {
        Self {
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Also accept signatures made with `secret` (for rotation: add the new
    /// secret, then drop the old one once the sender uses the new one).
    ///
    /// # Errors
    /// The secret is empty or not base64.
    pub fn with_secret(mut self, secret: &str) -> Result<Self, SecretError> {
        self.secrets.push(Secret::standard(secret)?);
        Ok(self)
    }

    /// How far the signed timestamp may be from the receiver's clock, in
    /// either direction (in whole seconds, as timestamps are; the bound is
    /// inclusive).
    #[must_use]
    pub const fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The `webhook-signature` value a sender holding the first secret puts
    /// on this delivery (for tests and for sending). Empty without a secret.
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let Some(secret) = self.secrets.first() else {
            return String::new();
        };
        let timestamp = timestamp.to_string();
        let mac = hmac_sha256(
            secret.key(),
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        );
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac)
        )
    }
}

fn required<'h>(
    headers: &'h dyn HeaderSource,
    name: &'static str,
) -> Result<&'h [u8], VerifyError> {
    headers
        .header(name)
        .ok_or(VerifyError::MissingHeader { header: name })
}

impl Scheme for StandardWebhooks {
    fn name(&self) -> &'static str {
        "standard"
    }

    fn verify_at(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let id = required(headers, ID)?;
        let raw_timestamp = required(headers, TIMESTAMP)?;
        let signatures = required(headers, SIGNATURE)?;

        let id = std::str::from_utf8(id).map_err(|_| VerifyError::MalformedHeader {
            header: ID,
            reason: "not UTF-8",
        })?;
        check_id(ID, id)?;
        let timestamp = parse_timestamp(raw_timestamp).ok_or(VerifyError::MalformedHeader {
            header: TIMESTAMP,
            reason: "expected whole seconds since the Unix epoch, in decimal digits",
        })?;
        let signatures =
            std::str::from_utf8(signatures).map_err(|_| VerifyError::MalformedHeader {
                header: SIGNATURE,
                reason: "not UTF-8",
            })?;

        let mut candidates = Vec::new();
        for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
            let Some((version, value)) = entry.split_once(',') else {
                return Err(VerifyError::MalformedHeader {
                    header: SIGNATURE,
                    reason: "expected space-separated `v1,<base64>` entries",
                });
            };
            if version != "v1" {
                continue;
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|_| VerifyError::MalformedHeader {
                    header: SIGNATURE,
                    reason: "a v1 signature is not valid base64",
                })?;
            candidates.push(decoded);
        }
        if candidates.is_empty() {
            return Err(VerifyError::MalformedHeader {
                header: SIGNATURE,
                reason: "no `v1,<base64>` signature",
            });
        }

        // The signature protects the timestamp: check it first, then
        // whether it is fresh.
        let matched = self.secrets.iter().any(|secret| {
            let expected = hmac_sha256(
                secret.key(),
                &[id.as_bytes(), b".", raw_timestamp, b".", body],
            );
            candidates.iter().any(|c| mac_matches(&expected, c))
        });
        if !matched {
            return Err(VerifyError::NoMatchingSignature {
                checked: candidates.len(),
                secrets: self.secrets.len(),
            });
        }
        check_tolerance(timestamp, now, self.tolerance)?;
        Ok(Verified {
            id: id.to_owned(),
            timestamp,
        })
    }
}
