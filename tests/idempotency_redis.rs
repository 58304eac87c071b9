//! `RedisStore` against a real Redis (`BUTTRESS_REDIS_URL`, default
//! `redis://127.0.0.1:6379/`; skipped when absent unless
//! `BUTTRESS_REQUIRE_SERVICES=1`).
//!
//! - the store's answers match `MemoryStore`'s, step by step, including
//!   lease expiry on Redis's clock, and the hash layout is as documented;
//! - 100 concurrent calls with one key from two OS processes (this test
//!   binary re-executed as `child_worker_redis`) cause exactly one provider
//!   effect;
//! - a holder killed with SIGKILL is taken over after its lease, with
//!   exactly one completion stored;
//! - an unreachable or hung server is a clear `StoreError`, fails calls
//!   closed (or proceeds when asked to), and the store reconnects;
//! - each claim, completion and release is one request to Redis, counted by
//!   the store and confirmed by the server's `INFO commandstats`.
//!
//! Every test uses its own key prefix (pid + time) and deletes its keys.
//! The tests hold one lock while they talk to Redis, so the server-side
//! command counts of the round-trip test are not disturbed by the others.

#[path = "common/effects.rs"]
mod effects;
#[path = "common/services.rs"]
mod services;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buttress::idempotency::{
    Claim, ClaimRequest, DedupOptions, MemoryStore, OnStoreError, RedisStore, StoreErrorKind,
};
use buttress::{Classify, Error, ErrorClass, IdempotencyStore, Policy, Registry};
use effects::{perform, EffectsServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Held by every test while it talks to Redis (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHILD_ROLE: &str = "BUTTRESS_REDIS_CHILD_ROLE";
const CHILD_URL: &str = "BUTTRESS_REDIS_CHILD_URL";
const CHILD_PREFIX: &str = "BUTTRESS_REDIS_CHILD_PREFIX";
const CHILD_KEY: &str = "BUTTRESS_REDIS_CHILD_KEY";
const CHILD_EFFECTS: &str = "BUTTRESS_REDIS_CHILD_EFFECTS";
const CHILD_OPERATION: &str = "BUTTRESS_REDIS_CHILD_OPERATION";
const CHILD_CALLS: &str = "BUTTRESS_REDIS_CHILD_CALLS";

/// The provider error of these tests.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Buttress(#[from] Error),
    #[error("provider call failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the provider declined")]
    Declined,
}

impl Classify for CallError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Buttress(e) => e.class(),
            // Not connected: the request was certainly not sent.
            Self::Http(e) if e.is_connect() => ErrorClass::Transient,
            Self::Http(e) => match e.status() {
                Some(status) if status.as_u16() == 429 => ErrorClass::RateLimited,
                Some(status) if status.is_client_error() => ErrorClass::Permanent,
                // Sent: a timeout, a broken response or a 5xx may have acted.
                _ => ErrorClass::OutcomeUnknown,
            },
            Self::Declined => ErrorClass::Permanent,
        }
    }
}

/// A key prefix no other run or test shares.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("buttress-test:{}:{nanos}:{test}:", std::process::id())
}

fn policy(provider: &'static str) -> Policy {
    Policy::builder(provider)
        .build_in(&Registry::new())
        .unwrap()
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn hgetall(url: &str, name: &str) -> HashMap<String, Vec<u8>> {
    redis::cmd("HGETALL")
        .arg(name)
        .query_async(&mut raw(url).await)
        .await
        .unwrap()
}

async fn pttl(url: &str, name: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(name)
        .query_async(&mut raw(url).await)
        .await
        .unwrap()
}

/// Delete every key under `prefix`.
async fn cleanup(url: &str, prefix: &str) {
    let mut conn = raw(url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// `calls` of `cmdstat_{command}` in `INFO commandstats`.
async fn command_calls(url: &str, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw(url).await)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|stats| {
            stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
        })
        .map_or(0, |calls| calls.parse().unwrap())
}

fn request(key: &str, fingerprint: Option<u64>, lease: Duration) -> ClaimRequest<'_> {
    ClaimRequest {
        key,
        fingerprint,
        lease,
        ttl: Duration::from_secs(60),
    }
}

