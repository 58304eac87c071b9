//! Dead letters: the memory and file sinks (including a crash mid-write),
//! replay (success, failure, poison), and `#[resilient(dlq = …)]`.
//!
//! The file crash test re-executes this binary as a writer process
//! (`child_writer`, ignored unless `BUTTRESS_DLQ_CHILD` is set) and kills it
//! with SIGKILL while it appends.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use buttress::dlq::{
    DeadLetter, DeadLetterSink, FileSink, MemorySink, Replayer, Selection, SinkError,
    DEFAULT_MAX_REPLAYS,
};
use buttress::{resilient, Classify, ErrorClass, Registry};
use common::Captured;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

#[derive(Debug, thiserror::Error, Classify)]
enum PayError {
    #[error("provider unavailable")]
    #[classify(transient)]
    Unavailable,
    #[error("card declined")]
    #[classify(permanent)]
    Declined,
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    cents: u64,
}

fn entry(n: u64) -> DeadLetter {
    DeadLetter::new(
        "payments",
        "charge",
        serde_json::json!({ "order": { "id": n, "cents": 100 } }),
        &PayError::Unavailable,
    )
}

/// A fresh path in the temp directory for this test.
fn temp_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("buttress-dlq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{test}.jsonl"));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(format!("{}.torn", path.display()));
    path
}

// ------------------------------------------------------------ sinks

async fn exercise(sink: &impl DeadLetterSink) {
    let (a, b, c) = (entry(1), entry(2), entry(3));
    for e in [&a, &b, &c] {
        sink.push(e).await.unwrap();
    }
    sink.push(&a).await.unwrap(); // idempotent by id
    let all = sink.list(Selection::All).await.unwrap();
    assert_eq!(all, vec![a.clone(), b.clone(), c.clone()], "oldest first");

    let mut parked = b.clone();
    parked.parked = true;
    parked.replays = 5;
    parked.last_replay_error = Some("still down".into());
    assert!(sink.update(&parked).await.unwrap());
    assert_eq!(sink.get(&b.id).await.unwrap(), Some(parked.clone()));
    assert_eq!(
        sink.list(Selection::Pending).await.unwrap(),
        vec![a.clone(), c.clone()]
    );
    assert_eq!(sink.list(Selection::Parked).await.unwrap(), vec![parked]);

    assert!(sink.remove(&a.id).await.unwrap());
    assert!(!sink.remove(&a.id).await.unwrap());
    assert!(
        !sink.update(&a).await.unwrap(),
        "an update never resurrects"
    );
    assert_eq!(sink.get(&a.id).await.unwrap(), None);
    assert_eq!(sink.list(Selection::All).await.unwrap().len(), 2);
}

#[tokio::test]
async fn memory_sink_keeps_updates_and_removes() {
    exercise(&MemorySink::new()).await;
}

#[tokio::test]
async fn memory_sink_is_bounded() {
    let sink = MemorySink::new().with_capacity(1);
    sink.push(&entry(1)).await.unwrap();
    let full = sink.push(&entry(2)).await.unwrap_err();
    assert!(
        matches!(full, SinkError::Full { capacity: 1, .. }),
        "{full}"
    );
    assert!(full.to_string().contains("replay or purge"), "{full}");
}

#[tokio::test]
async fn file_sink_survives_a_reopen() {
    let path = temp_path("reopen");
    let sink = FileSink::open(&path).await.unwrap();
    exercise(&sink).await;
    let before = sink.list(Selection::All).await.unwrap();
    drop(sink);

    let reopened = FileSink::open(&path).await.unwrap();
    assert!(reopened.torn().is_empty());
    assert_eq!(reopened.list(Selection::All).await.unwrap(), before);

    // Compaction keeps exactly the live entries, one line each.
    reopened.compact().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), before.len());
    reopened.push(&entry(9)).await.unwrap();
    let again = FileSink::open(&path).await.unwrap();
    assert_eq!(again.list(Selection::All).await.unwrap().len(), 3);
}

