//! `PostgresStore` (feature `postgres`): idempotency keys in PostgreSQL,
//! shared by every process and machine that uses the same table.
//!
//! # What it guarantees
//!
//! - At most one holder per key: a claim is one `INSERT … ON CONFLICT (key)
//!   DO UPDATE … WHERE <takeover allowed> RETURNING` statement (in a CTE
//!   with a `SELECT` of the existing row), so PostgreSQL's primary key
//!   serializes concurrent claims from any number of processes.
//! - Fencing: each takeover increments `fence` (never reset while the row
//!   exists); `complete` / `release` act only for the current fence of a key
//!   in flight.
//! - Leases and retention use the database's clock (`now()`).
//! - One autocommit statement (one round trip) per `claim`, `complete` and
//!   `release`, prepared once per pooled connection; no explicit
//!   transaction on the hot path. In READ COMMITTED the CTE's `SELECT` uses
//!   the statement's snapshot, so a row inserted concurrently can be
//!   invisible to it while `ON CONFLICT` refuses the takeover: then the
//!   statement returns nothing (or a stale row), and is sent again (counted
//!   by `claim_retries` and `round_trips`).
//! - Every operation has a timeout (default 2 s); failures are
//!   `StoreErrorKind::Unavailable` (never with the password), unreadable rows
//!   `StoreErrorKind::Corrupt`; nothing panics.
//! - `connect` / `create_table` are safe from many processes at once on a
//!   fresh database: the DDL runs in a transaction holding
//!   `pg_advisory_xact_lock`, because concurrent `CREATE TABLE IF NOT
//!   EXISTS` can fail on `pg_type`'s unique index.
//! - The semantics are exactly [`MemoryStore`](buttress_core::idempotency::MemoryStore)'s.
//!
//! # Schema
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS "buttress_idempotency" (
//!     key         TEXT        PRIMARY KEY,
//!     state       SMALLINT    NOT NULL CHECK (state IN (0, 1, 2)), -- 0 free, 1 in flight, 2 done
//!     fence       BIGINT      NOT NULL,
//!     fingerprint BIGINT,
//!     lease_until TIMESTAMPTZ NOT NULL,
//!     expires_at  TIMESTAMPTZ NOT NULL,
//!     record      BYTEA
//! );
//! CREATE INDEX IF NOT EXISTS "buttress_idempotency_expires_at_idx"
//!     ON "buttress_idempotency" (expires_at);
//! ```
//!
//! The user-facing documentation (with TLS and cleanup notes) is on
//! [`PostgresStore`], since this module is private and only the type is
//! re-exported.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::time::Instant;

use crate::connection::postgres as connection;
#[cfg(doc)]
use buttress_core::idempotency::StoreErrorKind;
use buttress_core::idempotency::{Claim, ClaimRequest, IdempotencyStore, StoreError};

mod cleanup;
mod errors;
mod pool;
mod rows;
mod schema;
mod statements;

use errors::unavailable;
use schema::{check_table, Sql, DEFAULT_TABLE};

/// The default per-operation timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections in a pool built by [`PostgresStore::connect`].
const DEFAULT_MAX_CONNECTIONS: usize = 16;

#[derive(Debug, Default)]
struct Counters {
    round_trips: AtomicU64,
    claim_retries: AtomicU64,
    prepared: AtomicU64,
}

/// An [`IdempotencyStore`] in PostgreSQL, for idempotency across processes
/// and machines (feature `postgres`). Cheap to clone: clones share the
/// connection pool and the counters.
///
/// ```no_run
/// # async fn demo() -> Result<(), buttress::idempotency::StoreError> {
/// use std::time::Duration;
/// use buttress::idempotency::PostgresStore;
///
/// // Creates the table `buttress_idempotency` if it is missing.
/// let store = PostgresStore::connect("postgres://app@db.internal:5432/app").await?;
/// // Delete expired keys now and then (one process is enough; several are safe).
/// let _cleaner = store.spawn_cleanup(Duration::from_secs(300));
/// # Ok(()) }
/// ```
///
/// # Guarantees
///
/// - **At most one holder.** A claim is a single
///   `INSERT … ON CONFLICT (key) DO UPDATE … WHERE <takeover allowed>`
///   statement: the primary key makes PostgreSQL serialize concurrent claims
///   of one key, so of many concurrent claims of a fresh (released, expired,
///   abandoned) key exactly one is [`Claim::Acquired`], whichever process or
///   machine it comes from.
/// - **Fencing.** Every takeover increments the row's `fence`, which is never
///   reset while the row exists; `complete` and `release` act only while the
///   caller's fence is current and the key in flight, so a holder whose
///   lease expired can never overwrite its successor's result.
/// - **The database's clock** (`now()`) times leases and retention, never
///   the client's, so clock skew between machines does not matter.
/// - **One round trip per operation**: `claim`, `complete` and `release`
///   are one autocommit statement each (prepared once per pooled connection),
///   with no explicit transaction. A claim racing with a concurrent insert
///   of the same key may send its statement again
///   ([`claim_retries`](Self::claim_retries)); [`round_trips`](Self::round_trips)
///   counts every statement sent.
/// - **Bounded waiting**: every operation, getting a connection included, has
///   a timeout (2 s by default, [`with_timeout`](Self::with_timeout)). A
///   database that is down or hung is a [`StoreError`] of kind
///   [`StoreErrorKind::Unavailable`] saying what to check (never showing the
///   password); unreadable rows are [`StoreErrorKind::Corrupt`]. Nothing
///   panics.
/// - **Safe setup**: [`connect`](Self::connect) (and
///   [`create_table`](Self::create_table)) may run in many processes at once
///   on a fresh database: the DDL runs in a transaction holding a
///   `pg_advisory_xact_lock`, since concurrent `CREATE TABLE IF NOT EXISTS`
///   can otherwise fail on `pg_type`'s unique index.
///
/// The semantics are exactly those of [`MemoryStore`](buttress_core::idempotency::MemoryStore):
/// a done key replays its record (a different fingerprint is
/// [`Claim::Mismatch`]); a key in flight under a live lease is
/// [`Claim::InFlight`] (or a mismatch); a free, expired or abandoned key is
/// taken over with the next fence.
///
/// # Schema
///
/// Created by [`connect`](Self::connect) and
/// [`create_table`](Self::create_table) (or by you, with these columns):
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "buttress_idempotency" (
///     key         TEXT        PRIMARY KEY,
///     state       SMALLINT    NOT NULL CHECK (state IN (0, 1, 2)), -- 0 free, 1 in flight, 2 done
///     fence       BIGINT      NOT NULL,  -- the current fencing token
///     fingerprint BIGINT,                -- the arguments' fingerprint, if any
///     lease_until TIMESTAMPTZ NOT NULL,  -- while in flight: when takeover is allowed
///     expires_at  TIMESTAMPTZ NOT NULL,  -- end of retention
///     record      BYTEA                  -- the stored result, when done
/// );
/// CREATE INDEX IF NOT EXISTS "buttress_idempotency_expires_at_idx"
///     ON "buttress_idempotency" (expires_at);
/// ```
///
/// The `key` column holds the idempotency key itself, except for keys
/// PostgreSQL could not hold or index as text (a NUL byte, more than
/// 2048 bytes) and keys beginning with the control character U+0001: those
/// are stored as `"\u{1}sha256:"` and the key's SHA-256 in hex, so every
/// key [`MemoryStore`](buttress_core::idempotency::MemoryStore) accepts works here too. (Rows
/// of keys longer than 2048 bytes written before this encoding are not
/// found after it; such keys could only be stored when they compressed
/// well.)
///
/// Expired rows are taken over by the next claim of their key but never
/// deleted on their own: run [`cleanup`](Self::cleanup) periodically (or
/// [`spawn_cleanup`](Self::spawn_cleanup)).
///
/// # TLS
///
/// [`connect`](Self::connect) builds a pool without TLS (`NoTls`). With TLS,
/// build a `deadpool_postgres::Pool` (deadpool-postgres 0.14) with the TLS
/// connector of your choice, and use [`from_pool`](Self::from_pool) (then
/// [`create_table`](Self::create_table) if the table may be missing).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    sql: Arc<Sql>,
    timeout: Duration,
    /// Where the database is, for messages (never the password).
    target: Arc<str>,
    counters: Arc<Counters>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("table", &self.sql.table)
            .field("timeout", &self.timeout)
            .field("round_trips", &self.round_trips())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect to `url` (a `postgres://user:password@host:port/dbname`
    /// URL or a `key=value` connection string) with a pool of up to 16
    /// connections without TLS, and create the table `buttress_idempotency`
    /// if it is missing.
    ///
    /// Safe to call from many processes at once on a fresh database (the
    /// DDL is serialized by an advisory lock). When the table exists, this
    /// only checks that it does, so the database user needs no DDL right.
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] when the URL is invalid, the database
    /// cannot be reached within the timeout (2 s), or the table cannot be
    /// created; the message says what to check and never shows the
    /// password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(url)?;
        store.create_table().await?;
        Ok(store)
    }

    /// Like [`connect`](Self::connect), with the table `table` (see
    /// [`with_table`](Self::with_table)).
    ///
    /// # Errors
    /// As [`connect`](Self::connect), and when `table` is not a plain
    /// identifier.
    pub async fn connect_with_table(url: &str, table: &str) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(url)?.with_table(table)?;
        store.create_table().await?;
        Ok(store)
    }

    /// A store for `url` that connects on first use: no I/O happens here,
    /// and the table is neither checked nor created (call
    /// [`create_table`](Self::create_table) if it may be missing). An
    /// unreachable database then surfaces on each operation as a
    /// [`StoreError`], which the idempotency layer turns into
    /// [`Error::Store`](buttress_core::Error::Store) or, with
    /// `OnStoreError::Proceed`, a call without local deduplication.
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] when `url` is not a valid connection
    /// string.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let (pool, target) =
            connection::pool(url, DEFAULT_MAX_CONNECTIONS, "the idempotency store")
                .map_err(unavailable)?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(DEFAULT_TABLE)),
            timeout: DEFAULT_TIMEOUT,
            target: target.into(),
            counters: Arc::default(),
        })
    }

    /// A store over your own pool (for TLS, a different pool size, or
    /// connection hooks), using `table`. No I/O happens here: call
    /// [`create_table`](Self::create_table) if the table may be missing.
    ///
    /// The pool must be a `deadpool_postgres::Pool` of deadpool-postgres
    /// 0.14. Prefer `RecyclingMethod::Fast`: `Verified` costs one more
    /// round trip per operation.
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] when `table` is not a plain
    /// identifier.
    pub fn from_pool(pool: Pool, table: &str) -> Result<Self, StoreError> {
        check_table(table)?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(table)),
            timeout: DEFAULT_TIMEOUT,
            target: "the configured pool".into(),
            counters: Arc::default(),
        })
    }

    /// The same store, using the table `table` (default
    /// `buttress_idempotency`). The table is neither checked nor created
    /// here: see [`create_table`](Self::create_table) and
    /// [`connect_with_table`](Self::connect_with_table).
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] (with a message saying why) unless
    /// `table` is a plain identifier: 1 to 47 lowercase ASCII letters,
    /// digits and `_`, not starting with a digit. Schemas, quotes, spaces
    /// and anything else are refused, so the name can never inject SQL.
    pub fn with_table(mut self, table: &str) -> Result<Self, StoreError> {
        check_table(table)?;
        self.sql = Arc::new(Sql::new(table));
        Ok(self)
    }

    /// The same store with another per-operation timeout (default 2 s),
    /// covering getting a connection and the statement. Zero is raised to
    /// one millisecond.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The table's name.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.sql.table
    }

    /// The per-operation timeout.
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection pool (shared by clones).
    #[must_use]
    pub const fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Statements sent to the database by this store and its clones:
    /// one per `claim`, `complete` and `release` (plus one per claim retry),
    /// and those of [`create_table`](Self::create_table) and
    /// [`cleanup`](Self::cleanup). Preparing a statement, once per pooled
    /// connection, is counted separately by
    /// [`statements_prepared`](Self::statements_prepared).
    #[must_use]
    pub fn round_trips(&self) -> u64 {
        self.counters.round_trips.load(Ordering::Relaxed)
    }

    /// Claims that had to send their statement again because a concurrent
    /// writer of the same key committed after the statement's snapshot
    /// (each is also one of [`round_trips`](Self::round_trips)).
    #[must_use]
    pub fn claim_retries(&self) -> u64 {
        self.counters.claim_retries.load(Ordering::Relaxed)
    }

    /// Statements prepared (one round trip each, once per statement and
    /// pooled connection).
    #[must_use]
    pub fn statements_prepared(&self) -> u64 {
        self.counters.prepared.load(Ordering::Relaxed)
    }

    /// Close the pool, for this store and all its clones: idle connections
    /// are closed now, the others when they are returned, and every later
    /// operation fails with [`StoreErrorKind::Unavailable`].
    pub fn close(&self) {
        self.pool.close();
    }
}

impl IdempotencyStore for PostgresStore {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        let deadline = buttress_core::__backend::later(Instant::now(), self.timeout);
        let client = self.client(deadline).await?;
        let outcome = tokio::time::timeout_at(deadline, self.claim_on(&client, request)).await;
        self.settle(client, outcome, "claim a key")
    }

    async fn complete(
        &self,
        key: &str,
        fence: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        // No row can hold a fence beyond i64::MAX.
        let Ok(fence) = i64::try_from(fence) else {
            return Ok(false);
        };
        let deadline = buttress_core::__backend::later(Instant::now(), self.timeout);
        let client = self.client(deadline).await?;
        let outcome =
            tokio::time::timeout_at(deadline, self.complete_on(&client, key, fence, record, ttl))
                .await;
        self.settle(client, outcome, "store a result")
    }

    async fn release(&self, key: &str, fence: u64) -> Result<(), StoreError> {
        let Ok(fence) = i64::try_from(fence) else {
            return Ok(());
        };
        let deadline = buttress_core::__backend::later(Instant::now(), self.timeout);
        let client = self.client(deadline).await?;
        let outcome = tokio::time::timeout_at(deadline, self.release_on(&client, key, fence)).await;
        self.settle(client, outcome, "release a key")
    }
}
