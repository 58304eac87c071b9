//! Idempotency: one logical operation, at most one effect, on one machine
//! or many.
//!
//! A timeout does not mean the provider did nothing. When a call is
//! `idempotent(key = …, store = …)`, the key is claimed in a store before the
//! first attempt:
//!
//! - **fresh** (or released, or its holder's lease expired): this caller holds
//!   the key with a new *fencing token*, calls the provider (with retries),
//!   then stores the result (only a holder whose token is still current can)
//!   or, on failure, releases the key (the provider-side key still protects a
//!   resend);
//! - **completed**: the stored result is returned without calling the provider;
//! - **in flight** elsewhere: [`Error::InFlight`](crate::Error::InFlight)
//!   (409 semantics), or wait up to `wait` for it to complete;
//! - **fingerprint mismatch** (the same key with different arguments):
//!   [`Error::KeyReused`](crate::Error::KeyReused) (422 semantics).
//!
//! A crashed holder's lease expires and the next caller takes over with a
//! higher token, so the crashed holder can never overwrite the new result.
//! When the store itself fails, the call fails closed with
//! [`Error::Store`](crate::Error::Store), unless `on_store_error = proceed`.
//!
//! Stores: [`MemoryStore`] (embedded, sharded, bounded), `RedisStore`
//! (feature `redis`), `PostgresStore` (feature `postgres`).

mod dedup;
mod key;
mod memory;

pub use dedup::{Dedup, DedupOptions, OnStoreError, Stored};
pub(crate) use key::generate as generate_key;
pub use key::{fingerprint_of, key_hash};
pub use memory::{MemoryStore, MemoryStoreConfig};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What a store answered to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller now holds the key: call the provider, then
    /// [`complete`](IdempotencyStore::complete) or
    /// [`release`](IdempotencyStore::release) with this fencing token.
    Acquired {
        /// The fencing token: only its holder can complete or release.
        fence: u64,
    },
    /// Another caller holds a live lease on the key.
    InFlight {
        /// When that lease expires, if the store knows.
        lease_left: Option<Duration>,
    },
    /// The operation completed; here is its stored result.
    Completed {
        /// The serialized result.
        record: Vec<u8>,
    },
    /// The key was used with a different argument fingerprint.
    Mismatch,
}

/// A claim request.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The idempotency key.
    pub key: &'a str,
    /// A hash of the call's arguments, if the caller wants reuse detected.
    pub fingerprint: Option<u64>,
    /// How long the claim holds before another caller may take over.
    pub lease: Duration,
    /// How long the key (and a completed result) is retained.
    pub ttl: Duration,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

/// The kind of a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer.
    Unavailable,
    /// The store answered with something this version cannot read.
    Corrupt,
    /// A stored result could not be (de)serialized as the call's type.
    Serialization,
    /// The store is full (the memory store with every entry in flight).
    Full,
}

impl std::fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "store unavailable",
            Self::Corrupt => "unreadable store contents",
            Self::Serialization => "stored result does not fit the call's type",
            Self::Full => "store full",
        })
    }
}

impl StoreError {
    /// A store error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The kind.
    #[must_use]
    pub const fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A place to record idempotency keys: claims with leases and fencing
/// tokens, and completed results with a retention TTL.
///
/// Implemented for [`MemoryStore`], `RedisStore`, `PostgresStore`, and for
/// `&S` and `Arc<S>` of any store.
pub trait IdempotencyStore: Send + Sync {
    /// Claim `request.key`. Must be atomic: of many concurrent claims of a
    /// fresh key, exactly one is `Acquired`.
    fn claim(
        &self,
        request: ClaimRequest<'_>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Store the result of the operation holding `fence`, retained for
    /// `ttl`. Returns `false` (and stores nothing) when `fence` is no longer
    /// the key's current token (the lease expired and someone took over).
    fn complete(
        &self,
        key: &str,
        fence: u64,
        record: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Give the key up after a failed operation, if `fence` still holds it,
    /// so the next caller may try again.
    fn release(&self, key: &str, fence: u64)
        -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Forwarding impls: a store behind a reference or an `Arc` is a store.
macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<S: IdempotencyStore + ?Sized> IdempotencyStore for $ty {
            fn claim(
                &self,
                request: ClaimRequest<'_>,
            ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
                (**self).claim(request)
            }
            fn complete(
                &self,
                key: &str,
                fence: u64,
                record: &[u8],
                ttl: Duration,
            ) -> impl Future<Output = Result<bool, StoreError>> + Send {
                (**self).complete(key, fence, record, ttl)
            }
            fn release(
                &self,
                key: &str,
                fence: u64,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).release(key, fence)
            }
        }
    )*};
}

forward_store!(&S, Arc<S>);
