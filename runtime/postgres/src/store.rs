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

use deadpool_postgres::{Object, Pool, PoolError};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Statement};

use crate::connection::postgres::{self as connection, error_chain};
use buttress_core::idempotency::{
    key_hash, Claim, ClaimRequest, IdempotencyStore, StoreError, StoreErrorKind,
};

fn check_table(table: &str) -> Result<(), StoreError> {
    connection::check_table(table, MAX_TABLE_LEN, "idempotency").map_err(unavailable)
}

/// The default table name.
const DEFAULT_TABLE: &str = "buttress_idempotency";

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
fn stored_key(key: &str) -> std::borrow::Cow<'_, str> {
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

/// The longest table name accepted (so that `<table>_expires_at_idx` fits
/// PostgreSQL's 63-byte identifiers).
const MAX_TABLE_LEN: usize = 47;

/// The advisory lock taken around the DDL (`"buttress"` in ASCII).
const DDL_LOCK: i64 = 0x6275_7474_7265_7373;

/// The default per-operation timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections in a pool built by [`PostgresStore::connect`].
const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// How many times a claim statement is sent before giving up when it keeps
/// racing with concurrent writers of the same key.
const MAX_CLAIM_ATTEMPTS: u32 = 8;

/// Rows deleted per statement by [`PostgresStore::cleanup`].
const CLEANUP_BATCH: i64 = 10_000;

/// Durations sent to the database are capped at about 100 years.
const MAX_INTERVAL_MICROS: i64 = 100 * 366 * 24 * 3600 * 1_000_000;

/// The statements for one table.
#[derive(Debug)]
struct Sql {
    table: String,
    exists: String,
    ddl: String,
    claim: String,
    complete: String,
    release: String,
    cleanup: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        // `table` is validated: lowercase ASCII letters, digits and `_`.
        let t = format!("\"{table}\"");
        let takeover_free = "t.expires_at <= now() OR t.state = 0 OR (t.state = 1 \
             AND t.lease_until <= now() AND NOT (t.fingerprint IS NOT NULL \
             AND EXCLUDED.fingerprint IS NOT NULL AND t.fingerprint <> EXCLUDED.fingerprint))";
        let expired = "expires_at <= now() AND NOT (state = 1 AND lease_until > now())";
        Self {
            table: table.to_owned(),
            exists: format!("SELECT to_regclass('{t}') IS NOT NULL"),
            // Run inside a transaction: the advisory lock is held until it
            // ends, so concurrent creators run the DDL one after another.
            ddl: format!(
                "SELECT pg_advisory_xact_lock({DDL_LOCK}); \
                 CREATE TABLE IF NOT EXISTS {t} (\
                 key TEXT PRIMARY KEY, \
                 state SMALLINT NOT NULL CHECK (state IN (0, 1, 2)), \
                 fence BIGINT NOT NULL, \
                 fingerprint BIGINT, \
                 lease_until TIMESTAMPTZ NOT NULL, \
                 expires_at TIMESTAMPTZ NOT NULL, \
                 record BYTEA); \
                 CREATE INDEX IF NOT EXISTS \"{table}_expires_at_idx\" ON {t} (expires_at)"
            ),
            // $1 key, $2 fingerprint, $3 lease (µs), $4 retention (µs).
            //
            // `existing` reads the row as of the statement's snapshot;
            // `acquired` sees the latest committed version (ON CONFLICT
            // waits for a concurrent writer of the key). When the row was
            // inserted after the snapshot and not taken over, neither branch
            // returns a row; when the snapshot's row is stale (it allowed a
            // takeover that the latest version refused), the row returned
            // says so. The caller retries both cases with a new snapshot.
            claim: format!(
                "WITH existing AS (\
                     SELECT state, fence, fingerprint, record, lease_until, expires_at \
                     FROM {t} WHERE key = $1\
                 ), acquired AS (\
                     INSERT INTO {t} AS t (key, state, fence, fingerprint, lease_until, expires_at, record) \
                     VALUES ($1, 1, 1, $2::bigint, \
                             now() + $3::bigint * interval '1 microsecond', \
                             now() + $4::bigint * interval '1 microsecond', NULL) \
                     ON CONFLICT (key) DO UPDATE SET \
                         state = 1, fence = t.fence + 1, fingerprint = EXCLUDED.fingerprint, \
                         lease_until = EXCLUDED.lease_until, expires_at = EXCLUDED.expires_at, \
                         record = NULL \
                     WHERE {takeover_free} \
                     RETURNING t.fence\
                 ) \
                 SELECT true, a.fence, NULL::smallint, NULL::bigint, NULL::bytea, NULL::boolean, NULL::bigint \
                 FROM acquired a \
                 UNION ALL \
                 SELECT false, e.fence, e.state, e.fingerprint, e.record, e.expires_at > now(), \
                        CASE WHEN e.lease_until > now() \
                             THEN (extract(epoch FROM e.lease_until - now()) * 1000000)::bigint END \
                 FROM existing e WHERE NOT EXISTS (SELECT 1 FROM acquired)"
            ),
            // $1 key, $2 fence, $3 record, $4 retention (µs).
            complete: format!(
                "UPDATE {t} SET state = 2, record = $3::bytea, \
                 expires_at = now() + $4::bigint * interval '1 microsecond' \
                 WHERE key = $1 AND fence = $2::bigint AND state = 1 RETURNING fence"
            ),
            // $1 key, $2 fence.
            release: format!(
                "UPDATE {t} SET state = 0 WHERE key = $1 AND fence = $2::bigint AND state = 1"
            ),
            // $1 batch size. The condition is repeated outside the sub-select
            // so that a row re-claimed meanwhile (READ COMMITTED re-checks
            // the outer condition on its latest version) is kept.
            cleanup: format!(
                "DELETE FROM {t} WHERE key IN (\
                     SELECT key FROM {t} WHERE {expired} LIMIT $1::bigint\
                 ) AND {expired}"
            ),
        }
    }
}

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

