//! A call site's settings bound to its provider's shared state in a
//! registry: what every call of the site reads.

use std::sync::Arc;
use std::time::Duration;

use crate::adaptive_timeout::LatencyTracker;
use crate::policy_config::{PolicyConfig, Validated};
use crate::registry::{Provider, Registry};
use crate::rng::Rng;
use crate::telemetry::SiteTelemetry;

impl std::fmt::Debug for PolicyInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyInner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct PolicyInner {
    pub(crate) config: PolicyConfig,
    pub(crate) provider: Arc<Provider>,
    pub(crate) rng: Rng,
    pub(crate) telemetry: SiteTelemetry,
    pub(crate) latency: Option<LatencyTracker>,
}

/// Policies alive in the process (each `Policy` built, until the last
/// clone and the last call holding it are gone).
static LIVE_POLICIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many policies are alive in the process: built and not yet freed
/// (every clone and every call holding one gone). A call site's replaced
/// policy is freed once its last call ends, so this stays flat however
/// often a configuration is reloaded.
#[must_use]
pub fn live_policies() -> usize {
    LIVE_POLICIES.load(std::sync::atomic::Ordering::Relaxed)
}

impl Drop for PolicyInner {
    fn drop(&mut self) {
        LIVE_POLICIES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PolicyInner {
    /// The timeout of the next attempt of a call whose adaptive timeout
    /// already cut `cut` of its attempts: the fixed one, or the adaptive
    /// one doubled per cut (up to its `max`), as TCP backs off its
    /// retransmission timer.
    #[inline]
    pub(crate) fn attempt_timeout(&self, cut: u32) -> Option<Duration> {
        match &self.latency {
            None => self.config.timeout,
            Some(tracker) if cut == 0 => Some(tracker.timeout()),
            Some(tracker) => Some(
                tracker
                    .timeout()
                    .saturating_mul(1 << cut.min(16))
                    .min(tracker.config().max()),
            ),
        }
    }
}

impl PolicyInner {
    /// Bind `config`, validated once by the caller, to its provider in
    /// `registry` (registering the provider on first use).
    pub(crate) fn bind(config: Validated, registry: &Registry) -> Self {
        let config = config.into_inner();
        let provider = registry.register(&config.provider, &config.shared());
        let rng = config.seed.map_or_else(Rng::from_entropy, Rng::seeded);
        let latency = config.adaptive_timeout.map(|adaptive| {
            // No attempt outlasts the deadline: it bounds the adaptive
            // timeout's `max` (the default 10 s, say, under a 5 s deadline).
            let adaptive = match config.deadline {
                Some(deadline) if adaptive.max > deadline => {
                    adaptive.with_max(deadline.max(adaptive.min))
                }
                _ => adaptive,
            };
            LatencyTracker::new(adaptive, config.timeout.unwrap_or(adaptive.max))
        });
        let telemetry = SiteTelemetry::new(
            Arc::clone(provider.name()),
            config.operation.clone(),
            Arc::clone(&provider.breaker),
        );
        LIVE_POLICIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            config,
            provider,
            rng,
            telemetry,
            latency,
        }
    }
}
