//! The layer: a policy, a classifier and a readiness rule, applied to a
//! service.

use buttress_core::Policy;
use tower_layer::Layer;

use crate::classify::Standard;
use crate::service::Resilience;

/// How [`Resilience::poll_ready`](tower_service::Service::poll_ready)
/// answers while the policy would refuse a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Readiness {
    /// Not ready while the provider's breaker is open (until its next
    /// probe is due) or forced open, or while its bulkhead has no free
    /// slot; the task is woken when the breaker is due a probe, and every
    /// few milliseconds ([`RECHECK`](crate::RECHECK)) while the bulkhead
    /// is full or the breaker forced open. Ready otherwise, once the inner
    /// service is (a half-open breaker reads ready: if its probe slots are
    /// taken by the time the call runs, the call is refused with
    /// `CircuitOpen`). What a balancer (`tower::balance`) needs to route
    /// around an endpoint whose breaker is open.
    #[default]
    Honest,
    /// Ready whenever the inner service is: a call the policy refuses
    /// fails fast with [`Error::Resilience`](crate::Error::Resilience)
    /// (`CircuitOpen`, `BulkheadFull`) instead of waiting in `poll_ready`.
    /// What a single client that wants the refusal now, not later, needs.
    FailFast,
}

/// A tower [`Layer`] that runs every request as one logical call under a
/// buttress [`Policy`]: per-attempt timeout, deadline, retries with
/// backoff under the provider's retry budget, breaker, rate limit and
/// bulkhead, shared with every other call site of the same provider.
///
/// `C` decides what a response or error means ([`Standard`] by default;
/// see [`ClassifyResponse`](crate::ClassifyResponse)).
#[derive(Debug, Clone)]
pub struct ResilienceLayer<C = Standard> {
    policy: Policy,
    classifier: C,
    readiness: Readiness,
}

impl ResilienceLayer {
    /// A layer running each request under `policy`, classifying outcomes
    /// with [`Standard`], honest in `poll_ready` ([`Readiness::Honest`]).
    #[must_use]
    pub const fn new(policy: Policy) -> Self {
        Self {
            policy,
            classifier: Standard,
            readiness: Readiness::Honest,
        }
    }
}

impl<C> ResilienceLayer<C> {
    /// Classify outcomes with `classifier` instead (a
    /// [`ClassifyResponse`](crate::ClassifyResponse): [`ByError`](crate::ByError),
    /// or a closure `Fn(&Result<Resp, Err>) -> Option<Failure>`).
    #[must_use]
    pub fn classify_with<D>(self, classifier: D) -> ResilienceLayer<D> {
        ResilienceLayer {
            policy: self.policy,
            classifier,
            readiness: self.readiness,
        }
    }

    /// Choose how `poll_ready` answers while the policy would refuse.
    #[must_use]
    pub const fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// The policy.
    #[must_use]
    pub const fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl<S, C: Clone> Layer<S> for ResilienceLayer<C> {
    type Service = Resilience<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Resilience::new(
            inner,
            self.policy.clone(),
            self.classifier.clone(),
            self.readiness,
        )
    }
}
