//! What goes into a row and comes out of one: the key as stored,
//! durations and fingerprints as the database holds them, and the claim
//! statement's answer.

use std::time::Duration;

use tokio_postgres::Row;

use buttress_core::idempotency::{Claim, StoreError};

use super::errors::corrupt;
use super::PostgresStore;
use crate::connection::postgres::error_chain;

/// Keys up to this many bytes are stored as they are; longer ones hashed.
/// (A primary-key entry must fit a third of a page, about 2.7 kB after
/// compression, so a long incompressible key could not be stored.)
const MAX_RAW_KEY: usize = 2048;

/// What begins a hashed key: a control character no stored raw key starts
/// with (keys that do are hashed too, so the encoding stays one-to-one).
const HASHED_PREFIX: &str = "\u{1}sha256:";

/// The key as stored in the `key` column: the key itself, or, for a key
/// PostgreSQL cannot hold as text or index (a NUL byte, more than
/// [`MAX_RAW_KEY`] bytes) and for a key that begins with
/// [`HASHED_PREFIX`], that prefix and the SHA-256 of the key in hex. So
/// every key [`MemoryStore`](buttress_core::idempotency::MemoryStore) accepts works, and two
/// different keys never share a row (short of a SHA-256 collision).
pub(super) fn stored_key(key: &str) -> std::borrow::Cow<'_, str> {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    if key.len() <= MAX_RAW_KEY && !key.contains('\0') && !key.starts_with(HASHED_PREFIX) {
        return std::borrow::Cow::Borrowed(key);
    }
    let mut stored = String::with_capacity(HASHED_PREFIX.len() + 64);
    stored.push_str(HASHED_PREFIX);
    for byte in Sha256::digest(key.as_bytes()) {
        let _ = write!(stored, "{byte:02x}");
    }
    std::borrow::Cow::Owned(stored)
}

/// Durations sent to the database are capped at about 100 years.
const MAX_INTERVAL_MICROS: i64 = 100 * 366 * 24 * 3600 * 1_000_000;

/// A duration in microseconds, as sent to the database (capped at
/// [`MAX_INTERVAL_MICROS`]).
pub(super) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros())
        .unwrap_or(i64::MAX)
        .min(MAX_INTERVAL_MICROS)
}

pub(super) const fn to_db(fingerprint: u64) -> i64 {
    i64::from_ne_bytes(fingerprint.to_ne_bytes())
}

pub(super) const fn from_db(fingerprint: i64) -> u64 {
    u64::from_ne_bytes(fingerprint.to_ne_bytes())
}

impl PostgresStore {
    /// The answer of the claim statement, or `None` when it must be sent
    /// again (the row was written after the statement's snapshot).
    pub(super) fn interpret(
        &self,
        rows: &[Row],
        asked: Option<u64>,
    ) -> Result<Option<Claim>, StoreError> {
        let table = &self.sql.table;
        let bad = |e: tokio_postgres::Error| {
            corrupt(format!(
                "unexpected claim answer from table {table}: {}; is it the idempotency \
                 store's schema?",
                error_chain(&e)
            ))
        };
        let row = match rows {
            [] => return Ok(None),
            [row] => row,
            _ => {
                return Err(corrupt(format!(
                    "the claim statement on table {table} returned {} rows; is key its primary \
                     key?",
                    rows.len()
                )))
            }
        };
        let acquired: bool = row.try_get(0).map_err(bad)?;
        let fence: i64 = row.try_get(1).map_err(bad)?;
        let fence = u64::try_from(fence)
            .ok()
            .filter(|f| *f >= 1)
            .ok_or_else(|| corrupt(format!("invalid fence {fence} in table {table}")))?;
        if acquired {
            return Ok(Some(Claim::Acquired { fence }));
        }
        let state: Option<i16> = row.try_get(2).map_err(bad)?;
        let stored: Option<i64> = row.try_get(3).map_err(bad)?;
        let record: Option<Vec<u8>> = row.try_get(4).map_err(bad)?;
        let live: Option<bool> = row.try_get(5).map_err(bad)?;
        let lease_left: Option<i64> = row.try_get(6).map_err(bad)?;
        if live != Some(true) {
            // Expired in the snapshot, yet not taken over: stale snapshot.
            return Ok(None);
        }
        let mismatch = matches!(
            (stored.map(from_db), asked),
            (Some(stored), Some(asked)) if stored != asked
        );
        match state {
            Some(2) if mismatch => Ok(Some(Claim::Mismatch)),
            Some(2) => match record {
                Some(record) => Ok(Some(Claim::Completed { record })),
                None => Err(corrupt(format!(
                    "a completed key in table {table} has no stored record"
                ))),
            },
            Some(1) if mismatch => Ok(Some(Claim::Mismatch)),
            Some(1) => Ok(lease_left.map(|us| Claim::InFlight {
                lease_left: Some(Duration::from_micros(us.unsigned_abs())),
            })),
            // Free in the snapshot, yet not taken over: stale snapshot.
            Some(0) => Ok(None),
            other => Err(corrupt(format!(
                "invalid state {other:?} in table {table} (expected 0, 1 or 2)"
            ))),
        }
    }
}
