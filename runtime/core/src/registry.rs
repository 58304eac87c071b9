//! The process-wide registry: one set of shared policy state per provider.
//!
//! Every call site that names provider "stripe" shares one breaker, one
//! retry budget, one rate limiter and one bulkhead, so all of them see the
//! provider's health together and a trip stops them all. The registry is
//! touched when a call site first runs (its policy is built once and kept)
//! and again only after the registry's settings changed (a configuration
//! file loaded, a policy defined): a call's hot path reads one atomic
//! generation counter and takes no lock.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::AtomicBool;

use crate::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::breaker::Breaker;
use crate::budget::RetryBudget;
use crate::bulkhead::Bulkhead;
use crate::error::ConfigError;
use crate::policy_config::PolicyConfig;
pub use crate::policy_config::SharedConfig;
use crate::rate_limit::RateLimiter;
use crate::recovery::Gate;
use crate::sync::RwLock;
use crate::throttle::AdaptiveThrottle;

/// The live shared state of one provider.
#[derive(Debug)]
pub struct Provider {
    name: Arc<str>,
    config: SharedConfig,
    // Each piece of shared state is its own `Arc`, so that a reload which
    // changes one of them keeps the others, state and counts included.
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) breaker_trips: bool,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    pub(crate) bulkhead: Option<Arc<Bulkhead>>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) throttle: Option<Arc<AdaptiveThrottle>>,
    warned_mismatch: AtomicBool,
}

impl Provider {
    pub(crate) fn new(name: Arc<str>, config: SharedConfig) -> Self {
        Self {
            breaker: Arc::new(Breaker::new(
                Arc::clone(&name),
                config.breaker.unwrap_or_default(),
            )),
            breaker_trips: config.breaker.is_some(),
            budget: config.budget.map(|c| Arc::new(RetryBudget::new(c))),
            limiter: config.rate_limit.map(|c| Arc::new(RateLimiter::new(c))),
            bulkhead: config.bulkhead.map(|c| Arc::new(Bulkhead::new(c))),
            gate: Arc::new(Gate::with_pinned(
                Arc::clone(&name),
                config.recovery,
                config.throttle.is_some(),
            )),
            throttle: config.throttle.map(|c| Arc::new(AdaptiveThrottle::new(c))),
            name,
            config,
            warned_mismatch: AtomicBool::new(false),
        }
    }

    /// The state of `old` under new settings: every piece whose settings did
    /// not change is kept as it is; a changed breaker takes over the old
    /// one's forced state and trip count (see
    /// [`Breaker::take_over`]).
    #[cfg_attr(not(feature = "serde-config"), allow(dead_code))]
    pub(crate) fn reconfigured(old: &Self, config: SharedConfig) -> Self {
        let breaker_config = config.breaker.unwrap_or_default();
        let breaker = if *old.breaker.config() == breaker_config {
            Arc::clone(&old.breaker)
        } else {
            let mut breaker = Breaker::new(Arc::clone(&old.name), breaker_config);
            breaker.take_over(&old.breaker);
            tracing::info!(
                provider = &*old.name,
                was = old.breaker.state().as_str(),
                now = breaker.state().as_str(),
                "breaker settings changed: a new breaker replaces the old one (empty window; a forced state is kept)"
            );
            Arc::new(breaker)
        };
        fn keep<C: PartialEq + Copy, T>(
            old: Option<&Arc<T>>,
            old_config: Option<C>,
            config: Option<C>,
            make: impl FnOnce(C) -> T,
        ) -> Option<Arc<T>> {
            match (old, config) {
                (Some(old), Some(_)) if old_config == config => Some(Arc::clone(old)),
                (_, config) => config.map(|c| Arc::new(make(c))),
            }
        }
        Self {
            breaker,
            breaker_trips: config.breaker.is_some(),
            budget: keep(
                old.budget.as_ref(),
                old.config.budget,
                config.budget,
                RetryBudget::new,
            ),
            // A changed limiter or bulkhead takes the new settings in
            // place: the reservations and the calls in flight carry over,
            // so a reload in the middle of an incident neither refills the
            // burst nor lets through a second limit's worth of calls.
            limiter: match (old.limiter.as_ref(), config.rate_limit) {
                (Some(limiter), Some(c)) if limiter.reconfigure(c) => Some(Arc::clone(limiter)),
                (_, c) => c.map(|c| Arc::new(RateLimiter::new(c))),
            },
            bulkhead: match (old.bulkhead.as_ref(), config.bulkhead) {
                (Some(bulkhead), Some(c)) => {
                    if bulkhead.config() != c {
                        bulkhead.reconfigure(c);
                    }
                    Some(Arc::clone(bulkhead))
                }
                (_, c) => c.map(|c| Arc::new(Bulkhead::new(c))),
            },
            gate: if old.config.recovery == config.recovery
                && old.config.throttle.is_some() == config.throttle.is_some()
            {
                Arc::clone(&old.gate)
            } else {
                Arc::new(Gate::with_pinned(
                    Arc::clone(&old.name),
                    config.recovery,
                    config.throttle.is_some(),
                ))
            },
            throttle: keep(
                old.throttle.as_ref(),
                old.config.throttle,
                config.throttle,
                AdaptiveThrottle::new,
            ),
            name: Arc::clone(&old.name),
            config,
            warned_mismatch: AtomicBool::new(false),
        }
    }

