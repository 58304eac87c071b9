//! The service: one logical call per request, attempt by attempt.

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_core::{BreakerState, Classify, ErrorClass, Policy};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;
use tower_service::Service;

use crate::classify::{ClassifyResponse, Failure};
use crate::error::Error;
use crate::layer::Readiness;
use crate::replay::{Replay, TimeLeft};

/// How often an honest `poll_ready` looks again while the bulkhead is full
/// or the breaker forced open (neither says when it will change).
pub const RECHECK: Duration = Duration::from_millis(5);

/// A service wrapped by [`ResilienceLayer`](crate::ResilienceLayer).
///
/// Each request is one logical call: its attempts each go through the
/// breaker, the rate limiter, the bulkhead and the attempt timeout, and
/// failures worth it are retried (by the request's [`Replay`]) within the
/// deadline and the provider's retry budget. A failed *response* that is
/// not retried (retries spent, a permanent status) is returned as the
/// response; an inner error as [`Error::Inner`]; a local refusal as
/// [`Error::Resilience`].
///
/// Attempts after the first call a clone of the inner service, made ready
/// with `ServiceExt::ready`: `call` takes the service `poll_ready` made
/// ready and leaves a clone in its place (tower's idiom, since a service
/// may only be called after its own `poll_ready`), so the first attempt
/// uses the capacity `poll_ready` reserved and each retry reserves its
/// own. The inner service must be `Clone` (tonic's `Channel` and hyper's
/// client are cheap handles).
pub struct Resilience<S, C> {
    inner: S,
    policy: Policy,
    classifier: C,
    readiness: Readiness,
    /// Wakes an honest `poll_ready` that answered `Pending`.
    wake: Option<Pin<Box<Sleep>>>,
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Resilience<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resilience")
            .field("inner", &self.inner)
            .field("provider", &self.policy.provider())
            .field("classifier", &self.classifier)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, C: Clone> Clone for Resilience<S, C> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            self.policy.clone(),
            self.classifier.clone(),
            self.readiness,
        )
    }
}

impl<S, C> Resilience<S, C> {
    /// Wrap `inner` (what [`ResilienceLayer`](crate::ResilienceLayer) does).
    pub const fn new(inner: S, policy: Policy, classifier: C, readiness: Readiness) -> Self {
        Self {
            inner,
            policy,
            classifier,
            readiness,
            wake: None,
        }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The policy.
    pub const fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How long the policy would refuse a call made now, if it would: the
    /// breaker's time to its next probe, or [`RECHECK`] while the breaker
    /// is forced open or the bulkhead full.
    #[must_use]
    pub fn refusing_for(&self) -> Option<Duration> {
        let provider = self.policy.shared();
        let breaker = provider.breaker();
        match breaker.state() {
            BreakerState::Open => {
                if let Some(wait) = breaker.next_probe_in().filter(|w| !w.is_zero()) {
                    return Some(wait);
                }
            }
            BreakerState::ForcedOpen => return Some(RECHECK),
            BreakerState::Closed | BreakerState::HalfOpen | BreakerState::ForcedClosed => {}
        }
        provider
            .bulkhead()
            .filter(|b| b.in_flight() >= b.config().max_concurrent())
            .map(|_| RECHECK)
    }
}

/// The boxed future of [`Resilience::call`].
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, Error<E>>> + Send>>;

impl<S, C, Req> Service<Req> for Resilience<S, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    C: ClassifyResponse<S::Response, S::Error> + Clone + Send + Sync + 'static,
    Req: Replay + Send + 'static,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.readiness == Readiness::Honest {
            // Before the inner service: a `Pending` here must not sit on
            // capacity the inner service reserved (a buffer slot, a permit).
            if let Some(wait) = self.refusing_for() {
                let at = Instant::now() + wait;
                let sleep = self
                    .wake
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                sleep.as_mut().reset(at);
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(drive(
            self.policy.clone(),
            self.classifier.clone(),
            ready,
            request,
        ))
    }
}

/// A failed attempt, as the call driver sees it.
enum AttemptError<R, E> {
    /// The inner service's outcome, judged a failure.
    Failed {
        outcome: Result<R, E>,
        failure: Failure,
    },
    /// Refused or cut here.
    Local(buttress_core::Error),
}

impl<R, E> Classify for AttemptError<R, E> {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Failed { failure, .. } => failure.class,
            Self::Local(e) => e.class(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Failed { failure, .. } => failure.retry_after,
            Self::Local(e) => e.retry_after(),
        }
    }
}

impl<R, E> From<buttress_core::Error> for AttemptError<R, E> {
    fn from(error: buttress_core::Error) -> Self {
        Self::Local(error)
    }
}

async fn drive<S, C, Req>(
    policy: Policy,
    classifier: C,
    mut inner: S,
    request: Req,
) -> Result<S::Response, Error<S::Error>>
where
    S: Service<Req>,
    C: ClassifyResponse<S::Response, S::Error>,
    Req: Replay,
{
    let mut call =
        policy.call::<Result<S::Response, S::Error>, AttemptError<S::Response, S::Error>>();
    if request.is_idempotent() {
        call.set_idempotent(true);
    }
    let attempt_timeout = policy.attempt_timeout();
    let (first, mut source) = request.into_source();
    let mut request = first;
    // The service `call` took was made ready by the caller's `poll_ready`.
    let mut ready = true;
    let result = loop {
        // The next attempt's copy, made before this attempt is sent: when
        // there can be none, this attempt is the last. Then its timeout is
        // not retried (a timeout is `OutcomeUnknown`: retried only for an
        // idempotent call) and its failure is final.
        let mut next = Req::replay(&mut source);
        let last = next.is_none();
        if last {
            call.set_idempotent(false);
        }
        // Moved into the body as `&mut` (which is `Send` when its target
        // is), not borrowed by it (which would need `Sync`).
        let (inner, source, ready, classifier) = (&mut inner, &mut source, &mut ready, &classifier);
        let attempt = call.attempt(async move {
            request.before_attempt(&TimeLeft { attempt_timeout });
            let outcome = if std::mem::take(ready) {
                inner.call(request).await
            } else {
                match inner.ready().await {
                    Ok(service) => service.call(request).await,
                    Err(e) => Err(e),
                }
            };
            match classifier.classify(&outcome) {
                None => Ok(outcome),
                Some(mut failure) => {
                    let retried = matches!(
                        failure.class,
                        ErrorClass::Transient | ErrorClass::RateLimited
                    );
                    if retried && (last || !Req::can_replay(source)) {
                        // No copy to send: the call ends with this outcome.
                        // (The breaker then does not count it a failure.)
                        failure.class = ErrorClass::Permanent;
                    }
                    Err(AttemptError::Failed { outcome, failure })
                }
            }
        });
        match attempt.await {
            ControlFlow::Break(result) => break result,
            ControlFlow::Continue(()) => {
                // `last` never continues: a permanent failure or an
                // unretried timeout ends the call.
                match next.take() {
                    Some(copy) => request = copy,
                    None => return Err(Error::NotReplayable),
                }
            }
        }
    };
    match result {
        Ok(Ok(response))
        | Err(AttemptError::Failed {
            outcome: Ok(response),
            ..
        }) => Ok(response),
        Ok(Err(error))
        | Err(AttemptError::Failed {
            outcome: Err(error),
            ..
        }) => Err(Error::Inner(error)),
        Err(AttemptError::Local(error)) => Err(Error::Resilience(error)),
    }
}
