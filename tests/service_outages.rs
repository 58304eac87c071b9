//! The idempotency stores and the dead-letter sinks while their service
//! goes down under load, and comes back.
//!
//! Each test starts its own Redis (`--appendonly yes --appendfsync always`)
//! or PostgreSQL (`fsync=on`) on a spare port (`common/instances.rs`),
//! drives a steady stream of concurrent calls through a `Policy` (a few
//! hundred), stops the service mid-run — SIGKILL or `SHUTDOWN NOSAVE` for
//! Redis, `pg_ctl stop -m immediate` for PostgreSQL — and starts it again on
//! the same port and data. They check what the book promises:
//!
//! - while the service is down, every call answers within a bounded time
//!   (the store's timeout, plus the call's own deadline): an idempotent call
//!   fails closed with `Error::Store` without calling the provider, or,
//!   with `OnStoreError::Proceed`, calls it without deduplication; a call
//!   with a dead-letter sink returns its own error; nothing hangs, nothing
//!   panics;
//! - the store (or sink) reconnects by itself once the service is back;
//! - every completion and dead letter acknowledged before the stop is there
//!   after the restart, and no operation's side effect (counted by the
//!   provider, `common/effects.rs`) happened twice;
//! - a Redis without an append-only file (and without snapshots) loses
//!   every key on a restart, as the book says, so completed operations run
//!   again.
//!
//! Skipped with one line when `redis-server` or PostgreSQL's binaries are
//! missing (failing under `BUTTRESS_REQUIRE_SERVICES=1`).

#[path = "common/effects.rs"]
mod effects;
#[path = "common/instances.rs"]
mod instances;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress::dlq::{DeadLetter, DeadLetterSink, PostgresSink, RedisSink, Selection, SinkError};
use buttress::idempotency::{
    Claim, ClaimRequest, DedupOptions, OnStoreError, PostgresStore, RedisStore, StoreError,
};
use buttress::{resilient, Classify, Error, ErrorClass, IdempotencyStore, Policy, Registry};
use effects::{perform, EffectsServer};
use instances::{Persistence, PostgresInstance, RedisInstance};
use tokio::time::Instant;

/// Every request to the store or sink gives up after this long.
const STORE_TIMEOUT: Duration = Duration::from_millis(300);
/// The calls' deadline.
const DEADLINE: Duration = Duration::from_secs(2);
/// No call may take longer: a claim, the attempts within the deadline, a
/// completion, and a second of slack for a loaded machine.
const CALL_BOUND: Duration = Duration::from_millis(300 + 2000 + 300 + 1000);
/// A new operation starts this often while the stream runs.
const PACE: Duration = Duration::from_millis(5);
/// The stream never issues more operations than this.
const MAX_OPERATIONS: u64 = 900;
/// Acknowledged completions (or dead letters) before the stop.
const BEFORE_STOP: usize = 100;
/// Calls answered while the service is down.
const DURING_OUTAGE: usize = 20;
/// Acknowledged completions (or dead letters) after the restart.
const AFTER_RESTART: usize = 50;
/// How long any of those milestones may take.
const MILESTONE_WITHIN: Duration = Duration::from_secs(30);

/// The provider error of these tests.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Buttress(#[from] Error),
    #[error("provider call failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the mail server refused the message")]
    Refused,
}

impl Classify for CallError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Buttress(e) => e.class(),
            Self::Http(e) if e.is_connect() => ErrorClass::Transient,
            Self::Http(_) => ErrorClass::OutcomeUnknown,
            Self::Refused => ErrorClass::Permanent,
        }
    }
}

/// A service the test can stop and start again.
trait Service: Send {
    /// Stop it (the hard way).
    fn down(&mut self);
    /// Start it again on the same port and data; returns once it answers.
    fn up(&mut self);
    /// How it was stopped, for messages.
    fn how(&self) -> &'static str;
}

/// A Redis stopped by SIGKILL or by `SHUTDOWN NOSAVE`.
struct Redis {
    instance: RedisInstance,
    sigkill: bool,
}

impl Service for Redis {
    fn down(&mut self) {
        if self.sigkill {
            self.instance.kill();
        } else {
            self.instance.shutdown_nosave();
        }
    }
    fn up(&mut self) {
        self.instance.restart();
    }
    fn how(&self) -> &'static str {
        if self.sigkill {
            "Redis killed with SIGKILL"
        } else {
            "Redis stopped with SHUTDOWN NOSAVE"
        }
    }
}

