//! Handling each event once: the event id claimed in an idempotency store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use buttress_core::idempotency::{key_hash, Claim, ClaimRequest, IdempotencyStore, StoreError};

use crate::{HeaderSource, Scheme, Verified, VerifyError};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An [`IdempotencyStore`] behind a pointer (its methods return `impl
/// Future`, so it is not object safe as it stands).
trait ErasedStore: Send + Sync {
    fn claim<'a>(&'a self, request: ClaimRequest<'a>) -> BoxFuture<'a, Result<Claim, StoreError>>;
    fn complete<'a>(
        &'a self,
        key: &'a str,
        fence: u64,
        record: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn release<'a>(&'a self, key: &'a str, fence: u64) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<S: IdempotencyStore + 'static> ErasedStore for S {
    fn claim<'a>(&'a self, request: ClaimRequest<'a>) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(IdempotencyStore::claim(self, request))
    }
    fn complete<'a>(
        &'a self,
        key: &'a str,
        fence: u64,
        record: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(IdempotencyStore::complete(self, key, fence, record, ttl))
    }
    fn release<'a>(&'a self, key: &'a str, fence: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(IdempotencyStore::release(self, key, fence))
    }
}

/// Deduplication settings of a [`WebhookReceiver`].
///
/// # Default
/// Handled event ids are kept 72 hours (senders redeliver for up to about
/// three days), and a claim holds for 60 seconds: a receiver that dies
/// while handling an event frees it for a redelivery after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverConfig {
    ttl: Duration,
    lease: Duration,
}

impl ReceiverConfig {
    /// The defaults.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            ttl: Duration::from_secs(72 * 3600),
            lease: Duration::from_secs(60),
        }
    }

    /// How long a handled event id is remembered (redeliveries within it
    /// are acknowledged without running the handler).
    #[must_use]
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a claim holds before a redelivery may take over (longer
    /// than the slowest handler).
    #[must_use]
    pub const fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The retention of handled ids.
    #[must_use]
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The claim lease.
    #[must_use]
    pub const fn lease(&self) -> Duration {
        self.lease
    }
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A delivery whose handler failed, as given to the
/// [`on_failure`](WebhookReceiver::on_failure) hook: everything needed to
/// dead-letter or replay it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FailedEvent<'a> {
    /// The scheme's name (`"standard"`, `"stripe"`, …).
    pub scheme: &'static str,
    /// The event id.
    pub id: &'a str,
    /// The raw body, exactly as received and verified.
    pub body: &'a [u8],
    /// The handler error's `Display`.
    pub error: &'a str,
}

type FailureHook = dyn Fn(&FailedEvent<'_>) + Send + Sync;

/// A handler failure, as the dead letter's error.
struct HandlerFailed<'a>(&'a str);

impl fmt::Display for HandlerFailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl buttress_core::Classify for HandlerFailed<'_> {
    fn class(&self) -> buttress_core::ErrorClass {
        buttress_core::ErrorClass::OutcomeUnknown
    }
}

/// The dead letter for a failed webhook event.
fn failed_event_entry(failed: &FailedEvent<'_>) -> buttress_core::dlq::DeadLetter {
    let body = match std::str::from_utf8(failed.body) {
        Ok(text) => serde_json::json!({ "id": failed.id, "body": text }),
        Err(_) => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(failed.body);
            serde_json::json!({ "id": failed.id, "body_base64": encoded })
        }
    };
    let mut entry = buttress_core::dlq::DeadLetter::new(
        format!("webhook:{}", failed.scheme),
        "handle",
        body,
        &HandlerFailed(failed.error),
    );
    entry.reason = "webhook_handler_failed".to_owned();
    entry.idempotency_key = Some(buttress_core::dlq::IdempotencyKey::new(format!(
        "webhook:{}:{}",
        failed.scheme, failed.id
    )));
    entry
}

/// Why a delivery is not handed to the handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The delivery is not authentic or not fresh.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The event was already handled: acknowledge it (2xx) without running
    /// the handler again.
    #[error("event {id} was already handled; acknowledged without handling it again")]
    Duplicate {
        /// The event id.
        id: String,
    },
    /// The same event is being handled right now by another delivery:
    /// answer 409 so the sender retries later.
    #[error("event {id} is being handled by another delivery; retry later")]
    InFlight {
        /// The event id.
        id: String,
        /// When the other delivery's claim expires, if the store knows.
        retry_after: Option<Duration>,
    },
    /// The store could not be reached: answer 503 so the sender retries;
    /// the handler was not run.
    #[error("the webhook deduplication store failed ({0}); the event was not handled, the sender should retry")]
    Store(StoreError),
}