#[tokio::test]
async fn file_sink_reports_and_skips_a_torn_last_line() {
    let path = temp_path("torn");
    let sink = FileSink::open(&path).await.unwrap();
    let entries: Vec<DeadLetter> = (1..=4).map(entry).collect();
    for e in &entries {
        sink.push(e).await.unwrap();
    }
    drop(sink);
    // A crash in the middle of writing the last line.
    let full = std::fs::read(&path).unwrap();
    let last_start = full[..full.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    let cut = last_start + (full.len() - last_start) / 2;
    std::fs::write(&path, &full[..cut]).unwrap();

    let reopened = FileSink::open(&path).await.unwrap();
    assert_eq!(
        reopened.list(Selection::All).await.unwrap(),
        entries[..3].to_vec(),
        "every complete entry is there"
    );
    let torn = reopened.torn();
    assert_eq!(torn.len(), 1, "the torn line is reported");
    assert_eq!(torn[0].line, 4);
    assert_eq!(torn[0].offset, last_start as u64);
    assert_eq!(torn[0].bytes, cut - last_start);
    // Set aside, not dropped.
    let saved = std::fs::read(&torn[0].saved_to).unwrap();
    assert_eq!(&saved[..saved.len() - 1], &full[last_start..cut]);

    // A whole record missing only its newline is kept, not set aside.
    drop(reopened);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.pop();
    std::fs::write(&path, &bytes).unwrap();
    let reopened = FileSink::open(&path).await.unwrap();
    assert!(reopened.torn().is_empty());
    assert_eq!(reopened.list(Selection::All).await.unwrap().len(), 3);

    // The file is valid again: appends land on a line of their own.
    reopened.push(&entries[3]).await.unwrap();
    drop(reopened);
    let again = FileSink::open(&path).await.unwrap();
    assert!(again.torn().is_empty());
    assert_eq!(again.list(Selection::All).await.unwrap(), entries);
}

#[tokio::test]
async fn file_sink_names_a_corrupt_line() {
    let path = temp_path("corrupt");
    let sink = FileSink::open(&path).await.unwrap();
    sink.push(&entry(1)).await.unwrap();
    drop(sink);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"put\": {\"id\": 12}}\n");
    std::fs::write(&path, text).unwrap();
    let error = FileSink::open(&path).await.unwrap_err();
    assert!(matches!(error, SinkError::Corrupt { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("line 2 of"), "{message}");
    assert!(message.contains("fix or delete"), "{message}");
}

/// The child: append entries to the file in a loop until killed.
///
/// Whether the kill tears the last line depends on where it lands; either
/// way every complete line must be read back (the torn case itself is
/// pinned down by `file_sink_reports_and_skips_a_torn_last_line`).
#[test]
#[ignore = "run by file_sink_survives_sigkill_mid_write as a child process"]
fn child_writer() {
    let Ok(path) = std::env::var("BUTTRESS_DLQ_CHILD") else {
        return;
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let sink = FileSink::open(&path).await.unwrap();
            for n in 0.. {
                // Large arguments make a kill in the middle of a write likely.
                let mut e = entry(n);
                e.arguments = serde_json::json!({ "n": n, "blob": "x".repeat(64 * 1024) });
                sink.push(&e).await.unwrap();
                println!("pushed {n}");
            }
        });
}

#[tokio::test]
async fn file_sink_survives_sigkill_mid_write() {
    let path = temp_path("sigkill");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--ignored", "--nocapture"])
        .env("BUTTRESS_DLQ_CHILD", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let it write a good number of entries (it reports each one), then
    // kill it while it goes on writing.
    let mut progress = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let reported = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = progress.next_line().await.unwrap() {
            if line == "pushed 40" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(reported, Ok(true), "the writer made no progress");
    child.kill().await.unwrap(); // SIGKILL
    child.wait().await.unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let complete = bytes.iter().filter(|b| **b == b'\n').count();
    let torn_bytes = bytes.len() - bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);

    let reopened = FileSink::open(&path).await.unwrap();
    let ids: Vec<u64> = reopened
        .list(Selection::All)
        .await
        .unwrap()
        .iter()
        .map(|e| e.arguments["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), complete, "every complete line is an entry");
    assert_eq!(ids, (0..complete as u64).collect::<Vec<_>>());
    if torn_bytes > 0 {
        assert_eq!(reopened.torn().len(), 1);
        assert_eq!(reopened.torn()[0].bytes, torn_bytes);
        assert_eq!(reopened.torn()[0].line, complete + 1);
    } else {
        assert!(reopened.torn().is_empty());
    }
    drop(reopened);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(format!("{}.torn", path.display()));
}

// ------------------------------------------------------------ replay

#[tokio::test]
async fn replay_removes_entries_that_succeed() {
    let sink = MemorySink::new();
    for n in 1..=3 {
        sink.push(&entry(n)).await.unwrap();
    }
    let seen = std::sync::Mutex::new(Vec::new());
    let report = Replayer::new(&sink)
        .replay(|e| {
            seen.lock()
                .unwrap()
                .push(e.arguments["order"]["id"].as_u64().unwrap());
            async { Ok::<(), PayError>(()) }
        })
        .await
        .unwrap();
    assert_eq!(
        (report.attempted, report.succeeded, report.failed),
        (3, 3, 0)
    );
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3], "oldest first");
    assert!(sink.is_empty());
}

#[tokio::test]
async fn replay_keeps_failures_with_their_count_and_error() {
    let path = temp_path("replay-failure");
    let sink = FileSink::open(&path).await.unwrap();
    let (ok, bad) = (entry(1), entry(2));
    sink.push(&ok).await.unwrap();
    sink.push(&bad).await.unwrap();
    let bad_id = bad.id.clone();
    let replayer = Replayer::new(sink.clone());
    let report = replayer
        .replay(|e| {
            let fail = e.id == bad_id;
            async move {
                if fail {
                    Err(PayError::Declined)
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    assert_eq!((report.succeeded, report.failed, report.parked), (1, 1, 0));
    // Durable: seen after a reopen.
    let reopened = FileSink::open(&path).await.unwrap();
    let left = reopened.list(Selection::All).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, bad.id);
    assert_eq!(left[0].replays, 1);
    assert_eq!(left[0].last_replay_error.as_deref(), Some("card declined"));
    assert!(!left[0].parked);
}

#[tokio::test]
async fn poison_is_parked_then_can_be_unparked() {
    let sink = MemorySink::new();
    let poison = entry(7);
    sink.push(&poison).await.unwrap();
    let calls = AtomicU32::new(0);
    let replayer = Replayer::new(&sink).with_max_replays(3);
    let failing = |_e: DeadLetter| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(PayError::Unavailable) }
    };
    for pass in 1..=5 {
        let report = replayer.replay(failing).await.unwrap();
        if pass <= 3 {
            assert_eq!(report.failed, 1, "pass {pass}");
            assert_eq!(report.parked, u32::from(pass == 3), "pass {pass}");
        } else {
            assert_eq!(report.attempted, 0, "parked entries are not replayed");
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "no endless loop");
    let parked = replayer.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].replays, 3);
    assert!(sink.list(Selection::Pending).await.unwrap().is_empty());

    assert!(replayer.unpark(&poison.id).await.unwrap());
    assert!(
        !replayer.unpark(&poison.id).await.unwrap(),
        "not parked anymore"
    );
    let report = replayer
        .replay(|_| async { Ok::<(), PayError>(()) })
        .await
        .unwrap();
    assert_eq!(report.succeeded, 1);
    assert!(sink.is_empty());
    assert_eq!(DEFAULT_MAX_REPLAYS, 5);
}

// ------------------------------------------------------------ the macro

static SINK: LazyLock<MemorySink> = LazyLock::new(MemorySink::new);

#[resilient(provider = "dlq-macro-permanent", retry = off, dlq = &*SINK)]
async fn charge(order: &Order, note: String, declined: bool) -> Result<u64, PayError> {
    let _ = &note;
    if declined {
        Err(PayError::Declined)
    } else {
        Ok(order.id)
    }
}

#[tokio::test(start_paused = true)]
async fn the_macro_records_a_failed_call_with_its_arguments() {
    let order = Order {
        id: 42,
        cents: 1999,
    };
    let before = SystemTime::now() - Duration::from_secs(1);
    assert_eq!(charge(&order, "ok".into(), false).await.unwrap(), 42);
    assert!(
        SINK.list(Selection::All)
            .await
            .unwrap()
            .iter()
            .all(|e| e.provider != "dlq-macro-permanent"),
        "a success leaves nothing"
    );
    let error = charge(&order, "gift".into(), true).await.unwrap_err();
    assert!(matches!(error, PayError::Declined), "the call still fails");

    let entries: Vec<DeadLetter> = SINK
        .list(Selection::All)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.provider == "dlq-macro-permanent")
        .collect();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.operation, "charge");
    assert_eq!(e.error, "card declined");
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(e.reason, "not_retryable");
    assert_eq!(e.attempts, 1);
    assert!(e.first_attempt_at >= before && e.first_attempt_at <= e.last_attempt_at);
    assert!(!e.correlation_id.is_empty());
    assert_eq!(e.idempotency_key, None);
    assert_eq!(
        e.arguments,
        serde_json::json!({ "order": { "id": 42, "cents": 1999 }, "note": "gift", "declined": true })
    );
    #[derive(Deserialize)]
    struct Args {
        order: Order,
        note: String,
    }
    let args: Args = e.arguments_as().unwrap();
    assert_eq!((args.order, args.note.as_str()), (order, "gift"));
}

