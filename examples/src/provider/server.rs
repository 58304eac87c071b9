//! The HTTP server: fault injection, the Stripe-like API, idempotency keys
//! and the measurements.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

use super::net::{ConnHandle, ResettableListener};
use super::schedule::{Phase, Schedule};

/// The width of one [`Bucket`] of [`ProviderStats::timeline`]: 100 ms.
pub const BUCKET: Duration = Duration::from_millis(100);

/// The header naming the logical operation an attempt belongs to
/// (`X-Lab-Operation: <u64>`), identical on every attempt of the operation.
/// Lab instrumentation only: the provider measures with it and never lets it
/// change an answer.
pub const LAB_OPERATION_HEADER: &str = "x-lab-operation";

/// How long [`ProviderServer::shutdown`] waits for answers in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// One 100 ms slice of the provider's life, for plots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// When the slice starts, since [`ProviderServer::start`].
    pub start: Duration,
    /// Requests that arrived in the slice.
    pub requests: u32,
    /// `2xx` answers produced in the slice.
    pub ok: u32,
    /// `4xx` and `5xx` answers produced in the slice.
    pub errors: u32,
    /// Connections reset in the slice.
    pub resets: u32,
}

/// What the provider went through: its load, the effects it committed, and
/// what that says about its clients. A snapshot, from
/// [`ProviderServer::stats`].
///
/// Answers are counted when the provider produces them, whether or not the
/// client is still there to read them (a client that timed out has gone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderStats {
    /// Every HTTP request received: the provider's load.
    pub requests: u64,
    /// Side effects committed: charges, refunds and calls created.
    pub effects: u64,
    /// Over the logical operations (the [`LAB_OPERATION_HEADER`]), the sum
    /// of `effects - 1` for those with more than one effect: charges the
    /// customer paid twice. Measured, not estimated.
    pub duplicates: u64,
    /// Requests of an operation that arrived before the `Retry-After` the
    /// provider had announced to that operation (in a 429) had passed.
    pub retry_after_violations: u64,
    /// `2xx` answers (including replays).
    pub ok: u64,
    /// `4xx` and `5xx` answers.
    pub errors: u64,
    /// `429` answers.
    pub rate_limited: u64,
    /// `503` answers.
    pub unavailable: u64,
    /// Connections reset instead of answered.
    pub resets: u64,
    /// Answers replayed from an `Idempotency-Key` (no new effect).
    pub replays: u64,
    /// `409` answers: the key's first request was still processing.
    pub in_progress: u64,
    /// Effects whose answer was held back by [`Phase::LateAnswers`].
    pub late_answers: u64,
    /// Per [`BUCKET`] since the start, at least as long as the schedule:
    /// requests received, answers produced, resets.
    pub timeline: Vec<Bucket>,
    /// When each `2xx` answer was produced, since the start, in order.
    pub ok_at: Vec<Duration>,
    /// Each `429`'s `Retry-After`: when it was answered and when the wait
    /// it announced ends, since the start.
    pub retry_after: Vec<(Duration, Duration)>,
    /// Side effects committed per logical operation (the
    /// [`LAB_OPERATION_HEADER`]).
    pub effects_per_operation: HashMap<u64, u64>,
    /// Requests received per logical operation.
    pub requests_per_operation: HashMap<u64, u64>,
}

/// A running fault-injecting provider on `127.0.0.1`. See the
/// [module documentation](super) for its API and behaviour.
#[derive(Debug)]
pub struct ProviderServer {
    /// The base URL, `http://127.0.0.1:<port>`, without a trailing slash.
    pub url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ProviderServer {
    /// Bind `127.0.0.1:0` and start serving. The schedule's clock starts
    /// now; the fault decisions draw from a stream seeded by `seed` and
    /// each request's [`draw_index`](super::draw_index): its operation and
    /// place among that operation's requests, or its arrival number.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(schedule: Schedule, seed: u64) -> io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(schedule, seed));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<ConnHandle>();
            let _ = axum::serve(ResettableListener::new(listener), service)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Operations are numbered from `first` from now on: the draws of
    /// operation `first + i` are those of operation `i` (see
    /// [`draw_index`](super::draw_index)), so that a run whose operation
    /// numbers start elsewhere (they are unique in the lab's process) meets
    /// the same luck as any other run of the same seed.
    pub fn number_operations_from(&self, first: u64) {
        self.shared.first_operation.store(first, Ordering::Relaxed);
    }

    /// The address the server listens on.
    #[must_use]
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The schedule the server follows.
    #[must_use]
    pub fn schedule(&self) -> &Schedule {
        &self.shared.schedule
    }

    /// Time since [`start`](Self::start): where the server is in its
    /// schedule.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.shared.start.elapsed()
    }

