//! The key tables: every key `#[resilient]` accepts, each group's
//! settings, and the words a setting may take. Unknown names are reported
//! against these, with a "did you mean" hint.

pub(super) const KEYS: &[&str] = &[
    "provider",
    "timeout",
    "deadline",
    "retry",
    "breaker",
    "bulkhead",
    "rate_limit",
    "idempotent",
    "fallback",
    "dlq",
    "policy",
    "recovery",
    "throttle",
    "adaptive_timeout",
    "hedge",
];
pub(super) const RETRY_KEYS: &[&str] = &["max_attempts", "backoff", "jitter", "budget"];
pub(super) const BACKOFFS: &[&str] = &["exponential", "constant", "decorrelated"];
pub(super) const JITTERS: &[&str] = &["full", "equal", "none"];
pub(super) const BREAKER_KEYS: &[&str] = &[
    "failure_rate",
    "slow_rate",
    "slow_call",
    "window",
    "min_calls",
    "consecutive_failures",
    "open_for",
    "probe_interval",
    "max_probe_interval",
    "half_open_probes",
];
pub(super) const RECOVERY_KEYS: &[&str] = &[
    "wait",
    "max_waiting",
    "pace",
    "min_rate",
    "slow_start",
    "learn_quota",
];
pub(super) const THROTTLE_KEYS: &[&str] = &["k", "window"];
pub(super) const ADAPTIVE_TIMEOUT_KEYS: &[&str] = &["min", "max", "percentile", "multiplier"];
pub(super) const BULKHEAD_KEYS: &[&str] = &["max_concurrent", "max_wait"];
pub(super) const RATE_LIMIT_KEYS: &[&str] = &["per_second", "burst", "shared", "cost"];
pub(super) const IDEMPOTENT_KEYS: &[&str] = &[
    "key",
    "store",
    "ttl",
    "fingerprint",
    "wait",
    "on_store_error",
];
pub(super) const ON_STORE_ERROR: &[&str] = &["fail_closed", "proceed"];
pub(super) const DLQ_KEYS: &[&str] = &["sink", "on"];
pub(super) const DLQ_ON: &[&str] = &["permanent", "exhausted", "any"];
