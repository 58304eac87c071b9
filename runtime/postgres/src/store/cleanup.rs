//! Deleting the rows whose retention has ended.

use std::time::Duration;

use tokio::time::Instant;

use buttress_core::idempotency::StoreError;
#[cfg(doc)]
use buttress_core::idempotency::StoreErrorKind;

use super::PostgresStore;

/// Rows deleted per statement by [`PostgresStore::cleanup`].
const CLEANUP_BATCH: i64 = 10_000;

impl PostgresStore {
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
}