    /// A snapshot of the measurements so far.
    #[must_use]
    pub fn stats(&self) -> ProviderStats {
        let state = self.shared.lock();
        let mut stats = state.stats.clone();
        stats.effects_per_operation = state.effects_per_operation.clone();
        stats.requests_per_operation = state.requests_per_operation.clone();
        let span = self.shared.schedule.duration().max(self.elapsed());
        let wanted = bucket_index(span) + 1;
        extend_timeline(&mut stats.timeline, wanted);
        stats
    }

    /// Stop accepting connections, give answers in flight up to a second to
    /// finish, then stop.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for ProviderServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What a request carries that the provider looks at.
#[derive(Debug)]
struct Incoming {
    method: Method,
    path: String,
    key: Option<String>,
    operation: Option<u64>,
    body: Bytes,
}

/// A response the provider produced.
#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    body: Value,
    retry_after_secs: Option<u64>,
    replayed: bool,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            retry_after_secs: None,
            replayed: false,
        }
    }

    fn error(status: StatusCode, kind: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({ "error": { "type": kind, "message": message } }),
            retry_after_secs: None,
            replayed: false,
        }
    }

    fn unavailable() -> Self {
        Self::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "the provider is temporarily unavailable; nothing was done",
        )
    }

    fn not_found(what: &str) -> Self {
        Self::error(
            StatusCode::NOT_FOUND,
            "resource_missing",
            &format!("no such {what}"),
        )
    }

    fn bad_request(message: &str) -> Self {
        Self::error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

/// How the provider ends a request.
#[derive(Debug)]
enum Answer {
    Reply(Reply),
    Reset,
}

/// An idempotency key's record.
#[derive(Debug)]
enum KeyEntry {
    InFlight { fingerprint: String },
    Done { fingerprint: String, reply: Reply },
}

#[derive(Debug)]
struct TokenBucket {
    phase: usize,
    tokens: f64,
    last: Instant,
}

/// Everything the server remembers, behind one lock (held briefly, never
/// across an await).
#[derive(Debug, Default)]
struct Store {
    stats: ProviderStats,
    effects_per_operation: HashMap<u64, u64>,
    requests_per_operation: HashMap<u64, u64>,
    /// Per operation: no request before this instant (its last 429's
    /// `Retry-After`).
    not_before: HashMap<u64, Instant>,
    keys: HashMap<String, KeyEntry>,
    charges: HashMap<String, Value>,
    calls: HashMap<String, (Value, Instant)>,
    next_id: u64,
    limiter: Option<TokenBucket>,
}

impl Store {
    fn bucket(&mut self, elapsed: Duration) -> &mut Bucket {
        let index = bucket_index(elapsed);
        extend_timeline(&mut self.stats.timeline, index + 1);
        &mut self.stats.timeline[index]
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:08}", self.next_id)
    }

    fn record_effect(&mut self, operation: Option<u64>) {
        self.stats.effects += 1;
        if let Some(op) = operation {
            let effects = self.effects_per_operation.entry(op).or_insert(0);
            *effects += 1;
            if *effects > 1 {
                self.stats.duplicates += 1;
            }
        }
    }
}

fn bucket_index(elapsed: Duration) -> usize {
    usize::try_from(elapsed.as_millis() / BUCKET.as_millis()).unwrap_or(usize::MAX - 1)
}

fn extend_timeline(timeline: &mut Vec<Bucket>, len: usize) {
    while timeline.len() < len {
        let start = BUCKET * u32::try_from(timeline.len()).unwrap_or(u32::MAX);
        timeline.push(Bucket {
            start,
            ..Bucket::default()
        });
    }
}

