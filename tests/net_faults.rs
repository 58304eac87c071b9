//! Real network faults between a buttress client and a real HTTP server.
//!
//! Two kinds of network:
//!
//! - A fault proxy on 127.0.0.1 ([`fault_proxy`]) in front of an HTTP
//!   provider the test starts (axum, counting side effects per
//!   idempotency key): added latency, resets, half-open connections and
//!   answers cut mid-body, switched at run time. Needs nothing but the
//!   loopback.
//! - A network namespace joined by a veth pair ([`netns`]): the link goes
//!   down (partition) and comes back, or gets a bandwidth limit (`tc`
//!   tbf). Needs root and `ip netns`; otherwise prints `skipped: …` and
//!   passes, unless `BUTTRESS_REQUIRE_SERVICES=1`.

#[path = "common/api_error.rs"]
mod api_error;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/instances.rs"]
mod instances;
#[path = "common/netns.rs"]
mod netns;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_error::ApiError;
use buttress::reqwest::{error_for_status, with_current_idempotency_key};
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{Classify, ErrorClass, Policy, Registry};
use fault_proxy::{Fault, FaultProxy};
use netns::Netns;

fn skip_or_fail(why: &str) {
    if std::env::var("BUTTRESS_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("required (BUTTRESS_REQUIRE_SERVICES=1): {why}");
    }
    println!("skipped: {why}");
}

/// The server process inside the namespace, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Redis (no persistence) inside `ns` on `port`, and a `RedisStore` on
/// it with `timeout`, once it answers; `Err` when `redis-server` cannot
/// run here.
async fn redis_store_in(
    ns: &Netns,
    port: u16,
    timeout: Duration,
) -> Result<(Server, buttress::idempotency::RedisStore), String> {
    let child = ns
        .command("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            &ns.ns_addr,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server cannot run: {e}"))?;
    let server = Server(child);
    let url = format!("redis://{}:{port}/", ns.ns_addr);
    let up = Instant::now();
    loop {
        if let Ok(store) = buttress::idempotency::RedisStore::connect(&url).await {
            return Ok((server, store.with_timeout(timeout)));
        }
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "redis never answered at {url}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(policy: &Policy, client: &reqwest::Client, url: &str) -> Result<u16, ApiError> {
    policy
        .run(|| async {
            let r = client.get(url).send().await?;
            Ok::<_, ApiError>(r.status().as_u16())
        })
        .await
}

