//! `PostgresSink` (feature `postgres`): dead letters in a PostgreSQL table,
//! shared by every process and machine that uses it.
//!
//! # What it guarantees
//!
//! - Every operation is one autocommit statement: a push is `INSERT … ON
//!   CONFLICT (id) DO NOTHING` (idempotent by id, safe from any number of
//!   processes), an update or removal touches one row by primary key.
//! - Entries are listed in insertion order (an identity column).
//! - `connect` / `create_table` are safe from many processes at once on a
//!   fresh database: the DDL runs in a transaction holding an advisory lock.
//! - Every operation has a timeout (default 2 s); failures are
//!   [`SinkError::Unavailable`] saying what to check (never with the
//!   password), rows that are not dead letters [`SinkError::Corrupt`]
//!   naming the entry; nothing panics.
//! - Replays from several processes at once may hand one entry to two
//!   handlers (at-least-once); run one replayer, or make handlers idempotent
//!   with the entry's idempotency key.
//!
//! # Schema
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS "buttress_dead_letters" (
//!     seq        BIGINT      GENERATED ALWAYS AS IDENTITY,
//!     id         TEXT        PRIMARY KEY,
//!     provider   TEXT        NOT NULL,
//!     operation  TEXT        NOT NULL,
//!     parked     BOOLEAN     NOT NULL DEFAULT false,
//!     replays    INTEGER     NOT NULL DEFAULT 0,
//!     created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
//!     entry      TEXT        NOT NULL -- the entry as JSON
//! );
//! CREATE INDEX IF NOT EXISTS "buttress_dead_letters_parked_seq_idx"
//!     ON "buttress_dead_letters" (parked, seq);
//! ```

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool, PoolError};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::connection::postgres::{self as connection, error_chain};
use buttress_core::dlq::{DeadLetter, DeadLetterSink, Selection, SinkError};

fn check_table(table: &str) -> Result<(), SinkError> {
    connection::check_table(table, MAX_TABLE_LEN, "dead-letter").map_err(SinkError::unavailable)
}

const DEFAULT_TABLE: &str = "buttress_dead_letters";
/// So that `<table>_parked_seq_idx` fits PostgreSQL's 63-byte identifiers.
const MAX_TABLE_LEN: usize = 46;
/// The advisory lock around the DDL (`"buttdlq!"` in ASCII).
const DDL_LOCK: i64 = 0x6275_7474_646c_7121;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_MAX_CONNECTIONS: usize = 4;

#[derive(Debug)]
struct Sql {
    table: String,
    exists: String,
    ddl: String,
    push: String,
    list: String,
    get: String,
    update: String,
    remove: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        // `table` is validated: lowercase ASCII letters, digits and `_`.
        let t = format!("\"{table}\"");
        Self {
            table: table.to_owned(),
            exists: format!("SELECT to_regclass('{t}') IS NOT NULL"),
            ddl: format!(
                "SELECT pg_advisory_xact_lock({DDL_LOCK}); \
                 CREATE TABLE IF NOT EXISTS {t} (\
                 seq BIGINT GENERATED ALWAYS AS IDENTITY, \
                 id TEXT PRIMARY KEY, \
                 provider TEXT NOT NULL, \
                 operation TEXT NOT NULL, \
                 parked BOOLEAN NOT NULL DEFAULT false, \
                 replays INTEGER NOT NULL DEFAULT 0, \
                 created_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
                 entry TEXT NOT NULL); \
                 CREATE INDEX IF NOT EXISTS \"{table}_parked_seq_idx\" ON {t} (parked, seq)"
            ),
            push: format!(
                "INSERT INTO {t} (id, provider, operation, parked, replays, entry) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING"
            ),
            list: format!(
                "SELECT id, entry FROM {t} WHERE ($1::boolean IS NULL OR parked = $1) ORDER BY seq"
            ),
            get: format!("SELECT id, entry FROM {t} WHERE id = $1"),
            update: format!("UPDATE {t} SET parked = $2, replays = $3, entry = $4 WHERE id = $1"),
            remove: format!("DELETE FROM {t} WHERE id = $1"),
        }
    }
}