#[derive(Debug)]
struct Shared {
    schedule: Schedule,
    seed: u64,
    start: Instant,
    arrivals: AtomicU64,
    /// See [`ProviderServer::number_operations_from`].
    first_operation: AtomicU64,
    store: Mutex<Store>,
}

/// What a request asks for.
enum Route {
    CreateCharge,
    GetCharge(String),
    CreateRefund,
    CreateCall,
    GetCall(String),
    NotFound,
}

impl Route {
    fn parse(method: &Method, path: &str) -> Self {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "charges"]) => Self::CreateCharge,
            ("GET", ["v1", "charges", id]) => Self::GetCharge((*id).to_owned()),
            ("POST", ["v1", "refunds"]) => Self::CreateRefund,
            ("POST", ["v1", "calls"]) => Self::CreateCall,
            ("GET", ["v1", "calls", id]) => Self::GetCall((*id).to_owned()),
            _ => Self::NotFound,
        }
    }
}

/// A validated creation request.
enum Create {
    Charge {
        amount: u64,
        currency: String,
        customer: String,
    },
    Refund {
        charge: String,
    },
    Call {
        to: String,
        from: String,
    },
}

fn text_field(body: &Value, name: &str) -> Result<String, Reply> {
    match body.get(name).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(Reply::bad_request(&format!(
            "`{name}` is required: a non-empty string"
        ))),
    }
}

fn validate(route: &Route, body: &Result<Value, ()>) -> Result<Create, Reply> {
    let Ok(body) = body else {
        return Err(Reply::bad_request("the body is not valid JSON"));
    };
    match route {
        Route::CreateCharge => {
            let amount = body
                .get("amount")
                .and_then(Value::as_u64)
                .filter(|a| *a > 0)
                .ok_or_else(|| {
                    Reply::bad_request("`amount` is required: a positive integer (cents)")
                })?;
            Ok(Create::Charge {
                amount,
                currency: text_field(body, "currency")?,
                customer: text_field(body, "customer")?,
            })
        }
        Route::CreateRefund => Ok(Create::Refund {
            charge: text_field(body, "charge")?,
        }),
        Route::CreateCall => Ok(Create::Call {
            to: text_field(body, "to")?,
            from: text_field(body, "from")?,
        }),
        _ => Err(Reply::bad_request("unexpected body")),
    }
}

/// What a key lookup decided.
enum Claim {
    Claimed,
    Replay(Reply),
    InProgress,
    Mismatch,
}

