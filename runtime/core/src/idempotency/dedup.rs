//! The idempotency layer of a call: claim before the first attempt,
//! complete or release after the last.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use super::key::key_hash;
use super::{Claim, ClaimRequest, IdempotencyStore, StoreError, StoreErrorKind};
use crate::error::Error;

/// What to do when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Fail the call with [`Error::Store`] without calling the provider
    /// (the default: no duplicate effects, at the price of availability).
    #[default]
    FailClosed,
    /// Call the provider anyway, without local deduplication (the
    /// provider-side idempotency key still protects a resend).
    Proceed,
}

/// Settings of the idempotency layer.
///
/// # Default
/// TTL 24 h, lease: the call's deadline plus 5 s (60 s without a deadline),
/// no waiting for an in-flight holder, fail closed, no fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupOptions {
    pub(crate) ttl: Duration,
    pub(crate) lease: Option<Duration>,
    pub(crate) wait: Duration,
    pub(crate) on_store_error: OnStoreError,
    pub(crate) fingerprint: Option<u64>,
}

impl DedupOptions {
    /// The defaults.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            lease: None,
            wait: Duration::ZERO,
            on_store_error: OnStoreError::FailClosed,
            fingerprint: None,
        }
    }

    /// How long a completed result is kept (and replayed).
    #[must_use]
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a claim holds before another caller may take over.
    #[must_use]
    pub const fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How long to wait for another holder of the key to finish before
    /// answering [`Error::InFlight`].
    #[must_use]
    pub const fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// What to do when the store fails.
    #[must_use]
    pub const fn with_on_store_error(mut self, on_store_error: OnStoreError) -> Self {
        self.on_store_error = on_store_error;
        self
    }

    /// The argument fingerprint (see [`super::fingerprint_of`]).
    #[must_use]
    pub const fn with_fingerprint(mut self, fingerprint: u64) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }
}

impl Default for DedupOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A result type the idempotency store can keep.
#[diagnostic::on_unimplemented(
    message = "the result type `{Self}` cannot be stored by the idempotency store",
    label = "`{Self}` must implement `serde::Serialize` and `serde::de::DeserializeOwned`",
    note = "with `idempotent(store = ...)`, a completed call's `Ok` value is stored and replayed to duplicates; derive `Serialize` and `Deserialize` for `{Self}`, or drop `store` to rely on the provider's idempotency key alone"
)]
pub trait Stored: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Stored for T {}

/// A claimed key, to be finished after the call.
#[derive(Debug)]
#[must_use = "finish the dedup with the call's result"]
pub struct Dedup<'s, S> {
    store: &'s S,
    provider: Arc<str>,
    key: Arc<str>,
    fence: Option<u64>,
    ttl: Duration,
}

fn store_error(provider: &Arc<str>, key: &str, e: &StoreError) -> Error {
    Error::Store {
        provider: Arc::clone(provider),
        message: format!("idempotency key #{}: {e}", key_hash(key)),
    }
}

impl<'s, S: IdempotencyStore> Dedup<'s, S> {
    /// Claim `key`. `Ok` means "call the provider, then [`finish`](Self::finish)";
    /// `Err` carries the call's answer without calling it: a replayed
    /// result, or `InFlight`, `KeyReused`, `Store`.
    ///
    /// # Errors
    /// The call's answer when the provider must not be called.
    pub async fn begin<T: Stored>(
        store: &'s S,
        provider: &Arc<str>,
        key: Arc<str>,
        deadline: Option<Duration>,
        options: &DedupOptions,
    ) -> Result<Self, Result<T, Error>> {
        let lease = options.lease.unwrap_or_else(|| {
            deadline.map_or(Duration::from_secs(60), |d| d + Duration::from_secs(5))
        });
        let request = ClaimRequest {
            key: &key,
            fingerprint: options.fingerprint,
            lease,
            ttl: options.ttl,
        };
        let give_up_at = crate::clock::later(Instant::now(), options.wait);
        let mut pause = Duration::from_millis(10);
        loop {
            let claim = match store.claim(request).await {
                Ok(claim) => claim,
                Err(e) => {
                    return match options.on_store_error {
                        OnStoreError::FailClosed => Err(Err(store_error(provider, &key, &e))),
                        OnStoreError::Proceed => {
                            tracing::warn!(
                                provider = &**provider,
                                key_hash = %key_hash(&key),
                                error = %e,
                                "idempotency store failed; calling the provider without local deduplication (on_store_error = proceed)"
                            );
                            Ok(Self {
                                store,
                                provider: Arc::clone(provider),
                                key,
                                fence: None,
                                ttl: options.ttl,
                            })
                        }
                    };
                }
            };
            match claim {
                Claim::Acquired { fence } => {
                    return Ok(Self {
                        store,
                        provider: Arc::clone(provider),
                        key,
                        fence: Some(fence),
                        ttl: options.ttl,
                    })
                }
                Claim::Completed { record } => {
                    return Err(serde_json::from_slice::<T>(&record).map_err(|e| {
                        store_error(
                            provider,
                            &key,
                            &StoreError::new(StoreErrorKind::Serialization, e.to_string()),
                        )
                    }));
                }
                Claim::Mismatch => {
                    return Err(Err(Error::KeyReused {
                        provider: Arc::clone(provider),
                        key_hash: key_hash(&key),
                    }))
                }
                Claim::InFlight { lease_left } => {
                    let now = Instant::now();
                    if now >= give_up_at {
                        return Err(Err(Error::InFlight {
                            provider: Arc::clone(provider),
                            key_hash: key_hash(&key),
                        }));
                    }
                    let mut next = pause.min(give_up_at - now);
                    if let Some(left) = lease_left {
                        next = next.min(left.max(Duration::from_millis(1)));
                    }
                    tokio::time::sleep(next).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
            }
        }
    }

    /// Record the call's outcome: store an `Ok` value (only while this
    /// caller still holds the key), release the key after an error.
    pub async fn finish<T: Stored, E>(self, result: &Result<T, E>) {
        let Some(fence) = self.fence else {
            return;
        };
        let hash = key_hash(&self.key);
        let provider: &str = &self.provider;
        match result {
            Ok(value) => {
                let record = match serde_json::to_vec(value) {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::error!(provider, key_hash = %hash, error = %e, "the call's result could not be serialized for the idempotency store; releasing the key");
                        let _ = self.store.release(&self.key, fence).await;
                        return;
                    }
                };
                match self
                    .store
                    .complete(&self.key, fence, &record, self.ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        provider,
                        key_hash = %hash,
                        "the call completed after its lease was taken over; its result was returned to the caller but not stored"
                    ),
                    Err(e) => tracing::error!(
                        provider,
                        key_hash = %hash,
                        error = %e,
                        "the call completed but its result could not be stored; it was returned to the caller, and a duplicate within the lease gets InFlight"
                    ),
                }
            }
            Err(_) => {
                if let Err(e) = self.store.release(&self.key, fence).await {
                    tracing::warn!(provider, key_hash = %hash, error = %e, "could not release the idempotency key after a failed call; it frees when its lease expires");
                }
            }
        }
    }
}
