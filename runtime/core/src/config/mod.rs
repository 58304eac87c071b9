//! Policies from a configuration file (feature `serde-config`): TOML, YAML
//! or JSON, loaded into a [`Registry`](crate::Registry) and reloaded at run
//! time without disturbing the calls in flight.
//!
//! ```toml
//! [providers.stripe]              # every call site of provider "stripe"
//! timeout = "2s"
//! deadline = "10s"
//! retry = { max_attempts = 4, backoff = { type = "exponential", base = "100ms", max = "5s" }, jitter = "full", budget = { ratio = 0.2, cap = 10 } }
//! breaker = { failure_rate = 0.5, window = 20, min_calls = 10, open_for = "30s", half_open_probes = 3 }
//! bulkhead = { max_concurrent = 32, max_wait = "50ms" }
//! rate_limit = { per_second = 100, burst = 20 }
//!
//! [policies.charge]               # #[resilient(policy = "charge")]
//! provider = "stripe"
//! timeout = "1s"
//! retry = { max_attempts = 2 }
//! idempotent = true
//! ```
//!
//! Guarantees:
//! - **Layering.** A call site's settings are its inline attribute values
//!   (or a policy defined in code with
//!   [`Registry::define_policy`](crate::Registry::define_policy)), then the
//!   file's `providers.<provider>` section, then its `policies.<name>`
//!   section, each overriding key by key. The shared state of a provider the
//!   file names (breaker, retry budget, rate limit, bulkhead) is the file's,
//!   with the library defaults for what the file leaves out.
//! - **Every mistake at once.** Loading checks the whole file first and
//!   reports every invalid value as `path: reason`, one per line
//!   ([`ConfigErrors`]); an invalid file changes nothing.
//! - **Atomic reload.** Loading again replaces the file's settings as one
//!   step. Calls in flight finish under the settings they started with; the
//!   next call of each call site sees the new ones (it checks a generation
//!   counter, one relaxed atomic load, and resolves its policy again only
//!   when it moved).
//! - **Shared state survives.** A provider's breaker, budget, limiter and
//!   bulkhead are kept, state and counts included, when their settings did
//!   not change. A changed breaker is a new breaker: closed, with an empty
//!   window, but keeping an operator's `force_open`/`force_closed` and its
//!   `times_opened` count; the swap is logged.
//!   A changed budget, limiter or bulkhead starts fresh (a new bulkhead does
//!   not see the calls still holding a slot of the old one).
//! - [`Registry::watch_file`](crate::Registry::watch_file) reloads a file
//!   whenever its content changes; a bad edit is logged and ignored.
//! - A provider removed from the file keeps its last settings; a policy
//!   removed from the file no longer overrides its call sites.
//! - [`crate::Policy`] values built in code keep the shared state they were
//!   built with; only `#[resilient]` call sites resolve again.

mod checker;
mod file;
mod model;
mod reload;
mod sections;

use std::fmt;

pub use file::Format;
pub(crate) use model::ConfigFile;

use crate::error::ConfigError;

/// Every mistake found in a configuration, in file order. `Display` prints
/// one `path: reason` per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The errors.
    #[must_use]
    pub fn as_slice(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many errors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `ConfigErrors` holds at least one error.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterate over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(errors: Vec<ConfigError>) -> Self {
        Self(errors)
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