/// A claim answer with the lease left rounded away (it is checked apart).
fn shape(claim: &Claim) -> String {
    match claim {
        Claim::Acquired { fence } => format!("acquired {fence}"),
        Claim::InFlight { lease_left } => {
            format!(
                "in_flight {}",
                if lease_left.is_some() { "lease" } else { "?" }
            )
        }
        Claim::Completed { record } => format!("completed {}", String::from_utf8_lossy(record)),
        Claim::Mismatch => "mismatch".to_owned(),
    }
}

/// The same sequence of operations against any store; every answer, in
/// order. The expected answers are asserted by the caller.
async fn scenario<S: IdempotencyStore>(store: &S, tag: &str) -> Vec<String> {
    let long = Duration::from_secs(10);
    let ttl = Duration::from_secs(60);
    let mut log = Vec::new();
    let claim = |claim: Result<Claim, buttress::idempotency::StoreError>, log: &mut Vec<String>| {
        let claim = claim.unwrap();
        if let Claim::InFlight {
            lease_left: Some(left),
        } = &claim
        {
            assert!(*left <= long, "{tag}: lease left {left:?}");
        }
        log.push(shape(&claim));
    };

    // Claim, duplicate, completion by the wrong and the right fence, replay.
    claim(store.claim(request("a", None, long)).await, &mut log);
    claim(store.claim(request("a", None, long)).await, &mut log);
    log.push(format!(
        "complete(7) {}",
        store.complete("a", 7, b"r1", ttl).await.unwrap()
    ));
    log.push(format!(
        "complete(1) {}",
        store.complete("a", 1, b"r1", ttl).await.unwrap()
    ));
    claim(store.claim(request("a", None, long)).await, &mut log);
    log.push(format!(
        "complete(1) {}",
        store.complete("a", 1, b"r2", ttl).await.unwrap()
    ));
    claim(store.claim(request("a", None, long)).await, &mut log);

    // Fingerprints: in flight and completed.
    claim(store.claim(request("b", Some(1), long)).await, &mut log);
    claim(store.claim(request("b", Some(2), long)).await, &mut log);
    claim(store.claim(request("b", None, long)).await, &mut log);
    log.push(format!(
        "complete(1) {}",
        store.complete("b", 1, b"", ttl).await.unwrap()
    ));
    claim(store.claim(request("b", Some(2), long)).await, &mut log);
    claim(store.claim(request("b", Some(1), long)).await, &mut log);

    // Release: only by the current fence; the next claim gets fence 2.
    claim(store.claim(request("c", None, long)).await, &mut log);
    store.release("c", 5).await.unwrap();
    claim(store.claim(request("c", None, long)).await, &mut log);
    store.release("c", 1).await.unwrap();
    claim(store.claim(request("c", None, long)).await, &mut log);
    store.release("c", 1).await.unwrap();
    claim(store.claim(request("c", None, long)).await, &mut log);
    log.push(format!(
        "complete(1) {}",
        store.complete("c", 1, b"old", ttl).await.unwrap()
    ));
    log.push(format!(
        "complete(2) {}",
        store.complete("c", 2, b"new", ttl).await.unwrap()
    ));
    claim(store.claim(request("c", None, long)).await, &mut log);

    // A released key is free for any arguments.
    claim(store.claim(request("h", Some(1), long)).await, &mut log);
    store.release("h", 1).await.unwrap();
    claim(store.claim(request("h", Some(2), long)).await, &mut log);

    // Lease expiry (real time): takeover with fence 2; the old holder can
    // neither complete nor release. An expired claim still answers a
    // different fingerprint with a mismatch.
    let short = Duration::from_millis(200);
    claim(store.claim(request("d", None, short)).await, &mut log);
    claim(store.claim(request("g", Some(1), short)).await, &mut log);
    tokio::time::sleep(Duration::from_millis(300)).await;
    claim(store.claim(request("g", Some(2), long)).await, &mut log);
    claim(store.claim(request("g", Some(1), long)).await, &mut log);
    claim(store.claim(request("d", None, long)).await, &mut log);
    log.push(format!(
        "complete(1) {}",
        store.complete("d", 1, b"zombie", ttl).await.unwrap()
    ));
    store.release("d", 1).await.unwrap();
    claim(store.claim(request("d", None, long)).await, &mut log);
    log.push(format!(
        "complete(2) {}",
        store.complete("d", 2, b"taken over", ttl).await.unwrap()
    ));
    claim(store.claim(request("d", None, long)).await, &mut log);
    log
}