/// A PostgreSQL stopped with `pg_ctl stop -m immediate`.
struct Postgres(PostgresInstance);

impl Service for Postgres {
    fn down(&mut self) {
        self.0.crash();
    }
    fn up(&mut self) {
        self.0.restart();
    }
    fn how(&self) -> &'static str {
        "PostgreSQL stopped with pg_ctl stop -m immediate"
    }
}

/// Wait until `done` holds, polling every 10 ms, at most
/// [`MILESTONE_WITHIN`]; fail saying what did not happen.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < MILESTONE_WITHIN,
            "{what}: not within {MILESTONE_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Run a blocking service operation without stalling the runtime's other
/// tasks (the stream keeps running on the other worker).
fn blocking(f: impl FnOnce()) {
    tokio::task::block_in_place(f);
}

/// Stop `service` (flagging `down`), take `acked` (what was acknowledged
/// before the stop), wait until [`DURING_OUTAGE`] calls were answered
/// while it is down, and start it again.
async fn outage<T>(
    service: &mut dyn Service,
    down: &AtomicBool,
    answered_during_outage: &AtomicU64,
    acked: impl FnOnce() -> T,
) -> T {
    blocking(|| service.down());
    down.store(true, Ordering::SeqCst);
    let acked = acked();
    until(
        &format!(
            "{DURING_OUTAGE} calls answered while {} (a call hangs?)",
            service.how()
        ),
        || answered_during_outage.load(Ordering::SeqCst) >= DURING_OUTAGE as u64,
    )
    .await;
    blocking(|| service.up());
    down.store(false, Ordering::SeqCst);
    acked
}

// ------------------------------------------------------------ idempotency

/// A store that remembers which completions it acknowledged (`complete`
/// answered `Ok(true)`) and with which record.
#[derive(Clone)]
struct Acked<S> {
    inner: S,
    acked: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl<S> Acked<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            acked: Arc::default(),
        }
    }
    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
    fn snapshot(&self) -> HashMap<String, Vec<u8>> {
        self.acked.lock().unwrap().clone()
    }
}

impl<S: IdempotencyStore> IdempotencyStore for Acked<S> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        self.inner.claim(request).await
    }
    async fn complete(
        &self,
        key: &str,
        fence: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let stored = self.inner.complete(key, fence, record, ttl).await;
        if matches!(stored, Ok(true)) {
            self.acked
                .lock()
                .unwrap()
                .insert(key.to_owned(), record.to_vec());
        }
        stored
    }
    async fn release(&self, key: &str, fence: u64) -> Result<(), StoreError> {
        self.inner.release(key, fence).await
    }
}

/// One finished call of the stream.
struct Finished {
    key: String,
    /// The service was down when the call started.
    during_outage: bool,
    took: Duration,
    answer: Result<serde_json::Value, CallError>,
}

fn options(on_store_error: OnStoreError) -> DedupOptions {
    DedupOptions::new()
        .with_lease(Duration::from_secs(3))
        .with_on_store_error(on_store_error)
}

/// One idempotent call: one side effect for `key` at the provider.
async fn call<S: IdempotencyStore>(
    policy: &Policy,
    store: &S,
    http: &reqwest::Client,
    provider: &str,
    key: &str,
    options: &DedupOptions,
) -> Result<serde_json::Value, CallError> {
    policy
        .run_idempotent(store, key.to_owned(), options, || async {
            Ok::<_, CallError>(perform(http, provider, key).await?)
        })
        .await
}