    /// The provider's name.
    #[must_use]
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The settings the shared state was created with.
    #[must_use]
    pub const fn config(&self) -> &SharedConfig {
        &self.config
    }

    /// The provider's breaker.
    #[must_use]
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The provider's retry budget, if it has one.
    #[must_use]
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_deref()
    }

    /// The provider's rate limiter, if it has one.
    #[must_use]
    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.limiter.as_deref()
    }

    /// The provider's bulkhead, if it has one.
    #[must_use]
    pub fn bulkhead(&self) -> Option<&Bulkhead> {
        self.bulkhead.as_deref()
    }

    /// The provider's gate: waiting calls, cooldown, pacing, learned quota.
    #[must_use]
    pub fn recovery(&self) -> &Gate {
        &self.gate
    }

    /// The provider's adaptive throttle, if it has one.
    #[must_use]
    pub fn throttle(&self) -> Option<&AdaptiveThrottle> {
        self.throttle.as_deref()
    }
}

/// A handle to a provider's breaker, for operators:
/// `Registry::global().breaker("stripe").force_open()`.
///
/// It dereferences to [`Breaker`] (`state()`, `force_open()`,
/// `force_closed()`, `reset()`, `stats()`; its transitions arrive through
/// [`events`](crate::events)).
///
/// A handle names the breaker in force when it was taken. A configuration
/// reload that changes the provider's breaker settings replaces the breaker
/// (keeping a forced state); take a new handle after such a reload to read
/// the new one's counts.
#[derive(Clone)]
pub struct BreakerHandle(Arc<Breaker>);

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Deref for BreakerHandle {
    type Target = Breaker;
    fn deref(&self) -> &Breaker {
        &self.0
    }
}

/// Shared policy state by provider name.
#[derive(Default)]
pub struct Registry {
    pub(crate) providers: RwLock<HashMap<Arc<str>, Arc<Provider>>>,
    policies: RwLock<HashMap<String, PolicyConfig>>,
    /// Bumped after every change that call sites must see.
    generation: AtomicU64,
    /// Settings laid over the call sites' own (a loaded configuration
    /// file), if any.
    overlay: RwLock<Option<Arc<dyn Overlay>>>,
    /// One overlay installed at a time.
    installing: std::sync::Mutex<()>,
}

/// Settings laid over those written in code: what a loaded configuration
/// file is to the registry. The registry knows nothing of files; the
/// `config` module implements this.
pub(crate) trait Overlay: Send + Sync {
    /// The providers this overlay configures.
    fn providers(&self) -> Vec<&str>;

    /// The shared settings of `provider` under this overlay, given its
    /// `current` ones (`None` if it is not registered yet).
    fn shared(&self, provider: &str, current: Option<&SharedConfig>) -> SharedConfig;