/// Verifies deliveries with a [`Scheme`] and claims their event ids in an
/// [`IdempotencyStore`], so each event is handled once. Cheap to clone.
///
/// For each delivery, [`receive`](Self::receive) answers either a
/// [`Delivery`] (run the handler, then [`complete`](Delivery::complete) or
/// [`fail`](Delivery::fail) it) or a [`ReceiveError`] saying why not.
#[derive(Clone)]
pub struct WebhookReceiver {
    scheme: Arc<dyn Scheme>,
    store: Arc<dyn ErasedStore>,
    config: ReceiverConfig,
    on_failure: Option<Arc<FailureHook>>,
}

impl fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("scheme", &self.scheme.name())
            .field("config", &self.config)
            .field("on_failure", &self.on_failure.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookReceiver {
    /// A receiver verifying with `scheme` and deduplicating in `store`
    /// (any store: `MemoryStore`, `RedisStore`, `PostgresStore`, or an
    /// `Arc` of one), with the default [`ReceiverConfig`].
    pub fn new(scheme: impl Scheme, store: impl IdempotencyStore + 'static) -> Self {
        Self {
            scheme: Arc::new(scheme),
            store: Arc::new(store),
            config: ReceiverConfig::new(),
            on_failure: None,
        }
    }

    /// Use these deduplication settings.
    #[must_use]
    pub fn with_config(mut self, config: ReceiverConfig) -> Self {
        self.config = config;
        self
    }

    /// Call `hook` whenever a handler fails (or drops a delivery without
    /// finishing it), with the event id, the raw body and the error, after
    /// the event's claim was released so a redelivery runs the handler
    /// again. This is where a dead-letter sink goes. The hook runs on the
    /// request's task: keep it quick (hand slow work to a channel).
    #[must_use]
    pub fn on_failure(mut self, hook: impl Fn(&FailedEvent<'_>) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(Arc::new(hook));
        self
    }

    /// Keep every event whose handler failed as a dead letter in `sink`
    /// (replacing any [`on_failure`](Self::on_failure) hook): provider
    /// `webhook:<scheme>`, operation `handle`, arguments `{"id", "body"}`
    /// (the body as text, or `body_base64` when it is not UTF-8), class
    /// `outcome_unknown` (the handler may have acted before it failed), and
    /// the store key `webhook:<scheme>:<id>` as the idempotency key, so a
    /// replay through the same receiver's store is deduplicated.
    ///
    /// The entry is stored by a task spawned on the current Tokio runtime;
    /// when the sink fails (or there is no runtime), the whole entry is
    /// logged at ERROR, so nothing is lost silently. The sender still gets
    /// the failure and will redeliver: a later success leaves the dead
    /// letter for an operator to purge, which replaying makes harmless.
    #[must_use]
    pub fn dead_letter_to<S>(self, sink: S) -> Self
    where
        S: buttress_core::dlq::DeadLetterSink + 'static,
    {
        let sink = Arc::new(sink);
        self.on_failure(move |failed| {
            let entry = failed_event_entry(failed);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let sink = Arc::clone(&sink);
                    runtime.spawn(async move {
                        let _ = buttress_core::dlq::send(&*sink, entry).await;
                    });
                }
                Err(_) => tracing::error!(
                    entry = %entry.to_redacted_json(),
                    "webhook dead letter not stored: no Tokio runtime to store it from"
                ),
            }
        })
    }

    /// The scheme deliveries are verified with.
    #[must_use]
    pub fn scheme(&self) -> &dyn Scheme {
        &*self.scheme
    }

    /// Verify `body` and `headers` against the system clock, then claim the
    /// event id.
    ///
    /// # Errors
    /// Why the handler must not run: see [`ReceiveError`].
    pub fn receive(
        &self,
        headers: &dyn HeaderSource,
        body: impl Into<Vec<u8>>,
    ) -> impl Future<Output = Result<Delivery, ReceiveError>> + Send + '_ {
        self.receive_at(headers, body, SystemTime::now())
    }

    /// Verify `body` and `headers` against the clock reading `now`, then
    /// claim the event id.
    ///
    /// # Errors
    /// Why the handler must not run: see [`ReceiveError`].
    pub fn receive_at(
        &self,
        headers: &dyn HeaderSource,
        body: impl Into<Vec<u8>>,
        now: SystemTime,
    ) -> impl Future<Output = Result<Delivery, ReceiveError>> + Send + '_ {
        // Verified before the first await, so the future holds no header.
        let body = body.into();
        let verified = self.scheme.verify_at(headers, &body, now);
        async move { self.claim(verified?, body).await }
    }

    async fn claim(&self, verified: Verified, body: Vec<u8>) -> Result<Delivery, ReceiveError> {
        let key = format!("webhook:{}:{}", self.scheme.name(), verified.id());
        let claim = self
            .store
            .claim(ClaimRequest {
                key: &key,
                fingerprint: None,
                lease: self.config.lease,
                ttl: self.config.ttl,
            })
            .await;
        let id = verified.id().to_owned();
        match claim {
            Ok(Claim::Acquired { fence }) => Ok(Delivery {
                receiver: self.clone(),
                key,
                verified,
                body,
                fence,
                finished: false,
            }),
            // Without a fingerprint the store never answers Mismatch; if a
            // custom store does, the id is known to it: a duplicate.
            Ok(Claim::Completed { .. } | Claim::Mismatch) => {
                tracing::debug!(key_hash = %key_hash(&key), "webhook redelivery of a handled event acknowledged");
                Err(ReceiveError::Duplicate { id })
            }
            Ok(Claim::InFlight { lease_left }) => Err(ReceiveError::InFlight {
                id,
                retry_after: lease_left,
            }),
            Err(e) => {
                tracing::warn!(key_hash = %key_hash(&key), error = %e, "webhook deduplication store failed; not handling the event");
                Err(ReceiveError::Store(e))
            }
        }
    }
}

