//! [`FileSink`]: dead letters in a JSON-lines file.
//!
//! # What it guarantees
//!
//! - **Durable once pushed.** Every change is one line appended to the file
//!   and `fsync`ed (`sync_data`) before the operation returns; a new file's
//!   directory is synced too.
//! - **Crash-safe.** A crash can only leave the last line incomplete. On
//!   open, such a torn line is detected, reported ([`FileSink::torn`] and a
//!   `tracing` warning naming the line) and skipped: its bytes are appended
//!   to `<file>.torn` (never silently dropped) before the main file is cut
//!   back to its last complete line, so it stays valid JSON lines. A last
//!   line that is a whole record missing only its newline is kept (the
//!   newline is added). A failed
//!   append (disk full) is cut back the same way at once.
//! - **Readable by people and tools.** Each line is `{"put":{…entry…}}`
//!   (a new or updated entry; the latest line for an id wins) or
//!   `{"remove":"<id>"}`. [`FileSink::compact`] rewrites the file with only
//!   the live entries (write to a temporary file, `fsync`, rename).
//! - **Clear errors.** A complete line that is not a record makes
//!   [`FileSink::open`] fail with [`SinkError::Corrupt`] naming the file and
//!   line; nothing panics.
//! - **One writing process per file.** Within a process, clones share one
//!   handle and a lock. Several processes must not write the same file
//!   (stop the application before purging with the `dlq` command, or use
//!   the PostgreSQL sink). Reading while another process appends is safe.
//!
//! File I/O runs on Tokio's blocking pool (`spawn_blocking`), so it never
//! stalls the async workers.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::{DeadLetter, DeadLetterSink, Selection, SinkError};

/// One line of the file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Record {
    Put(Box<DeadLetter>),
    Remove(String),
}

/// A torn last line found (and set aside) when the file was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornLine {
    /// Its line number (1-based).
    pub line: usize,
    /// Where it started in the file, in bytes.
    pub offset: u64,
    /// How many bytes it had.
    pub bytes: usize,
    /// The file its bytes were appended to (`<file>.torn`).
    pub saved_to: PathBuf,
}

struct State {
    file: File,
    /// The file's length: where the next line goes.
    len: u64,
    /// Live entries by id, with the order of their first push.
    entries: BTreeMap<u64, DeadLetter>,
    order: std::collections::HashMap<String, u64>,
    next_seq: u64,
}

struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    torn: Vec<TornLine>,
}

/// Dead letters in a JSON-lines file (see the module documentation for
/// the format and guarantees). Cheap to clone; clones share the file.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use buttress::dlq::{DeadLetter, DeadLetterSink, FileSink, Selection};
///
/// let path = std::env::temp_dir().join(format!("dlq-doc-{}.jsonl", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let sink = FileSink::open(&path).await.unwrap();
/// let failure = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// sink.push(&DeadLetter::new("mail", "send", serde_json::json!({}), &failure)).await.unwrap();
///
/// // Reopened (after a restart, say), the entry is still there.
/// let reopened = FileSink::open(&path).await.unwrap();
/// assert_eq!(reopened.list(Selection::All).await.unwrap().len(), 1);
/// assert!(reopened.torn().is_empty());
/// # std::fs::remove_file(&path).unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct FileSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("path", &self.shared.path)
            .field("torn", &self.shared.torn)
            .finish_non_exhaustive()
    }
}

fn io_error<'p>(
    path: &'p Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> SinkError + 'p {
    move |source| SinkError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

fn torn_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".torn");
    PathBuf::from(name)
}

fn sync_dir(path: &Path) {
    // Best effort: makes a new or renamed file's directory entry durable.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
}