const EXPECTED: &[&str] = &[
    "acquired 1",
    "in_flight lease",
    "complete(7) false",
    "complete(1) true",
    "completed r1",
    "complete(1) false",
    "completed r1",
    // b
    "acquired 1",
    "mismatch",
    "in_flight lease",
    "complete(1) true",
    "mismatch",
    "completed ",
    // c
    "acquired 1",
    "in_flight lease",
    "acquired 2",
    "in_flight lease",
    "complete(1) false",
    "complete(2) true",
    "completed new",
    // h
    "acquired 1",
    "acquired 2",
    // d, g
    "acquired 1",
    "acquired 1",
    "mismatch",
    "acquired 2",
    "acquired 2",
    "complete(1) false",
    "in_flight lease",
    "complete(2) true",
    "completed taken over",
];

/// Each request may be sent twice (after a dropped connection the store
/// sends it again, not knowing whether the first reached the server): the
/// second sending of a claim, a completion or a release changes nothing
/// the first did, and a claim sent again is not taken for another holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_sent_twice_means_what_it_meant_once() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let prefix = unique_prefix("resend");
    let store = RedisStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let lease = Duration::from_secs(10);
    let first = store
        .claim_marked(request("k", None, lease), "claim-one")
        .await
        .unwrap();
    let Claim::Acquired { fence } = first else {
        panic!("a fresh key is acquired, got {first:?}");
    };
    // The same claim again: still this holder's, with the same fence.
    assert_eq!(
        store
            .claim_marked(request("k", None, lease), "claim-one")
            .await
            .unwrap(),
        Claim::Acquired { fence }
    );
    // Another claim: in flight.
    assert!(matches!(
        store
            .claim_marked(request("k", None, lease), "claim-two")
            .await
            .unwrap(),
        Claim::InFlight { .. }
    ));
    // A completion sent twice is stored once; the second is reported as
    // not stored (as `MemoryStore` does), and changes nothing.
    let ttl = Duration::from_secs(60);
    assert!(store.complete("k", fence, b"receipt", ttl).await.unwrap());
    assert!(!store.complete("k", fence, b"other", ttl).await.unwrap());
    // The claim sent again after the completion does not reopen the key.
    assert_eq!(
        store
            .claim_marked(request("k", None, lease), "claim-one")
            .await
            .unwrap(),
        Claim::Completed {
            record: b"receipt".to_vec()
        }
    );
    // A release sent twice releases once; a later holder's key is not
    // released by the old fence.
    let Claim::Acquired { fence: f2 } = store
        .claim_marked(request("r", None, lease), "release-one")
        .await
        .unwrap()
    else {
        panic!("a fresh key is acquired");
    };
    store.release("r", f2).await.unwrap();
    store.release("r", f2).await.unwrap();
    let Claim::Acquired { fence: f3 } = store
        .claim_marked(request("r", None, lease), "release-two")
        .await
        .unwrap()
    else {
        panic!("a released key is acquired again");
    };
    assert!(f3 > f2);
    store.release("r", f2).await.unwrap();
    assert!(matches!(
        store
            .claim_marked(request("r", None, lease), "release-three")
            .await
            .unwrap(),
        Claim::InFlight { .. }
    ));
    assert!(!store.complete("r", f2, b"stale", ttl).await.unwrap());
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics_match_the_memory_store() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let prefix = unique_prefix("semantics");
    let redis = RedisStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let memory = MemoryStore::new();

    let (on_redis, on_memory) =
        tokio::join!(scenario(&redis, "redis"), scenario(&memory, "memory"));
    assert_eq!(on_memory, EXPECTED, "the reference itself");
    assert_eq!(on_redis, on_memory);

    // The lease left is the server's: just under the 10 s lease.
    let ten = Duration::from_secs(10);
    assert_eq!(
        redis.claim(request("e", None, ten)).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    let Claim::InFlight {
        lease_left: Some(left),
    } = redis.claim(request("e", None, ten)).await.unwrap()
    else {
        panic!("a second claim of e must be in flight");
    };
    assert!(
        left > Duration::from_secs(9) && left <= Duration::from_secs(10),
        "{left:?}"
    );

    // The layout: one hash per key at `{prefix}{key}:{key length}`, the raw
    // key only in its name.
    let a = hgetall(&url, &format!("{prefix}a:1")).await;
    assert_eq!(a["state"], b"done");
    assert_eq!(a["fence"], b"1");
    assert_eq!(a["fp"], b"");
    assert_eq!(a["record"], b"r1");
    let b = hgetall(&url, &format!("{prefix}b:1")).await;
    assert_eq!(b["fp"], b"1");
    assert_eq!(b["record"], b"");
    let c = hgetall(&url, &format!("{prefix}c:1")).await;
    assert_eq!(
        (&c["state"][..], &c["fence"][..]),
        (&b"done"[..], &b"2"[..])
    );
    let e = hgetall(&url, &format!("{prefix}e:1")).await;
    assert_eq!(e["state"], b"flight");
    assert!(!e.contains_key("record"));
    let lease_until: u64 = String::from_utf8_lossy(&e["lease_until"]).parse().unwrap();
    let server_now_ms = {
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut raw(&url).await)
            .await
            .unwrap();
        secs * 1000 + micros / 1000
    };
    assert!(lease_until > server_now_ms + 9_000 && lease_until <= server_now_ms + 10_000);

    // Retention: max(ttl, lease) while claimed, the ttl once completed.
    let short_ttl = ClaimRequest {
        key: "f",
        fingerprint: None,
        lease: Duration::from_secs(30),
        ttl: Duration::from_secs(5),
    };
    assert_eq!(
        redis.claim(short_ttl).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    let claimed = pttl(&url, &format!("{prefix}f:1")).await;
    assert!((29_000..=30_000).contains(&claimed), "{claimed}");
    assert!(redis
        .complete("f", 1, b"x", Duration::from_secs(5))
        .await
        .unwrap());
    let completed = pttl(&url, &format!("{prefix}f:1")).await;
    assert!((4_000..=5_000).contains(&completed), "{completed}");

    // Stores with different prefixes do not see each other's keys.
    let other = redis.clone().with_prefix(format!("{prefix}other:"));
    assert_eq!(
        other
            .claim(request("a", None, Duration::from_secs(1)))
            .await
            .unwrap(),
        Claim::Acquired { fence: 1 }
    );
    // Not even when a prefix and a key add up to another prefix and key
    // (`p:` + `tenant:order-1` and `p:tenant:` + `order-1`).
    let outer = redis.clone().with_prefix(format!("{prefix}p:"));
    let inner = redis.clone().with_prefix(format!("{prefix}p:tenant:"));
    assert_eq!(
        inner
            .claim(request("order-1", None, Duration::from_secs(10)))
            .await
            .unwrap(),
        Claim::Acquired { fence: 1 }
    );
    assert!(inner
        .complete("order-1", 1, b"inner", Duration::from_secs(10))
        .await
        .unwrap());
    assert_eq!(
        outer
            .claim(request("tenant:order-1", None, Duration::from_secs(10)))
            .await
            .unwrap(),
        Claim::Acquired { fence: 1 },
        "another store's record must not be replayed"
    );

    cleanup(&url, &prefix).await;
}

