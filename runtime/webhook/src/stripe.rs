//! Stripe's webhook signatures.

use std::time::{Duration, SystemTime};

use crate::{
    check_id, check_tolerance, hmac_sha256, mac_matches, parse_timestamp, HeaderSource, Scheme,
    Secret, SecretError, Verified, VerifyError, DEFAULT_TOLERANCE,
};

const SIGNATURE: &str = "stripe-signature";

/// Verifies Stripe's scheme: header `Stripe-Signature: t=<timestamp>,v1=<hex>`
/// (several `v1` entries possible; other schemes such as `v0` are
/// ignored); each `v1` is the hex of HMAC-SHA256(`t.body`) under the
/// endpoint secret (the whole `whsec_…` string). The event id is the JSON
/// body's `id` field.
///
/// # Default
/// The secrets given, a timestamp tolerance of 5 minutes
/// ([`DEFAULT_TOLERANCE`](crate::DEFAULT_TOLERANCE)) in both directions.
#[derive(Debug, Clone)]
pub struct Stripe {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Stripe {
    /// A verifier for one endpoint secret.
    ///
    /// # Errors
    /// The secret is empty.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Ok(Self::from_secrets(vec![Secret::stripe(secret)?]))
    }

    /// A verifier accepting a signature made with any of `secrets`.
    #[must_use]
    pub fn from_secrets(secrets: Vec<Secret>) -> Self {
        Self {
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Also accept signatures made with `secret` (Stripe signs with every
    /// secret active during a roll).
    ///
    /// # Errors
    /// The secret is empty.
    pub fn with_secret(mut self, secret: &str) -> Result<Self, SecretError> {
        self.secrets.push(Secret::stripe(secret)?);
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

    /// The `Stripe-Signature` value a sender holding the first secret puts
    /// on this delivery (for tests). Empty without a secret.
    #[must_use]
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let Some(secret) = self.secrets.first() else {
            return String::new();
        };
        let timestamp = timestamp.to_string();
        let mac = hmac_sha256(secret.key(), &[timestamp.as_bytes(), b".", body]);
        format!("t={timestamp},v1={}", hex(&mac))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

fn malformed(reason: &'static str) -> VerifyError {
    VerifyError::MalformedHeader {
        header: SIGNATURE,
        reason,
    }
}

#[derive(serde::Deserialize)]
struct EventId {
    id: String,
}

impl Scheme for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn verify_at(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let header = headers
            .header(SIGNATURE)
            .ok_or(VerifyError::MissingHeader { header: SIGNATURE })?;
        let header = std::str::from_utf8(header).map_err(|_| malformed("not UTF-8"))?;

        let mut raw_timestamp = None;
        let mut candidates = Vec::new();
        for entry in header.split(',') {
            let Some((key, value)) = entry.trim().split_once('=') else {
                return Err(malformed(
                    "expected comma-separated `key=value` entries, such as `t=…,v1=…`",
                ));
            };
            match key {
                "t" if raw_timestamp.is_some() => {
                    return Err(malformed("more than one `t=` timestamp"))
                }
                "t" => raw_timestamp = Some(value),
                "v1" => {
                    candidates.push(unhex(value).ok_or(malformed("a v1 signature is not hex"))?)
                }
                _ => {}
            }
        }
        let raw_timestamp = raw_timestamp.ok_or(malformed("no `t=` timestamp"))?;
        let timestamp = parse_timestamp(raw_timestamp.as_bytes()).ok_or(malformed(
            "the `t=` timestamp is not whole seconds since the Unix epoch",
        ))?;
        if candidates.is_empty() {
            return Err(malformed("no `v1=` signature"));
        }

        let matched = self.secrets.iter().any(|secret| {
            let expected = hmac_sha256(secret.key(), &[raw_timestamp.as_bytes(), b".", body]);
            candidates.iter().any(|c| mac_matches(&expected, c))
        });
        if !matched {
            return Err(VerifyError::NoMatchingSignature {
                checked: candidates.len(),
                secrets: self.secrets.len(),
            });
        }
        check_tolerance(timestamp, now, self.tolerance)?;
        let id = serde_json::from_slice::<EventId>(body)
            .map_err(|_| VerifyError::MissingEventId)?
            .id;
        check_id("id", &id).map_err(|_| VerifyError::MissingEventId)?;
        Ok(Verified { id, timestamp })
    }
}
