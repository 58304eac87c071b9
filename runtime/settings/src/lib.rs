//! The settings vocabulary of [buttress](https://docs.rs/buttress): every
//! setting's key, default, range and message, defined once.
//!
//! Three places read settings: the `#[resilient]` macro checks its
//! arguments at compile time, the builders check theirs in `validate`, and
//! the configuration-file loader checks a file's values. All three take
//! their key tables from [`keys`], their defaults from [`defaults`] and
//! their rules (range and message) from [`rules`], so a default or a range
//! changes in one place. A test in the macro crate feeds each rule's
//! boundary values through all three and fails if one disagrees.
//!
//! No dependencies, so the proc-macro crate can use it too. Not meant to be
//! used directly: it is versioned with buttress.
#![deny(missing_docs)]
#![no_std]

extern crate alloc;

/// The keys each place accepts, by group.
pub mod keys {
    /// The top-level keys of `#[resilient(...)]`.
    pub const ATTRIBUTE: &[&str] = &[
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
    /// The top-level keys of a configuration file.
    pub const FILE: &[&str] = &["providers", "policies"];
    /// A file's `providers.<name>` section.
    pub const FILE_PROVIDER: &[&str] = &[
        "timeout",
        "adaptive_timeout",
        "deadline",
        "retry",
        "breaker",
        "bulkhead",
        "rate_limit",
        "recovery",
        "throttle",
        "shared_quota",
    ];
    /// A file's `policies.<name>` section: per call site, nothing shared.
    pub const FILE_POLICY: &[&str] = &[
        "provider",
        "timeout",
        "adaptive_timeout",
        "deadline",
        "retry",
        "idempotent",
        "hedge",
    ];
    /// `retry(...)`.
    pub const RETRY: &[&str] = &["max_attempts", "backoff", "jitter", "budget"];
    /// `retry` in a file's policy section (the budget is the provider's).
    pub const POLICY_RETRY: &[&str] = &["max_attempts", "backoff", "jitter"];
    /// The backoff kinds.
    pub const BACKOFFS: &[&str] = &["exponential", "constant", "decorrelated"];
    /// A backoff table in a file.
    pub const FILE_BACKOFF: &[&str] = &["type", "base", "max", "delay"];
    /// The jitter kinds.
    pub const JITTERS: &[&str] = &["full", "equal", "none"];
    /// `budget(...)`.
    pub const BUDGET: &[&str] = &["ratio", "cap"];
    /// `breaker(...)`.
    pub const BREAKER: &[&str] = &[
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
    /// `recovery(...)`.
    pub const RECOVERY: &[&str] = &[
        "wait",
        "max_waiting",
        "pace",
        "min_rate",
        "slow_start",
        "learn_quota",
    ];
    /// `throttle(...)`.
    pub const THROTTLE: &[&str] = &["k", "window"];
    /// `adaptive_timeout(...)`.
    pub const ADAPTIVE_TIMEOUT: &[&str] = &["min", "max", "percentile", "multiplier"];
    /// `bulkhead(...)`.
    pub const BULKHEAD: &[&str] = &["max_concurrent", "max_wait"];
    /// `rate_limit(...)` in the attribute (`shared` and `cost` name a
    /// shared quota in code).
    pub const RATE_LIMIT: &[&str] = &["per_second", "burst", "clock", "shared", "cost"];
    /// `rate_limit` in a file.
    pub const FILE_RATE_LIMIT: &[&str] = &["per_second", "burst", "clock"];
    /// The rate limiter's clocks.
    pub const CLOCKS: &[&str] = &["coarse", "precise", "tokio"];
    /// A file's `shared_quota` table.
    pub const SHARED_QUOTA: &[&str] = &[
        "url",
        "account",
        "per_second",
        "burst",
        "replicas",
        "timeout",
        "recheck",
        "prefix",
    ];
    /// `idempotent(...)`.
    pub const IDEMPOTENT: &[&str] = &[
        "key",
        "store",
        "ttl",
        "fingerprint",
        "wait",
        "on_store_error",
    ];
    /// `on_store_error = ...`.
    pub const ON_STORE_ERROR: &[&str] = &["fail_closed", "proceed"];
    /// `dlq(...)`.
    pub const DLQ: &[&str] = &["sink", "on"];
    /// `dlq(on = ...)`.
    pub const DLQ_ON: &[&str] = &["permanent", "exhausted", "any"];
}

/// What a setting is when nothing sets it.
pub mod defaults {
    use core::time::Duration;

    /// Per-attempt timeout.
    pub const TIMEOUT: Duration = Duration::from_secs(10);
    /// Deadline of the whole call.
    pub const DEADLINE: Duration = Duration::from_secs(30);
    /// Attempts, the first included.
    pub const MAX_ATTEMPTS: u32 = 3;
    /// Exponential backoff: the first delay.
    pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
    /// Exponential backoff: the longest delay.
    pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
    /// Retry budget: the extra load retries may add.
    pub const BUDGET_RATIO: f64 = 0.2;
    /// Retry budget: the tokens it holds at most.
    pub const BUDGET_CAP: u32 = 10;
    /// Breaker: the failure rate that opens it.
    pub const FAILURE_RATE: f64 = 0.5;
    /// Breaker: the calls its count window holds.
    pub const WINDOW: u32 = 100;
    /// Breaker: the calls needed before the rate is judged.
    pub const MIN_CALLS: u32 = 20;
    /// Breaker: how long it stays open.
    pub const OPEN_FOR: Duration = Duration::from_secs(30);
    /// Breaker: the probes let through half-open.
    pub const HALF_OPEN_PROBES: u32 = 3;
    /// Bulkhead: calls at once.
    pub const MAX_CONCURRENT: u32 = 64;
    /// Bulkhead: the wait for a slot.
    pub const MAX_WAIT: Duration = Duration::ZERO;
    /// Rate limit: sustained calls per second.
    pub const PER_SECOND: u32 = 100;
    /// Rate limit: calls at once after a quiet period.
    pub const BURST: u32 = 10;
    /// Recovery: calls may wait for the provider within their deadline.
    pub const WAIT: bool = true;
    /// Recovery: calls waiting at most, per provider.
    pub const MAX_WAITING: u32 = 1024;
    /// Recovery: how much faster than held calls new ones go.
    pub const PACE: f64 = 1.5;
    /// Recovery: the release rate never goes below this, per second.
    pub const MIN_RATE: f64 = 10.0;
    /// Recovery: the ramp after the breaker closes.
    pub const SLOW_START: Duration = Duration::from_secs(1);
    /// Recovery: learn an unannounced quota from refusals.
    pub const LEARN_QUOTA: bool = true;
    /// Adaptive throttle: accepts are multiplied by this.
    pub const THROTTLE_K: f64 = 2.0;
    /// Adaptive throttle: the window it counts over.
    pub const THROTTLE_WINDOW: Duration = Duration::from_secs(120);
    /// Adaptive timeout: its floor.
    pub const ADAPTIVE_MIN: Duration = Duration::from_millis(50);
    /// Adaptive timeout: its ceiling (the deadline bounds it too).
    pub const ADAPTIVE_MAX: Duration = Duration::from_secs(10);
    /// Adaptive timeout: the latency percentile it follows.
    pub const PERCENTILE: f64 = 0.99;
    /// Adaptive timeout: the margin over that percentile.
    pub const MULTIPLIER: f64 = 1.5;

    /// The adaptive timeout's `max` when none is set: [`ADAPTIVE_MAX`], or
    /// the deadline when that is shorter (no attempt outlasts it). `None`
    /// means no deadline.
    #[must_use]
    pub fn adaptive_max(deadline: Option<Duration>) -> Duration {
        match deadline {
            Some(deadline) if !deadline.is_zero() => ADAPTIVE_MAX.min(deadline),
            _ => ADAPTIVE_MAX,
        }
    }
}

/// Each setting's rule: its range, and what to tell the user when a value
/// is outside it. A rule returns the reason, to follow the key's name
/// ("`failure_rate` must be in (0, 1], got 2").
pub mod rules {
    use alloc::format;
    use alloc::string::String;
    use core::time::Duration;

    /// A value's reason for being refused.
    pub type Rule = Result<(), String>;

    /// A count window holds at most this many calls.
    pub const MAX_COUNT_WINDOW: u32 = 1_000_000;
    /// A time window spans at least this long.
    pub const MIN_TIME_WINDOW: Duration = Duration::from_millis(20);
    /// At most this many half-open probes.
    pub const MAX_HALF_OPEN_PROBES: u32 = 10_000;
    /// At most this many calls wait per provider.
    pub const MAX_WAITING: u32 = 1_000_000;
    /// `pace` is at most this.
    pub const MAX_PACE: f64 = 100.0;
    /// The throttle's window spans at least this long.
    pub const MIN_THROTTLE_WINDOW: Duration = Duration::from_millis(100);
    /// The adaptive timeout's percentile lies in this range.
    pub const PERCENTILE: (f64, f64) = (0.5, 0.999);
    /// The adaptive timeout's multiplier is at most this.
    pub const MAX_MULTIPLIER: f64 = 10.0;
    /// A shared quota's rate is at most this (one unit per microsecond, the
    /// resolution of Redis's clock).
    pub const MAX_QUOTA_PER_SECOND: u32 = 1_000_000;
    /// A shared quota's round trip may take at most this long.
    pub const MAX_QUOTA_TIMEOUT: Duration = Duration::from_secs(60);
    /// A shared quota rechecks Redis at least this often.
    pub const MAX_QUOTA_RECHECK: Duration = Duration::from_secs(3600);

    fn refuse(reason: String) -> Rule {
        Err(reason)
    }

    /// A duration that must not be zero (`timeout`, `deadline`, `open_for`…).
    pub fn positive(d: Duration) -> Rule {
        if d.is_zero() {
            return refuse("must be longer than zero".into());
        }
        Ok(())
    }

    /// A count of at least one (`min_calls`, `per_second`, `burst`…).
    pub fn at_least_one(n: u32) -> Rule {
        if n == 0 {
            return refuse("must be at least 1, got 0".into());
        }
        Ok(())
    }

    /// `max_attempts`.
    pub fn max_attempts(n: u32) -> Rule {
        if n == 0 {
            return refuse("must be at least 1 (1 means no retries), got 0".into());
        }
        Ok(())
    }

    /// A breaker's `failure_rate` or `slow_rate`.
    pub fn rate(r: f64) -> Rule {
        if !(r > 0.0 && r <= 1.0) {
            return refuse(format!(
                "must be in (0, 1], got {r}: it is the fraction of calls in the window"
            ));
        }
        Ok(())
    }

    /// A retry budget's `ratio`.
    pub fn budget_ratio(r: f64) -> Rule {
        if !(0.0..=1.0).contains(&r) {
            return refuse(format!(
                "must be in [0, 1], got {r}: it is the extra load retries may add"
            ));
        }
        Ok(())
    }

    /// A retry budget's `cap`.
    pub fn budget_cap(n: u32) -> Rule {
        if n == 0 {
            return refuse(
                "must be at least 1 token, got 0; use `budget = off` to disable the budget".into(),
            );
        }
        Ok(())
    }

    /// A backoff's `base` against its `max`.
    pub fn backoff(base: Duration, max: Duration) -> Rule {
        if base > max {
            return refuse(format!(
                "`base` ({base:?}) is larger than `max` ({max:?}); raise max or lower base"
            ));
        }
        Ok(())
    }

    /// A count `window`.
    pub fn count_window(n: u32) -> Rule {
        if n == 0 {
            return refuse("must hold at least 1 call, got 0".into());
        }
        if n > MAX_COUNT_WINDOW {
            return refuse(format!("must hold at most {MAX_COUNT_WINDOW} calls, got {n}; use a time window such as `window = \"30s\"` for high-volume providers"));
        }
        Ok(())
    }

    /// A time `window`.
    pub fn time_window(d: Duration) -> Rule {
        if d < MIN_TIME_WINDOW {
            return refuse(format!(
                "must span at least {MIN_TIME_WINDOW:?} as a time window, got {d:?}"
            ));
        }
        Ok(())
    }

    /// `min_calls` against a count window of `window` calls.
    pub fn min_calls_in_window(min_calls: u32, window: u32) -> Rule {
        if min_calls > window {
            return refuse(format!("({min_calls}) is larger than the `window` ({window} calls), so the rate could never be judged; lower min_calls or widen the window"));
        }
        Ok(())
    }

    /// `half_open_probes`.
    pub fn half_open_probes(n: u32) -> Rule {
        if n == 0 || n > MAX_HALF_OPEN_PROBES {
            return refuse(format!("must be in 1..={MAX_HALF_OPEN_PROBES}, got {n}"));
        }
        Ok(())
    }

    /// `max_probe_interval` against the probe interval it starts from.
    pub fn max_probe_interval(max: Duration, interval: Duration) -> Rule {
        if max < interval {
            return refuse(format!("({max:?}) is shorter than the probe interval ({interval:?}; `probe_interval`, or `open_for` when it is not set): the interval only grows, so raise max_probe_interval or lower probe_interval"));
        }
        Ok(())
    }

    /// `slow_rate` without `slow_call`.
    pub const SLOW_RATE_NEEDS_SLOW_CALL: &str =
        "needs `slow_call`, the duration above which a call is slow, such as `slow_call = \"2s\"`";
    /// `slow_call` without `slow_rate`.
    pub const SLOW_CALL_NEEDS_SLOW_RATE: &str = "needs `slow_rate`, the fraction of slow calls that opens the breaker, such as `slow_rate = 0.5`";

    /// `timeout` against `deadline`.
    pub fn timeout_within_deadline(timeout: Duration, deadline: Duration) -> Rule {
        if timeout > deadline {
            return refuse(format!("({timeout:?}) is longer than `deadline` ({deadline:?}); the deadline covers all attempts, so raise it or lower the timeout"));
        }
        Ok(())
    }

    /// `hedge` without `idempotent`.
    pub const HEDGE_NEEDS_IDEMPOTENT: &str = "needs `idempotent`: a kept attempt and its retry may both reach the provider, so the operation must be safe to repeat under one idempotency key; add `idempotent`";

    /// `provider`.
    pub fn provider(name: &str) -> Rule {
        if name.trim().is_empty() {
            return refuse(
                "must not be empty: it names the shared breaker, budget and limits".into(),
            );
        }
        Ok(())
    }

    /// `max_waiting`.
    pub fn max_waiting(n: u32) -> Rule {
        if n == 0 || n > MAX_WAITING {
            return refuse(format!(
                "must be in 1..={MAX_WAITING}, got {n}; use `wait = false` to fail fast instead"
            ));
        }
        Ok(())
    }

    /// `pace`.
    pub fn pace(p: f64) -> Rule {
        if !(1.0..=MAX_PACE).contains(&p) {
            return refuse(format!(
                "must be in [1, {MAX_PACE}], got {p}; 1.5 lets held calls out at half the rate of new ones"
            ));
        }
        Ok(())
    }

    /// `min_rate`.
    pub fn min_rate(r: f64) -> Rule {
        if !(r > 0.0 && r.is_finite()) {
            return refuse(format!(
                "must be a positive number of calls per second, got {r}"
            ));
        }
        Ok(())
    }

    /// The throttle's `k`.
    pub fn throttle_k(k: f64) -> Rule {
        if !(k >= 1.0 && k.is_finite()) {
            return refuse(format!(
                "must be a number of at least 1, got {k}; 2 is the usual choice"
            ));
        }
        Ok(())
    }

    /// The throttle's `window`.
    pub fn throttle_window(d: Duration) -> Rule {
        if d < MIN_THROTTLE_WINDOW {
            return refuse(format!(
                "must span at least {MIN_THROTTLE_WINDOW:?}, got {d:?}"
            ));
        }
        Ok(())
    }

    /// A shared quota's `per_second`.
    pub fn quota_per_second(n: u32) -> Rule {
        if n == 0 || n > MAX_QUOTA_PER_SECOND {
            return refuse(format!("must be between 1 and {MAX_QUOTA_PER_SECOND} (one unit per microsecond, the resolution of Redis's clock), got {n}"));
        }
        Ok(())
    }

    /// A shared quota's `timeout`.
    pub fn quota_timeout(d: Duration) -> Rule {
        if d.is_zero() || d > MAX_QUOTA_TIMEOUT {
            return refuse(format!(
                "must be between 1 ns and {MAX_QUOTA_TIMEOUT:?}, got {d:?}"
            ));
        }
        Ok(())
    }

    /// A shared quota's `recheck`.
    pub fn quota_recheck(d: Duration) -> Rule {
        if d > MAX_QUOTA_RECHECK {
            return refuse(format!("must be at most {MAX_QUOTA_RECHECK:?}, got {d:?}"));
        }
        Ok(())
    }

    /// The adaptive timeout's `max` against its `min`.
    pub fn adaptive_bounds(min: Duration, max: Duration) -> Rule {
        if max < min {
            return refuse(format!(
                "({max:?}) is shorter than `min` ({min:?}); raise max or lower min"
            ));
        }
        Ok(())
    }

    /// The adaptive timeout's `percentile`.
    pub fn percentile(p: f64) -> Rule {
        let (low, high) = PERCENTILE;
        if !(low..=high).contains(&p) {
            return refuse(format!(
                "must lie in [{low}, {high}], got {p}; 0.99 follows the provider's tail"
            ));
        }
        Ok(())
    }

    /// The adaptive timeout's `multiplier`.
    pub fn multiplier(m: f64) -> Rule {
        if !(1.0..=MAX_MULTIPLIER).contains(&m) {
            return refuse(format!("must lie in [1, {MAX_MULTIPLIER}], got {m}; 1.5 is the usual choice (above 1, so the timeout can grow when the provider slows down)"));
        }
        Ok(())
    }
}
