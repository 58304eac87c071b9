//! The store's errors: what failed, and what to check, never with the
//! password.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use buttress_core::idempotency::{StoreError, StoreErrorKind};

use super::PostgresStore;
use crate::connection::postgres::error_chain;

pub(super) fn unavailable(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, message)
}

pub(super) fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

impl PostgresStore {
    pub(super) fn pool_error(&self, e: &PoolError) -> StoreError {
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

    pub(super) fn timeout_error(&self, what: &str) -> StoreError {
        unavailable(format!(
            "PostgreSQL at {} did not answer within {:?} (trying to {what} for the idempotency \
             store, table {}); check that the server is up, reachable and not overloaded or \
             locked, or raise PostgresStore::with_timeout",
            self.target, self.timeout, self.sql.table
        ))
    }

    pub(super) fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> StoreError {
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
}
