//! [`Replayer`]: feed dead letters back to a handler, at least once, without
//! looping forever on the ones that keep failing.
//!
//! # What it guarantees
//!
//! - **At least once.** Each pending entry is handed to the handler; only
//!   after the handler succeeded is it removed. A crash (or a sink error)
//!   between the two hands it over again on the next pass, so handlers
//!   should be idempotent: reuse the entry's
//!   [`idempotency_key`](super::DeadLetter::idempotency_key).
//! - **Failures are kept, and counted.** A failed replay keeps the entry,
//!   adds one to its `replays` and records `last_replay_error`.
//! - **Poison is parked.** When `replays` reaches `max_replays` (default
//!   [`DEFAULT_MAX_REPLAYS`], 5), the entry is parked: later passes skip it.
//!   Parked entries are listed with [`Replayer::parked`] and put back in
//!   line with [`Replayer::unpark`] (which resets their count).
//! - One pass replays each entry pending at its start once, oldest first,
//!   one at a time.

use std::fmt::Display;
use std::future::Future;

use super::{DeadLetter, DeadLetterSink, Selection, SinkError};

/// Failed replays after which an entry is parked, unless
/// [`Replayer::with_max_replays`] says otherwise.
pub const DEFAULT_MAX_REPLAYS: u32 = 5;

/// What one replay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Entries handed to the handler.
    pub attempted: u32,
    /// Entries the handler succeeded with (and that were removed).
    pub succeeded: u32,
    /// Entries the handler failed with (kept, or parked).
    pub failed: u32,
    /// Of the failed ones, those parked by this pass.
    pub parked: u32,
}

/// Replays the entries of a sink.
///
/// # Default
/// Entries are parked after [`DEFAULT_MAX_REPLAYS`] (5) failed replays.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use buttress::dlq::{DeadLetter, DeadLetterSink, MemorySink, Replayer};
///
/// let sink = MemorySink::new();
/// let failure = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// sink.push(&DeadLetter::new("sms", "send", serde_json::json!({"to": "+331"}), &failure))
///     .await
///     .unwrap();
///
/// let replayer = Replayer::new(&sink).with_max_replays(3);
/// let report = replayer
///     .replay(|entry| async move {
///         // Call the provider again with entry.arguments (and entry.idempotency_key).
///         assert_eq!(entry.operation, "send");
///         Ok::<(), std::io::Error>(())
///     })
///     .await
///     .unwrap();
/// assert_eq!(report.succeeded, 1);
/// assert!(sink.is_empty());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Replayer<S> {
    sink: S,
    max_replays: u32,
}

impl<S: DeadLetterSink> Replayer<S> {
    /// A replayer over `sink` (a sink, a reference or an `Arc` to one).
    pub const fn new(sink: S) -> Self {
        Self {
            sink,
            max_replays: DEFAULT_MAX_REPLAYS,
        }
    }

    /// Park an entry once it failed `max_replays` replays (at least 1).
    #[must_use]
    pub const fn with_max_replays(mut self, max_replays: u32) -> Self {
        self.max_replays = if max_replays == 0 { 1 } else { max_replays };
        self
    }

    /// The sink.
    pub const fn sink(&self) -> &S {
        &self.sink
    }

    /// Hand every pending entry to `handler`, oldest first: remove it when
    /// the handler succeeds; otherwise count the failure, and park the
    /// entry once it failed `max_replays` times.
    ///
    /// # Errors
    /// The first sink error; the pass stops there (entries not yet removed
    /// are replayed again next time).
    pub async fn replay<F, Fut, E>(&self, mut handler: F) -> Result<ReplayReport, SinkError>
    where
        F: FnMut(DeadLetter) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let mut report = ReplayReport::default();
        for entry in self.sink.list(Selection::Pending).await? {
            report.attempted += 1;
            match handler(entry.clone()).await {
                Ok(()) => {
                    self.sink.remove(&entry.id).await?;
                    report.succeeded += 1;
                    tracing::debug!(id = %entry.id, provider = %entry.provider, "dead letter replayed");
                }
                Err(e) => {
                    let mut entry = entry;
                    entry.replays = entry.replays.saturating_add(1);
                    entry.last_replay_error = Some(e.to_string());
                    report.failed += 1;
                    if entry.replays >= self.max_replays {
                        entry.parked = true;
                        report.parked += 1;
                        tracing::warn!(
                            id = %entry.id,
                            provider = %entry.provider,
                            operation = %entry.operation,
                            replays = entry.replays,
                            error = %e,
                            "dead letter parked after too many failed replays; un-park it once the cause is fixed"
                        );
                    } else {
                        tracing::debug!(id = %entry.id, replays = entry.replays, error = %e, "dead letter replay failed");
                    }
                    self.sink.update(&entry).await?;
                }
            }
        }
        Ok(report)
    }

    /// The parked entries, oldest first.
    ///
    /// # Errors
    /// The sink's error.
    pub async fn parked(&self) -> Result<Vec<DeadLetter>, SinkError> {
        self.sink.list(Selection::Parked).await
    }

    /// Put the parked entry `id` back in line for replay, with its replay
    /// count reset (its last replay error is kept for reference). `false`
    /// when there is no such parked entry.
    ///
    /// # Errors
    /// The sink's error.
    pub async fn unpark(&self, id: &str) -> Result<bool, SinkError> {
        match self.sink.get(id).await? {
            Some(mut entry) if entry.parked => {
                entry.parked = false;
                entry.replays = 0;
                self.sink.update(&entry).await
            }
            _ => Ok(false),
        }
    }
}
