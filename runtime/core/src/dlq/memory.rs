//! [`MemorySink`]: dead letters in this process's memory.
//!
//! # What it guarantees
//!
//! - Entries are listed oldest first (in push order); pushes are idempotent
//!   by id.
//! - Bounded: past its capacity (10,000 entries by default) a push fails
//!   with [`SinkError::Full`], which [`send`](super::send) logs in full, so
//!   a flood of failures cannot exhaust memory.
//! - Nothing survives the process: use it in tests, or where losing the
//!   entries with the process is acceptable; otherwise use
//!   [`FileSink`](super::FileSink) or a database sink.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{DeadLetter, DeadLetterSink, Selection, SinkError};

/// The default capacity of a [`MemorySink`].
const DEFAULT_CAPACITY: usize = 10_000;

/// Dead letters in memory. Cheap to clone; clones share the entries.
///
/// # Default
/// Capacity 10,000 entries ([`with_capacity`](Self::with_capacity)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use buttress::dlq::{DeadLetter, DeadLetterSink, MemorySink, Selection};
///
/// let sink = MemorySink::new();
/// let failure = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// sink.push(&DeadLetter::new("sms", "send", serde_json::json!({"to": "+331"}), &failure))
///     .await
///     .unwrap();
/// assert_eq!(sink.list(Selection::Pending).await.unwrap().len(), 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemorySink {
    entries: Arc<Mutex<Vec<DeadLetter>>>,
    capacity: usize,
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySink {
    /// An empty sink holding up to 10,000 entries.
    #[must_use]
    pub fn new() -> Self {
        Self {
            entries: Arc::default(),
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// The same sink holding up to `capacity` entries (at least 1).
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How many entries it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<DeadLetter>> {
        // Every critical section leaves the vector consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl DeadLetterSink for MemorySink {
    async fn push(&self, entry: &DeadLetter) -> Result<(), SinkError> {
        let mut entries = self.lock();
        if entries.iter().any(|e| e.id == entry.id) {
            return Ok(());
        }
        if entries.len() >= self.capacity {
            return Err(SinkError::Full {
                capacity: self.capacity,
            });
        }
        entries.push(entry.clone());
        Ok(())
    }

    async fn list(&self, selection: Selection) -> Result<Vec<DeadLetter>, SinkError> {
        Ok(self
            .lock()
            .iter()
            .filter(|e| selection.contains(e))
            .cloned()
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, SinkError> {
        Ok(self.lock().iter().find(|e| e.id == id).cloned())
    }

    async fn update(&self, entry: &DeadLetter) -> Result<bool, SinkError> {
        let mut entries = self.lock();
        Ok(match entries.iter_mut().find(|e| e.id == entry.id) {
            Some(slot) => {
                slot.clone_from(entry);
                true
            }
            None => false,
        })
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|e| e.id != id);
        Ok(entries.len() != before)
    }
}