/// What a child process does, selected by `BUTTRESS_REDIS_CHILD_ROLE`.
#[test]
#[ignore = "a child process of the cross-process tests, not a test by itself"]
fn child_worker_redis() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(&role));
}

async fn child(role: &str) {
    let var = |name: &str| std::env::var(name).unwrap();
    let store = RedisStore::connect(&var(CHILD_URL))
        .await
        .unwrap()
        .with_prefix(var(CHILD_PREFIX));
    let key = var(CHILD_KEY);
    let effects_url = var(CHILD_EFFECTS);
    let operation = var(CHILD_OPERATION);
    let client = reqwest::Client::new();
    let policy = policy("effects");
    match role {
        "race" => {
            let calls: usize = var(CHILD_CALLS).parse().unwrap();
            // Ready: wait for the parent's go, so both processes start at once.
            println!("READY");
            tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()))
                .await
                .unwrap()
                .unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..calls {
                let (store, key, policy, client) =
                    (store.clone(), key.clone(), policy.clone(), client.clone());
                let (effects_url, operation) = (effects_url.clone(), operation.clone());
                tasks.spawn(async move {
                    policy
                        .run_idempotent(&store, key, &DedupOptions::new(), || {
                            let (client, effects_url, operation) =
                                (client.clone(), effects_url.clone(), operation.clone());
                            async move {
                                perform(&client, &effects_url, &operation)
                                    .await
                                    .map_err(CallError::from)
                            }
                        })
                        .await
                });
            }
            while let Some(outcome) = tasks.join_next().await {
                match outcome.unwrap() {
                    Ok(answer) => println!("RESULT ok {}", answer["effect"]),
                    Err(CallError::Buttress(Error::InFlight { .. })) => {
                        println!("RESULT in_flight")
                    }
                    Err(e) => println!("RESULT other {e}"),
                }
            }
        }
        "crash" => {
            // Perform the effect, say so, then hang until killed: the key
            // stays claimed by this process with fence 1.
            let options = DedupOptions::new().with_lease(Duration::from_secs(1));
            let _: Result<serde_json::Value, CallError> = policy
                .run_idempotent(&store, key, &options, || async {
                    let answer = perform(&client, &effects_url, &operation).await?;
                    println!("EFFECT {}", answer["effect"]);
                    std::future::pending::<()>().await;
                    Ok(answer)
                })
                .await;
            unreachable!("killed while hanging");
        }
        other => panic!("unknown child role {other}"),
    }
}