#[tokio::test]
async fn a_partition_fails_calls_within_their_deadline_and_heal_restores_them() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let port = 18_000 + (std::process::id() % 1000) as u16;
    let child = ns
        .command("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            &ns.ns_addr,
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let _server = match child {
        Ok(c) => Server(c),
        Err(e) => return skip_or_fail(&format!("python3 cannot run in the namespace: {e}")),
    };
    let url = format!("http://{}:{port}/", ns.ns_addr);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let policy = Policy::builder("netfault-partition")
        .timeout(Duration::from_millis(150))
        .deadline(Duration::from_millis(400))
        .idempotent(true)
        .no_breaker()
        .build_in(registry)
        .unwrap();

    // Bounded wait for the server to answer through the veth.
    let up = Instant::now();
    loop {
        if let Ok(200) = get(&policy, &client, &url).await {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "the server in namespace {} never answered at {url}",
            ns.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    ns.partition();
    for _ in 0..3 {
        let started = Instant::now();
        let err = get(&policy, &client, &url)
            .await
            .expect_err("a call across a downed link must fail");
        let took = started.elapsed();
        eprintln!("partitioned call failed after {took:?}: {err}");
        assert!(
            took < Duration::from_millis(400 + 100),
            "a call outlived its 400 ms deadline by more than 100 ms: {took:?} ({err})"
        );
        let named = match &err {
            ApiError::Resilience(e) => matches!(e.reason(), "timeout" | "deadline"),
            ApiError::Http(e) => e.is_connect() || e.is_timeout(),
            ApiError::Status(_) => false,
        };
        assert!(
            named,
            "a partition must surface as a timeout, deadline or connect error, got {err:?}"
        );
    }

    ns.heal();
    let healed = Instant::now();
    loop {
        if let Ok(200) = get(&policy, &client, &url).await {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "calls did not succeed again within 5 s of heal()"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_partitioned_redis_store_fails_within_its_timeout_and_reconnects_after_heal() {
    use buttress::idempotency::ClaimRequest;
    use buttress::IdempotencyStore;
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let port = 19_000 + (std::process::id() % 1000) as u16;
    let (_server, store) = match redis_store_in(&ns, port, Duration::from_millis(200)).await {
        Ok(up) => up,
        Err(why) => return skip_or_fail(&why),
    };
    let claim = |key: &'static str| ClaimRequest {
        key,
        fingerprint: None,
        lease: Duration::from_secs(5),
        ttl: Duration::from_secs(60),
    };
    store
        .claim(claim("before"))
        .await
        .expect("claim before the partition");
    ns.partition();
    let started = Instant::now();
    let err = store
        .claim(claim("during"))
        .await
        .expect_err("a claim across a downed link must fail");
    let took = started.elapsed();
    eprintln!("partitioned claim failed after {took:?}: {err}");
    assert!(
        took < Duration::from_millis(200 + 150),
        "a store call outlived its 200 ms timeout by more than 150 ms: {took:?} ({err})"
    );
    ns.heal();
    let healed = Instant::now();
    loop {
        if store.claim(claim("after")).await.is_ok() {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "the store did not reconnect within 5 s of heal()"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Fixtures for the fault-proxy tests.
// ---------------------------------------------------------------------------

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fresh private registry, leaked so a policy can borrow it.
fn registry() -> &'static Registry {
    Box::leak(Box::new(Registry::new()))
}

/// A client with no idle pool: one connection per request, so each
/// attempt meets the fault the proxy holds when it connects.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("reqwest client")
}

/// `attempts` attempts 20 ms apart (no jitter, no retry budget), marked
/// idempotent, no breaker.
fn retrying(
    provider: &'static str,
    timeout: Duration,
    deadline: Duration,
    attempts: u32,
) -> Policy {
    Policy::builder(provider)
        .timeout(timeout)
        .deadline(deadline)
        .retry(constant_retry(attempts))
        .idempotent(true)
        .no_breaker()
        .build_in(registry())
        .expect("valid policy")
}

fn constant_retry(attempts: u32) -> RetryConfig {
    RetryConfig::new()
        .with_max_attempts(attempts)
        .with_backoff(Backoff::constant(ms(20)))
        .with_jitter(Jitter::None)
        .with_budget(None)
}

/// How large the padding of every receipt is, so an answer spans many
/// TCP segments and can be cut in the middle of its body.
const PAD: usize = 16 * 1024;

/// What the provider answers: the key it acted on, how many effects that
/// key has had (1 when it honours the key), and padding.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Receipt {
    key: String,
    effects: u32,
    pad: String,
}

/// What the provider saw for one idempotency key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct KeyLog {
    /// Requests that reached the handler.
    requests: u32,
    /// Side effects applied (once per key; once per request without one).
    effects: u32,
}

#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<HashMap<String, KeyLog>>>);

/// A real HTTP provider on 127.0.0.1: `POST /charge` applies a side effect
/// once per `Idempotency-Key` (a resend with the same key replays the
/// receipt) and counts every request it handles.
struct HttpProvider {
    addr: SocketAddr,
    ledger: Ledger,
    server: tokio::task::JoinHandle<()>,
}

impl HttpProvider {
    async fn start() -> Self {
        let ledger = Ledger::default();
        let app = axum::Router::new()
            .route("/charge", axum::routing::post(charge_handler))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the provider on 127.0.0.1");
        let addr = listener.local_addr().expect("provider address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            ledger,
            server,
        }
    }

    /// What the provider saw for `key` (zeros if it never saw it).
    fn log(&self, key: &str) -> KeyLog {
        self.ledger
            .0
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Requests handled, over every key.
    fn requests(&self) -> u32 {
        self.ledger
            .0
            .lock()
            .unwrap()
            .values()
            .map(|l| l.requests)
            .sum()
    }
}

impl Drop for HttpProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn charge_handler(
    axum::extract::State(ledger): axum::extract::State<Ledger>,
    headers: axum::http::HeaderMap,
) -> axum::Json<Receipt> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let effects = {
        let mut ledger = ledger.0.lock().unwrap();
        let log = ledger.entry(key.clone()).or_default();
        log.requests += 1;
        if key.is_empty() || log.effects == 0 {
            log.effects += 1;
        }
        log.effects
    };
    axum::Json(Receipt {
        key,
        effects,
        pad: "x".repeat(PAD),
    })
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
enum Ended {
    /// Dropped before it finished: cut by its timeout or the deadline.
    Cut,
    /// A parsed receipt.
    Ok,
    /// An error of `class`; `what` is the kind of reqwest error.
    Failed {
        class: ErrorClass,
        what: &'static str,
        message: String,
    },
}

/// `a` failed (not cut, not a success) with `class`, as one of the reqwest
/// error kinds `kinds`; `subject` names it in messages.
fn assert_failed(a: &Attempt, class: ErrorClass, kinds: &[&str], subject: &str) {
    let Ended::Failed {
        class: got,
        what,
        message,
    } = &a.ended
    else {
        panic!("{subject}: the attempt must fail (not be cut, not succeed): {a:?}");
    };
    assert_eq!(*got, class, "{subject}: {message}");
    assert!(
        kinds.contains(what),
        "{subject}: one of {kinds:?} errors, got {what}: {message}"
    );
}

#[derive(Debug, Clone)]
struct Attempt {
    key: Option<Arc<str>>,
    took: Duration,
    ended: Ended,
}

/// Every attempt of a call, recorded when its body ends or is dropped.
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<Attempt>>>);

impl Attempts {
    /// Start recording an attempt (inside the body, so it reads the key).
    fn begin(&self) -> AttemptGuard {
        AttemptGuard {
            log: self.clone(),
            key: buttress::idempotency_key(),
            started: Instant::now(),
            ended: Ended::Cut,
        }
    }

    fn take(&self) -> Vec<Attempt> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct AttemptGuard {
    log: Attempts,
    key: Option<Arc<str>>,
    started: Instant,
    ended: Ended,
}

impl AttemptGuard {
    fn finish<T>(&mut self, result: &Result<T, ApiError>) {
        self.ended = match result {
            Ok(_) => Ended::Ok,
            Err(e) => Ended::Failed {
                class: e.class(),
                what: what(e),
                message: chain(e),
            },
        };
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        let attempt = Attempt {
            key: self.key.take(),
            took: self.started.elapsed(),
            ended: std::mem::replace(&mut self.ended, Ended::Cut),
        };
        self.log.0.lock().unwrap().push(attempt);
    }
}

/// The kind of a reqwest error, for assertions.
fn what(e: &ApiError) -> &'static str {
    match e {
        ApiError::Status(_) => "status",
        ApiError::Resilience(_) => "buttress",
        ApiError::Http(e) if e.is_connect() => "connect",
        ApiError::Http(e) if e.is_timeout() => "timeout",
        ApiError::Http(e) if e.is_decode() => "decode",
        ApiError::Http(e) if e.is_body() => "body",
        ApiError::Http(e) if e.is_request() => "request",
        ApiError::Http(_) => "other",
    }
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// One attempt: `POST /charge` with the call's idempotency key, a non-2xx
/// status as an error, the body parsed as a [`Receipt`].
async fn charge(
    client: &reqwest::Client,
    url: &str,
    attempts: &Attempts,
) -> Result<Receipt, ApiError> {
    let mut attempt = attempts.begin();
    let result = async {
        let request = with_current_idempotency_key(client.post(url));
        let response = error_for_status(request.send().await?).await?;
        Ok(response.json::<Receipt>().await?)
    }
    .await;
    attempt.finish(&result);
    result
}

fn endings(attempts: &[Attempt]) -> Vec<String> {
    attempts
        .iter()
        .map(|a| match &a.ended {
            Ended::Cut => "cut".to_owned(),
            Ended::Ok => "ok".to_owned(),
            Ended::Failed { what, .. } => format!("failed({what})"),
        })
        .collect()
}

/// The one key every attempt of a call carried.
fn the_key(attempts: &[Attempt]) -> Arc<str> {
    let key = attempts[0]
        .key
        .clone()
        .expect("an idempotent call has an idempotency key");
    assert!(
        attempts.iter().all(|a| a.key.as_deref() == Some(&*key)),
        "every attempt of a call carries the same key: {attempts:?}"
    );
    key
}

// ---------------------------------------------------------------------------
// Fault-proxy tests.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn latency_above_the_attempt_timeout_cuts_the_attempt_and_the_retry_succeeds_once_it_is_gone()
{
    let provider = HttpProvider::start().await;
    let proxy = FaultProxy::start(provider.addr).await.expect("proxy");
    let url = proxy.url("/charge");
    let client = fresh_client();
    let timeout = ms(150);
    let policy = retrying("netfault-latency", timeout, ms(3000), 5);

    for call in 0..2 {
        // The answers on the next two connections come 400 ms late (the
        // requests go through at once, so the provider acts); then the
        // latency is gone.
        proxy.set_next(2, Fault::Latency(ms(400)));
        let log = Attempts::default();
        let started = Instant::now();
        let receipt = policy
            .run(|| charge(&client, &url, &log))
            .await
            .unwrap_or_else(|e| panic!("call {call}: the third attempt must succeed: {e}"));
        let took = started.elapsed();
        let attempts = log.take();
        eprintln!("call {call} took {took:?}: {attempts:?}");
        assert_eq!(
            endings(&attempts),
            ["cut", "cut", "ok"],
            "call {call}: two attempts cut by their timeout, then a success"
        );
        for a in &attempts[..2] {
            assert!(
                a.took >= timeout - ms(20) && a.took < timeout + ms(150),
                "call {call}: a slow attempt is cut at its {timeout:?} timeout, not {:?}",
                a.took
            );
        }
        assert!(
            took >= 2 * timeout && took < ms(700),
            "call {call}: two cut attempts and a fast one take about 2 x 150 ms + 2 x 20 ms, not {took:?}"
        );
        let key = the_key(&attempts);
        assert_eq!(receipt.key, &*key, "the receipt is for the call's key");
        assert_eq!(receipt.effects, 1);
        assert_eq!(receipt.pad.len(), PAD);
        assert_eq!(
            provider.log(&key),
            KeyLog {
                requests: 3,
                effects: 1
            },
            "call {call}: the provider got all three attempts under one key and acted once"
        );
    }
    let faults: Vec<Fault> = proxy.connections().iter().map(|c| c.fault).collect();
    let slow = Fault::Latency(ms(400));
    assert_eq!(
        faults,
        [slow, slow, Fault::Pass, slow, slow, Fault::Pass],
        "one connection per attempt"
    );
}

#[tokio::test]
async fn a_reset_connection_is_retried_when_idempotent_and_the_call_succeeds_once_resets_stop() {
    let provider = HttpProvider::start().await;
    let proxy = FaultProxy::start(provider.addr).await.expect("proxy");
    let url = proxy.url("/charge");
    let client = fresh_client();
    let policy = retrying("netfault-reset", ms(300), ms(3000), 5);

    // The next two connections are reset as soon as they are accepted;
    // the third goes through.
    proxy.set_next(2, Fault::Reset);
    let log = Attempts::default();
    let started = Instant::now();
    let receipt = policy
        .run(|| charge(&client, &url, &log))
        .await
        .unwrap_or_else(|e| panic!("the third attempt must succeed: {e}"));
    let took = started.elapsed();
    let attempts = log.take();
    eprintln!("reset call took {took:?}: {attempts:?}");
    assert_eq!(
        endings(&attempts).len(),
        3,
        "two resets, then a success: {attempts:?}"
    );
    for a in &attempts[..2] {
        // The connection was up and the request may have left: reqwest
        // cannot tell whether the provider got it.
        assert_failed(
            a,
            ErrorClass::OutcomeUnknown,
            &["request", "body"],
            "a reset after connecting",
        );
        assert!(
            a.took < ms(250),
            "a reset fails the attempt at once, before its 300 ms timeout: {:?}",
            a.took
        );
    }
    assert_eq!(attempts[2].ended, Ended::Ok);
    let key = the_key(&attempts);
    assert_eq!(receipt.key, &*key);
    assert_eq!(
        provider.log(&key),
        KeyLog {
            requests: 1,
            effects: 1
        },
        "the reset connections never reached the provider"
    );
    assert_eq!(proxy.accepted(), 3);

    // Not idempotent: the same reset is not retried, since the provider
    // may have acted.
    let once = Policy::builder("netfault-reset-once")
        .timeout(ms(300))
        .deadline(ms(3000))
        .retry(constant_retry(5))
        .no_breaker()
        .build_in(registry())
        .expect("valid policy");
    proxy.set_next(1, Fault::Reset);
    let err = once
        .run(|| charge(&client, &url, &log))
        .await
        .expect_err("a reset call that is not idempotent is not retried");
    let attempts = log.take();
    assert_eq!(
        endings(&attempts),
        ["failed(request)"],
        "one attempt, not retried: {err}"
    );
    assert_eq!(err.class(), ErrorClass::OutcomeUnknown, "{err}");
    assert_eq!(proxy.accepted(), 4);
    assert_eq!(provider.requests(), 1, "nothing more reached the provider");
}

#[tokio::test]
async fn a_blackholed_provider_cuts_every_attempt_at_its_timeout_and_the_call_at_its_deadline() {
    let provider = HttpProvider::start().await;
    let proxy = FaultProxy::start(provider.addr).await.expect("proxy");
    let url = proxy.url("/charge");
    let client = fresh_client();
    let timeout = ms(100);
    let deadline = ms(450);
    let policy = retrying("netfault-blackhole", timeout, deadline, 10);

    // Connections are accepted and read, and never answered nor closed.
    proxy.set(Fault::Blackhole);
    let log = Attempts::default();
    let started = Instant::now();
    let err = policy
        .run(|| charge(&client, &url, &log))
        .await
        .expect_err("a provider that never answers fails the call");
    let took = started.elapsed();
    let attempts = log.take();
    eprintln!("blackholed call failed after {took:?} ({err}): {attempts:?}");
    assert!(
        matches!(err.reason(), Some("timeout" | "deadline")),
        "a half-open provider surfaces as a timeout or the deadline, got {err:?}"
    );
    assert!(
        took >= ms(300) && took < deadline + ms(100),
        "the call retries until its 450 ms deadline and ends by it (with 100 ms to spare), not after {took:?}"
    );
    assert!(
        attempts.len() >= 3,
        "100 ms attempts 20 ms apart: at least 3 fit in 450 ms, got {attempts:?}"
    );
    assert!(
        attempts.iter().all(|a| a.ended == Ended::Cut),
        "every attempt is cut, none answers: {attempts:?}"
    );
    let (last, full) = attempts.split_last().expect("attempts");
    for a in full {
        assert!(
            a.took >= timeout - ms(20) && a.took < timeout + ms(100),
            "each attempt ends at its {timeout:?} timeout, not {:?}",
            a.took
        );
    }
    assert!(
        last.took < timeout + ms(100),
        "the last attempt ends by its timeout or the deadline: {:?}",
        last.took
    );
    assert_eq!(
        proxy.accepted() as usize,
        attempts.len(),
        "one connection per attempt"
    );
    assert_eq!(provider.requests(), 0, "nothing reached the provider");
}

#[tokio::test]
async fn an_answer_cut_mid_body_is_an_error_not_a_success_and_is_retried() {
    let provider = HttpProvider::start().await;
    let proxy = FaultProxy::start(provider.addr).await.expect("proxy");
    let url = proxy.url("/charge");
    let client = fresh_client();
    let policy = retrying("netfault-cut", ms(300), ms(3000), 5);

    // The next two answers stop after 4 KiB of their ~16 KiB (headers
    // included), then the connection closes; the third is whole.
    let cut = 4096;
    proxy.set_next(2, Fault::CutAfter(cut));
    let log = Attempts::default();
    let receipt = policy
        .run(|| charge(&client, &url, &log))
        .await
        .unwrap_or_else(|e| panic!("the third attempt must succeed: {e}"));
    let attempts = log.take();
    eprintln!("cut call: {attempts:?}");
    assert_eq!(attempts.len(), 3, "two cut answers, then a whole one");
    for a in &attempts[..2] {
        // The provider was answering, so it acted; the truncated body is
        // never a parsed success.
        assert_failed(
            a,
            ErrorClass::OutcomeUnknown,
            &["decode", "body"],
            "a truncated body",
        );
    }
    assert_eq!(attempts[2].ended, Ended::Ok);
    assert_eq!(receipt.pad.len(), PAD, "the receipt is whole");
    let key = the_key(&attempts);
    assert_eq!(receipt.key, &*key);
    assert_eq!(receipt.effects, 1);
    assert_eq!(
        provider.log(&key),
        KeyLog {
            requests: 3,
            effects: 1
        },
        "three requests under one key, one effect"
    );
    let connections = proxy.connections();
    let sent: Vec<u64> = connections.iter().map(|c| c.bytes_to_client()).collect();
    assert_eq!(connections.len(), 3);
    assert_eq!(
        &sent[..2],
        [cut as u64, cut as u64],
        "the cut answers stop at exactly {cut} bytes"
    );
    assert!(
        sent[2] > PAD as u64,
        "the whole answer is longer than its padding: {sent:?}"
    );
}

// ---------------------------------------------------------------------------
// Namespace tests: breaker under a partition, bandwidth, PostgreSQL.
// ---------------------------------------------------------------------------

/// Start `python3 -m http.server` inside `ns` on `port`, serving `dir`
/// (or the current directory), and wait until it answers `path`.
async fn python_server(
    ns: &Netns,
    port: u16,
    dir: Option<&std::path::Path>,
    path: &str,
) -> Result<Server, String> {
    let mut command = ns.command("python3");
    command.args([
        "-m",
        "http.server",
        "--bind",
        &ns.ns_addr,
        &port.to_string(),
    ]);
    if let Some(dir) = dir {
        command.arg("--directory").arg(dir);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("python3 cannot run in the namespace: {e}"))?;
    let server = Server(child);
    let url = format!("http://{}:{port}{path}", ns.ns_addr);
    let client = fresh_client();
    let up = Instant::now();
    loop {
        let answer = client.get(&url).timeout(ms(200)).send().await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return Ok(server);
        }
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "the server in namespace {} never answered at {url}",
            ns.name
        );
        tokio::time::sleep(ms(20)).await;
    }
}

#[tokio::test]
async fn a_partition_opens_the_breaker_and_half_open_probes_close_it_after_heal() {
    use buttress::breaker::{BreakerConfig, Window};
    use buttress::recovery::RecoveryConfig;
    use buttress::BreakerState;
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let _server = match python_server(&ns, 8080, None, "/").await {
        Ok(server) => server,
        Err(why) => return skip_or_fail(&why),
    };
    let url = format!("http://{}:8080/", ns.ns_addr);
    let client = fresh_client();
    let open_for = ms(500);
    let policy = Policy::builder("netfault-breaker")
        .timeout(ms(100))
        .deadline(ms(300))
        .retry(RetryConfig::off())
        .idempotent(true)
        // Rejected at once while open (by default a call would wait for
        // the breaker inside its deadline instead).
        .recovery(RecoveryConfig::fail_fast())
        .breaker(
            BreakerConfig::new()
                .with_window(Window::Count(10))
                .with_min_calls(10)
                .with_consecutive_failures(3)
                .with_open_for(open_for)
                .with_half_open_probes(2),
        )
        .build_in(registry())
        .expect("valid policy");
    let breaker = policy.shared().breaker();

    for _ in 0..2 {
        assert_eq!(
            get(&policy, &client, &url).await.expect("healthy call"),
            200
        );
    }
    assert_eq!(breaker.state(), BreakerState::Closed);

    ns.partition();
    for n in 1..=3 {
        let started = Instant::now();
        let err = get(&policy, &client, &url)
            .await
            .expect_err("a call across a downed link fails");
        let took = started.elapsed();
        let failed = match &err {
            ApiError::Resilience(e) => matches!(e.reason(), "timeout" | "deadline"),
            ApiError::Http(e) => e.is_connect(),
            ApiError::Status(_) => false,
        };
        assert!(failed, "failure {n} is a timeout or connect error: {err:?}");
        assert!(
            took < ms(100 + 100),
            "failure {n} ends at the 100 ms timeout, not after {took:?}"
        );
        let expected = if n < 3 {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        assert_eq!(breaker.state(), expected, "after {n} failures in a row");
    }
    let opened = Instant::now();

    let started = Instant::now();
    let err = get(&policy, &client, &url)
        .await
        .expect_err("an open breaker rejects the call");
    assert_eq!(err.reason(), Some("circuit_open"), "{err:?}");
    assert!(
        started.elapsed() < ms(50),
        "a rejection does not touch the network: {:?}",
        started.elapsed()
    );

    ns.heal();
    // Right after heal the breaker is still open: rejected.
    let err = get(&policy, &client, &url)
        .await
        .expect_err("still open right after heal");
    assert_eq!(err.reason(), Some("circuit_open"), "{err:?}");

    // Then the probes go through and close it.
    let mut first_success = None;
    let mut seen = Vec::new();
    while breaker.state() != BreakerState::Closed {
        assert!(
            opened.elapsed() < Duration::from_secs(5),
            "the breaker did not close within 5 s of heal(): {seen:?}"
        );
        match get(&policy, &client, &url).await {
            Ok(status) => {
                assert_eq!(status, 200);
                first_success.get_or_insert_with(Instant::now);
                seen.push("ok".to_owned());
            }
            Err(e) => seen.push(e.reason().unwrap_or("http").to_owned()),
        }
        tokio::time::sleep(ms(20)).await;
    }
    eprintln!("calls after heal until closed: {seen:?}");
    let first_success = first_success.expect("closing took successful probes");
    assert!(
        first_success.duration_since(opened) >= open_for - ms(20),
        "no call went through before the breaker's {open_for:?} were over"
    );
    assert!(
        seen.ends_with(&["ok".to_owned(), "ok".to_owned()]),
        "two successful half-open probes in a row close it: {seen:?}"
    );
    for _ in 0..3 {
        assert_eq!(
            get(&policy, &client, &url).await.expect("closed again"),
            200
        );
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// GET `url` under `policy`, reading the whole body and counting its bytes
/// into `received` as they arrive.
async fn download(
    policy: &Policy,
    client: &reqwest::Client,
    url: &str,
    received: &AtomicUsize,
) -> Result<usize, ApiError> {
    policy
        .run(|| async {
            received.store(0, Ordering::SeqCst);
            let mut response = error_for_status(client.get(url).send().await?).await?;
            while let Some(chunk) = response.chunk().await? {
                received.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            Ok::<_, ApiError>(received.load(Ordering::SeqCst))
        })
        .await
}

#[tokio::test]
async fn a_bandwidth_limit_cuts_a_large_answer_at_the_timeout_while_a_small_one_succeeds() {
    const LARGE: usize = 200 * 1024;
    const SMALL: usize = 2 * 1024;
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let dir = std::env::temp_dir().join(format!("buttress-netfault-bw-{}", ns.name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _cleanup = RemoveDir(dir.clone());
    std::fs::write(dir.join("large.bin"), vec![b'L'; LARGE]).expect("large file");
    std::fs::write(dir.join("small.bin"), vec![b's'; SMALL]).expect("small file");
    let _server = match python_server(&ns, 8080, Some(&dir), "/small.bin").await {
        Ok(server) => server,
        Err(why) => return skip_or_fail(&why),
    };
    let large = format!("http://{}:8080/large.bin", ns.ns_addr);
    let small = format!("http://{}:8080/small.bin", ns.ns_addr);
    let client = fresh_client();
    let timeout = ms(500);
    let policy = Policy::builder("netfault-bandwidth")
        .timeout(timeout)
        .deadline(timeout)
        .retry(RetryConfig::off())
        .idempotent(true)
        .no_breaker()
        .build_in(registry())
        .expect("valid policy");
    let received = AtomicUsize::new(0);

    // Unlimited, the large answer fits well within the timeout.
    let got = download(&policy, &client, &large, &received)
        .await
        .expect("the large answer without a limit");
    assert_eq!(got, LARGE);

    // 64 kbit/s is 8 KB/s: 200 KiB would take about 25 s.
    if let Err(why) = ns.limit_bandwidth("64kbit") {
        return skip_or_fail(&why);
    }
    let started = Instant::now();
    let got = download(&policy, &client, &small, &received)
        .await
        .expect("a small answer fits in the burst and passes");
    assert_eq!(got, SMALL);
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());

    let started = Instant::now();
    let err = download(&policy, &client, &large, &received)
        .await
        .expect_err("the large answer cannot arrive within 500 ms");
    let took = started.elapsed();
    let arrived = received.load(Ordering::SeqCst);
    eprintln!("limited large download cut after {took:?} with {arrived} bytes: {err}");
    assert!(
        matches!(err.reason(), Some("timeout" | "deadline")),
        "cut by the attempt timeout, got {err:?}"
    );
    assert!(
        took >= timeout - ms(20) && took < timeout + ms(150),
        "cut at the {timeout:?} timeout, not {took:?}"
    );
    assert!(
        arrived < LARGE / 2,
        "at 8 KB/s (plus an 8 KiB burst) far less than 200 KiB arrives in 500 ms: {arrived}"
    );
}

/// Removes a directory on drop.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PostgreSQL cluster running inside a namespace, stopped (immediate)
/// and deleted on drop.
struct NsPostgres {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    started: bool,
}

fn run_ok(command: &mut std::process::Command, what: &str) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what} cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NsPostgres {
    /// `initdb` a fresh cluster (as `postgres`) and start it inside `ns`,
    /// listening on `ns.ns_addr:port`; `Err` says why this machine cannot.
    fn start(ns: &Netns, port: u16) -> Result<Self, String> {
        let bin = instances::postgres_bin().ok_or(
            "no PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin/initdb; set BUTTRESS_POSTGRES_BIN)",
        )?;
        let dir = std::env::temp_dir().join(format!("buttress-netfault-pg-{}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut pg = Self {
            bin,
            dir,
            started: false,
        };
        run_ok(
            std::process::Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&pg.dir),
            "chown to the postgres user",
        )?;
        run_ok(
            pg.as_postgres(std::process::Command::new("runuser"), "initdb")
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(pg.dir.join("data")),
            "initdb",
        )?;
        // Let the root side of the link in (initdb trusts only the
        // loopback).
        let hba = pg.dir.join("data").join("pg_hba.conf");
        let mut rules =
            std::fs::read_to_string(&hba).map_err(|e| format!("read pg_hba.conf: {e}"))?;
        rules.push_str(&format!("host all all {}/32 trust\n", ns.host_addr));
        std::fs::write(&hba, rules).map_err(|e| format!("write pg_hba.conf: {e}"))?;
        run_ok(
            pg.as_postgres(ns.command("runuser"), "pg_ctl")
                .arg("-D")
                .arg(pg.dir.join("data"))
                .arg("-l")
                .arg(pg.dir.join("server.log"))
                .args(["-w", "-t", "20", "-o"])
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses={}",
                    pg.dir.display(),
                    ns.ns_addr
                ))
                .arg("start"),
            "pg_ctl start in the namespace",
        )
        .map_err(|e| {
            let log = std::fs::read_to_string(pg.dir.join("server.log")).unwrap_or_default();
            format!("{e}\n{log}")
        })?;
        pg.started = true;
        Ok(pg)
    }

    /// `runner` (`runuser`, maybe behind `ip netns exec`) running `tool`
    /// as the postgres user.
    fn as_postgres(&self, mut runner: std::process::Command, tool: &str) -> std::process::Command {
        runner
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool));
        runner
    }
}

impl Drop for NsPostgres {
    fn drop(&mut self) {
        if self.started {
            let _ = self
                .as_postgres(std::process::Command::new("runuser"), "pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .stdin(Stdio::null())
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_partitioned_postgres_store_fails_within_its_timeout_and_works_again_after_heal() {
    use buttress::idempotency::{Claim, ClaimRequest, PostgresStore, StoreErrorKind};
    use buttress::IdempotencyStore;
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let port = 5432;
    let _postgres = match NsPostgres::start(&ns, port) {
        Ok(pg) => pg,
        Err(why) => return skip_or_fail(&why),
    };
    let url = format!("postgres://postgres@{}:{port}/postgres", ns.ns_addr);
    let store_timeout = ms(200);
    let store = PostgresStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL in the namespace at {url}: {e}"))
        .with_timeout(store_timeout);
    let claim = |key: &'static str| ClaimRequest {
        key,
        fingerprint: None,
        lease: Duration::from_secs(5),
        ttl: Duration::from_secs(60),
    };
    assert!(matches!(
        store.claim(claim("before")).await,
        Ok(Claim::Acquired { .. })
    ));

    ns.partition();
    for key in ["during-1", "during-2"] {
        let started = Instant::now();
        let err = store
            .claim(claim(key))
            .await
            .expect_err("a claim across a downed link fails");
        let took = started.elapsed();
        eprintln!("partitioned claim {key} failed after {took:?}: {err}");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        assert!(
            took < store_timeout + ms(150),
            "a store call outlived its {store_timeout:?} timeout by more than 150 ms: {took:?} ({err})"
        );
    }

    ns.heal();
    let healed = Instant::now();
    loop {
        match store.claim(claim("after")).await {
            Ok(answer) => {
                assert!(matches!(answer, Claim::Acquired { .. }), "{answer:?}");
                break;
            }
            Err(e) => assert!(
                healed.elapsed() < Duration::from_secs(5),
                "the store did not work again within 5 s of heal(): {e}"
            ),
        }
        tokio::time::sleep(ms(20)).await;
    }
    // The key claimed before the partition is still held.
    assert!(matches!(
        store.claim(claim("before")).await,
        Ok(Claim::InFlight { .. })
    ));
}

/// What the book promises of `on_store_error` when the idempotency store is
/// cut off by a partition (not killed): by default a call fails closed with
/// `Error::Store` within the store's timeout, without calling the provider;
/// with `OnStoreError::Proceed` it calls the provider without local
/// deduplication; once the link is back, a completed key replays its stored
/// result and a key that failed closed runs once.
#[tokio::test]
async fn on_store_error_under_a_redis_partition_behaves_as_documented() {
    use buttress::idempotency::{DedupOptions, OnStoreError};
    const K1: &str = "netfault-store-k1";
    const K2: &str = "netfault-store-k2";
    const K3: &str = "netfault-store-k3";
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let port = 6379;
    let store_timeout = ms(200);
    let (_server, store) = match redis_store_in(&ns, port, store_timeout).await {
        Ok(up) => up,
        Err(why) => return skip_or_fail(&why),
    };
    let provider = HttpProvider::start().await;
    let url = format!("http://{}/charge", provider.addr);
    let client = fresh_client();
    let policy = Policy::builder("netfault-on-store-error")
        .timeout(ms(1000))
        .deadline(ms(2000))
        .retry(RetryConfig::off())
        .no_breaker()
        .build_in(registry())
        .expect("valid policy");
    // A short lease: a claim that timed out during the partition is still in
    // the connection's send queue, so TCP may deliver it once the link is
    // back, and it then holds its key for this long.
    let fail_closed = DedupOptions::new().with_lease(Duration::from_secs(1));
    let proceed = fail_closed.with_on_store_error(OnStoreError::Proceed);
    let log = Attempts::default();
    let call = |key: &'static str, options: DedupOptions| {
        let (policy, store, client, url, log) = (&policy, &store, &client, &url, &log);
        async move {
            policy
                .run_idempotent(store, key, &options, || charge(client, url, log))
                .await
        }
    };
    let once = KeyLog {
        requests: 1,
        effects: 1,
    };

    // 1. Before the partition: K1 runs once and its result is stored.
    let first = call(K1, fail_closed)
        .await
        .expect("K1 before the partition");
    assert_eq!(first.key, K1);
    assert_eq!(first.effects, 1);
    assert_eq!(provider.log(K1), once);
    assert_eq!(endings(&log.take()), ["ok"]);

    // 2. Partition. Fail closed (the default): a store error within the
    // store's timeout, and the provider is never called.
    ns.partition();
    assert_eq!(
        DedupOptions::new(),
        DedupOptions::new().with_on_store_error(OnStoreError::FailClosed),
        "failing closed is the default"
    );
    let started = Instant::now();
    let err = call(K2, fail_closed)
        .await
        .expect_err("a fail-closed call cannot claim K2 across a downed link");
    let took = started.elapsed();
    eprintln!("fail-closed call failed after {took:?}: {err}");
    assert_eq!(err.reason(), Some("store"), "{err:?}");
    let ApiError::Resilience(buttress::Error::Store { message, .. }) = &err else {
        panic!("a store failure is Error::Store, got {err:?}");
    };
    assert!(message.contains("Redis at"), "names the store: {message}");
    assert!(!message.contains(K2), "the key in clear in {message}");
    assert!(
        took < store_timeout + ms(150),
        "a fail-closed call outlived the {store_timeout:?} store timeout by more than 150 ms: {took:?}"
    );
    assert_eq!(
        provider.log(K2),
        KeyLog::default(),
        "the provider was called"
    );
    assert!(log.take().is_empty(), "no attempt ran for K2");

    // Proceed: the claim fails the same way, then the provider is called
    // without local deduplication.
    let started = Instant::now();
    let receipt = call(K3, proceed)
        .await
        .unwrap_or_else(|e| panic!("a proceeding call reaches the provider: {e:?}"));
    let took = started.elapsed();
    eprintln!("proceeding call succeeded after {took:?}");
    assert_eq!(receipt.key, K3);
    assert_eq!(receipt.effects, 1);
    assert_eq!(provider.log(K3), once);
    let attempts = log.take();
    assert_eq!(endings(&attempts), ["ok"]);
    assert_eq!(&*the_key(&attempts), K3, "the provider got the call's key");
    assert!(
        took < store_timeout + ms(500),
        "a proceeding call waits for the store's {store_timeout:?} timeout, then the provider on the loopback, not {took:?}"
    );

    // 3. Heal: K1 replays its stored result (no new request), and K2, which
    // failed closed, now runs once.
    ns.heal();
    let healed = Instant::now();
    let mut store_failures = 0;
    let replay = loop {
        match call(K1, fail_closed).await {
            Ok(replay) => break replay,
            Err(e) => {
                assert_eq!(e.reason(), Some("store"), "{e:?}");
                store_failures += 1;
            }
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "K1 did not replay within 5 s of heal()"
        );
        tokio::time::sleep(ms(20)).await;
    };
    eprintln!(
        "K1 replayed {:?} after heal ({store_failures} store failures first)",
        healed.elapsed()
    );
    assert_eq!(replay.key, K1);
    assert_eq!(replay.effects, 1);
    assert_eq!(replay.pad.len(), PAD, "the stored receipt is whole");
    assert_eq!(provider.log(K1), once, "the replay called the provider");
    assert!(log.take().is_empty(), "no attempt ran for the replay");

    // The K2 claim that timed out may reach Redis now and hold K2 for its
    // 1 s lease: wait it out.
    let second = loop {
        match call(K2, fail_closed.with_wait(Duration::from_secs(3))).await {
            Ok(second) => break second,
            Err(e) => assert_eq!(e.reason(), Some("store"), "{e:?}"),
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "K2 did not run within 5 s of heal()"
        );
        tokio::time::sleep(ms(20)).await;
    };
    let ran_after = healed.elapsed();
    eprintln!("K2 ran {ran_after:?} after heal");
    assert!(
        ran_after < Duration::from_secs(5),
        "K2 did not run within 5 s of heal(): {ran_after:?}"
    );
    assert_eq!(&*the_key(&log.take()), K2, "one attempt, with K2");
    assert_eq!(second.key, K2);
    assert_eq!(second.effects, 1);
    assert_eq!(provider.log(K2), once, "K2 runs exactly once after heal");
    assert_eq!(provider.log(K1), once);
    assert_eq!(provider.log(K3), once);
}
