//! The checked model of a configuration file, and the checker that builds
//! it from a parsed tree, collecting every mistake with its path.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::adaptive_timeout::AdaptiveTimeoutConfig;
use buttress_settings::{defaults, keys, rules};

use crate::breaker::{BreakerConfig, Window};
use crate::budget::BudgetConfig;
use crate::bulkhead::BulkheadConfig;
use crate::error::ConfigError;
use crate::policy_config::PolicyConfig;
use crate::rate_limit::LimiterClock;
use crate::rate_limit::RateLimitConfig;
use crate::recovery::RecoveryConfig;
use crate::registry::Overlay;
use crate::registry::SharedConfig;
use crate::retry::{Backoff, Jitter};
use crate::throttle::ThrottleConfig;

// The key tables, from the vocabulary the macro uses too.
const TOP_KEYS: &[&str] = keys::FILE;
const PROVIDER_KEYS: &[&str] = keys::FILE_PROVIDER;
#[cfg(feature = "redis")]
const SHARED_QUOTA_KEYS: &[&str] = keys::SHARED_QUOTA;
const RECOVERY_KEYS: &[&str] = keys::RECOVERY;
const THROTTLE_KEYS: &[&str] = keys::THROTTLE;
const POLICY_KEYS: &[&str] = keys::FILE_POLICY;
const ADAPTIVE_TIMEOUT_KEYS: &[&str] = keys::ADAPTIVE_TIMEOUT;
const RETRY_KEYS: &[&str] = keys::RETRY;
const POLICY_RETRY_KEYS: &[&str] = keys::POLICY_RETRY;
const BACKOFF_KEYS: &[&str] = keys::FILE_BACKOFF;
const BUDGET_KEYS: &[&str] = keys::BUDGET;
const BREAKER_KEYS: &[&str] = keys::BREAKER;
const BULKHEAD_KEYS: &[&str] = keys::BULKHEAD;
const RATE_LIMIT_KEYS: &[&str] = keys::FILE_RATE_LIMIT;