impl FileSink {
    /// Open (or create) the file at `path`, load its entries, and set aside
    /// a torn last line if a crash left one (see [`torn`](Self::torn)).
    ///
    /// # Errors
    /// [`SinkError::Io`] when the file cannot be opened, read or repaired;
    /// [`SinkError::Corrupt`] (naming the line) when a complete line is not
    /// a dead-letter record.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, SinkError> {
        let path = path.as_ref().to_owned();
        blocking(move || Self::open_blocking(&path)).await
    }

    /// Like [`open`](Self::open), on the current thread (blocking it).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_blocking(path: &Path) -> Result<Self, SinkError> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_error(path, "open"))?;
        if !existed {
            sync_dir(path);
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_error(path, "read"))?;
        let mut entries = BTreeMap::new();
        let mut order = std::collections::HashMap::new();
        let mut next_seq = 0;
        let mut torn = Vec::new();
        let mut offset = 0usize;
        let mut line_no = 0usize;
        while offset < bytes.len() {
            line_no += 1;
            let rest = &bytes[offset..];
            let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                if serde_json::from_slice::<Record>(rest).is_ok() {
                    // A whole record cut short only of its newline: keep it.
                    file.write_all(b"\n")
                        .and_then(|()| file.sync_data())
                        .map_err(io_error(path, "end the last line of"))?;
                    bytes.push(b'\n');
                    line_no -= 1;
                    continue;
                }
                // The last line, without its newline: a write cut short.
                let saved_to = torn_path(path);
                tracing::warn!(
                    file = %path.display(),
                    line = line_no,
                    bytes = rest.len(),
                    saved_to = %saved_to.display(),
                    "dead-letter file ends with a torn line (a write cut short by a crash); \
                     it is skipped and its bytes are kept in the .torn file"
                );
                let mut side = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&saved_to)
                    .map_err(io_error(&saved_to, "save a torn line to"))?;
                side.write_all(rest)
                    .and_then(|()| side.write_all(b"\n"))
                    .and_then(|()| side.sync_data())
                    .map_err(io_error(&saved_to, "save a torn line to"))?;
                sync_dir(&saved_to);
                file.set_len(offset as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(io_error(path, "cut off a torn line of"))?;
                torn.push(TornLine {
                    line: line_no,
                    offset: offset as u64,
                    bytes: rest.len(),
                    saved_to,
                });
                bytes.truncate(offset);
                break;
            };
            let line = &rest[..end];
            offset += end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record: Record = serde_json::from_slice(line).map_err(|e| {
                SinkError::corrupt(format!(
                    "line {line_no} of {} is not a dead-letter record: {e}; fix or delete \
                     that line (each line is {{\"put\":{{…}}}} or {{\"remove\":\"<id>\"}})",
                    path.display()
                ))
            })?;
            match record {
                Record::Put(entry) => {
                    let seq = *order.entry(entry.id.clone()).or_insert_with(|| {
                        next_seq += 1;
                        next_seq
                    });
                    entries.insert(seq, *entry);
                }
                Record::Remove(id) => {
                    if let Some(seq) = order.remove(&id) {
                        entries.remove(&seq);
                    }
                }
            }
        }
        Ok(Self {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                state: Mutex::new(State {
                    file,
                    len: bytes.len() as u64,
                    entries,
                    order,
                    next_seq,
                }),
                torn,
            }),
        })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The torn line found when the file was opened, if any (at most one:
    /// only the last line can be torn).
    #[must_use]
    pub fn torn(&self) -> &[TornLine] {
        &self.shared.torn
    }

    /// Rewrite the file with only the live entries (dropping superseded and
    /// removed lines): written to `<file>.tmp`, `fsync`ed, then renamed over
    /// the file, so a crash leaves either the old or the new file.
    ///
    /// # Errors
    /// [`SinkError::Io`]; the old file is then left as it was.
    pub async fn compact(&self) -> Result<(), SinkError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            let path = &shared.path;
            let mut state = lock(&shared.state);
            let mut tmp_name = path.as_os_str().to_owned();
            tmp_name.push(".tmp");
            let tmp = PathBuf::from(tmp_name);
            let mut text = Vec::new();
            for entry in state.entries.values() {
                line(&mut text, &Record::Put(Box::new(entry.clone())));
            }
            let mut out = File::create(&tmp).map_err(io_error(&tmp, "create"))?;
            out.write_all(&text)
                .and_then(|()| out.sync_all())
                .map_err(io_error(&tmp, "write"))?;
            std::fs::rename(&tmp, path).map_err(io_error(path, "replace"))?;
            sync_dir(path);
            state.file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(path)
                .map_err(io_error(path, "reopen"))?;
            state.len = text.len() as u64;
            Ok(())
        })
        .await
    }

    /// Append `record` and apply it, if `wanted` (checked under the lock)
    /// says so; `apply` runs only once the line is durable.
    async fn append(
        &self,
        wanted: impl FnOnce(&State) -> bool + Send + 'static,
        record: Record,
        apply: impl FnOnce(&mut State) + Send + 'static,
    ) -> Result<bool, SinkError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            let mut text = Vec::new();
            line(&mut text, &record);
            let mut state = lock(&shared.state);
            if !wanted(&state) {
                return Ok(false);
            }
            let path = &shared.path;
            let written = state
                .file
                .write_all(&text)
                .and_then(|()| state.file.sync_data());
            if let Err(e) = written {
                // Never leave a partial line for the next append to extend.
                let len = state.len;
                let _ = state.file.set_len(len);
                return Err(io_error(path, "append to")(e));
            }
            state.len += text.len() as u64;
            apply(&mut state);
            Ok(true)
        })
        .await
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.shared.state))
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every critical section leaves the state consistent with the file.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn line(out: &mut Vec<u8>, record: &Record) {
    // Serializing plain data into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, record).is_ok() {
        out.push(b'\n');
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SinkError> + Send + 'static,
) -> Result<T, SinkError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(SinkError::unavailable(format!(
            "a dead-letter file operation did not complete: {e}"
        )))
    })
}

impl DeadLetterSink for FileSink {
    async fn push(&self, entry: &DeadLetter) -> Result<(), SinkError> {
        let id = entry.id.clone();
        let stored = entry.clone();
        self.append(
            move |state| !state.order.contains_key(&id),
            Record::Put(Box::new(entry.clone())),
            move |state| {
                state.next_seq += 1;
                let seq = state.next_seq;
                state.order.insert(stored.id.clone(), seq);
                state.entries.insert(seq, stored);
            },
        )
        .await
        .map(drop)
    }

    async fn list(&self, selection: Selection) -> Result<Vec<DeadLetter>, SinkError> {
        Ok(self.read(|s| {
            s.entries
                .values()
                .filter(|e| selection.contains(e))
                .cloned()
                .collect()
        }))
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, SinkError> {
        Ok(self.read(|s| s.order.get(id).and_then(|seq| s.entries.get(seq)).cloned()))
    }

    async fn update(&self, entry: &DeadLetter) -> Result<bool, SinkError> {
        let id = entry.id.clone();
        let stored = entry.clone();
        self.append(
            move |state| state.order.contains_key(&id),
            Record::Put(Box::new(entry.clone())),
            move |state| {
                if let Some(seq) = state.order.get(&stored.id).copied() {
                    state.entries.insert(seq, stored);
                }
            },
        )
        .await
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let key = id.to_owned();
        let wanted = id.to_owned();
        self.append(
            move |state| state.order.contains_key(&wanted),
            Record::Remove(id.to_owned()),
            move |state| {
                if let Some(seq) = state.order.remove(&key) {
                    state.entries.remove(&seq);
                }
            },
        )
        .await
    }
}
