//! The connection pool: a connection within the operation's timeout, the
//! outcome of an operation on it, statements prepared once per connection,
//! and the count of round trips.

use std::sync::atomic::Ordering;

use deadpool_postgres::Object;
use tokio::time::Instant;
use tokio_postgres::Statement;

use buttress_core::idempotency::StoreError;

use super::PostgresStore;

impl PostgresStore {
    pub(super) fn count(&self) {
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) async fn client(&self, deadline: Instant) -> Result<Object, StoreError> {
        match tokio::time::timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.pool_error(&e)),
            Err(_) => Err(self.timeout_error("get a connection")),
        }
    }

    /// The outcome of an operation on `client`: on timeout, the connection
    /// is dropped rather than returned to the pool (it may be hung).
    pub(super) fn settle<T>(
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

    pub(super) async fn prepare(
        &self,
        client: &Object,
        sql: &str,
    ) -> Result<Statement, StoreError> {
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
}
