//! The table: its name, the SQL text of the statements on it, and its
//! creation.

use deadpool_postgres::Object;
use tokio::time::Instant;

use buttress_core::idempotency::StoreError;
#[cfg(doc)]
use buttress_core::idempotency::StoreErrorKind;

use super::errors::{corrupt, unavailable};
use super::PostgresStore;
use crate::connection::postgres as connection;

/// Validates a table name: a plain, lowercase identifier.
pub(super) fn check_table(table: &str) -> Result<(), StoreError> {
    connection::check_table(table, MAX_TABLE_LEN, "idempotency").map_err(unavailable)
}

/// The default table name.
pub(super) const DEFAULT_TABLE: &str = "buttress_idempotency";

/// The longest table name accepted (so that `<table>_expires_at_idx` fits
/// PostgreSQL's 63-byte identifiers).
const MAX_TABLE_LEN: usize = 47;

/// The advisory lock taken around the DDL (`"buttress"` in ASCII).
const DDL_LOCK: i64 = 0x6275_7474_7265_7373;

/// The statements for one table.
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) table: String,
    pub(super) exists: String,
    pub(super) ddl: String,
    pub(super) claim: String,
    pub(super) complete: String,
    pub(super) release: String,
    pub(super) cleanup: String,
}

impl Sql {
    pub(super) fn new(table: &str) -> Self {
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

impl PostgresStore {
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
}
