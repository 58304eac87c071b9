//! Signing secrets, kept out of logs.

use base64::Engine as _;

use crate::SecretError;

/// A webhook signing secret: the HMAC key. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A secret whose HMAC key is exactly `key`.
    ///
    /// # Errors
    /// [`SecretError::Empty`] for an empty key.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let key = key.into();
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// A Standard Webhooks secret: `whsec_` followed by the base64 of the
    /// key (the prefix is optional).
    ///
    /// # Errors
    /// [`SecretError::Empty`] or [`SecretError::NotBase64`].
    pub fn standard(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(key)
    }

    /// A Stripe endpoint secret: the whole string (`whsec_…` included) is
    /// the key.
    ///
    /// # Errors
    /// [`SecretError::Empty`] for an empty string.
    pub fn stripe(secret: &str) -> Result<Self, SecretError> {
        Self::from_bytes(secret.as_bytes())
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
}
