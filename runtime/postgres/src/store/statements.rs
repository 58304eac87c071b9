//! The claim, complete and release statements, on one pooled connection.

use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;

use buttress_core::idempotency::{key_hash, Claim, ClaimRequest, StoreError};

use super::errors::{corrupt, unavailable};
use super::rows::{micros, stored_key, to_db};
use super::PostgresStore;

/// How many times a claim statement is sent before giving up when it keeps
/// racing with concurrent writers of the same key.
const MAX_CLAIM_ATTEMPTS: u32 = 8;

/// Errors worth sending the same statement again for.
fn is_race(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

impl PostgresStore {
    pub(super) async fn claim_on(
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

    pub(super) async fn complete_on(
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

    pub(super) async fn release_on(
        &self,
        client: &Object,
        key: &str,
        fence: i64,
    ) -> Result<(), StoreError> {
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
