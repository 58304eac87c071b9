//! `PostgresStore` against a real PostgreSQL (127.0.0.1:5432 by default, see
//! `common/services.rs`; skipped when absent unless
//! `BUTTRESS_REQUIRE_SERVICES=1`).
//!
//! Each test uses its own table (`buttress_idem_test_<pid>_<name>`) and drops
//! it at the end, so the tests run in parallel and reruns start clean. The
//! cross-process tests re-execute this test binary as worker processes
//! (`child_worker_postgres`, ignored unless `BUTTRESS_PG_CHILD` is set), which
//! talk to the same database and to a side-effect-counting HTTP provider
//! started by the parent.

#[path = "common/effects.rs"]
mod effects;
#[path = "common/services.rs"]
mod services;

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buttress::idempotency::{
    Claim, ClaimRequest, DedupOptions, IdempotencyStore, OnStoreError, PostgresStore,
    StoreErrorKind,
};
use buttress::{Classify, Error, ErrorClass, Policy, Registry};
use effects::EffectsServer;
use tokio::time::Instant;

// ---------------------------------------------------------------- helpers

/// This test's own table name.
fn table_name(test: &str) -> String {
    format!("buttress_idem_test_{}_{test}", std::process::id())
}

/// A plain connection for checks and clean-up.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("admin connection to PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn drop_table(url: &str, table: &str) {
    admin(url)
        .await
        .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
        .await
        .expect("drop the test table");
}

/// A store on a fresh table of its own.
async fn fresh_store(url: &str, test: &str) -> (PostgresStore, String) {
    let table = table_name(test);
    drop_table(url, &table).await;
    let store = PostgresStore::connect_with_table(url, &table)
        .await
        .expect("connect to PostgreSQL");
    (store, table)
}

/// `(state, fence, record)` of `key`'s row.
async fn row(url: &str, table: &str, key: &str) -> (i16, i64, Option<Vec<u8>>) {
    let row = admin(url)
        .await
        .query_one(
            &format!("SELECT state, fence, record FROM \"{table}\" WHERE key = $1"),
            &[&key],
        )
        .await
        .expect("the key's row");
    (row.get(0), row.get(1), row.get(2))
}

fn request(key: &str, lease: Duration, ttl: Duration) -> ClaimRequest<'_> {
    ClaimRequest {
        key,
        fingerprint: None,
        lease,
        ttl,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// The error type of the calls made through `Policy::run_idempotent`.
#[derive(Debug)]
enum CallError {
    Http(String),
    Buttress(Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(e) => write!(f, "provider call failed: {e}"),
            Self::Buttress(e) => write!(f, "{e}"),
        }
    }
}

impl Classify for CallError {
    fn class(&self) -> ErrorClass {
        match self {
            // Never retried here: each retry would be one more effect.
            Self::Http(_) => ErrorClass::Permanent,
            Self::Buttress(e) => e.class(),
        }
    }
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        Self::Buttress(e)
    }
}

impl From<reqwest::Error> for CallError {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e.to_string())
    }
}

fn policy(provider: &'static str) -> Policy {
    Policy::builder(provider)
        .timeout(Duration::from_secs(20))
        .deadline(Duration::from_secs(30))
        .build_in(&Registry::new())
        .expect("valid policy")
}

fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("milliseconds fit u64")
}

/// Re-execute this test binary as a worker process.
fn spawn_child(role: &str, vars: &[(&str, String)]) -> tokio::process::Child {
    let mut command =
        tokio::process::Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args([
            "--exact",
            "child_worker_postgres",
            "--ignored",
            "--nocapture",
        ])
        .env("BUTTRESS_PG_CHILD", role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in vars {
        command.env(name, value);
    }
    command.spawn().expect("start a worker process")
}

/// The `RESULT …` lines of a finished worker.
async fn results(child: tokio::process::Child) -> Vec<String> {
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("the worker finishes within 15 s")
        .expect("the worker's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "worker failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    for line in stdout.lines().filter(|l| l.starts_with("STATS ")) {
        eprintln!("worker {line}");
    }
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(str::to_owned)
        .collect()
}

// ------------------------------------------------------------ the worker

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("worker needs {name}"))
}

