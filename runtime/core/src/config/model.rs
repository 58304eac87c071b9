//! The checked model of a configuration file, built from a parsed tree by
//! the checker (`checker.rs`, `sections.rs`), and what the registry lays
//! over the settings written in code.

use std::collections::BTreeMap;
use std::time::Duration;

use buttress_settings::keys;
use serde_json::Value;

use super::checker::Checker;
use crate::adaptive_timeout::AdaptiveTimeoutConfig;
use crate::error::ConfigError;
use crate::policy_config::PolicyConfig;
use crate::recovery::RecoveryConfig;
use crate::registry::{Overlay, SharedConfig};
use crate::retry::{Backoff, Jitter};
use crate::throttle::ThrottleConfig;

const TOP_KEYS: &[&str] = keys::FILE;

/// Per-call settings a file section overrides, key by key, on top of a call
/// site's inline values.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CallOverrides {
    pub(super) timeout: Option<Duration>,
    /// `adaptive_timeout`: a table, or `"off"`.
    pub(super) adaptive_timeout: Option<Option<AdaptiveTimeoutConfig>>,
    pub(super) deadline: Option<Duration>,
    pub(super) max_attempts: Option<u32>,
    pub(super) backoff: Option<Backoff>,
    pub(super) jitter: Option<Jitter>,
    pub(super) idempotent: Option<bool>,
    pub(super) hedge: Option<bool>,
}

impl CallOverrides {
    fn apply(&self, config: &mut PolicyConfig) {
        if let Some(timeout) = self.timeout {
            config.timeout = Some(timeout);
        }
        if let Some(adaptive) = self.adaptive_timeout {
            config.adaptive_timeout = adaptive;
        }
        if let Some(deadline) = self.deadline {
            config.deadline = Some(deadline);
        }
        if let Some(n) = self.max_attempts {
            config.retry.max_attempts = n;
        }
        if let Some(backoff) = self.backoff {
            config.retry.backoff = backoff;
        }
        if let Some(jitter) = self.jitter {
            config.retry.jitter = jitter;
        }
        if let Some(idempotent) = self.idempotent {
            config.idempotent = idempotent;
        }
        if let Some(hedge) = self.hedge {
            config.hedge = hedge;
        }
    }
}

/// `providers.<name>`: the provider's shared state, and per-call defaults
/// for every call site of the provider.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProviderSection {
    pub(crate) shared: SharedConfig,
    pub(super) call: CallOverrides,
    /// `recovery`, when the file sets it (also in `shared`).
    pub(super) recovery: Option<RecoveryConfig>,
    /// `throttle`, when the file sets it (also in `shared`).
    pub(super) throttle: Option<Option<ThrottleConfig>>,
    /// `shared_quota`: the account's quota shared by replicas in Redis.
    #[cfg(feature = "redis")]
    pub(super) shared_quota: Option<crate::shared_quota::SharedQuota>,
}

impl ProviderSection {
    /// The shared settings this section gives a provider whose settings
    /// are `current`: recovery and the throttle stay as they are unless the
    /// file sets them.
    pub(crate) fn shared_over(&self, current: Option<&SharedConfig>) -> SharedConfig {
        let mut shared = self.shared;
        if let Some(current) = current {
            if self.recovery.is_none() {
                shared.recovery = current.recovery;
            }
            if self.throttle.is_none() {
                shared.throttle = current.throttle;
            }
        }
        shared
    }
}

/// `policies.<name>`: what `#[resilient(policy = "name")]` call sites use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PolicySection {
    pub(super) provider: Option<String>,
    pub(super) call: CallOverrides,
}

/// A checked configuration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ConfigFile {
    pub(crate) providers: BTreeMap<String, ProviderSection>,
    pub(crate) policies: BTreeMap<String, PolicySection>,
}

impl ConfigFile {
    /// Check a parsed tree, reporting every mistake.
    pub(crate) fn from_value(value: &Value) -> Result<Self, Vec<ConfigError>> {
        let mut c = Checker::default();
        let mut file = Self::default();
        if let Some(top) = c.table("", value, TOP_KEYS) {
            if let Some(providers) = top.get("providers") {
                if let Some(map) = c.map("providers", providers) {
                    for (name, section) in map {
                        let path = format!("providers.{name}");
                        if let Some(section) = c.provider(&path, section) {
                            file.providers.insert(name.clone(), section);
                        }
                    }
                }
            }
            if let Some(policies) = top.get("policies") {
                if let Some(map) = c.map("policies", policies) {
                    for (name, section) in map {
                        let path = format!("policies.{name}");
                        if let Some(section) = c.policy(&path, section, value) {
                            file.policies.insert(name.clone(), section);
                        }
                    }
                }
            }
        }
        if c.errors.is_empty() {
            Ok(file)
        } else {
            Err(c.errors)
        }
    }
}

/// The file is what the registry lays over the settings written in code.
impl Overlay for ConfigFile {
    fn providers(&self) -> Vec<&str> {
        self.providers.keys().map(String::as_str).collect()
    }

    fn shared(&self, provider: &str, current: Option<&SharedConfig>) -> SharedConfig {
        self.providers.get(provider).map_or_else(
            || current.copied().unwrap_or_default(),
            |s| s.shared_over(current),
        )
    }

    /// The settings of a call site: `config` (its inline values, or a
    /// policy defined in code) with the file's provider section and then its
    /// policy section laid over it, key by key.
    fn apply(&self, config: &mut PolicyConfig, named: Option<&str>) {
        let policy = named.and_then(|name| self.policies.get(name));
        if let Some(provider) = policy.and_then(|p| p.provider.as_ref()) {
            config.provider = provider.clone().into();
        }
        if let Some(section) = self.providers.get(&*config.provider) {
            section.call.apply(config);
            let shared = section.shared;
            config.breaker = shared.breaker;
            config.retry.budget = shared.budget;
            config.rate_limit = shared.rate_limit;
            config.bulkhead = shared.bulkhead;
            // Recovery and the throttle only when the file sets them: an
            // inline `recovery = fail_fast` stays unless the file says
            // otherwise.
            if let Some(recovery) = section.recovery {
                config.recovery = recovery;
            }
            if let Some(throttle) = section.throttle {
                config.throttle = throttle;
            }
            #[cfg(feature = "redis")]
            if let Some(quota) = &section.shared_quota {
                config.shared_quota = Some(quota.clone());
            }
        }
        if let Some(policy) = policy {
            policy.call.apply(config);
        }
    }
}