/// The whole scenario for one store: stream, stop, outage, restart,
/// reconnection, then the checks. `fresh` is a store without the
/// acknowledgement wrapper, for reading back after the restart.
async fn store_outage<S>(
    service: &mut dyn Service,
    store: S,
    fresh: S,
    on_store_error: OnStoreError,
) where
    S: IdempotencyStore + Clone + 'static,
{
    let provider = EffectsServer::start(Duration::from_millis(2)).await;
    let policy = Arc::new(
        Policy::builder("outage-store")
            .deadline(DEADLINE)
            .timeout(Duration::from_secs(1))
            .build_in(Box::leak(Box::new(Registry::new())))
            .unwrap(),
    );
    let store = Acked::new(store);
    let http = reqwest::Client::new();
    let down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let answered_during_outage = Arc::new(AtomicU64::new(0));
    let (finished_tx, mut finished_rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();

    let producer = {
        let (store, policy, down, stop, answered) = (
            store.clone(),
            Arc::clone(&policy),
            Arc::clone(&down),
            Arc::clone(&stop),
            Arc::clone(&answered_during_outage),
        );
        let url = provider.url.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut pace = tokio::time::interval(PACE);
            for n in 0..MAX_OPERATIONS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                pace.tick().await;
                let (store, policy, down, answered, http, url, finished) = (
                    store.clone(),
                    Arc::clone(&policy),
                    Arc::clone(&down),
                    Arc::clone(&answered),
                    http.clone(),
                    url.clone(),
                    finished_tx.clone(),
                );
                calls.push(tokio::spawn(async move {
                    let key = format!("op-{n}");
                    let during_outage = down.load(Ordering::SeqCst);
                    let started = Instant::now();
                    let answer = tokio::time::timeout(
                        CALL_BOUND,
                        call(&policy, &store, &http, &url, &key, &options(on_store_error)),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("{key} still running after {CALL_BOUND:?}: a hang"));
                    if during_outage && down.load(Ordering::SeqCst) {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = finished.send(Finished {
                        key,
                        during_outage,
                        took: started.elapsed(),
                        answer,
                    });
                }));
            }
            for call in calls {
                call.await.expect("a call panicked");
            }
        })
    };

    until(
        &format!("{BEFORE_STOP} completions acknowledged before the stop"),
        || store.count() >= BEFORE_STOP,
    )
    .await;
    // Every acknowledgement the store received came before the stop
    // returned: the server is gone.
    let acked_before_stop =
        outage(service, &down, &answered_during_outage, || store.snapshot()).await;
    let restarted_at = Instant::now();
    until(
        &format!(
            "{AFTER_RESTART} more completions acknowledged after the restart (the store does not reconnect by itself?)"
        ),
        || store.count() >= acked_before_stop.len() + AFTER_RESTART,
    )
    .await;
    let reconnected_within = restarted_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    producer.await.expect("the stream panicked");

    let mut finished = Vec::new();
    while let Ok(call) = finished_rx.try_recv() {
        finished.push(call);
    }
    let slowest = finished.iter().map(|c| c.took).max().unwrap_or_default();
    assert!(slowest < CALL_BOUND, "a call took {slowest:?}");

    // While down: fail closed with a clear store error (the provider not
    // called), or proceed without deduplication.
    let mut failed_closed = Vec::new();
    let mut proceeded = 0;
    for call in &finished {
        match (&call.answer, on_store_error) {
            (Ok(_), OnStoreError::Proceed) if call.during_outage => proceeded += 1,
            (Ok(_), _) => {}
            (Err(CallError::Buttress(Error::Store { message, .. })), OnStoreError::FailClosed) => {
                assert!(
                    message.contains("store unavailable"),
                    "{}: an unclear store error: {message}",
                    call.key
                );
                assert!(
                    !message.contains(&call.key),
                    "{}: the key in clear in {message}",
                    call.key
                );
                failed_closed.push(call.key.clone());
            }
            (Err(e), _) => panic!(
                "{} ({}): unexpected answer {e}",
                call.key,
                if call.during_outage {
                    "during the outage"
                } else {
                    "service up"
                }
            ),
        }
    }
    match on_store_error {
        OnStoreError::FailClosed => assert!(
            failed_closed.len() >= DURING_OUTAGE,
            "only {} calls failed closed while {}",
            failed_closed.len(),
            service.how()
        ),
        OnStoreError::Proceed => assert!(
            proceeded >= DURING_OUTAGE,
            "only {proceeded} calls proceeded while {}",
            service.how()
        ),
    }
    for key in &failed_closed {
        assert_eq!(
            provider.count(key),
            0,
            "{key} failed closed but the provider was called"
        );
    }
    for call in &finished {
        assert!(
            provider.count(&call.key) <= 1,
            "{}: {} side effects in one call",
            call.key,
            provider.count(&call.key)
        );
    }

    // Nothing acknowledged was lost: each completion is read back as it was
    // stored, through a store that did not take part in the run.
    let request = |key| ClaimRequest {
        key,
        fingerprint: None,
        lease: Duration::from_secs(3),
        ttl: Duration::from_secs(3600),
    };
    // The fresh store sat idle through the stop: its connection is dead.
    // Its first request finds out, and is sent again on the new connection
    // (every request of the store means the same sent twice): it succeeds.
    if let Err(e) = fresh.claim(request("reconnect-probe")).await {
        panic!(
            "an idle store failed its first request after {}: {e}",
            service.how()
        );
    }
    for (key, record) in &acked_before_stop {
        match fresh.claim(request(key)).await {
            Ok(Claim::Completed { record: stored }) => {
                assert_eq!(&stored, record, "{key}: another record after the restart")
            }
            other => panic!(
                "{key}: acknowledged before {}, but after the restart the store answers {other:?}",
                service.how()
            ),
        }
    }

    // And no effect happens twice: a repeat of each acknowledged operation
    // replays its result; a repeat of each call that failed closed runs once.
    let again = options(OnStoreError::FailClosed).with_wait(Duration::from_secs(5));
    let acked_all = store.snapshot();
    for key in acked_all.keys().chain(&failed_closed) {
        let first = finished
            .iter()
            .find(|c| &c.key == key)
            .map(|c| c.answer.as_ref().ok().cloned());
        let replay = call(&policy, &store, &http, &provider.url, key, &again)
            .await
            .unwrap_or_else(|e| panic!("{key}: the repeat failed: {e}"));
        assert_eq!(
            provider.count(key),
            1,
            "{key}: {} side effects after a repeat",
            provider.count(key)
        );
        if let Some(Some(first)) = first {
            assert_eq!(replay, first, "{key}: the replay differs from the result");
        }
    }
    let returned_not_stored = finished
        .iter()
        .filter(|c| c.answer.is_ok() && !acked_all.contains_key(&c.key))
        .count();
    eprintln!(
        "{}: {} calls, {} completions acknowledged before the stop (all kept), {} failed closed, {proceeded} proceeded, {returned_not_stored} returned but not stored, slowest call {slowest:?}, reconnected within {reconnected_within:?} (an idle store's first request succeeded)",
        service.how(),
        finished.len(),
        acked_before_stop.len(),
        failed_closed.len(),
    );
}