/// A verified delivery whose event id this receiver now holds: run the
/// handler, then [`complete`](Self::complete) or [`fail`](Self::fail) it.
///
/// Dropped without either (the handler returned early or panicked), it
/// counts as failed: the [`on_failure`](WebhookReceiver::on_failure) hook
/// runs and the claim is released in the background.
#[must_use = "complete or fail the delivery once the handler ran"]
pub struct Delivery {
    receiver: WebhookReceiver,
    key: String,
    verified: Verified,
    body: Vec<u8>,
    fence: u64,
    finished: bool,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("scheme", &self.receiver.scheme.name())
            .field("id", &self.verified.id())
            .field("timestamp", &self.verified.timestamp())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// The event id.
    #[must_use]
    pub fn id(&self) -> &str {
        self.verified.id()
    }

    /// What was verified (id and signed timestamp).
    #[must_use]
    pub const fn verified(&self) -> &Verified {
        &self.verified
    }

    /// The raw body, exactly as received and verified.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The handler succeeded: remember the event as handled, so
    /// redeliveries are acknowledged without running it again.
    ///
    /// # Errors
    /// The store failed. The handler's effects happened; until the claim's
    /// lease expires redeliveries get "in flight", after it one may run the
    /// handler again.
    pub async fn complete(mut self) -> Result<(), StoreError> {
        self.finished = true;
        let stored = self
            .receiver
            .store
            .complete(&self.key, self.fence, b"null", self.receiver.config.ttl)
            .await?;
        if !stored {
            tracing::warn!(key_hash = %key_hash(&self.key), "webhook handled after its claim's lease was taken over; raise the lease above the handler's duration");
        }
        Ok(())
    }

    /// The handler failed with `error`: release the claim so the sender's
    /// redelivery runs the handler again, then call the
    /// [`on_failure`](WebhookReceiver::on_failure) hook.
    pub fn fail(self, error: &dyn fmt::Display) -> impl Future<Output = ()> + Send {
        self.fail_with(error.to_string())
    }

    async fn fail_with(mut self, error: String) {
        self.finished = true;
        if let Err(e) = self.receiver.store.release(&self.key, self.fence).await {
            tracing::warn!(key_hash = %key_hash(&self.key), error = %e, "could not release a failed webhook's claim; it frees when its lease expires");
        }
        self.report(&error);
    }

    /// [`complete`](Self::complete) on `Ok`, [`fail`](Self::fail) on `Err`.
    ///
    /// # Errors
    /// The handler's error, after the delivery was failed.
    pub async fn finish<R, E: fmt::Display>(self, result: Result<R, E>) -> Result<R, E> {
        match result {
            Ok(value) => {
                if let Err(e) = self.complete().await {
                    tracing::error!(error = %e, "a handled webhook could not be recorded as handled");
                }
                Ok(value)
            }
            Err(error) => {
                self.fail(&error).await;
                Err(error)
            }
        }
    }

    fn report(&self, error: &str) {
        if let Some(hook) = &self.receiver.on_failure {
            hook(&FailedEvent {
                scheme: self.receiver.scheme.name(),
                id: self.verified.id(),
                body: &self.body,
                error,
            });
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.report("the handler returned without completing or failing the delivery");
        let store = Arc::clone(&self.receiver.store);
        let key = std::mem::take(&mut self.key);
        let fence = self.fence;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = store.release(&key, fence).await;
            });
        }
    }
}