/// Dead letters in a PostgreSQL table (see the module documentation for the
/// schema and guarantees). Cheap to clone; clones share the pool.
///
/// # Default
/// Table `buttress_dead_letters`, a pool of up to 4 connections without
/// TLS, a 2 s timeout per operation.
///
/// ```no_run
/// # async fn demo() -> Result<(), buttress::dlq::SinkError> {
/// use buttress::dlq::PostgresSink;
///
/// let sink = PostgresSink::connect("postgres://app@127.0.0.1:5432/app").await?;
/// # let _ = sink;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresSink {
    pool: Pool,
    sql: Arc<Sql>,
    timeout: Duration,
    /// Where the database is, for messages (never the password).
    target: Arc<str>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("target", &self.target)
            .field("table", &self.sql.table)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresSink {
    /// Connect to `url` (`postgres://user:password@host:port/dbname` or a
    /// `key=value` connection string) and create the table
    /// `buttress_dead_letters` if it is missing. Safe to call from many
    /// processes at once.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when the URL is invalid, the database
    /// cannot be reached within the timeout, or the table cannot be created.
    pub async fn connect(url: &str) -> Result<Self, SinkError> {
        let sink = Self::connect_lazy(url)?;
        sink.create_table().await?;
        Ok(sink)
    }

    /// Like [`connect`](Self::connect), with the table `table`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect), and when `table` is not a plain
    /// lowercase identifier.
    pub async fn connect_with_table(url: &str, table: &str) -> Result<Self, SinkError> {
        let sink = Self::connect_lazy(url)?.with_table(table)?;
        sink.create_table().await?;
        Ok(sink)
    }

    /// A sink for `url` that connects on first use (no I/O here; the table
    /// is neither checked nor created).
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when `url` is not a valid connection string.
    pub fn connect_lazy(url: &str) -> Result<Self, SinkError> {
        let (pool, target) = connection::pool(url, DEFAULT_MAX_CONNECTIONS, "the dead-letter sink")
            .map_err(SinkError::unavailable)?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(DEFAULT_TABLE)),
            timeout: DEFAULT_TIMEOUT,
            target: target.into(),
        })
    }

    /// A sink over your own pool (TLS, pool size), using `table`. No I/O
    /// here: call [`create_table`](Self::create_table) if it may be missing.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when `table` is not a plain identifier.
    pub fn from_pool(pool: Pool, table: &str) -> Result<Self, SinkError> {
        check_table(table)?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(table)),
            timeout: DEFAULT_TIMEOUT,
            target: "the configured pool".into(),
        })
    }

    /// The same sink on the table `table` (default `buttress_dead_letters`),
    /// neither checked nor created here.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] unless `table` is 1 to 46 lowercase ASCII
    /// letters, digits and `_`, not starting with a digit.
    pub fn with_table(mut self, table: &str) -> Result<Self, SinkError> {
        check_table(table)?;
        self.sql = Arc::new(Sql::new(table));
        Ok(self)
    }

    /// The same sink with another per-operation timeout (default 2 s; zero
    /// is raised to one millisecond).
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

    /// Create the table and its index if missing; safe from many processes
    /// at once (an advisory lock serializes the DDL).
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when the database cannot be reached in
    /// time or the user may not create the table.
    pub async fn create_table(&self) -> Result<(), SinkError> {
        let deadline = buttress_core::__backend::later(Instant::now(), self.timeout);
        let mut client = self.client(deadline).await?;
        let outcome = tokio::time::timeout_at(deadline, async {
            let answer = client
                .simple_query(&self.sql.exists)
                .await
                .map_err(|e| self.query_error("check the table", &e))?;
            let exists = answer.iter().find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            });
            if exists == Some("t") {
                return Ok(());
            }
            let ddl_error = |e: &tokio_postgres::Error| self.query_error("create the table", e);
            let tx = client.transaction().await.map_err(|e| ddl_error(&e))?;
            tx.batch_execute(&self.sql.ddl)
                .await
                .map_err(|e| ddl_error(&e))?;
            tx.commit().await.map_err(|e| ddl_error(&e))
        })
        .await;
        self.settle(client, outcome, "create the table")
    }

    async fn client(&self, deadline: Instant) -> Result<Object, SinkError> {
        match tokio::time::timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.pool_error(&e)),
            Err(_) => Err(self.timeout_error("get a connection")),
        }
    }

    /// On timeout the connection is dropped, not returned to the pool (it
    /// may be hung).
    fn settle<T>(
        &self,
        client: Object,
        outcome: Result<Result<T, SinkError>, tokio::time::error::Elapsed>,
        what: &str,
    ) -> Result<T, SinkError> {
        match outcome {
            Ok(result) => result,
            Err(_) => {
                drop(Object::take(client));
                Err(self.timeout_error(what))
            }
        }
    }

    /// Run `op` on `sql`, prepared (and cached) on a pooled connection,
    /// all within the sink's timeout.
    async fn run<T>(
        &self,
        what: &'static str,
        sql: &str,
        op: impl AsyncFnOnce(&Object, &Statement) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, SinkError> {
        let deadline = buttress_core::__backend::later(Instant::now(), self.timeout);
        let client = self.client(deadline).await?;
        let outcome = tokio::time::timeout_at(deadline, async {
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|e| self.query_error(what, &e))?;
            op(&client, &statement)
                .await
                .map_err(|e| self.query_error(what, &e))
        })
        .await;
        self.settle(client, outcome, what)
    }

    async fn query(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, SinkError> {
        self.run(what, sql, async |client, statement| {
            client.query(statement, params).await
        })
        .await
    }

    async fn execute(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, SinkError> {
        self.run(what, sql, async |client, statement| {
            client.execute(statement, params).await
        })
        .await
    }

    fn entry(&self, row: &Row) -> Result<DeadLetter, SinkError> {
        let table = &self.sql.table;
        let id: String = row.try_get(0).map_err(|e| {
            SinkError::corrupt(format!(
                "a row of table {table} has no readable id: {}; is it the dead-letter schema?",
                error_chain(&e)
            ))
        })?;
        let text: String = row.try_get(1).map_err(|e| {
            SinkError::corrupt(format!(
                "entry {id} in table {table} has no readable entry column: {}",
                error_chain(&e)
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            SinkError::corrupt(format!(
                "entry {id} in table {table} is not a dead letter: {e}; fix or delete that row"
            ))
        })
    }

    fn entry_json(entry: &DeadLetter) -> Result<String, SinkError> {
        serde_json::to_string(entry).map_err(|e| {
            SinkError::corrupt(format!("entry {} cannot be serialized: {e}", entry.id))
        })
    }

    fn pool_error(&self, e: &PoolError) -> SinkError {
        let target = &self.target;
        match e {
            PoolError::Timeout(_) => self.timeout_error("get a connection"),
            PoolError::Backend(e) => SinkError::unavailable(format!(
                "cannot connect to PostgreSQL at {target} for the dead-letter sink: {}; check \
                 that the server is running and reachable, and that the user, database and \
                 credentials in the URL are right",
                error_chain(e)
            )),
            other => SinkError::unavailable(format!(
                "cannot get a PostgreSQL connection to {target} for the dead-letter sink: {other}"
            )),
        }
    }

    fn timeout_error(&self, what: &str) -> SinkError {
        SinkError::unavailable(format!(
            "PostgreSQL at {} did not answer within {:?} (trying to {what} for the dead-letter \
             sink, table {}); check that the server is up and not overloaded, or raise \
             PostgresSink::with_timeout",
            self.target, self.timeout, self.sql.table
        ))
    }

    fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> SinkError {
        let table = &self.sql.table;
        let target = &self.target;
        let reason = error_chain(e);
        let hint = match e.code() {
            Some(c) if *c == SqlState::UNDEFINED_TABLE => format!(
                "; the table {table} does not exist: PostgresSink::connect creates it, or call \
                 create_table"
            ),
            Some(c) if *c == SqlState::UNDEFINED_COLUMN || *c == SqlState::DATATYPE_MISMATCH => {
                return SinkError::corrupt(format!(
                    "the table {table} at {target} does not have the dead-letter schema (could \
                     not {what}: {reason}); see PostgresSink's documentation"
                ))
            }
            Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
                format!("; grant the database user the needed rights on {table}")
            }
            Some(_) => String::new(),
            None => "; check that the server is running and reachable".to_owned(),
        };
        SinkError::unavailable(format!(
            "PostgreSQL at {target} failed to {what} for the dead-letter sink: {reason}{hint}"
        ))
    }
}

impl DeadLetterSink for PostgresSink {
    async fn push(&self, entry: &DeadLetter) -> Result<(), SinkError> {
        let json = Self::entry_json(entry)?;
        let replays = i32::try_from(entry.replays).unwrap_or(i32::MAX);
        self.execute(
            "store a dead letter",
            &self.sql.push,
            &[
                &entry.id,
                &entry.provider,
                &entry.operation,
                &entry.parked,
                &replays,
                &json,
            ],
        )
        .await
        .map(drop)
    }

    async fn list(&self, selection: Selection) -> Result<Vec<DeadLetter>, SinkError> {
        let parked = match selection {
            Selection::Pending => Some(false),
            Selection::Parked => Some(true),
            Selection::All => None,
        };
        let rows = self
            .query("list dead letters", &self.sql.list, &[&parked])
            .await?;
        rows.iter().map(|row| self.entry(row)).collect()
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, SinkError> {
        let rows = self
            .query("read a dead letter", &self.sql.get, &[&id])
            .await?;
        rows.first().map(|row| self.entry(row)).transpose()
    }

    async fn update(&self, entry: &DeadLetter) -> Result<bool, SinkError> {
        let json = Self::entry_json(entry)?;
        let replays = i32::try_from(entry.replays).unwrap_or(i32::MAX);
        let updated = self
            .execute(
                "update a dead letter",
                &self.sql.update,
                &[&entry.id, &entry.parked, &replays, &json],
            )
            .await?;
        Ok(updated > 0)
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let removed = self
            .execute("remove a dead letter", &self.sql.remove, &[&id])
            .await?;
        Ok(removed > 0)
    }
}