/// A `RedisStore` on its own Redis (append-only, fsync always) taken down
/// under load: with SIGKILL, or with `SHUTDOWN NOSAVE`.
async fn redis_store_outage(sigkill: bool, on_store_error: OnStoreError) {
    let Some(instance) = RedisInstance::start(Persistence::AppendOnlyAlways) else {
        return;
    };
    let url = instance.url();
    let connect = || async {
        RedisStore::connect(&url)
            .await
            .unwrap()
            .with_timeout(STORE_TIMEOUT)
    };
    let (store, fresh) = (connect().await, connect().await);
    let mut redis = Redis { instance, sigkill };
    store_outage(&mut redis, store, fresh, on_store_error).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_killed_under_load_fails_closed_and_keeps_every_completion() {
    redis_store_outage(true, OnStoreError::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_shut_down_under_load_proceeds_when_asked() {
    redis_store_outage(false, OnStoreError::Proceed).await;
}

/// A `PostgresStore` on its own PostgreSQL (fsync on), crashed under load
/// (`pg_ctl stop -m immediate`).
async fn postgres_store_outage(on_store_error: OnStoreError) {
    let Some(instance) = PostgresInstance::start() else {
        return;
    };
    let url = instance.url();
    let connect = || async {
        PostgresStore::connect(&url)
            .await
            .unwrap()
            .with_timeout(STORE_TIMEOUT)
    };
    let (store, fresh) = (connect().await, connect().await);
    store_outage(&mut Postgres(instance), store, fresh, on_store_error).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_crashed_under_load_fails_closed_and_keeps_every_completion() {
    postgres_store_outage(OnStoreError::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_crashed_under_load_proceeds_when_asked() {
    postgres_store_outage(OnStoreError::Proceed).await;
}

/// What the book says a Redis without an append-only file loses on a
/// restart: everything. Every completion is gone, every key starts again at
/// fence 1, and a repeat of a completed operation calls the provider again.
/// The same run with the append-only file keeps every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_without_an_append_only_file_forgets_every_key_on_restart() {
    for persistence in [Persistence::None, Persistence::AppendOnlyAlways] {
        let Some(mut instance) = RedisInstance::start(persistence) else {
            return;
        };
        let store = RedisStore::connect(&instance.url())
            .await
            .unwrap()
            .with_timeout(STORE_TIMEOUT);
        let provider = EffectsServer::start(Duration::ZERO).await;
        let policy = Policy::builder("outage-no-aof")
            .deadline(DEADLINE)
            .timeout(Duration::from_secs(1))
            .build_in(Box::leak(Box::new(Registry::new())))
            .unwrap();
        let http = reqwest::Client::new();
        let opts = options(OnStoreError::FailClosed);
        let keys: Vec<String> = (0..100).map(|n| format!("order-{n}")).collect();
        for key in &keys {
            call(&policy, &store, &http, &provider.url, key, &opts)
                .await
                .unwrap();
        }
        assert_eq!(instance.dbsize(), 100, "{persistence:?}: one hash per key");

        blocking(|| {
            instance.shutdown_nosave();
            instance.restart();
        });
        let kept = instance.dbsize();
        // The store reconnects by itself.
        let mut repeats = Vec::new();
        for key in &keys {
            let started = Instant::now();
            let answer = loop {
                match call(&policy, &store, &http, &provider.url, key, &opts).await {
                    Err(CallError::Buttress(Error::Store { .. }))
                        if started.elapsed() < MILESTONE_WITHIN =>
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    answer => break answer,
                }
            };
            repeats.push(answer.unwrap_or_else(|e| panic!("{key}: {e}"))["effect"].clone());
        }
        let effects: HashSet<u32> = keys.iter().map(|k| provider.count(k)).collect();
        match persistence {
            Persistence::None => {
                assert_eq!(kept, 0, "a Redis without persistence kept {kept} keys");
                assert_eq!(
                    effects,
                    HashSet::from([2]),
                    "every completed operation runs again"
                );
                assert!(repeats.iter().all(|effect| effect == 2));
            }
            Persistence::AppendOnlyAlways => {
                assert_eq!(kept, 100, "the append-only file kept {kept} of 100 keys");
                assert_eq!(effects, HashSet::from([1]), "every repeat is replayed");
                assert!(repeats.iter().all(|effect| effect == 1));
            }
        }
    }
}

// ------------------------------------------------------------ dead letters

/// A sink that remembers which dead letters it acknowledged.
#[derive(Clone)]
struct AckedSink<S> {
    inner: S,
    acked: Arc<Mutex<HashSet<String>>>,
}

impl<S: DeadLetterSink> DeadLetterSink for AckedSink<S> {
    async fn push(&self, entry: &DeadLetter) -> Result<(), SinkError> {
        let pushed = self.inner.push(entry).await;
        if pushed.is_ok() {
            self.acked.lock().unwrap().insert(entry.id.clone());
        }
        pushed
    }
    async fn list(&self, selection: Selection) -> Result<Vec<DeadLetter>, SinkError> {
        self.inner.list(selection).await
    }
    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, SinkError> {
        self.inner.get(id).await
    }
    async fn update(&self, entry: &DeadLetter) -> Result<bool, SinkError> {
        self.inner.update(entry).await
    }
    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        self.inner.remove(id).await
    }
}

/// A mailer whose server refuses every message: each call is a dead letter.
struct Mailer<S> {
    sink: AckedSink<S>,
}

impl<S: DeadLetterSink + 'static> Mailer<S> {
    #[resilient(provider = "outage-mailer", retry = off, timeout = "1s", deadline = "2s", dlq = &self.sink)]
    async fn send(&self, message: u64) -> Result<u64, CallError> {
        let _ = message;
        Err(CallError::Refused)
    }
}

async fn sink_outage<S>(service: &mut dyn Service, sink: S, idle: S)
where
    S: DeadLetterSink + Clone + 'static,
{
    let mailer = Arc::new(Mailer {
        sink: AckedSink {
            inner: sink.clone(),
            acked: Arc::default(),
        },
    });
    let acked = || mailer.sink.acked.lock().unwrap().len();
    let down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let answered_during_outage = Arc::new(AtomicU64::new(0));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let producer = {
        let (mailer, down, stop, answered, slowest) = (
            Arc::clone(&mailer),
            Arc::clone(&down),
            Arc::clone(&stop),
            Arc::clone(&answered_during_outage),
            Arc::clone(&slowest),
        );
        tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut pace = tokio::time::interval(PACE);
            for n in 0..MAX_OPERATIONS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                pace.tick().await;
                let (mailer, down, answered, slowest) = (
                    Arc::clone(&mailer),
                    Arc::clone(&down),
                    Arc::clone(&answered),
                    Arc::clone(&slowest),
                );
                calls.push(tokio::spawn(async move {
                    let during_outage = down.load(Ordering::SeqCst);
                    let started = Instant::now();
                    let answer = tokio::time::timeout(CALL_BOUND, mailer.send(n))
                        .await
                        .unwrap_or_else(|_| {
                            panic!("message {n} still running after {CALL_BOUND:?}: a hang")
                        });
                    assert!(
                        matches!(answer, Err(CallError::Refused)),
                        "message {n}: the call's own error expected, got {answer:?}"
                    );
                    let took = started.elapsed();
                    let mut slowest = slowest.lock().unwrap();
                    *slowest = (*slowest).max(took);
                    if during_outage && down.load(Ordering::SeqCst) {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            let issued = calls.len();
            for call in calls {
                call.await.expect("a call panicked");
            }
            issued
        })
    };

    until(
        &format!("{BEFORE_STOP} dead letters acknowledged before the stop"),
        || acked() >= BEFORE_STOP,
    )
    .await;
    let acked_before_stop = outage(service, &down, &answered_during_outage, || {
        mailer.sink.acked.lock().unwrap().clone()
    })
    .await;
    until(
        &format!(
            "{AFTER_RESTART} more dead letters acknowledged after the restart (the sink does not reconnect by itself?)"
        ),
        || acked() >= acked_before_stop.len() + AFTER_RESTART,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let issued = producer.await.expect("the stream panicked");
    let slowest = *slowest.lock().unwrap();
    assert!(slowest < CALL_BOUND, "a call took {slowest:?}");

    let stored = sink.list(Selection::All).await.unwrap();
    let ids: HashSet<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "an entry stored twice");
    let mut messages = HashSet::new();
    for entry in &stored {
        let message = entry.arguments["message"].as_u64().unwrap();
        assert!(
            messages.insert(message),
            "message {message} has two dead letters"
        );
    }
    let lost: Vec<&String> = acked_before_stop
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} dead letters acknowledged before {} are gone after the restart: {lost:?}",
        lost.len(),
        acked_before_stop.len(),
        service.how()
    );
    let acked_all = mailer.sink.acked.lock().unwrap().clone();
    assert!(
        acked_all.iter().all(|id| ids.contains(id.as_str())),
        "an acknowledged dead letter is missing"
    );
    // A sink that sat idle through the stop pushes at once after the
    // restart: its first push finds the connection dead and is sent again
    // on the new one (a push is keyed by the entry's id).
    let probe = DeadLetter::new(
        "outage-mailer",
        "probe",
        serde_json::json!({}),
        &CallError::Refused,
    );
    if let Err(e) = idle.push(&probe).await {
        panic!(
            "an idle sink failed its first push after {}: {e}",
            service.how()
        );
    }
    assert!(
        sink.get(&probe.id).await.unwrap().is_some(),
        "the probe pushed after the restart is not in the sink"
    );
    eprintln!(
        "{}: {issued} failed calls, {} dead letters acknowledged before the stop (all kept), {} stored in all, {} logged instead (sink down), slowest call {slowest:?}, an idle sink's first push succeeded",
        service.how(),
        acked_before_stop.len(),
        stored.len(),
        issued - stored.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sink_killed_under_load_keeps_every_dead_letter() {
    let Some(instance) = RedisInstance::start(Persistence::AppendOnlyAlways) else {
        return;
    };
    let connect = || async {
        RedisSink::connect(&instance.url())
            .await
            .unwrap()
            .with_timeout(STORE_TIMEOUT)
    };
    let (sink, idle) = (connect().await, connect().await);
    let mut redis = Redis {
        instance,
        sigkill: true,
    };
    sink_outage(&mut redis, sink, idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink_crashed_under_load_keeps_every_dead_letter() {
    let Some(instance) = PostgresInstance::start() else {
        return;
    };
    let connect = || async {
        PostgresSink::connect(&instance.url())
            .await
            .unwrap()
            .with_timeout(STORE_TIMEOUT)
    };
    let (sink, idle) = (connect().await, connect().await);
    sink_outage(&mut Postgres(instance), sink, idle).await;
}