fn child_command(
    role: &str,
    url: &str,
    prefix: &str,
    key: &str,
    effects: &str,
    operation: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_worker_redis", "--ignored", "--nocapture"])
        .env(CHILD_ROLE, role)
        .env(CHILD_URL, url)
        .env(CHILD_PREFIX, prefix)
        .env(CHILD_KEY, key)
        .env(CHILD_EFFECTS, effects)
        .env(CHILD_OPERATION, operation)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_effect_for_100_concurrent_calls_from_two_processes() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let prefix = unique_prefix("race");
    let (key, operation) = ("order-1", "charge-order-1");
    // The effect takes 300 ms: every call overlaps the one that performs it.
    let server = EffectsServer::start(Duration::from_millis(300)).await;

    let mut children = Vec::new();
    for _ in 0..2 {
        let mut child = child_command("race", &url, &prefix, key, &server.url, operation)
            .env(CHILD_CALLS, "50")
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait until the child has connected and is ready.
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
                .await
                .expect("child ready within 10 s")
                .unwrap()
                .expect("child exited before it was ready");
            if line == "READY" {
                break;
            }
        }
        children.push((child, stdout));
    }
    // Go: both processes call at once.
    for (child, _) in &mut children {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"GO\n").await.unwrap();
    }

    let mut results = Vec::new();
    for (mut child, mut stdout) in children {
        let mut lines = Vec::new();
        while let Some(line) = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .expect("child output within 10 s")
            .unwrap()
        {
            if let Some(result) = line.strip_prefix("RESULT ") {
                lines.push(result.to_owned());
            }
        }
        assert!(child.wait().await.unwrap().success());
        assert_eq!(lines.len(), 50, "{lines:?}");
        results.extend(lines);
    }

    assert_eq!(server.count(operation), 1, "exactly one provider effect");
    assert_eq!(results.len(), 100);
    let ok = results.iter().filter(|r| r.starts_with("ok ")).count();
    let in_flight = results.iter().filter(|r| *r == "in_flight").count();
    assert!(ok >= 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.starts_with("ok "))
            .all(|r| r == "ok 1"),
        "{results:?}"
    );
    assert_eq!(ok + in_flight, 100, "{results:?}");
    eprintln!("two processes, 100 calls: {ok} ok (effect 1), {in_flight} in flight, 1 effect");

    // The stored result is that effect, for any later caller.
    let store = RedisStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let Claim::Completed { record } = store
        .claim(request(key, None, Duration::from_secs(1)))
        .await
        .unwrap()
    else {
        panic!("the key must be completed");
    };
    let stored: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(stored["effect"], 1);
    cleanup(&url, &prefix).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_is_taken_over_after_its_lease() {
    use std::os::unix::process::ExitStatusExt;

    let Some(url) = services::redis_url().await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let prefix = unique_prefix("crash");
    let (key, operation) = ("order-2", "charge-order-2");
    let server = EffectsServer::start(Duration::ZERO).await;
    let store = RedisStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());

    // The child claims the key (lease 1 s), performs the effect, and hangs.
    let mut child = child_command("crash", &url, &prefix, key, &server.url, operation)
        .spawn()
        .unwrap();
    let waited = Instant::now();
    while server.count(operation) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the child never called the provider"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(9), "killed with SIGKILL: {status:?}");

    // Still claimed by the dead child, until its lease ends.
    let Claim::InFlight {
        lease_left: Some(left),
    } = store
        .claim(request(key, None, Duration::from_secs(1)))
        .await
        .unwrap()
    else {
        panic!("the dead child's claim must still hold");
    };
    assert!(left <= Duration::from_secs(1));
    let options = DedupOptions::new().with_lease(Duration::from_secs(1));
    let policy = policy("effects");
    let client = reqwest::Client::new();
    let early: Result<serde_json::Value, CallError> = policy
        .run_idempotent(&store, key, &options, || async {
            Ok(perform(&client, &server.url, operation).await?)
        })
        .await;
    assert!(
        matches!(early, Err(CallError::Buttress(Error::InFlight { .. }))),
        "{early:?}"
    );
    tokio::time::sleep(left + Duration::from_millis(20)).await;

    // After the lease: this caller takes over (fence 2) and stores its
    // result. Without a provider-side key the resend is a second effect;
    // a real provider would dedupe it on the Idempotency-Key header.
    let taken_over: serde_json::Value = policy
        .run_idempotent(&store, key, &options, || async {
            Ok::<_, CallError>(perform(&client, &server.url, operation).await?)
        })
        .await
        .unwrap();
    assert_eq!(taken_over["effect"], 2);
    assert_eq!(
        server.count(operation),
        2,
        "one effect by the dead child, one by the takeover"
    );

    // The dead child's fence can no longer complete.
    assert!(!store
        .complete(key, 1, b"zombie", Duration::from_secs(60))
        .await
        .unwrap());

    // A third caller gets exactly the stored result, without a call.
    let calls = &AtomicU32::new(0);
    let replayed: serde_json::Value = policy
        .run_idempotent(&store, key, &options, || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<serde_json::Value, _>(CallError::Declined)
        })
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(replayed, taken_over);
    assert_eq!(
        store
            .claim(request(key, None, Duration::from_secs(1)))
            .await
            .unwrap(),
        Claim::Completed {
            record: serde_json::to_vec(&taken_over).unwrap()
        }
    );

    // Exactly one completion stored, by fence 2.
    let hash = hgetall(&url, &format!("{prefix}{key}:{}", key.len())).await;
    assert_eq!(hash["state"], b"done");
    assert_eq!(hash["fence"], b"2");
    assert_eq!(hash["record"], serde_json::to_vec(&taken_over).unwrap());
    assert_eq!(
        hash.keys()
            .filter(|field| field.as_str() == "record")
            .count(),
        1
    );
    cleanup(&url, &prefix).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward bytes to Redis.
    Forward,
    /// Keep connections open and answer nothing.
    Hang,
    /// Close every connection, accepted or new.
    Refuse,
}