/// Per-call settings a file section overrides, key by key, on top of a call
/// site's inline values.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CallOverrides {
    timeout: Option<Duration>,
    /// `adaptive_timeout`: a table, or `"off"`.
    adaptive_timeout: Option<Option<AdaptiveTimeoutConfig>>,
    deadline: Option<Duration>,
    max_attempts: Option<u32>,
    backoff: Option<Backoff>,
    jitter: Option<Jitter>,
    idempotent: Option<bool>,
    hedge: Option<bool>,
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
    call: CallOverrides,
    /// `recovery`, when the file sets it (also in `shared`).
    recovery: Option<RecoveryConfig>,
    /// `throttle`, when the file sets it (also in `shared`).
    throttle: Option<Option<ThrottleConfig>>,
    /// `shared_quota`: the account's quota shared by replicas in Redis.
    #[cfg(feature = "redis")]
    shared_quota: Option<crate::shared_quota::SharedQuota>,
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
    provider: Option<String>,
    call: CallOverrides,
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

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[derive(Default)]
struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    fn error(&mut self, path: &str, reason: impl Into<String>) {
        let path = if path.is_empty() { "(top level)" } else { path };
        self.errors.push(ConfigError::new(path, reason));
    }

    fn wrong_type(&mut self, path: &str, expected: &str, got: &Value) {
        self.error(path, format!("expected {expected}, got {}", kind(got)));
    }

    /// A table of free-form names (`providers`, `policies`).
    fn map<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.wrong_type(path, "a table of names", other);
                None
            }
        }
    }

    /// A table whose keys must be among `valid`; unknown keys are reported.
    fn table<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        valid: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            self.wrong_type(path, "a table", value);
            return None;
        };
        for key in map.keys() {
            if !valid.contains(&key.as_str()) {
                self.error(
                    &join(path, key),
                    format!("unknown key; valid keys: {}", valid.join(", ")),
                );
            }
        }
        Some(map)
    }

    /// A table, or the string `"off"` (`Some(None)`).
    fn table_or_off<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        valid: &[&str],
    ) -> Option<Option<&'v Map<String, Value>>> {
        match value {
            // `off` unquoted is `false` in some YAML dialects.
            Value::String(s) if s == "off" => Some(None),
            Value::Bool(false) => Some(None),
            Value::Object(_) => self.table(path, value, valid).map(Some),
            other => {
                self.wrong_type(path, "a table or \"off\"", other);
                None
            }
        }
    }

    /// A duration string, any length (zero included).
    fn duration(&mut self, path: &str, value: &Value) -> Option<Duration> {
        let Value::String(text) = value else {
            self.error(
                path,
                format!(
                    "expected a duration string such as \"150ms\", \"2s\" or \"1m30s\", got {}",
                    kind(value)
                ),
            );
            return None;
        };
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    path,
                    format!("invalid duration \"{text}\": {e}; write durations such as \"150ms\", \"2s\" or \"1m30s\""),
                );
                None
            }
        }
    }

    /// A duration string that `rule` accepts.
    fn duration_with(
        &mut self,
        path: &str,
        value: &Value,
        rule: fn(Duration) -> rules::Rule,
    ) -> Option<Duration> {
        let d = self.duration(path, value)?;
        self.obey(path, d, rule)
    }

    /// `value` if `rule` accepts it; its reason as an error otherwise.
    fn obey<T: Copy>(&mut self, path: &str, value: T, rule: fn(T) -> rules::Rule) -> Option<T> {
        match rule(value) {
            Ok(()) => Some(value),
            Err(reason) => {
                self.error(path, reason);
                None
            }
        }
    }

    /// A whole number (of `u32`'s range) that `rule` accepts.
    fn count(&mut self, path: &str, value: &Value, rule: fn(u32) -> rules::Rule) -> Option<u32> {
        let Value::Number(n) = value else {
            self.wrong_type(path, "a whole number", value);
            return None;
        };
        let Some(n) = n.as_u64().and_then(|n| u32::try_from(n).ok()) else {
            self.error(
                path,
                format!("expected a whole number from 0 to {}, got {n}", u32::MAX),
            );
            return None;
        };
        self.obey(path, n, rule)
    }

    /// A number that `rule` accepts.
    fn real(&mut self, path: &str, value: &Value, rule: fn(f64) -> rules::Rule) -> Option<f64> {
        let x = match value {
            Value::Number(n) => n.as_f64()?,
            other => {
                self.wrong_type(path, "a number", other);
                return None;
            }
        };
        self.obey(path, x, rule)
    }

    fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(path, "true or false", other);
                None
            }
        }
    }

    /// Run `section`'s whole-section check when its keys were all valid.
    fn cross_check(&mut self, before: usize, prefix: &str, check: Result<(), ConfigError>) {
        if self.errors.len() == before {
            if let Err(e) = check {
                self.errors.push(e.within(prefix));
            }
        }
    }

    fn timing(&mut self, path: &str, map: &Map<String, Value>, call: &mut CallOverrides) {
        if let Some(v) = map.get("timeout") {
            call.timeout = self.duration_with(&join(path, "timeout"), v, rules::positive);
        }
        if let Some(v) = map.get("adaptive_timeout") {
            call.adaptive_timeout = self.adaptive_timeout(&join(path, "adaptive_timeout"), v);
        }
        if let Some(v) = map.get("deadline") {
            call.deadline = self.duration_with(&join(path, "deadline"), v, rules::positive);
        }
        if let Some(v) = map.get("idempotent") {
            call.idempotent = self.boolean(&join(path, "idempotent"), v);
        }
        if let Some(v) = map.get("hedge") {
            call.hedge = self.boolean(&join(path, "hedge"), v);
        }
    }

    fn timeout_within_deadline(
        &mut self,
        path: &str,
        call: &CallOverrides,
        base: Option<&CallOverrides>,
    ) {
        let timeout = call.timeout.or_else(|| base.and_then(|b| b.timeout));
        let deadline = call.deadline.or_else(|| base.and_then(|b| b.deadline));
        if let (Some(timeout), Some(deadline)) = (timeout, deadline) {
            let _ = self.obey(
                &join(path, "timeout"),
                (timeout, deadline),
                |(timeout, deadline)| rules::timeout_within_deadline(timeout, deadline),
            );
        }
    }

    /// `retry`: per-call keys into `call`; the budget (providers only) into
    /// `budget`.
    fn retry(
        &mut self,
        path: &str,
        value: &Value,
        call: &mut CallOverrides,
        budget: Option<&mut Option<BudgetConfig>>,
    ) {
        let valid = if budget.is_some() {
            RETRY_KEYS
        } else {
            POLICY_RETRY_KEYS
        };
        let Some(map) = self.table_or_off(path, value, valid) else {
            return;
        };
        let Some(map) = map else {
            call.max_attempts = Some(1);
            return;
        };
        if let Some(v) = map.get("max_attempts") {
            let p = join(path, "max_attempts");
            call.max_attempts = self.count(&p, v, rules::max_attempts);
        }
        if let Some(v) = map.get("backoff") {
            call.backoff = self.backoff(&join(path, "backoff"), v);
        }
        if let Some(v) = map.get("jitter") {
            let p = join(path, "jitter");
            call.jitter = match v {
                Value::String(s) if s == "full" => Some(Jitter::Full),
                Value::String(s) if s == "equal" => Some(Jitter::Equal),
                Value::String(s) if s == "none" => Some(Jitter::None),
                Value::String(s) => {
                    self.error(
                        &p,
                        format!("unknown jitter \"{s}\"; expected \"full\", \"equal\" or \"none\""),
                    );
                    None
                }
                other => {
                    self.wrong_type(&p, "\"full\", \"equal\" or \"none\"", other);
                    None
                }
            };
        }
        if let (Some(v), Some(budget)) = (map.get("budget"), budget) {
            let p = join(path, "budget");
            let before = self.errors.len();
            match self.table_or_off(&p, v, BUDGET_KEYS) {
                Some(None) => *budget = None,
                Some(Some(map)) => {
                    let mut config = BudgetConfig::new();
                    if let Some(v) = map.get("ratio") {
                        let rp = join(&p, "ratio");
                        if let Some(ratio) = self.real(&rp, v, rules::budget_ratio) {
                            config.ratio = ratio;
                        }
                    }
                    if let Some(v) = map.get("cap") {
                        if let Some(cap) = self.count(&join(&p, "cap"), v, rules::budget_cap) {
                            config.cap = cap;
                        }
                    }
                    if self.errors.len() == before {
                        *budget = Some(config);
                    }
                }
                None => {}
            }
        }
        if let Some(backoff) = call.backoff {
            let before = self.errors.len();
            let check = crate::retry::RetryConfig::new()
                .with_backoff(backoff)
                .validate();
            self.cross_check(before, path.strip_suffix(".retry").unwrap_or(path), check);
        }
    }

    fn backoff(&mut self, path: &str, value: &Value) -> Option<Backoff> {
        let map = self.table(path, value, BACKOFF_KEYS)?;
        let kind_path = join(path, "type");
        let Some(kind) = map.get("type") else {
            self.error(
                &kind_path,
                "missing; expected \"exponential\", \"constant\" or \"decorrelated\"",
            );
            return None;
        };
        let get = |c: &mut Self, key: &str, default: Duration| {
            map.get(key)
                .map_or(Some(default), |v| c.duration(&join(path, key), v))
        };
        let default_base = defaults::BACKOFF_BASE;
        let default_max = defaults::BACKOFF_MAX;
        let (base_max_keys, delay_keys) = (["delay"], ["base", "max"]);
        let stray = |c: &mut Self, keys: &[&str], kind: &str| {
            for key in keys {
                if map.contains_key(*key) {
                    c.error(
                        &join(path, key),
                        format!("does not apply to {kind} backoff"),
                    );
                }
            }
        };
        match kind {
            Value::String(s) if s == "exponential" || s == "decorrelated" => {
                stray(self, &base_max_keys, s);
                let base = get(self, "base", default_base)?;
                let max = get(self, "max", default_max)?;
                Some(if s == "exponential" {
                    Backoff::exponential(base, max)
                } else {
                    Backoff::decorrelated(base, max)
                })
            }
            Value::String(s) if s == "constant" => {
                stray(self, &delay_keys, s);
                match map.get("delay") {
                    Some(v) => self
                        .duration(&join(path, "delay"), v)
                        .map(Backoff::constant),
                    None => {
                        self.error(
                            &join(path, "delay"),
                            "missing; a constant backoff needs its delay, such as \"200ms\"",
                        );
                        None
                    }
                }
            }
            Value::String(s) => {
                self.error(&kind_path, format!("unknown backoff \"{s}\"; expected \"exponential\", \"constant\" or \"decorrelated\""));
                None
            }
            other => {
                self.wrong_type(
                    &kind_path,
                    "\"exponential\", \"constant\" or \"decorrelated\"",
                    other,
                );
                None
            }
        }
    }

    fn breaker(&mut self, path: &str, value: &Value) -> Option<Option<BreakerConfig>> {
        let before = self.errors.len();
        let map = self.table_or_off(path, value, BREAKER_KEYS)?;
        let Some(map) = map else { return Some(None) };
        let mut config = BreakerConfig::new();
        let p = |key: &str| join(path, key);
        if let Some(v) = map.get("failure_rate") {
            if let Some(rate) = self.real(&p("failure_rate"), v, rules::rate) {
                config.failure_rate = rate;
            }
        }
        if let Some(v) = map.get("slow_rate") {
            config.slow_rate = self.real(&p("slow_rate"), v, rules::rate);
        }
        if let Some(v) = map.get("slow_call") {
            config.slow_call = self.duration_with(&p("slow_call"), v, rules::positive);
        }
        if let Some(v) = map.get("window") {
            match v {
                Value::String(_) => {
                    if let Some(d) = self.duration_with(&p("window"), v, rules::time_window) {
                        config.window = Window::Time(d);
                    }
                }
                Value::Number(_) => {
                    if let Some(n) = self.count(&p("window"), v, rules::count_window) {
                        config.window = Window::Count(n);
                    }
                }
                other => self.wrong_type(
                    &p("window"),
                    "a number of calls or a duration string such as \"30s\"",
                    other,
                ),
            }
        }
        if let Some(v) = map.get("min_calls") {
            if let Some(n) = self.count(&p("min_calls"), v, rules::at_least_one) {
                config.min_calls = n;
            }
        }
        if let Some(v) = map.get("consecutive_failures") {
            config.consecutive_failures =
                self.count(&p("consecutive_failures"), v, rules::at_least_one);
        }
        if let Some(v) = map.get("open_for") {
            if let Some(d) = self.duration_with(&p("open_for"), v, rules::positive) {
                config.open_for = d;
            }
        }
        if let Some(v) = map.get("probe_interval") {
            config.probe_interval = self.duration_with(&p("probe_interval"), v, rules::positive);
        }
        if let Some(v) = map.get("max_probe_interval") {
            config.max_probe_interval =
                self.duration_with(&p("max_probe_interval"), v, rules::positive);
        }
        if let Some(v) = map.get("half_open_probes") {
            if let Some(n) = self.count(&p("half_open_probes"), v, rules::half_open_probes) {
                config.half_open_probes = n;
            }
        }
        let prefix = path.strip_suffix(".breaker").unwrap_or(path).to_owned();
        self.cross_check(before, &prefix, config.validate());
        (self.errors.len() == before).then_some(Some(config))
    }

    fn bulkhead(&mut self, path: &str, value: &Value) -> Option<Option<BulkheadConfig>> {
        let before = self.errors.len();
        let Some(map) = self.table_or_off(path, value, BULKHEAD_KEYS)? else {
            return Some(None);
        };
        let mut config = BulkheadConfig::new();
        if let Some(v) = map.get("max_concurrent") {
            if let Some(n) = self.count(&join(path, "max_concurrent"), v, rules::at_least_one) {
                config.max_concurrent = n;
            }
        }
        if let Some(v) = map.get("max_wait") {
            if let Some(d) = self.duration(&join(path, "max_wait"), v) {
                config.max_wait = d;
            }
        }
        (self.errors.len() == before).then_some(Some(config))
    }

    fn rate_limit(&mut self, path: &str, value: &Value) -> Option<Option<RateLimitConfig>> {
        let before = self.errors.len();
        let Some(map) = self.table_or_off(path, value, RATE_LIMIT_KEYS)? else {
            return Some(None);
        };
        let mut config = RateLimitConfig::new();
        if let Some(v) = map.get("per_second") {
            if let Some(n) = self.count(&join(path, "per_second"), v, rules::at_least_one) {
                config.per_second = n;
            }
        }
        if let Some(v) = map.get("burst") {
            if let Some(n) = self.count(&join(path, "burst"), v, rules::at_least_one) {
                config.burst = n;
            }
        }
        if let Some(v) = map.get("clock") {
            let p = join(path, "clock");
            match v {
                Value::String(s) => match LimiterClock::from_name(s) {
                    Some(clock) => config.clock = clock,
                    None => self.error(
                        &p,
                        format!(
                            "unknown clock \"{s}\"; expected one of: {}",
                            keys::CLOCKS.join(", ")
                        ),
                    ),
                },
                other => self.wrong_type(&p, "\"coarse\", \"precise\" or \"tokio\"", other),
            }
        }
        (self.errors.len() == before).then_some(Some(config))
    }

    /// A `recovery` table, or the string `"fail_fast"`.
    fn recovery(&mut self, path: &str, value: &Value) -> Option<RecoveryConfig> {
        let before = self.errors.len();
        if let Value::String(s) = value {
            if s == "fail_fast" {
                return Some(RecoveryConfig::fail_fast());
            }
        }
        if !matches!(value, Value::Object(_)) {
            self.wrong_type(path, "a table or \"fail_fast\"", value);
            return None;
        }
        let map = self.table(path, value, RECOVERY_KEYS)?;
        let mut config = RecoveryConfig::new();
        let p = |key: &str| join(path, key);
        if let Some(v) = map.get("wait") {
            if let Some(b) = self.boolean(&p("wait"), v) {
                config.wait = b;
            }
        }
        if let Some(v) = map.get("max_waiting") {
            if let Some(n) = self.count(&p("max_waiting"), v, rules::max_waiting) {
                config.max_waiting = n;
            }
        }
        if let Some(v) = map.get("pace") {
            if let Some(x) = self.real(&p("pace"), v, rules::pace) {
                config.pace = x;
            }
        }
        if let Some(v) = map.get("min_rate") {
            if let Some(x) = self.real(&p("min_rate"), v, rules::min_rate) {
                config.min_rate = x;
            }
        }
        if let Some(v) = map.get("slow_start") {
            if let Some(d) = self.duration(&p("slow_start"), v) {
                config.slow_start = d;
            }
        }
        if let Some(v) = map.get("learn_quota") {
            if let Some(b) = self.boolean(&p("learn_quota"), v) {
                config.learn_quota = b;
            }
        }
        let prefix = path.strip_suffix(".recovery").unwrap_or(path).to_owned();
        self.cross_check(before, &prefix, config.validate());
        (self.errors.len() == before).then_some(config)
    }

    /// An `adaptive_timeout` table, or `"off"`.
    fn adaptive_timeout(
        &mut self,
        path: &str,
        value: &Value,
    ) -> Option<Option<AdaptiveTimeoutConfig>> {
        let before = self.errors.len();
        let Some(map) = self.table_or_off(path, value, ADAPTIVE_TIMEOUT_KEYS)? else {
            return Some(None);
        };
        let mut config = AdaptiveTimeoutConfig::new();
        if let Some(v) = map.get("min") {
            if let Some(d) = self.duration_with(&join(path, "min"), v, rules::positive) {
                config.min = d;
            }
        }
        if let Some(v) = map.get("max") {
            if let Some(d) = self.duration_with(&join(path, "max"), v, rules::positive) {
                config.max = d;
            }
        }
        if let Some(v) = map.get("percentile") {
            if let Some(x) = self.real(&join(path, "percentile"), v, rules::percentile) {
                config.percentile = x;
            }
        }
        if let Some(v) = map.get("multiplier") {
            if let Some(x) = self.real(&join(path, "multiplier"), v, rules::multiplier) {
                config.multiplier = x;
            }
        }
        let prefix = path
            .strip_suffix(".adaptive_timeout")
            .unwrap_or(path)
            .to_owned();
        self.cross_check(before, &prefix, config.validate());
        (self.errors.len() == before).then_some(Some(config))
    }

    /// A `throttle` table, or `"off"`.
    fn throttle(&mut self, path: &str, value: &Value) -> Option<Option<ThrottleConfig>> {
        let before = self.errors.len();
        let Some(map) = self.table_or_off(path, value, THROTTLE_KEYS)? else {
            return Some(None);
        };
        let mut config = ThrottleConfig::new();
        if let Some(v) = map.get("k") {
            if let Some(k) = self.real(&join(path, "k"), v, rules::throttle_k) {
                config.k = k;
            }
        }
        if let Some(v) = map.get("window") {
            if let Some(d) = self.duration_with(&join(path, "window"), v, rules::throttle_window) {
                config.window = d;
            }
        }
        let prefix = path.strip_suffix(".throttle").unwrap_or(path).to_owned();
        self.cross_check(before, &prefix, config.validate());
        (self.errors.len() == before).then_some(Some(config))
    }

    fn provider(&mut self, path: &str, value: &Value) -> Option<ProviderSection> {
        let before = self.errors.len();
        let map = self.table(path, value, PROVIDER_KEYS)?;
        let mut call = CallOverrides::default();
        let mut shared = SharedConfig::new();
        self.timing(path, map, &mut call);
        self.timeout_within_deadline(path, &call, None);
        if let Some(v) = map.get("retry") {
            self.retry(&join(path, "retry"), v, &mut call, Some(&mut shared.budget));
        }
        if let Some(v) = map.get("breaker") {
            if let Some(breaker) = self.breaker(&join(path, "breaker"), v) {
                shared.breaker = breaker;
            }
        }
        if let Some(v) = map.get("bulkhead") {
            if let Some(bulkhead) = self.bulkhead(&join(path, "bulkhead"), v) {
                shared.bulkhead = bulkhead;
            }
        }
        if let Some(v) = map.get("rate_limit") {
            if let Some(limit) = self.rate_limit(&join(path, "rate_limit"), v) {
                shared.rate_limit = limit;
            }
        }
        let recovery = map
            .get("recovery")
            .and_then(|v| self.recovery(&join(path, "recovery"), v));
        let throttle = map
            .get("throttle")
            .and_then(|v| self.throttle(&join(path, "throttle"), v));
        if let Some(recovery) = recovery {
            shared.recovery = recovery;
        }
        if let Some(throttle) = throttle {
            shared.throttle = throttle;
        }
        #[cfg(feature = "redis")]
        let shared_quota = map
            .get("shared_quota")
            .and_then(|v| self.shared_quota(&join(path, "shared_quota"), v, path));
        #[cfg(not(feature = "redis"))]
        if map.contains_key("shared_quota") {
            self.error(
                &join(path, "shared_quota"),
                "a quota shared through Redis needs the `redis` feature of buttress; enable it, or remove this key",
            );
        }
        (self.errors.len() == before).then_some(ProviderSection {
            shared,
            call,
            recovery,
            throttle,
            #[cfg(feature = "redis")]
            shared_quota,
        })
    }

    /// A `shared_quota` table: `url` (required), `account` (default
    /// `"default"`), `per_second`, `burst`, `replicas`, `timeout`,
    /// `recheck`, `prefix`. No I/O: the connection is made on first use.
    #[cfg(feature = "redis")]
    fn shared_quota(
        &mut self,
        path: &str,
        value: &Value,
        provider_path: &str,
    ) -> Option<crate::shared_quota::SharedQuota> {
        use crate::shared_quota::{SharedQuota, SharedQuotaConfig};
        let before = self.errors.len();
        let map = self.table(path, value, SHARED_QUOTA_KEYS)?;
        let p = |key: &str| join(path, key);
        let text = |checker: &mut Self, key: &str| -> Option<String> {
            match map.get(key) {
                None => None,
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(other) => {
                    checker.wrong_type(&p(key), "a non-empty string", other);
                    None
                }
            }
        };
        let url = text(self, "url");
        let account = text(self, "account").unwrap_or_else(|| "default".to_owned());
        let prefix = text(self, "prefix");
        if url.is_none() && !map.contains_key("url") {
            self.error(
                &p("url"),
                "missing: the Redis server holding the quota, e.g. url = \"redis://127.0.0.1:6379/\"",
            );
        }
        let mut config = SharedQuotaConfig::new();
        if let Some(prefix) = prefix {
            config = config.with_prefix(prefix);
        }
        if let Some(n) = map
            .get("per_second")
            .and_then(|v| self.count(&p("per_second"), v, rules::quota_per_second))
        {
            config = config.with_per_second(n);
        }
        if let Some(n) = map
            .get("burst")
            .and_then(|v| self.count(&p("burst"), v, rules::at_least_one))
        {
            config = config.with_burst(n);
        }
        if let Some(n) = map
            .get("replicas")
            .and_then(|v| self.count(&p("replicas"), v, rules::at_least_one))
        {
            config = config.with_replicas(n);
        }
        if let Some(d) = map
            .get("timeout")
            .and_then(|v| self.duration_with(&p("timeout"), v, rules::quota_timeout))
        {
            config = config.with_timeout(d);
        }
        if let Some(d) = map
            .get("recheck")
            .and_then(|v| self.duration_with(&p("recheck"), v, rules::quota_recheck))
        {
            config = config.with_recheck(d);
        }
        if self.errors.len() != before {
            return None;
        }
        let provider = provider_path
            .rsplit_once('.')
            .map_or(provider_path, |(_, name)| name);
        match SharedQuota::new(&url?, provider, &account, config) {
            Ok(quota) => Some(quota),
            Err(e) => {
                let key = e.path().rsplit('.').next().unwrap_or("url").to_owned();
                self.error(&p(&key), e.reason());
                None
            }
        }
    }

    fn policy(&mut self, path: &str, value: &Value, root: &Value) -> Option<PolicySection> {
        let before = self.errors.len();
        let map = self.table(path, value, POLICY_KEYS)?;
        let mut call = CallOverrides::default();
        let mut provider = None;
        let mut base = None;
        if let Some(v) = map.get("provider") {
            let p = join(path, "provider");
            match v {
                Value::String(name) => {
                    let defined = root
                        .get("providers")
                        .and_then(Value::as_object)
                        .map(|m| m.keys().map(String::as_str).collect::<Vec<_>>())
                        .unwrap_or_default();
                    if defined.contains(&name.as_str()) {
                        base = Some(root["providers"][name.as_str()].clone());
                        provider = Some(name.clone());
                    } else if defined.is_empty() {
                        self.error(&p, format!("unknown provider `{name}`; define it under `providers` (none are defined)"));
                    } else {
                        self.error(&p, format!("unknown provider `{name}`; define it under `providers` (defined: {})", defined.join(", ")));
                    }
                }
                other => self.wrong_type(&p, "a provider name", other),
            }
        }
        self.timing(path, map, &mut call);
        // The provider's own timeout and deadline apply under the policy's.
        let base = base.map(|section| {
            let mut quiet = Self::default();
            let mut base = CallOverrides::default();
            if let Some(map) = section.as_object() {
                quiet.timing("", map, &mut base);
            }
            base
        });
        self.timeout_within_deadline(path, &call, base.as_ref());
        if let Some(v) = map.get("retry") {
            self.retry(&join(path, "retry"), v, &mut call, None);
        }
        (self.errors.len() == before).then_some(PolicySection { provider, call })
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
