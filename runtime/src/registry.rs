//! The process-wide registry: one set of shared policy state per provider.
//!
//! Every call site that names provider "stripe" shares one breaker, one
//! retry budget, one rate limiter and one bulkhead, so all of them see the
//! provider's health together and a trip stops them all. The registry is
//! touched when a call site first runs (its policy is built once and kept),
//! never on a call's hot path.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::breaker::{Breaker, BreakerConfig};
use crate::budget::{BudgetConfig, RetryBudget};
use crate::bulkhead::{Bulkhead, BulkheadConfig};
use crate::error::ConfigError;
use crate::policy::PolicyConfig;
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::sync::RwLock;

/// The settings shared by every call site of one provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedConfig {
    /// The breaker, or `None` for `breaker = off` (the breaker still exists
    /// so operators can force it, but never trips by itself).
    pub breaker: Option<BreakerConfig>,
    /// The retry budget, or `None` for `budget = off`.
    pub budget: Option<BudgetConfig>,
    /// The rate limiter, if any.
    pub rate_limit: Option<RateLimitConfig>,
    /// The bulkhead, if any.
    pub bulkhead: Option<BulkheadConfig>,
}

impl SharedConfig {
    /// What a provider gets when no call site configured it: the default
    /// breaker and budget, no rate limit, no bulkhead.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            breaker: Some(BreakerConfig::new()),
            budget: Some(BudgetConfig::new()),
            rate_limit: None,
            bulkhead: None,
        }
    }
}

impl Default for SharedConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The live shared state of one provider.
#[derive(Debug)]
pub struct Provider {
    name: Arc<str>,
    config: SharedConfig,
    pub(crate) breaker: Breaker,
    pub(crate) breaker_trips: bool,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) limiter: Option<RateLimiter>,
    pub(crate) bulkhead: Option<Bulkhead>,
    warned_mismatch: AtomicBool,
}

impl Provider {
    fn new(name: Arc<str>, config: SharedConfig) -> Self {
        Self {
            breaker: Breaker::new(Arc::clone(&name), config.breaker.unwrap_or_default()),
            breaker_trips: config.breaker.is_some(),
            budget: config.budget.map(RetryBudget::new),
            limiter: config.rate_limit.map(RateLimiter::new),
            bulkhead: config.bulkhead.map(Bulkhead::new),
            name,
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
    pub const fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The provider's retry budget, if it has one.
    #[must_use]
    pub const fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The provider's rate limiter, if it has one.
    #[must_use]
    pub const fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.limiter.as_ref()
    }

    /// The provider's bulkhead, if it has one.
    #[must_use]
    pub const fn bulkhead(&self) -> Option<&Bulkhead> {
        self.bulkhead.as_ref()
    }
}

/// A handle to a provider's breaker, for operators:
/// `Registry::global().breaker("stripe").force_open()`.
///
/// It dereferences to [`Breaker`] (`state()`, `force_open()`,
/// `force_closed()`, `reset()`, `stats()`, `on_transition()`).
#[derive(Clone)]
pub struct BreakerHandle(Arc<Provider>);

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.breaker.fmt(f)
    }
}

impl Deref for BreakerHandle {
    type Target = Breaker;
    fn deref(&self) -> &Breaker {
        &self.0.breaker
    }
}

/// Shared policy state by provider name.
#[derive(Default)]
pub struct Registry {
    providers: RwLock<HashMap<Arc<str>, Arc<Provider>>>,
    policies: RwLock<HashMap<String, PolicyConfig>>,
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
    /// keeps the first ones and logs a warning once.
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
        BreakerHandle(provider)
    }

    /// Define (or replace) the named policy that `#[resilient(policy =
    /// "name")]` call sites use instead of their inline settings. Call sites
    /// read it when they first run.
    ///
    /// # Errors
    /// A [`ConfigError`] if the settings are invalid (nothing is stored).
    pub fn define_policy(&self, name: &str, config: PolicyConfig) -> Result<(), ConfigError> {
        config
            .validate()
            .map_err(|e| e.within(&format!("policies.{name}")))?;
        self.policies.write().insert(name.to_owned(), config);
        Ok(())
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