/// Sleep until the wall-clock instant `BUTTRESS_PG_CHILD_START_AT` (Unix
/// milliseconds), so that workers started separately act together.
async fn wait_for_start() {
    let start: u64 = env("BUTTRESS_PG_CHILD_START_AT").parse().expect("a number");
    let now = unix_ms();
    if start > now {
        tokio::time::sleep(Duration::from_millis(start - now)).await;
    }
}

/// A worker process for the cross-process tests: does nothing unless
/// re-executed by one of them with `BUTTRESS_PG_CHILD` set.
#[test]
#[ignore = "a worker process, run only by the cross-process tests"]
fn child_worker_postgres() {
    let Ok(role) = std::env::var("BUTTRESS_PG_CHILD") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let url = env("BUTTRESS_PG_CHILD_URL");
        let table = env("BUTTRESS_PG_CHILD_TABLE");
        match role.as_str() {
            "connect" => child_connect(&url, &table).await,
            "calls" => child_calls(&url, &table).await,
            "crash" => child_crash(&url, &table).await,
            other => panic!("unknown worker role {other}"),
        }
    });
}

async fn child_connect(url: &str, table: &str) {
    let count: usize = env("BUTTRESS_PG_CHILD_COUNT").parse().expect("a number");
    wait_for_start().await;
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (url, table) = (url.to_owned(), table.to_owned());
            tokio::spawn(async move { PostgresStore::connect_with_table(&url, &table).await })
        })
        .collect();
    for task in tasks {
        match task.await.expect("connect task") {
            Ok(_) => println!("RESULT ok"),
            Err(e) => println!("RESULT other {e}"),
        }
    }
}