/// A TCP proxy in front of Redis that can be made to hang or refuse.
struct Proxy {
    addr: String,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

async fn until(mode: &mut watch::Receiver<Mode>, done: impl Fn(Mode) -> bool) {
    loop {
        let now = *mode.borrow_and_update();
        if done(now) || mode.changed().await.is_err() {
            return;
        }
    }
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (mode, watching) = watch::channel(Mode::Forward);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut mode = watching.clone();
                let now = *mode.borrow_and_update();
                let target = target.clone();
                tokio::spawn(async move {
                    match now {
                        Mode::Forward => {
                            let Ok(mut upstream) = TcpStream::connect(&target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream) => {}
                                () = until(&mut mode, |m| m != Mode::Forward) => {
                                    // Stop forwarding; hold the sockets while hanging.
                                    until(&mut mode, |m| m != Mode::Hang).await;
                                }
                            }
                        }
                        Mode::Hang => until(&mut mode, |m| m != Mode::Hang).await,
                        Mode::Refuse => {}
                    }
                });
            }
        });
        Self { addr, mode, task }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set(Mode::Refuse);
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_hung_server_is_a_clear_store_error() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let _serial = SERIAL.lock().await;

    // Nothing listens on port 1: a clear error, quickly, without the password.
    let started = Instant::now();
    let e = RedisStore::connect("redis://:hunter2@127.0.0.1:1/")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    assert!(e.message().contains("127.0.0.1:1"), "{e}");
    assert!(e.message().contains("check that Redis is running"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let e = RedisStore::connect("not a url").await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    eprintln!(
        "connect to a closed port: {}",
        RedisStore::connect("redis://127.0.0.1:1/")
            .await
            .unwrap_err()
    );

    // A store that connected, through a proxy that then hangs and refuses.
    let target = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    let proxy = Proxy::start(target.clone()).await;
    let prefix = unique_prefix("outage");
    let store = RedisStore::connect(&url.replacen(&target, &proxy.addr, 1))
        .await
        .unwrap()
        .with_prefix(prefix.clone())
        .with_timeout(Duration::from_millis(300));
    let long = Duration::from_secs(10);
    assert_eq!(
        store.claim(request("warm", None, long)).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );

    let policy = policy("effects");
    let calls = &AtomicU32::new(0);
    let operation = || async move {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, CallError>(7u32)
    };

    // Hung: each request fails after the timeout.
    proxy.set(Mode::Hang);
    let started = Instant::now();
    let e = store.claim(request("hung", None, long)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    assert!(
        e.message()
            .contains("did not answer the claim request within 300ms"),
        "{e}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    eprintln!("hung server: {e}");

    // Fail closed by default: Error::Store, and the provider is not called.
    let closed = policy
        .run_idempotent(&store, "closed", &DedupOptions::new(), operation)
        .await;
    assert!(
        matches!(closed, Err(CallError::Buttress(Error::Store { .. }))),
        "{closed:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Proceed when asked: the provider is called and its result returned.
    let proceed = DedupOptions::new().with_on_store_error(OnStoreError::Proceed);
    let proceeded = policy
        .run_idempotent(&store, "proceed", &proceed, operation)
        .await;
    assert_eq!(proceeded.unwrap(), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Gone: connections closed, reconnections refused.
    proxy.set(Mode::Refuse);
    let e = store.claim(request("gone", None, long)).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    eprintln!("server gone: {e}");

    // Back: the store reconnects by itself.
    proxy.set(Mode::Forward);
    let started = Instant::now();
    let claim = loop {
        match store.claim(request("back", None, long)).await {
            Ok(claim) => break claim,
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Unavailable);
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "no reconnection: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(claim, Claim::Acquired { fence: 1 });

    // A key of the wrong type is unreadable store contents, not a panic.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}string:6"))
        .arg("x")
        .query_async(&mut raw(&url).await)
        .await
        .unwrap();
    let e = store
        .claim(request("string", None, long))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}odd:3"))
        .arg("state")
        .arg("sideways")
        .query_async(&mut raw(&url).await)
        .await
        .unwrap();
    let e = store.claim(request("odd", None, long)).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");
    assert!(
        !e.message().contains("odd"),
        "the key stays out of messages: {e}"
    );
    drop(proxy);
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_claim_complete_and_release() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let prefix = unique_prefix("round-trips");
    let store = RedisStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let policy = policy("effects");
    let options = DedupOptions::new().with_ttl(Duration::from_secs(60));

    // Cold: after SCRIPT FLUSH, the first claim, completion and release
    // each cost a NOSCRIPT EVALSHA and one EVAL; a claim after that is
    // one EVALSHA.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw(&url).await)
        .await
        .unwrap();
    let (sha0, eval0, trips0) = (
        command_calls(&url, "evalsha").await,
        command_calls(&url, "eval").await,
        store.round_trips(),
    );
    let first = policy
        .run_idempotent(&store, "cold", &options, || async {
            Ok::<_, CallError>(0u64)
        })
        .await;
    assert_eq!(first.unwrap(), 0);
    let failed = policy
        .run_idempotent(&store, "cold-failing", &options, || async {
            Err::<u64, _>(CallError::Declined)
        })
        .await;
    assert!(matches!(failed, Err(CallError::Declined)));
    let (sha1, eval1, trips1) = (
        command_calls(&url, "evalsha").await,
        command_calls(&url, "eval").await,
        store.round_trips(),
    );
    assert_eq!(trips1 - trips0, 7, "(1 + 1) + (1 + 1) + 1 + (1 + 1)");
    assert_eq!(
        (sha1 - sha0, eval1 - eval0),
        (4, 3),
        "3 EVALSHA misses and 1 hit, 3 EVAL"
    );

    // Warm: N successful calls with distinct keys, N failing calls
    // (claim + release), N replays (claim only).
    const N: u64 = 200;
    const FAILING: u64 = 20;
    const REPLAYS: u64 = 20;
    for i in 0..N {
        let value = policy
            .run_idempotent(&store, format!("ok-{i}"), &options, || async {
                Ok::<_, CallError>(i)
            })
            .await
            .unwrap();
        assert_eq!(value, i);
    }
    let (sha2, eval2, trips2) = (
        command_calls(&url, "evalsha").await,
        command_calls(&url, "eval").await,
        store.round_trips(),
    );
    assert_eq!(trips2 - trips1, 2 * N, "claim + complete per call");
    assert_eq!(sha2 - sha1, 2 * N, "the server counted the same");
    assert_eq!(eval2 - eval1, 0);

    for i in 0..FAILING {
        let failed = policy
            .run_idempotent(&store, format!("fail-{i}"), &options, || async {
                Err::<u64, _>(CallError::Declined)
            })
            .await;
        assert!(matches!(failed, Err(CallError::Declined)));
    }
    for i in 0..REPLAYS {
        let replayed = policy
            .run_idempotent(&store, format!("ok-{i}"), &options, || async {
                Err::<u64, _>(CallError::Declined)
            })
            .await;
        assert_eq!(replayed.unwrap(), i);
    }
    let (sha3, eval3, trips3) = (
        command_calls(&url, "evalsha").await,
        command_calls(&url, "eval").await,
        store.round_trips(),
    );
    assert_eq!(
        trips3 - trips2,
        2 * FAILING + REPLAYS,
        "claim + release; claim"
    );
    assert_eq!(
        sha3 - sha2,
        2 * FAILING + REPLAYS,
        "the server counted the same"
    );
    assert_eq!(eval3 - eval2, 0);
    eprintln!(
        "requests: cold ok + failing call {} (server: {} EVALSHA + {} EVAL); \
         {N} ok calls {} (server: {} EVALSHA + {} EVAL); \
         {FAILING} failing calls + {REPLAYS} replays {} (server: {} EVALSHA + {} EVAL)",
        trips1 - trips0,
        sha1 - sha0,
        eval1 - eval0,
        trips2 - trips1,
        sha2 - sha1,
        eval2 - eval1,
        trips3 - trips2,
        sha3 - sha2,
        eval3 - eval2,
    );
    cleanup(&url, &prefix).await;
}
