//! The settings of a shared quota, and their checks.

use std::time::Duration;

use buttress_settings::rules;

use crate::error::ConfigError;

/// The default bound of one request to Redis.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// The default wait before Redis is tried again after a failure.
const DEFAULT_RECHECK: Duration = Duration::from_secs(1);
/// The default key prefix.
const DEFAULT_PREFIX: &str = "buttress:quota:";

/// Settings of a [`SharedQuota`](super::SharedQuota).
///
/// # Default
/// 100 units per second, burst 10, 1 replica (the local share is the whole
/// quota), 50 ms per request to Redis, Redis tried again 1 s after a
/// failure, key prefix `buttress:quota:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedQuotaConfig {
    pub(super) per_second: u32,
    pub(super) burst: u32,
    pub(super) replicas: u32,
    pub(super) timeout: Duration,
    pub(super) recheck: Duration,
    pub(super) prefix: String,
}

impl Default for SharedQuotaConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedQuotaConfig {
    /// The defaults (see [`SharedQuotaConfig`]).
    #[must_use]
    pub fn new() -> Self {
        Self {
            per_second: 100,
            burst: 10,
            replicas: 1,
            timeout: DEFAULT_TIMEOUT,
            recheck: DEFAULT_RECHECK,
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    /// The account's sustained quota, in units (requests, or tokens) per
    /// second, across every replica.
    #[must_use]
    pub const fn with_per_second(mut self, per_second: u32) -> Self {
        self.per_second = per_second;
        self
    }

    /// Units admitted at once after a quiet period, across every replica.
    #[must_use]
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// How many replicas share the quota: while Redis is unavailable, each
    /// admits `1 / replicas` of it.
    #[must_use]
    pub const fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// The bound of one request to Redis (default 50 ms).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long after a failure Redis is tried again (default 1 s).
    #[must_use]
    pub const fn with_recheck(mut self, recheck: Duration) -> Self {
        self.recheck = recheck;
        self
    }

    /// The key prefix (default `buttress:quota:`).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// `per_second`.
    #[must_use]
    pub const fn per_second(&self) -> u32 {
        self.per_second
    }

    /// `burst`.
    #[must_use]
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// `replicas`.
    #[must_use]
    pub const fn replicas(&self) -> u32 {
        self.replicas
    }

    /// `timeout`.
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `recheck`.
    #[must_use]
    pub const fn recheck(&self) -> Duration {
        self.recheck
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting, its limits and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |key: &str, rule: rules::Rule| {
            ConfigError::check(&format!("rate_limit.shared.{key}"), rule)
        };
        check("per_second", rules::quota_per_second(self.per_second))?;
        check("burst", rules::at_least_one(self.burst))?;
        check("replicas", rules::at_least_one(self.replicas))?;
        check("timeout", rules::quota_timeout(self.timeout))?;
        check("recheck", rules::quota_recheck(self.recheck))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_quota::SharedQuota;

    #[test]
    fn bad_settings_say_what_and_the_limits() {
        let e = SharedQuotaConfig::new()
            .with_replicas(0)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("replicas"), "{e}");
        let e = SharedQuotaConfig::new()
            .with_per_second(2_000_000)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("between 1 and 1000000"), "{e}");
        let e = SharedQuota::new("http://x", "p", "a", SharedQuotaConfig::new()).unwrap_err();
        assert!(e.to_string().contains("invalid Redis URL"), "{e}");
    }
}