fn unavailable(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, message)
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

/// Validates a table name: a plain, lowercase identifier.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros())
        .unwrap_or(i64::MAX)
        .min(MAX_INTERVAL_MICROS)
}

const fn to_db(fingerprint: u64) -> i64 {
    i64::from_ne_bytes(fingerprint.to_ne_bytes())
}

const fn from_db(fingerprint: i64) -> u64 {
    u64::from_ne_bytes(fingerprint.to_ne_bytes())
}

/// Errors worth sending the same statement again for.
fn is_race(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
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

    /// Create the table and its index if they are missing. Safe to call
    /// from many processes at once: when the table is missing, the DDL runs
    /// in a transaction holding `pg_advisory_xact_lock`, so concurrent
    /// creators wait for each other instead of failing on `pg_type`'s
    /// unique index.
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] when the database cannot be reached
    /// within the timeout or refuses the DDL (for instance, for lack of the
    /// `CREATE` privilege: then create the table as shown under
    /// [Schema](Self#schema)).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let deadline = buttress_core::__backend::later(Instant::now(), self.timeout);
        let mut client = self.client(deadline).await?;
        let outcome = tokio::time::timeout_at(deadline, self.create_table_on(&mut client)).await;
        self.settle(client, outcome, "create the table")
    }

    async fn create_table_on(&self, client: &mut Object) -> Result<(), StoreError> {
        // Simple-protocol queries: one round trip each.
        self.count();
        let answer = client
            .simple_query(&self.sql.exists)
            .await
            .map_err(|e| self.query_error("check the table", &e))?;
        let exists = answer.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        match exists {
            Some("t") => return Ok(()),
            Some("f") => {}
            other => {
                return Err(corrupt(format!(
                    "unexpected answer {other:?} to the check of table {}",
                    self.sql.table
                )))
            }
        }
        let ddl_error = |e: &tokio_postgres::Error| self.query_error("create the table", e);
        self.count();
        let tx = client.transaction().await.map_err(|e| ddl_error(&e))?;
        self.count();
        tx.batch_execute(&self.sql.ddl)
            .await
            .map_err(|e| ddl_error(&e))?;
        self.count();
        tx.commit().await.map_err(|e| ddl_error(&e))
    }

    /// Delete the rows whose retention has ended, except those still in
    /// flight under a live lease, and return how many were deleted.
    ///
    /// Expired rows are harmless (a claim takes them over) but take space:
    /// run this periodically, e.g. with
    /// [`spawn_cleanup`](Self::spawn_cleanup) in one process, or from a
    /// scheduled job. It deletes in batches of 10,000 rows (one statement
    /// each, using the index on `expires_at`), so it never holds many
    /// row locks at once; the timeout applies to each batch.
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] when the database cannot be reached
    /// or does not answer in time; rows deleted by earlier batches stay
    /// deleted.
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deadline = buttress_core::__backend::later(Instant::now(), self.timeout);
            let client = self.client(deadline).await?;
            let outcome = tokio::time::timeout_at(deadline, async {
                let statement = self.prepare(&client, &self.sql.cleanup).await?;
                self.count();
                client
                    .execute(&statement, &[&CLEANUP_BATCH])
                    .await
                    .map_err(|e| self.query_error("delete expired keys", &e))
            })
            .await;
            let deleted = self.settle(client, outcome, "delete expired keys")?;
            total += deleted;
            if deleted < CLEANUP_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }

    /// Run [`cleanup`](Self::cleanup) now and then every `every` (at least
    /// one second) on the current Tokio runtime, until the returned task is
    /// aborted. Failures are logged (`tracing` warning) and retried at the
    /// next tick. One process is enough, but running it in several is safe.
    ///
    /// # Panics
    /// Outside a Tokio runtime, like [`tokio::spawn`].
    pub fn spawn_cleanup(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let every = every.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.cleanup().await {
                    Ok(deleted) => tracing::debug!(
                        table = store.table(),
                        deleted,
                        "deleted expired idempotency keys"
                    ),
                    Err(e) => tracing::warn!(
                        table = store.table(),
                        error = %e,
                        "could not delete expired idempotency keys; retrying at the next tick"
                    ),
                }
            }
        })
    }

    fn count(&self) {
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    async fn client(&self, deadline: Instant) -> Result<Object, StoreError> {
        match tokio::time::timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.pool_error(&e)),
            Err(_) => Err(self.timeout_error("get a connection")),
        }
    }

    /// The outcome of an operation on `client`: on timeout, the connection
    /// is dropped rather than returned to the pool (it may be hung).
    fn settle<T>(
        &self,
        client: Object,
        outcome: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
        what: &str,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok(result) => result,
            Err(_) => {
                drop(Object::take(client));
                Err(self.timeout_error(what))
            }
        }
    }

    async fn prepare(&self, client: &Object, sql: &str) -> Result<Statement, StoreError> {
        let before = client.statement_cache.size();
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.query_error("prepare a statement", &e))?;
        if client.statement_cache.size() > before {
            self.counters.prepared.fetch_add(1, Ordering::Relaxed);
        }
        Ok(statement)
    }

    fn pool_error(&self, e: &PoolError) -> StoreError {
        let target = &self.target;
        match e {
            PoolError::Timeout(_) => self.timeout_error("get a connection"),
            PoolError::Closed => unavailable(format!(
                "the idempotency store's PostgreSQL pool ({target}) is closed"
            )),
            PoolError::Backend(e) => unavailable(format!(
                "cannot connect to PostgreSQL at {target} for the idempotency store: {}; check \
                 that the server is running and reachable at that address, and that the user, \
                 database and credentials in the URL are right",
                error_chain(e)
            )),
            other => unavailable(format!(
                "cannot get a PostgreSQL connection to {target} for the idempotency store: {other}"
            )),
        }
    }

    fn timeout_error(&self, what: &str) -> StoreError {
        unavailable(format!(
            "PostgreSQL at {} did not answer within {:?} (trying to {what} for the idempotency \
             store, table {}); check that the server is up, reachable and not overloaded or \
             locked, or raise PostgresStore::with_timeout",
            self.target, self.timeout, self.sql.table
        ))
    }

    fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> StoreError {
        let table = &self.sql.table;
        let target = &self.target;
        let reason = error_chain(e);
        let hint = match e.code() {
            Some(c) if *c == SqlState::UNDEFINED_TABLE => format!(
                "; the table {table} does not exist: PostgresStore::connect creates it, or call \
                 create_table"
            ),
            Some(c) if *c == SqlState::UNDEFINED_COLUMN || *c == SqlState::DATATYPE_MISMATCH => {
                return corrupt(format!(
                    "the table {table} at {target} does not have the idempotency store's schema \
                     (could not {what}: {reason}); see the schema in PostgresStore's documentation"
                ))
            }
            Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => format!(
                "; grant the database user the needed rights on {table}, or create the table \
                 yourself with the documented schema"
            ),
            Some(_) => String::new(),
            None if e.is_closed() => {
                "; the connection was closed: check that the server is running".to_owned()
            }
            None => "; check that the server is running and reachable".to_owned(),
        };
        unavailable(format!(
            "PostgreSQL at {target} failed to {what} for the idempotency store: {reason}{hint}"
        ))
    }

    async fn claim_on(
        &self,
        client: &Object,
        request: ClaimRequest<'_>,
    ) -> Result<Claim, StoreError> {
        let statement = self.prepare(client, &self.sql.claim).await?;
        let fingerprint = request.fingerprint.map(to_db);
        let lease = micros(request.lease);
        let ttl = micros(request.ttl.max(request.lease));
        let key = stored_key(request.key);
        let key: &str = &key;
        for attempt in 0..MAX_CLAIM_ATTEMPTS {
            if attempt > 0 {
                self.counters.claim_retries.fetch_add(1, Ordering::Relaxed);
            }
            self.count();
            let rows = match client
                .query(&statement, &[&key, &fingerprint, &lease, &ttl])
                .await
            {
                Ok(rows) => rows,
                Err(e) if is_race(&e) => continue,
                Err(e) => return Err(self.query_error("claim a key", &e)),
            };
            if let Some(claim) = self.interpret(&rows, request.fingerprint)? {
                return Ok(claim);
            }
        }
        Err(unavailable(format!(
            "the claim of idempotency key #{} kept racing with concurrent writers ({} statements \
             sent); try again",
            key_hash(request.key),
            MAX_CLAIM_ATTEMPTS
        )))
    }

    /// The answer of the claim statement, or `None` when it must be sent
    /// again (the row was written after the statement's snapshot).
    fn interpret(&self, rows: &[Row], asked: Option<u64>) -> Result<Option<Claim>, StoreError> {
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

    async fn complete_on(
        &self,
        client: &Object,
        key: &str,
        fence: i64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let statement = self.prepare(client, &self.sql.complete).await?;
        let key = stored_key(key);
        let key: &str = &key;
        self.count();
        let rows = client
            .query(&statement, &[&key, &fence, &record, &micros(ttl)])
            .await
            .map_err(|e| self.query_error("store a result", &e))?;
        match rows.len() {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(corrupt(format!(
                "completing one key updated {n} rows of table {}; is key its primary key?",
                self.sql.table
            ))),
        }
    }

    async fn release_on(&self, client: &Object, key: &str, fence: i64) -> Result<(), StoreError> {
        let statement = self.prepare(client, &self.sql.release).await?;
        let key = stored_key(key);
        let key: &str = &key;
        self.count();
        client
            .execute(&statement, &[&key, &fence])
            .await
            .map_err(|e| self.query_error("release a key", &e))?;
        Ok(())
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
