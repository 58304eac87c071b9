//! Dead letters: work that cannot succeed now is kept, not lost, and not
//! retried forever either.
//!
//! When a call fails for good (a permanent error, retries exhausted, the
//! retry budget spent, the deadline passed, or a local rejection), a
//! [`DeadLetter`] records everything needed to act on it later: provider,
//! operation, the serialized arguments, the error and its class, attempts,
//! first and last attempt times, the correlation id and the idempotency key
//! (stored so a replay reuses it, never shown in clear). A
//! [`DeadLetterSink`] keeps them; a [`Replayer`] feeds them back to a
//! handler.
//!
//! # What it guarantees
//!
//! - **Nothing vanishes silently.** A sink that fails to store an entry
//!   makes [`send`] log the whole entry at `ERROR` (key hashed), and the
//!   call still returns its own error.
//! - **At-least-once replay.** An entry leaves a sink only after its handler
//!   succeeded; a crash in between replays it again (the idempotency key it
//!   carries lets the provider deduplicate).
//! - **No endless loops.** An entry whose replay failed
//!   [`max_replays`](Replayer::with_max_replays) times is *parked*: it is no
//!   longer replayed until an operator un-parks it.
//! - **Pushes are idempotent by id**: pushing an entry whose id the sink
//!   already holds changes nothing.
//! - **The happy path pays nothing**: with `#[resilient(dlq = …)]`, the
//!   arguments are serialized and the sink expression evaluated only after
//!   a call failed.
//!
//! Sinks: [`MemorySink`] (embedded, bounded), [`FileSink`] (JSON lines,
//! append + fsync, torn last line detected and set aside), `PostgresSink`
//! (feature `postgres`), `RedisSink` (feature `redis`, a Redis stream).
//!
//! # Which failures become dead letters
//!
//! [`DeadLetterOn`] decides from [`CallOutcome`]:
//!
//! | outcome | `permanent` | `exhausted` | `any` (default) |
//! |---|---|---|---|
//! | `NotRetryable(_)` (a permanent error, or `OutcomeUnknown` on a call that is not idempotent) | yes | no | yes |
//! | `AttemptsExhausted`, `BudgetExhausted`, `DeadlineExceeded` | no | yes | yes |
//! | `Rejected(_)` (breaker open, rate limit or bulkhead past the deadline) | no | yes | yes |
//! | `Ok`, `Deduplicated` | no | no | no |
//!
//! Local rejections count as *exhausted*: the provider was not even tried,
//! so the work could not be done now and is worth doing later. An answer
//! of the idempotency layer (`InFlight`, `KeyReused`, a store error) is not
//! a dead letter: another caller holds or completed the operation.

mod entry;
mod file;
mod memory;
mod replay;

pub use entry::{rfc3339, DeadLetter, DeadLetterArgs, DeadLetterArgument, IdempotencyKey};
pub use file::{FileSink, TornLine};
pub use memory::MemorySink;
pub use replay::{ReplayReport, Replayer, DEFAULT_MAX_REPLAYS};

use std::future::Future;
use std::sync::Arc;

use crate::outcome::CallOutcome;

/// Which failures a `#[resilient(dlq(on = …))]` call site sends to its sink.
///
/// # Default
/// [`DeadLetterOn::Any`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadLetterOn {
    /// Errors that are not retried: `CallOutcome::NotRetryable`.
    Permanent,
    /// Retryable work that ran out of room: attempts, budget or deadline
    /// exhausted, or rejected locally (breaker, rate limit, bulkhead).
    Exhausted,
    /// Both.
    #[default]
    Any,
}

impl DeadLetterOn {
    /// Whether a call that ended with `outcome` becomes a dead letter.
    #[must_use]
    pub const fn covers(self, outcome: CallOutcome) -> bool {
        let permanent = matches!(outcome, CallOutcome::NotRetryable(_));
        let exhausted = matches!(
            outcome,
            CallOutcome::AttemptsExhausted
                | CallOutcome::BudgetExhausted
                | CallOutcome::DeadlineExceeded
                | CallOutcome::Rejected(_)
        );
        match self {
            Self::Permanent => permanent,
            Self::Exhausted => exhausted,
            Self::Any => permanent || exhausted,
        }
    }
}

/// Which entries to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Entries waiting to be replayed.
    Pending,
    /// Entries parked after too many failed replays.
    Parked,
    /// Both.
    All,
}

impl Selection {
    /// Whether `entry` belongs to this selection.
    #[must_use]
    pub const fn contains(self, entry: &DeadLetter) -> bool {
        match self {
            Self::Pending => !entry.parked,
            Self::Parked => entry.parked,
            Self::All => true,
        }
    }
}