impl Shared {
    fn new(schedule: Schedule, seed: u64) -> Self {
        Self {
            schedule,
            seed,
            start: Instant::now(),
            arrivals: AtomicU64::new(0),
            first_operation: AtomicU64::new(0),
            store: Mutex::new(Store::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One request, start to end. Runs in its own task, so a client that
    /// hangs up does not cancel what the provider already started doing
    /// (as with a real provider).
    async fn process(self: Arc<Self>, req: Incoming) -> Answer {
        let n = self.arrivals.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let arrived = now.duration_since(self.start);
        let draw = {
            let mut store = self.lock();
            store.stats.requests += 1;
            store.bucket(arrived).requests += 1;
            let nth = req.operation.map(|op| {
                let count = store.requests_per_operation.entry(op).or_insert(0);
                *count += 1;
                let first = self.first_operation.load(Ordering::Relaxed);
                (op.wrapping_sub(first), *count - 1)
            });
            if let Some(op) = req.operation {
                if store.not_before.get(&op).is_some_and(|nb| now < *nb) {
                    store.stats.retry_after_violations += 1;
                }
            }
            super::draw_index(n, nth)
        };

        let phase_index = self.schedule.phase_index_at(arrived);
        let phase = &self.schedule.phases()[phase_index].1;
        let (roll, latency) = super::request_draws(self.seed, draw, phase);

        let answer = match *phase {
            Phase::Down => Some(Answer::Reply(Reply::unavailable())),
            Phase::Errors503 { rate, .. } if roll < rate => {
                sleep(latency).await;
                Some(Answer::Reply(Reply::unavailable()))
            }
            Phase::Resets { rate, .. } if roll < rate => {
                sleep(latency).await;
                Some(Answer::Reset)
            }
            Phase::RateLimited {
                allow_per_second,
                retry_after,
                ..
            } if !self.take_token(phase_index, allow_per_second) => {
                sleep(latency).await;
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let mut reply = Reply::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "too many requests; retry after the Retry-After delay",
                );
                reply.retry_after_secs = Some(secs);
                Some(Answer::Reply(reply))
            }
            _ => None,
        };
        let answer = match answer {
            Some(answer) => answer,
            None => {
                let late = match *phase {
                    Phase::LateAnswers { rate, delay, .. } if roll < rate => Some(delay),
                    _ => None,
                };
                Answer::Reply(self.execute(&req, latency, late).await)
            }
        };
        self.record_answer(&answer, req.operation);
        answer
    }

    /// Take one token of the phase's allowance; `false` when over it.
    fn take_token(&self, phase: usize, allow_per_second: u32) -> bool {
        let now = Instant::now();
        let capacity = f64::from(allow_per_second);
        let mut store = self.lock();
        let bucket = match &mut store.limiter {
            Some(bucket) if bucket.phase == phase => bucket,
            slot => slot.insert(TokenBucket {
                phase,
                tokens: capacity,
                last: now,
            }),
        };
        let refill = now.duration_since(bucket.last).as_secs_f64() * capacity;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn record_answer(&self, answer: &Answer, operation: Option<u64>) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.start);
        let mut store = self.lock();
        match answer {
            Answer::Reset => {
                store.stats.resets += 1;
                store.bucket(elapsed).resets += 1;
            }
            Answer::Reply(reply) => {
                if reply.status.is_success() {
                    store.stats.ok += 1;
                    store.stats.ok_at.push(elapsed);
                    store.bucket(elapsed).ok += 1;
                } else {
                    store.stats.errors += 1;
                    store.bucket(elapsed).errors += 1;
                }
                match reply.status {
                    StatusCode::SERVICE_UNAVAILABLE => store.stats.unavailable += 1,
                    StatusCode::CONFLICT => store.stats.in_progress += 1,
                    StatusCode::TOO_MANY_REQUESTS => {
                        store.stats.rate_limited += 1;
                        if let Some(secs) = reply.retry_after_secs {
                            let wait = Duration::from_secs(secs);
                            store.stats.retry_after.push((elapsed, elapsed + wait));
                        }
                        if let (Some(op), Some(secs)) = (operation, reply.retry_after_secs) {
                            let until = now + Duration::from_secs(secs);
                            let entry = store.not_before.entry(op).or_insert(until);
                            *entry = (*entry).max(until);
                        }
                    }
                    _ => {}
                }
                if reply.replayed {
                    store.stats.replays += 1;
                }
            }
        }
    }

    /// Process a request that no fault stopped.
    async fn execute(&self, req: &Incoming, latency: Duration, late: Option<Duration>) -> Reply {
        let route = Route::parse(&req.method, &req.path);
        match route {
            Route::NotFound => {
                sleep(latency).await;
                Reply::not_found("endpoint")
            }
            Route::GetCharge(id) => {
                sleep(latency).await;
                let store = self.lock();
                store
                    .charges
                    .get(&id)
                    .map_or_else(|| Reply::not_found("charge"), |c| Reply::ok(c.clone()))
            }
            Route::GetCall(id) => {
                sleep(latency).await;
                let store = self.lock();
                store.calls.get(&id).map_or_else(
                    || Reply::not_found("call"),
                    |(call, created)| {
                        let mut call = call.clone();
                        call["status"] = json!(call_status(created.elapsed()));
                        Reply::ok(call)
                    },
                )
            }
            Route::CreateCharge | Route::CreateRefund | Route::CreateCall => {
                let body = serde_json::from_slice::<Value>(&req.body).map_err(|_| ());
                if let Some(key) = &req.key {
                    let fingerprint = format!(
                        "{} {} {}",
                        req.method,
                        req.path,
                        body.as_ref().map_or_else(
                            |()| String::from_utf8_lossy(&req.body).into_owned(),
                            Value::to_string
                        )
                    );
                    let claim = self.claim(key, fingerprint);
                    let reply = match claim {
                        Claim::Claimed => None,
                        Claim::Replay(mut reply) => {
                            reply.replayed = true;
                            Some(reply)
                        }
                        Claim::InProgress => Some(Reply::error(
                            StatusCode::CONFLICT,
                            "idempotency_in_progress",
                            "a request with this Idempotency-Key is still being processed; retry later",
                        )),
                        Claim::Mismatch => Some(Reply::error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "idempotency_key_reused",
                            "this Idempotency-Key was used with a different request",
                        )),
                    };
                    if let Some(reply) = reply {
                        sleep(latency).await;
                        return reply;
                    }
                }
                sleep(latency).await;
                let reply = match validate(&route, &body) {
                    Ok(create) => self.commit(create, req.operation),
                    Err(reply) => reply,
                };
                if let Some(key) = &req.key {
                    self.complete(key, &reply);
                }
                if let Some(delay) = late.filter(|_| reply.status.is_success()) {
                    self.lock().stats.late_answers += 1;
                    sleep(delay).await;
                }
                reply
            }
        }
    }