struct Payments {
    dead: MemorySink,
    failures: AtomicU32,
}

impl Payments {
    #[resilient(
        provider = "dlq-macro-exhausted",
        retry(max_attempts = 3, backoff = constant("100ms"), jitter = none, budget = off),
        idempotent(key = format!("charge-{}", order.id)),
        dlq(sink = &self.dead, on = exhausted),
    )]
    async fn charge(&self, order: Order, declined: bool) -> Result<u64, PayError> {
        self.failures.fetch_add(1, Ordering::SeqCst);
        if declined {
            Err(PayError::Declined)
        } else {
            Err(PayError::Unavailable)
        }
    }

    #[resilient(provider = "dlq-macro-open", retry = off, dlq(sink = self.dead.clone()))]
    async fn refund(&self, id: u64) -> Result<u64, PayError> {
        Ok(id)
    }

    #[resilient(provider = "dlq-macro-only-permanent", retry(max_attempts = 2, budget = off), dlq(sink = &self.dead, on = permanent))]
    async fn capture(&self, id: u64) -> Result<u64, PayError> {
        let _ = id;
        Err(PayError::Unavailable)
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_are_recorded_with_times_and_the_key() {
    let payments = Payments {
        dead: MemorySink::new(),
        failures: AtomicU32::new(0),
    };
    let order = Order { id: 7, cents: 500 };
    let error = payments.charge(order.clone(), false).await.unwrap_err();
    assert!(matches!(error, PayError::Unavailable));
    assert_eq!(payments.failures.load(Ordering::SeqCst), 3);
    let entries = payments.dead.list(Selection::All).await.unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!((e.reason.as_str(), e.attempts), ("attempts_exhausted", 3));
    assert_eq!(e.class, ErrorClass::Transient);
    let span = e
        .last_attempt_at
        .duration_since(e.first_attempt_at)
        .unwrap();
    assert_eq!(span, Duration::from_millis(200), "two backoffs of 100 ms");
    let key = e.idempotency_key.as_ref().expect("the call's key");
    assert_eq!(key.expose(), "charge-7", "stored in clear for the replay");
    assert!(!format!("{e} {e:?}").contains("charge-7"), "never shown");

    // `on = exhausted`: a permanent error is not recorded.
    payments.charge(order, true).await.unwrap_err();
    assert_eq!(payments.dead.len(), 1);
    // `on = permanent`: exhausted retries are not recorded.
    payments.capture(1).await.unwrap_err();
    assert_eq!(payments.dead.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn local_rejections_count_as_exhausted() {
    let payments = Payments {
        dead: MemorySink::new(),
        failures: AtomicU32::new(0),
    };
    let breaker = Registry::global().breaker("dlq-macro-open");
    breaker.force_open();
    let error = payments.refund(3).await.unwrap_err();
    breaker.reset();
    assert!(matches!(error, PayError::Resilience(_)), "{error:?}");
    let entries = payments.dead.list(Selection::All).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].reason, "rejected");
    assert_eq!(entries[0].attempts, 1);
    assert_eq!(entries[0].arguments, serde_json::json!({ "id": 3 }));
}

static FULL: LazyLock<MemorySink> = LazyLock::new(|| MemorySink::new().with_capacity(1));

#[resilient(provider = "dlq-macro-sink-failure", retry = off, idempotent(key = "secret-key-77"), dlq = &*FULL)]
async fn notify(user: u64) -> Result<(), PayError> {
    let _ = user;
    Err(PayError::Declined)
}

#[tokio::test]
async fn a_sink_failure_is_logged_in_full_and_the_call_keeps_its_error() {
    FULL.push(&entry(0)).await.unwrap();
    let captured = Captured::default();
    let guard = captured.install();
    let error = notify(99).await.unwrap_err();
    drop(guard);
    assert!(matches!(error, PayError::Declined));
    let logs = captured.text();
    assert!(logs.contains("ERROR"), "{logs}");
    assert!(logs.contains("could not store a dead letter"), "{logs}");
    assert!(logs.contains("dlq-macro-sink-failure"), "{logs}");
    assert!(
        logs.contains("\\\"user\\\":99") || logs.contains("\"user\":99"),
        "{logs}"
    );
    assert!(!logs.contains("secret-key-77"), "the key is hashed: {logs}");
    assert!(
        logs.contains(&buttress::idempotency::key_hash("secret-key-77")),
        "{logs}"
    );
}