    /// Lay the overlay over a call site's `config` (named `named`).
    fn apply(&self, config: &mut PolicyConfig, named: Option<&str>);
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let providers = self.providers.read();
        f.debug_struct("Registry")
            .field("providers", &providers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry, separate from the global one (useful in tests, or
    /// to isolate tenants).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry that `#[resilient]` and
    /// [`crate::Policy::builder`] use.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Self::new)
    }

    /// The shared state of `name`, created with `config` if this is its
    /// first registration. A later registration with different settings
    /// keeps the first ones and logs a warning once. A provider named in a
    /// loaded configuration file already has the file's settings.
    pub fn register(&self, name: &str, config: &SharedConfig) -> Arc<Provider> {
        if let Some(existing) = self.providers.read().get(name) {
            Self::check_same(existing, config);
            return Arc::clone(existing);
        }
        let mut providers = self.providers.write();
        if let Some(existing) = providers.get(name) {
            Self::check_same(existing, config);
            return Arc::clone(existing);
        }
        let name: Arc<str> = Arc::from(name);
        let provider = Arc::new(Provider::new(Arc::clone(&name), *config));
        providers.insert(name, Arc::clone(&provider));
        provider
    }

    fn check_same(existing: &Provider, config: &SharedConfig) {
        if existing.config != *config && !existing.warned_mismatch.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                provider = &*existing.name,
                "a call site configures provider `{}` differently from its first registration; \
                 the shared breaker, budget, rate limit and bulkhead keep the first settings \
                 (name the settings once, in a config file or a shared `policy`)",
                existing.name
            );
        }
    }

    /// The shared state of `name`, if some call site registered it.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        self.providers.read().get(name).cloned()
    }

    /// The breaker of `name`, creating the provider with the default
    /// settings if no call site ran yet.
    pub fn breaker(&self, name: &str) -> BreakerHandle {
        let provider = match self.get(name) {
            Some(provider) => provider,
            None => self.register(name, &SharedConfig::new()),
        };
        BreakerHandle(Arc::clone(&provider.breaker))
    }

    /// Define (or replace) the named policy that `#[resilient(policy =
    /// "name")]` call sites use instead of their inline settings (a
    /// configuration file's `policies.<name>` still overrides it key by key).
    /// Call sites pick it up on their next call.
    ///
    /// # Errors
    /// A [`ConfigError`] if the settings are invalid (nothing is stored).
    pub fn define_policy(
        &self,
        name: &str,
        config: impl Into<PolicyConfig>,
    ) -> Result<(), ConfigError> {
        let config = config.into();
        config
            .validate()
            .map_err(|e| e.within(&format!("policies.{name}")))?;
        self.policies.write().insert(name.to_owned(), config);
        self.bump();
        Ok(())
    }

    /// A counter that moves whenever settings that call sites read change
    /// (a file loaded, a policy defined). One relaxed atomic load.
    #[inline]
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub(crate) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The settings a call site gets from this registry: its `inline`
    /// settings (or, for `#[resilient(policy = "name")]`, the policy
    /// `named` when one is defined in code), with a loaded configuration
    /// file's `providers.<provider>` and `policies.<name>` sections laid
    /// over them key by key. What a call site starting now would use; for
    /// inspection and tests.
    ///
    /// The result is not validated: a file can combine with inline values
    /// into an invalid whole (a file's timeout above an inline deadline);
    /// such a call site logs a warning and keeps its previous settings.
    #[must_use]
    pub fn settings_for(&self, inline: &PolicyConfig, named: Option<&str>) -> PolicyConfig {
        let mut config = named
            .and_then(|name| self.policy_config(name))
            .unwrap_or_else(|| inline.clone());
        if let Some(overlay) = self.overlay.read().clone() {
            overlay.apply(&mut config, named);
        }
        config
    }

    /// Lay `overlay` over every call site's settings (replacing the one
    /// before), reconfiguring the providers it names; call sites pick it
    /// up on their next call.
    #[cfg_attr(not(feature = "serde-config"), allow(dead_code))]
    pub(crate) fn install(&self, overlay: Arc<dyn Overlay>) {
        // One at a time, so that two reloads cannot interleave their swaps.
        let _installing = self
            .installing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let mut providers = self.providers.write();
            for name in overlay.providers() {
                let current = providers.get(name);
                let shared = overlay.shared(name, current.map(|p| p.config()));
                let next = match current {
                    Some(old) if *old.config() == shared => continue,
                    Some(old) => Provider::reconfigured(old, shared),
                    None => Provider::new(Arc::from(name), shared),
                };
                providers.insert(Arc::clone(next.name()), Arc::new(next));
            }
            *self.overlay.write() = Some(overlay);
        }
        self.bump();
    }

    /// The named policy's settings, if defined.
    #[must_use]
    pub fn policy_config(&self, name: &str) -> Option<PolicyConfig> {
        self.policies.read().get(name).cloned()
    }

    /// The names of every registered provider.
    #[must_use]
    pub fn providers(&self) -> Vec<Arc<str>> {
        let mut names: Vec<_> = self.providers.read().keys().cloned().collect();
        names.sort();
        names
    }
}