async fn child_calls(url: &str, table: &str) {
    let count: usize = env("BUTTRESS_PG_CHILD_COUNT").parse().expect("a number");
    let key = env("BUTTRESS_PG_CHILD_KEY");
    let effects_url = env("BUTTRESS_PG_CHILD_EFFECTS");
    let store = PostgresStore::connect_lazy(url)
        .and_then(|s| s.with_table(table))
        .expect("a store");
    let policy = policy("pg-cross-process");
    let http = reqwest::Client::new();
    wait_for_start().await;
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (store, policy, http) = (store.clone(), policy.clone(), http.clone());
            let (key, effects_url) = (key.clone(), effects_url.clone());
            tokio::spawn(async move {
                policy
                    .run_idempotent(&store, key.as_str(), &DedupOptions::new(), || {
                        let (http, effects_url, key) = (&http, &effects_url, &key);
                        async move {
                            Ok::<_, CallError>(effects::perform(http, effects_url, key).await?)
                        }
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        match task.await.expect("call task") {
            Ok(value) => println!("RESULT ok {}", value["effect"]),
            Err(CallError::Buttress(Error::InFlight { .. })) => println!("RESULT in_flight"),
            Err(e) => println!("RESULT other {e}"),
        }
    }
    println!(
        "STATS round_trips={} claim_retries={} prepared={}",
        store.round_trips(),
        store.claim_retries(),
        store.statements_prepared()
    );
}

async fn child_crash(url: &str, table: &str) {
    let key = env("BUTTRESS_PG_CHILD_KEY");
    let effects_url = env("BUTTRESS_PG_CHILD_EFFECTS");
    let lease: u64 = env("BUTTRESS_PG_CHILD_LEASE_MS").parse().expect("a number");
    let store = PostgresStore::connect_lazy(url)
        .and_then(|s| s.with_table(table))
        .expect("a store");
    let http = reqwest::Client::new();
    let options = DedupOptions::new().with_lease(Duration::from_millis(lease));
    // The provider takes far longer than the parent waits: it kills us
    // while the call is in flight.
    let result = policy("pg-crash")
        .run_idempotent(&store, key.as_str(), &options, || async {
            Ok::<_, CallError>(effects::perform(&http, &effects_url, &key).await?)
        })
        .await;
    println!("RESULT unexpectedly finished {result:?}");
}

// ------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_complete_release_expiry_and_cleanup_follow_the_memory_store() {
    let Some(url) = services::postgres_url().await else {
        return;
    };
    let (store, table) = fresh_store(&url, "semantics").await;
    let lease = Duration::from_secs(30);

    // Fresh → acquired; again → in flight with the lease left.
    assert_eq!(
        store.claim(request("k", lease, HOUR)).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    match store.claim(request("k", lease, HOUR)).await.unwrap() {
        Claim::InFlight {
            lease_left: Some(left),
        } => assert!(
            left <= lease && left > lease - Duration::from_secs(5),
            "{left:?}"
        ),
        other => panic!("expected InFlight, got {other:?}"),
    }
    // Only the current fence completes.
    assert!(!store.complete("k", 2, b"\"x\"", HOUR).await.unwrap());
    assert!(!store.complete("k", u64::MAX, b"\"x\"", HOUR).await.unwrap());
    assert!(store.complete("k", 1, b"\"r1\"", HOUR).await.unwrap());
    assert!(!store.complete("k", 1, b"\"again\"", HOUR).await.unwrap());
    assert_eq!(
        store.claim(request("k", lease, HOUR)).await.unwrap(),
        Claim::Completed {
            record: b"\"r1\"".to_vec()
        }
    );

    // Fingerprints: a different one is a mismatch, in flight or done.
    let with = |fingerprint: Option<u64>| ClaimRequest {
        key: "fp",
        fingerprint,
        lease,
        ttl: HOUR,
    };
    assert_eq!(
        store.claim(with(Some(u64::MAX))).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    assert_eq!(store.claim(with(Some(2))).await.unwrap(), Claim::Mismatch);
    assert!(matches!(
        store.claim(with(Some(u64::MAX))).await.unwrap(),
        Claim::InFlight { .. }
    ));
    assert!(matches!(
        store.claim(with(None)).await.unwrap(),
        Claim::InFlight { .. }
    ));
    assert!(store.complete("fp", 1, b"7", HOUR).await.unwrap());
    assert_eq!(store.claim(with(Some(2))).await.unwrap(), Claim::Mismatch);
    let done = Claim::Completed {
        record: b"7".to_vec(),
    };
    assert_eq!(store.claim(with(Some(u64::MAX))).await.unwrap(), done);
    assert_eq!(store.claim(with(None)).await.unwrap(), done);

    // Release: only by the holder; the next claim gets the next fence.
    assert_eq!(
        store.claim(request("rel", lease, HOUR)).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    store.release("rel", 5).await.unwrap();
    assert!(matches!(
        store.claim(request("rel", lease, HOUR)).await.unwrap(),
        Claim::InFlight { .. }
    ));
    store.release("rel", 1).await.unwrap();
    assert_eq!(
        store.claim(request("rel", lease, HOUR)).await.unwrap(),
        Claim::Acquired { fence: 2 }
    );
    // A released key cannot be completed by its former holder.
    store.release("rel", 2).await.unwrap();
    assert!(!store.complete("rel", 2, b"1", HOUR).await.unwrap());

    // Short leases and retentions, all waited for at once (the database's
    // clock cannot be paused).
    let short = Duration::from_millis(200);
    assert_eq!(
        store.claim(request("lease", short, HOUR)).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    // Done with a short retention: replayed, then expired.
    assert_eq!(
        store.claim(request("retain", short, short)).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    assert!(store.complete("retain", 1, b"1", short).await.unwrap());
    // For cleanup: expired done, expired in flight, live done, live in flight.
    for key in ["gone-done", "gone-flight", "live-done", "live-flight"] {
        let ttl = if key.starts_with("gone") { short } else { HOUR };
        let lease = if key.starts_with("gone") {
            short
        } else {
            lease
        };
        assert_eq!(
            store.claim(request(key, lease, ttl)).await.unwrap(),
            Claim::Acquired { fence: 1 }
        );
    }
    assert!(store.complete("gone-done", 1, b"1", short).await.unwrap());
    assert!(store.complete("live-done", 1, b"2", HOUR).await.unwrap());
    assert_eq!(
        store.claim(request("retain", lease, HOUR)).await.unwrap(),
        Claim::Completed {
            record: b"1".to_vec()
        }
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The lease expired: taken over with the next fence; the old holder's
    // completion is refused, the new one's stored.
    assert_eq!(
        store.claim(request("lease", lease, HOUR)).await.unwrap(),
        Claim::Acquired { fence: 2 }
    );
    assert!(!store.complete("lease", 1, b"\"old\"", HOUR).await.unwrap());
    assert!(store.complete("lease", 2, b"\"new\"", HOUR).await.unwrap());
    assert_eq!(
        store.claim(request("lease", lease, HOUR)).await.unwrap(),
        Claim::Completed {
            record: b"\"new\"".to_vec()
        }
    );
    // The retention ended: the key is fresh again, and its fence goes on.
    assert_eq!(
        store.claim(request("retain", lease, HOUR)).await.unwrap(),
        Claim::Acquired { fence: 2 }
    );

    // Cleanup deletes exactly the two expired rows.
    assert_eq!(store.cleanup().await.unwrap(), 2);
    assert_eq!(store.cleanup().await.unwrap(), 0);
    let mut keys: Vec<String> = admin(&url)
        .await
        .query(&format!("SELECT key FROM \"{table}\""), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "fp",
            "k",
            "lease",
            "live-done",
            "live-flight",
            "rel",
            "retain"
        ]
    );
    assert_eq!(
        store
            .claim(request("live-done", lease, HOUR))
            .await
            .unwrap(),
        Claim::Completed {
            record: b"2".to_vec()
        }
    );
    assert!(matches!(
        store
            .claim(request("live-flight", lease, HOUR))
            .await
            .unwrap(),
        Claim::InFlight { .. }
    ));
    // A deleted key starts over.
    assert_eq!(
        store
            .claim(request("gone-done", lease, HOUR))
            .await
            .unwrap(),
        Claim::Acquired { fence: 1 }
    );

    // Rows the store cannot read are Corrupt, not a panic.
    admin(&url)
        .await
        .batch_execute(&format!(
            "INSERT INTO \"{table}\" VALUES ('bad', 2, 1, NULL, now(), now() + interval '1 hour', NULL)"
        ))
        .await
        .unwrap();
    let e = store
        .claim(request("bad", lease, HOUR))
        .await
        .expect_err("a done row without record");
    assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");

    // Clones share the pool and the counters.
    let clone = store.clone();
    let before = store.round_trips();
    clone.release("nothing", 1).await.unwrap();
    assert_eq!(store.round_trips(), before + 1);
    assert_eq!(store.claim_retries(), 0);

    drop_table(&url, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_is_safe_from_many_tasks_and_processes_on_a_fresh_table() {
    let Some(url) = services::postgres_url().await else {
        return;
    };
    let table = table_name("connect");
    drop_table(&url, &table).await;
    let start_at = unix_ms() + 700;
    let vars = |count: usize| {
        vec![
            ("BUTTRESS_PG_CHILD_URL", url.clone()),
            ("BUTTRESS_PG_CHILD_TABLE", table.clone()),
            ("BUTTRESS_PG_CHILD_COUNT", count.to_string()),
            ("BUTTRESS_PG_CHILD_START_AT", start_at.to_string()),
        ]
    };
    let first = spawn_child("connect", &vars(8));
    let second = spawn_child("connect", &vars(8));
    // And 8 tasks here, at the same instant.
    let parent = async {
        tokio::time::sleep(Duration::from_millis(start_at.saturating_sub(unix_ms()))).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (url, table) = (url.clone(), table.clone());
                tokio::spawn(async move { PostgresStore::connect_with_table(&url, &table).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(match task.await.unwrap() {
                Ok(_) => "ok".to_owned(),
                Err(e) => format!("other {e}"),
            });
        }
        outcomes
    };
    let (first, second, parent) = tokio::join!(results(first), results(second), parent);
    let all: Vec<String> = first.into_iter().chain(second).chain(parent).collect();
    assert_eq!(all.len(), 24, "{all:?}");
    assert!(all.iter().all(|r| r == "ok"), "{all:?}");

    let admin = admin(&url).await;
    let objects: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname IN ($1, $2)",
            &[&table, &format!("{table}_expires_at_idx")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(objects, 2, "the table and its index, once each");
    drop_table(&url, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_from_two_processes_has_exactly_one_effect() {
    let Some(url) = services::postgres_url().await else {
        return;
    };
    let (store, table) = fresh_store(&url, "crossproc").await;
    let server = EffectsServer::start(Duration::from_millis(300)).await;
    let key = format!("charge-{}", std::process::id());
    let vars = vec![
        ("BUTTRESS_PG_CHILD_URL", url.clone()),
        ("BUTTRESS_PG_CHILD_TABLE", table.clone()),
        ("BUTTRESS_PG_CHILD_KEY", key.clone()),
        ("BUTTRESS_PG_CHILD_EFFECTS", server.url.clone()),
        ("BUTTRESS_PG_CHILD_COUNT", "50".to_owned()),
        ("BUTTRESS_PG_CHILD_START_AT", (unix_ms() + 700).to_string()),
    ];
    let first = spawn_child("calls", &vars);
    let second = spawn_child("calls", &vars);
    let (first, second) = tokio::join!(results(first), results(second));
    eprintln!(
        "process 1: {} ok, process 2: {} ok",
        first.iter().filter(|r| r.starts_with("ok")).count(),
        second.iter().filter(|r| r.starts_with("ok")).count()
    );
    let all: Vec<String> = first.into_iter().chain(second).collect();
    assert_eq!(all.len(), 100, "{all:?}");
    assert_eq!(server.count(&key), 1, "exactly one provider effect");
    let ok = all.iter().filter(|r| r.starts_with("ok ")).count();
    assert!(ok >= 1, "{all:?}");
    assert!(
        all.iter().all(|r| r == "ok 1" || r == "in_flight"),
        "every caller gets the one result or InFlight: {all:?}"
    );
    eprintln!("{ok} callers got the result, {} got InFlight", 100 - ok);
    let (state, fence, record) = row(&url, &table, &key).await;
    assert_eq!((state, fence), (2, 1));
    let stored: serde_json::Value = serde_json::from_slice(&record.unwrap()).unwrap();
    assert_eq!(stored["effect"], 1);
    drop(store);
    drop_table(&url, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_holder_is_taken_over_after_its_lease_and_nothing_is_lost() {
    let Some(url) = services::postgres_url().await else {
        return;
    };
    let (store, table) = fresh_store(&url, "crash").await;
    let server = EffectsServer::start(Duration::from_secs(10)).await;
    let key = format!("crash-{}", std::process::id());
    let lease = Duration::from_secs(1);
    let mut child = spawn_child(
        "crash",
        &[
            ("BUTTRESS_PG_CHILD_URL", url.clone()),
            ("BUTTRESS_PG_CHILD_TABLE", table.clone()),
            ("BUTTRESS_PG_CHILD_KEY", key.clone()),
            ("BUTTRESS_PG_CHILD_EFFECTS", server.url.clone()),
            ("BUTTRESS_PG_CHILD_LEASE_MS", lease.as_millis().to_string()),
        ],
    );

    // The child claimed the key and reached the provider.
    let waited = Instant::now();
    while server.count(&key) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(8),
            "the worker never called the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(row(&url, &table, &key).await.0, 1, "in flight");
    assert_eq!(row(&url, &table, &key).await.1, 1, "fence 1");
    child.start_kill().expect("SIGKILL the worker");
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed: {status}");

    // Until its lease expires, the key stays in flight; then we take over.
    let fence = loop {
        match store.claim(request(&key, lease, HOUR)).await.unwrap() {
            Claim::Acquired { fence } => break fence,
            Claim::InFlight { lease_left } => {
                assert!(waited.elapsed() < Duration::from_secs(8));
                let left = lease_left.unwrap_or(Duration::from_millis(50));
                tokio::time::sleep(left + Duration::from_millis(20)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(fence, 2);
    // Recover the outcome (the provider already acted once: look it up
    // rather than act again) and store it.
    let result = serde_json::json!({
        "operation": key,
        "effect": server.count(&key),
        "recovered": true,
    });
    let record = serde_json::to_vec(&result).unwrap();
    assert!(
        !store.complete(&key, 1, b"\"stale\"", HOUR).await.unwrap(),
        "the killed holder's fence is dead"
    );
    assert!(store.complete(&key, 2, &record, HOUR).await.unwrap());
    assert_eq!(
        store.claim(request(&key, lease, HOUR)).await.unwrap(),
        Claim::Completed {
            record: record.clone()
        }
    );
    // Through the dedup layer too: the stored result, without a call.
    let calls = AtomicU32::new(0);
    let replay: serde_json::Value = policy("pg-crash-parent")
        .run_idempotent(&store, key.as_str(), &DedupOptions::new(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, CallError>(serde_json::Value::Null) }
        })
        .await
        .unwrap();
    assert_eq!(replay, result);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    assert_eq!(
        row(&url, &table, &key).await,
        (2, 2, Some(record)),
        "exactly one completion stored, none lost"
    );
    assert_eq!(server.count(&key), 1);
    drop_table(&url, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_or_hung_database_is_a_clear_store_error() {
    // No PostgreSQL needed: nothing listens on port 1.
    let url = "postgres://postgres:s3cret@127.0.0.1:1/test";
    let started = Instant::now();
    let e = PostgresStore::connect(url).await.expect_err("port 1");
    assert!(started.elapsed() < Duration::from_secs(3), "fails fast");
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    assert!(e.message().contains("127.0.0.1:1"), "{e}");
    assert!(e.message().contains("check"), "says what to check: {e}");
    assert!(!e.to_string().contains("s3cret"), "no password: {e}");
    eprintln!("connect: {e}");

    // Lazily connected: each call meets the outage.
    let store = PostgresStore::connect_lazy(url).unwrap();
    let e = store
        .claim(request("k", HOUR, HOUR))
        .await
        .expect_err("unreachable");
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    assert!(!e.to_string().contains("s3cret"));
    let calls = AtomicU32::new(0);
    let call = |options: DedupOptions| {
        let (store, calls) = (&store, &calls);
        async move {
            policy("pg-outage")
                .run_idempotent(store, "order-1", &options, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, CallError>(7_u32) }
                })
                .await
        }
    };
    match call(DedupOptions::new()).await {
        Err(CallError::Buttress(Error::Store { message, .. })) => {
            assert!(!message.contains("order-1"), "the key is not shown");
            assert!(!message.contains("s3cret"));
        }
        other => panic!("expected Error::Store, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "fail closed: no call");
    let proceeded = call(DedupOptions::new().with_on_store_error(OnStoreError::Proceed)).await;
    assert_eq!(proceeded.unwrap(), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A database that accepts connections but never answers: the timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hung = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let store = PostgresStore::connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let e = store
        .claim(request("k", HOUR, HOUR))
        .await
        .expect_err("hung");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    assert!(e.message().contains("did not answer within 300ms"), "{e}");
    eprintln!("hung: {e}");
    hung.abort();

    // Bad inputs are errors too, never panics.
    for bad in [
        "postgres://a:s3cret@host:notaport/db",
        "postgres://a:s3cret@host/db?sslmode=s3cret",
        "host=x port=notaport password=s3cret",
        "host=x password='s3cret' sslmode=s3cret",
    ] {
        let e = PostgresStore::connect_lazy(bad).unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        assert!(
            e.message().contains("invalid PostgreSQL connection string"),
            "{e}"
        );
        assert!(!e.message().contains("s3cret"), "no password: {e}");
        eprintln!("bad URL: {e}");
    }
    let store = PostgresStore::connect_lazy("postgres://postgres@127.0.0.1:1/test").unwrap();
    for bad in [
        "",
        "Orders",
        "a;drop table x",
        "1abc",
        "public.keys",
        "\"quoted\"",
        "with space",
        "é",
        "a".repeat(48).as_str(),
    ] {
        let e = store.clone().with_table(bad).expect_err(bad);
        assert!(
            e.message().contains("invalid idempotency table name"),
            "{e}"
        );
    }
    let ok = store.with_table(&"a".repeat(47)).unwrap();
    assert_eq!(ok.table().len(), 47);
}

/// Replace the database of a `postgres://` URL (or add `dbname=` to a
/// key=value string).
fn with_database(url: &str, db: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let scheme_end = base.find("://").unwrap() + 3;
        let path_start = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("{}/{db}{query}", &base[..path_start])
    } else {
        format!("{url} dbname={db}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_round_trips_per_call_counted_by_the_client_and_the_server() {
    let Some(url) = services::postgres_url().await else {
        return;
    };
    const N: u64 = 200;
    // A database of its own, so the server's transaction count is ours alone.
    let db = format!(
        "buttress_rt_{}_{}",
        std::process::id(),
        unix_ms() % 1_000_000
    );
    let admin = admin(&url).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("CREATE DATABASE (the test user needs CREATEDB)");
    let db_url = with_database(&url, &db);
    // The plain constructor on a fresh database: default table.
    let store = PostgresStore::connect(&db_url).await.unwrap();
    let setup = store.round_trips();
    let policy = policy("pg-round-trips");
    let started = Instant::now();
    for i in 0..N {
        let value = policy
            .run_idempotent(&store, format!("rt-{i}"), &DedupOptions::new(), || async {
                Ok::<_, CallError>(i)
            })
            .await
            .unwrap();
        assert_eq!(value, i);
    }
    let elapsed = started.elapsed();
    let hot = store.round_trips() - setup;
    assert_eq!(hot, 2 * N, "one claim and one complete per call");
    assert_eq!(store.claim_retries(), 0);
    let prepared = store.statements_prepared();

    // The server's own count: every autocommit statement is one committed
    // transaction. Closing the pool ends the backends, which flushes their
    // statistics; then poll briefly for them to land.
    store.close();
    drop(store);
    let read = || async {
        admin
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        let backends: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        let commits: i64 = admin
            .query_opt(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                &[&db],
            )
            .await
            .unwrap()
            .map_or(0, |r| r.get(0));
        (backends, commits)
    };
    let waited = Instant::now();
    let mut commits = 0;
    while waited.elapsed() < Duration::from_secs(5) {
        let (backends, now) = read().await;
        if backends == 0 && now >= 2 * N as i64 && now == commits {
            break;
        }
        commits = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let commits = u64::try_from(commits).unwrap();
    eprintln!(
        "{N} calls in {elapsed:?}: client counted {hot} statements on the hot path \
         (+{setup} to set up, +{prepared} statement preparations); server counted \
         {commits} committed transactions in database {db}"
    );
    assert!(
        commits >= 2 * N,
        "the server saw fewer transactions ({commits}) than the client sent statements"
    );
    assert!(
        commits <= 2 * N + setup + prepared + 20,
        "the server saw {commits} transactions for {} statements: something sends more",
        2 * N
    );
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap();
}

/// Every key the memory store accepts works here too, and different keys
/// never share a row: NUL bytes, long incompressible keys, and a key that
/// spells out another key's stored (hashed) form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_key_the_memory_store_takes_works() {
    let Some(url) = services::postgres_url().await else {
        return;
    };
    let (store, table) = fresh_store(&url, "any_key").await;
    let memory = buttress::idempotency::MemoryStore::new();
    // 100 kB that do not compress: a SplitMix-style sequence of letters.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let long: String = (0..100_000)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            char::from(b'a' + ((z ^ (z >> 31)) % 26) as u8)
        })
        .collect();
    let long_twin = format!("{}b", &long[..long.len() - 1]);
    let nul = "order\u{0}1";
    let nul_twin = "order\u{0}2";
    let spelled = {
        use sha2::{Digest, Sha256};
        let hex: String = Sha256::digest(nul.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("\u{1}sha256:{hex}")
    };
    let keys = [
        nul,
        nul_twin,
        long.as_str(),
        long_twin.as_str(),
        spelled.as_str(),
        "plain",
    ];
    for (i, key) in keys.iter().enumerate() {
        let record = format!("r{i}");
        for s in [&store as &dyn Probe, &memory as &dyn Probe] {
            let claim = s.claim_now(key).await;
            assert_eq!(claim, Claim::Acquired { fence: 1 }, "key #{i}");
            assert!(s.complete_now(key, record.as_bytes()).await, "key #{i}");
        }
    }
    for (i, key) in keys.iter().enumerate() {
        let record = format!("r{i}").into_bytes();
        for s in [&store as &dyn Probe, &memory as &dyn Probe] {
            assert_eq!(
                s.claim_now(key).await,
                Claim::Completed {
                    record: record.clone()
                },
                "key #{i} replays its own record"
            );
        }
    }
    // A short plain key is stored as it is, readable in the table.
    assert_eq!(row(&url, &table, "plain").await.2, Some(b"r5".to_vec()));
    drop_table(&url, &table).await;
}

/// The two stores behind one object-safe face, for the test above.
trait Probe: Sync {
    fn claim_now<'a>(
        &'a self,
        key: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Claim> + Send + 'a>>;
    fn complete_now<'a>(
        &'a self,
        key: &'a str,
        record: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

impl<S: IdempotencyStore> Probe for S {
    fn claim_now<'a>(
        &'a self,
        key: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Claim> + Send + 'a>> {
        Box::pin(async move {
            self.claim(request(key, Duration::from_secs(30), HOUR))
                .await
                .expect("the store answers")
        })
    }
    fn complete_now<'a>(
        &'a self,
        key: &'a str,
        record: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            self.complete(key, 1, record, HOUR)
                .await
                .expect("the store answers")
        })
    }
}
