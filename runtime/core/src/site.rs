//! The per-call-site cache of `#[resilient]`: a site's inline settings,
//! and the policy they resolve to in the registry, swapped when the
//! registry's settings change.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;

use crate::bound::PolicyInner;
use crate::call::Call;
use crate::class::Classify;
use crate::error::{ConfigError, Error};
use crate::policy_config::PolicyConfig;
use crate::registry::Registry;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::RwLock;

type Resolved = Result<Arc<PolicyInner>, ConfigError>;

/// `Site::with_name`, `const` where the atomics allow it.
macro_rules! site_with_name {
    (#[$cfg:meta] $($constness:tt)?) => {
        #[$cfg]
        pub(crate) $($constness)? fn with_name(
            named: Option<&'static str>,
            config: PolicyConfig,
        ) -> Self {
            Self {
                config,
                named,
                current: ArcSwapOption::const_empty(),
                resolved_at: AtomicU64::new(0),
                history: RwLock::new(Vec::new()),
            }
        }
    };
}

/// One `#[resilient]` call site: its inline settings, and its policy,
/// resolved on first use and again after the registry's settings changed
/// (a configuration file loaded, a policy defined).
///
/// The hot path reads the registry's generation counter (one relaxed load),
/// the site's resolution stamp and its current policy (an [`ArcSwapOption`]
/// load: no lock, no allocation), and clones the policy's `Arc` into the
/// call. A resolution that changes the site's settings (or its provider's
/// shared state object) swaps the new policy in; the replaced one is freed
/// when the last call holding it ends, so a process that reloads its
/// configuration for ever keeps only the policies in use. A reload that
/// changes nothing reuses the policy in force, and returning to earlier
/// settings reuses an earlier policy while calls still hold it.
#[derive(Debug)]
pub struct Site {
    config: PolicyConfig,
    named: Option<&'static str>,
    /// The policy in force: empty before first use.
    current: ArcSwapOption<Resolved>,
    /// The registry generation `current` was resolved at, plus one (zero:
    /// never resolved).
    resolved_at: AtomicU64,
    /// The policies this site used before, while calls still hold them, so
    /// that returning to earlier settings reuses one. Also serialises
    /// resolutions.
    history: RwLock<Vec<Weak<PolicyInner>>>,
}

impl Site {
    /// A call site with these settings.
    #[must_use]
    #[cfg(not(all(test, buttress_loom)))]
    pub const fn new(config: PolicyConfig) -> Self {
        Self::with_name(None, config)
    }

    /// A call site using the registry's policy `name` when one is defined
    /// ([`Registry::define_policy`], or `policies.<name>` in a loaded
    /// configuration file), and these inline settings otherwise.
    #[must_use]
    #[cfg(not(all(test, buttress_loom)))]
    pub const fn named(name: &'static str, config: PolicyConfig) -> Self {
        Self::with_name(Some(name), config)
    }

    site_with_name!(#[cfg(not(all(test, buttress_loom)))] const);
    // Loom's atomics are not `const`: the models build sites at run time.
    site_with_name!(#[cfg(all(test, buttress_loom))]);

    /// Start a call under the site's policy, bound to the global registry.
    ///
    /// # Errors
    /// The configuration error, if the settings are invalid (the macro
    /// checks them at compile time, so this is a safety net).
    #[inline]
    pub fn call<T, E>(&'static self) -> Result<Call<'static, T, E>, Error>
    where
        E: Classify + From<Error>,
    {
        self.call_in(Registry::global())
    }

    /// The site's policy in the global registry (see [`Site::call`]).
    #[inline]
    pub(crate) fn policy(&'static self) -> Result<Arc<PolicyInner>, Error> {
        self.policy_in(Registry::global())
    }

    /// The site's policy in `registry`: the one resolved at the registry's
    /// current generation, or a fresh resolution.
    #[inline]
    pub(crate) fn policy_in(&'static self, registry: &Registry) -> Result<Arc<PolicyInner>, Error> {
        let generation = registry.generation();
        if self.resolved_at.load(Ordering::Acquire) == generation.wrapping_add(1) {
            // `current` is stored before `resolved_at` (release), so the
            // stamp read above (acquire) makes it visible.
            if let Some(resolved) = &*self.current.load() {
                return self.held(resolved);
            }
        }
        let resolved = self.resolve(registry);
        self.held(&resolved)
    }

    #[inline]
    fn held(&self, resolved: &Resolved) -> Result<Arc<PolicyInner>, Error> {
        match resolved {
            Ok(policy) => Ok(Arc::clone(policy)),
            Err(e) => Err(Error::invalid_policy(&self.config.provider, e)),
        }
    }

    #[inline]
    pub(crate) fn call_in<T, E>(
        &'static self,
        registry: &Registry,
    ) -> Result<Call<'static, T, E>, Error>
    where
        E: Classify + From<Error>,
    {
        self.policy_in(registry).map(Call::holding)
    }

    #[cold]
    #[inline(never)]
    fn resolve(&'static self, registry: &Registry) -> Arc<Resolved> {
        let mut history = self.history.write();
        loop {
            let generation = registry.generation();
            let resolved = self.resolve_at(registry, &mut history);
            if registry.generation() != generation {
                continue; // settings changed while resolving: resolve again
            }
            let replaced = self.current.swap(Some(Arc::clone(&resolved)));
            self.resolved_at
                .store(generation.wrapping_add(1), Ordering::Release);
            if let Some(Ok(old)) = replaced.as_deref() {
                if !(*resolved).as_ref().is_ok_and(|new| Arc::ptr_eq(new, old)) {
                    history.push(Arc::downgrade(old));
                }
            }
            // Forget the policies no call holds any more.
            history.retain(|earlier| earlier.strong_count() > 0);
            return resolved;
        }
    }

    fn resolve_at(
        &self,
        registry: &Registry,
        history: &mut Vec<Weak<PolicyInner>>,
    ) -> Arc<Resolved> {
        let current = self.current.load_full();
        // Checked here, once: binding takes only validated settings.
        let config = match registry.settings_for(&self.config, self.named).validated() {
            Ok(config) => config,
            Err(e) => {
                let keep = current.clone().filter(|c| c.is_ok());
                tracing::warn!(
                    provider = &*self.config.provider,
                    operation = &*self.config.operation,
                    error = %e,
                    "the configured settings of this call site are invalid; it keeps {}",
                    if keep.is_some() { "its previous settings" } else { "its inline settings" }
                );
                if let Some(keep) = keep {
                    return keep;
                }
                match self.config.clone().validated() {
                    Ok(inline) => inline,
                    Err(e) => return Arc::new(Err(e)),
                }
            }
        };
        let provider = registry.get(&config.get().provider);
        let same = |inner: &PolicyInner| {
            inner.config == *config.get()
                && provider
                    .as_ref()
                    .is_some_and(|p| Arc::ptr_eq(p, &inner.provider))
        };
        if let Some(current) = current.filter(|c| (**c).as_ref().is_ok_and(|p| same(p))) {
            return current;
        }
        let earlier = history
            .iter()
            .enumerate()
            .rev()
            .find_map(|(index, earlier)| {
                let inner = earlier.upgrade().filter(|inner| same(inner))?;
                Some((index, inner))
            });
        if let Some((index, inner)) = earlier {
            history.remove(index);
            return Arc::new(Ok(inner));
        }
        Arc::new(Ok(Arc::new(PolicyInner::bind(config, registry))))
    }
}