/// Why a sink operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink's backing service could not be reached or did not answer.
    #[error("dead-letter sink unavailable: {message}")]
    #[non_exhaustive]
    Unavailable {
        /// What failed and what to check.
        message: String,
    },
    /// Reading or writing the sink's file failed.
    #[error("dead-letter file {}: could not {action}: {source}; check the path, its permissions and free space", path.display())]
    #[non_exhaustive]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Stored contents that cannot be read as dead letters.
    #[error("unreadable dead-letter store contents: {message}")]
    #[non_exhaustive]
    Corrupt {
        /// Which entry or line, and what was wrong with it.
        message: String,
    },
    /// The sink holds as many entries as it may.
    #[error("dead-letter sink full ({capacity} entries); replay or purge entries, or raise the capacity")]
    #[non_exhaustive]
    Full {
        /// The sink's capacity.
        capacity: usize,
    },
}

impl SinkError {
    /// [`SinkError::Unavailable`] with `message`, for sink implementations.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
        }
    }

    /// [`SinkError::Corrupt`] with `message`, for sink implementations.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt {
            message: message.into(),
        }
    }
}

/// A place to keep dead letters.
///
/// Implemented for [`MemorySink`], [`FileSink`], `PostgresSink`,
/// `RedisSink`, and for `&S` and `Arc<S>` of any sink. Entries are listed
/// oldest first.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dead-letter sink",
    label = "`dlq` needs a `buttress::dlq::DeadLetterSink`",
    note = "use `buttress::dlq::MemorySink`, `FileSink`, `PostgresSink` or `RedisSink` (or a reference or `Arc` to one), or implement `DeadLetterSink` for `{Self}`"
)]
pub trait DeadLetterSink: Send + Sync {
    /// Keep `entry`. Pushing an id the sink already holds changes nothing.
    fn push(&self, entry: &DeadLetter) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The entries in `selection`, oldest first.
    fn list(
        &self,
        selection: Selection,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, SinkError>> + Send;

    /// The entry `id`, if the sink holds it.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<DeadLetter>, SinkError>> + Send;

    /// Replace the stored entry with `entry.id` by `entry` (replay count,
    /// last replay error, parked flag). `false` when the sink does not hold
    /// it (anymore).
    fn update(&self, entry: &DeadLetter) -> impl Future<Output = Result<bool, SinkError>> + Send;

    /// Remove the entry `id`; `false` when the sink did not hold it.
    fn remove(&self, id: &str) -> impl Future<Output = Result<bool, SinkError>> + Send;
}

/// Forwarding impls: a sink behind a reference or an `Arc` is a sink.
macro_rules! forward_sink {
    ($($ty:ty),*) => {$(
        impl<S: DeadLetterSink + ?Sized> DeadLetterSink for $ty {
            fn push(&self, entry: &DeadLetter) -> impl Future<Output = Result<(), SinkError>> + Send {
                (**self).push(entry)
            }
            fn list(
                &self,
                selection: Selection,
            ) -> impl Future<Output = Result<Vec<DeadLetter>, SinkError>> + Send {
                (**self).list(selection)
            }
            fn get(
                &self,
                id: &str,
            ) -> impl Future<Output = Result<Option<DeadLetter>, SinkError>> + Send {
                (**self).get(id)
            }
            fn update(&self, entry: &DeadLetter) -> impl Future<Output = Result<bool, SinkError>> + Send {
                (**self).update(entry)
            }
            fn remove(&self, id: &str) -> impl Future<Output = Result<bool, SinkError>> + Send {
                (**self).remove(id)
            }
        }
    )*};
}

forward_sink!(&S, Arc<S>);

/// Push `entry` to `sink`. On failure the entry is not lost silently: it is
/// logged at `ERROR` in full (the idempotency key as a short hash), and the
/// error is returned.
///
/// # Errors
/// The sink's error.
pub async fn send<S: DeadLetterSink + ?Sized>(
    sink: &S,
    entry: DeadLetter,
) -> Result<(), SinkError> {
    match sink.push(&entry).await {
        Ok(()) => {
            tracing::debug!(
                provider = %entry.provider,
                operation = %entry.operation,
                id = %entry.id,
                "dead letter stored"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(
                provider = %entry.provider,
                operation = %entry.operation,
                id = %entry.id,
                correlation_id = %entry.correlation_id,
                entry = %entry.to_redacted_json(),
                error = %e,
                "could not store a dead letter; the entry is logged here so it is not lost"
            );
            Err(e)
        }
    }
}