    fn claim(&self, key: &str, fingerprint: String) -> Claim {
        let mut store = self.lock();
        match store.keys.get(key) {
            None => {
                store
                    .keys
                    .insert(key.to_owned(), KeyEntry::InFlight { fingerprint });
                Claim::Claimed
            }
            Some(KeyEntry::InFlight { fingerprint: first }) => {
                if *first == fingerprint {
                    Claim::InProgress
                } else {
                    Claim::Mismatch
                }
            }
            Some(KeyEntry::Done {
                fingerprint: first,
                reply,
            }) => {
                if *first == fingerprint {
                    Claim::Replay(reply.clone())
                } else {
                    Claim::Mismatch
                }
            }
        }
    }

    fn complete(&self, key: &str, reply: &Reply) {
        let mut store = self.lock();
        if let Some(entry) = store.keys.get_mut(key) {
            if let KeyEntry::InFlight { fingerprint } = entry {
                *entry = KeyEntry::Done {
                    fingerprint: std::mem::take(fingerprint),
                    reply: reply.clone(),
                };
            }
        }
    }

    /// Commit the side effect.
    fn commit(&self, create: Create, operation: Option<u64>) -> Reply {
        let mut store = self.lock();
        let reply = match create {
            Create::Charge {
                amount,
                currency,
                customer,
            } => {
                let id = store.new_id("ch");
                let charge = json!({
                    "id": id,
                    "amount": amount,
                    "currency": currency,
                    "customer": customer,
                    "status": "succeeded",
                });
                store.charges.insert(id, charge.clone());
                Reply::ok(charge)
            }
            Create::Refund { charge } => {
                let Some(amount) = store.charges.get(&charge).map(|c| c["amount"].clone()) else {
                    return Reply::not_found("charge");
                };
                let id = store.new_id("re");
                Reply::ok(json!({ "id": id, "charge": charge, "amount": amount }))
            }
            Create::Call { to, from } => {
                let id = store.new_id("call");
                let call = json!({ "id": id, "to": to, "from": from, "status": "queued" });
                store.calls.insert(id, (call.clone(), Instant::now()));
                Reply::ok(call)
            }
        };
        store.record_effect(operation);
        reply
    }
}

/// A call's status by age: queued, ringing for a while, then completed.
fn call_status(age: Duration) -> &'static str {
    if age < Duration::from_millis(300) {
        "queued"
    } else if age < Duration::from_secs(2) {
        "in_progress"
    } else {
        "completed"
    }
}

/// The one handler: every request goes through [`Shared::process`], in a
/// task of its own.
async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let incoming = Incoming {
        method,
        path: uri.path().to_owned(),
        key: header("idempotency-key"),
        operation: header(LAB_OPERATION_HEADER).and_then(|v| v.trim().parse().ok()),
        body,
    };
    match tokio::spawn(shared.process(incoming)).await {
        Ok(Answer::Reply(reply)) => reply.into_response(),
        Ok(Answer::Reset) => {
            // The response below is never delivered: writing it fails and
            // the connection is reset.
            conn.reset();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
