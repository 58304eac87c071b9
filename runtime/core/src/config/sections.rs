//! Each section of a configuration file, checked into its settings:
//! timing, retries and backoff, the breaker, bulkhead and rate limit,
//! recovery, the adaptive timeout and throttle, a provider's section, its
//! shared quota, and a policy's section.

use std::time::Duration;

use serde_json::{Map, Value};

use buttress_settings::{defaults, keys, rules};

use super::checker::{join, Checker};
use super::model::{CallOverrides, PolicySection, ProviderSection};
use crate::adaptive_timeout::AdaptiveTimeoutConfig;
use crate::breaker::{BreakerConfig, Window};
use crate::budget::BudgetConfig;
use crate::bulkhead::BulkheadConfig;
use crate::rate_limit::{LimiterClock, RateLimitConfig};
use crate::recovery::RecoveryConfig;
use crate::registry::SharedConfig;
use crate::retry::{Backoff, Jitter};
use crate::throttle::ThrottleConfig;

// The key tables, from the vocabulary the macro uses too.
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

impl Checker {
    pub(super) fn timing(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        call: &mut CallOverrides,
    ) {
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

    pub(super) fn timeout_within_deadline(
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
    pub(super) fn retry(
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

    pub(super) fn backoff(&mut self, path: &str, value: &Value) -> Option<Backoff> {
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

    pub(super) fn breaker(&mut self, path: &str, value: &Value) -> Option<Option<BreakerConfig>> {
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

    pub(super) fn bulkhead(&mut self, path: &str, value: &Value) -> Option<Option<BulkheadConfig>> {
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

    pub(super) fn rate_limit(
        &mut self,
        path: &str,
        value: &Value,
    ) -> Option<Option<RateLimitConfig>> {
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
    pub(super) fn recovery(&mut self, path: &str, value: &Value) -> Option<RecoveryConfig> {
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
    pub(super) fn adaptive_timeout(
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
    pub(super) fn throttle(&mut self, path: &str, value: &Value) -> Option<Option<ThrottleConfig>> {
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

    pub(super) fn provider(&mut self, path: &str, value: &Value) -> Option<ProviderSection> {
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
    pub(super) fn shared_quota(
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

    pub(super) fn policy(
        &mut self,
        path: &str,
        value: &Value,
        root: &Value,
    ) -> Option<PolicySection> {
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
