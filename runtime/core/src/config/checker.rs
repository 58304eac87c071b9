//! The checker: walks a parsed configuration tree, reads each value as the
//! type and within the range its key takes (ranges and messages from the
//! settings vocabulary), and collects every mistake with its path.

use std::time::Duration;

use buttress_settings::rules;
use serde_json::{Map, Value};

use crate::error::ConfigError;

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[derive(Default)]
pub(super) struct Checker {
    pub(super) errors: Vec<ConfigError>,
}

impl Checker {
    pub(super) fn error(&mut self, path: &str, reason: impl Into<String>) {
        let path = if path.is_empty() { "(top level)" } else { path };
        self.errors.push(ConfigError::new(path, reason));
    }

    pub(super) fn wrong_type(&mut self, path: &str, expected: &str, got: &Value) {
        self.error(path, format!("expected {expected}, got {}", kind(got)));
    }

    /// A table of free-form names (`providers`, `policies`).
    pub(super) fn map<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
    ) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.wrong_type(path, "a table of names", other);
                None
            }
        }
    }

    /// A table whose keys must be among `valid`; unknown keys are reported.
    pub(super) fn table<'v>(
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
    pub(super) fn table_or_off<'v>(
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
    pub(super) fn duration(&mut self, path: &str, value: &Value) -> Option<Duration> {
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
    pub(super) fn duration_with(
        &mut self,
        path: &str,
        value: &Value,
        rule: fn(Duration) -> rules::Rule,
    ) -> Option<Duration> {
        let d = self.duration(path, value)?;
        self.obey(path, d, rule)
    }

    /// `value` if `rule` accepts it; its reason as an error otherwise.
    pub(super) fn obey<T: Copy>(
        &mut self,
        path: &str,
        value: T,
        rule: fn(T) -> rules::Rule,
    ) -> Option<T> {
        match rule(value) {
            Ok(()) => Some(value),
            Err(reason) => {
                self.error(path, reason);
                None
            }
        }
    }

    /// A whole number (of `u32`'s range) that `rule` accepts.
    pub(super) fn count(
        &mut self,
        path: &str,
        value: &Value,
        rule: fn(u32) -> rules::Rule,
    ) -> Option<u32> {
        let Value::Number(n) = value else {
            self.wrong_type(path, "a whole number", value);
            return None;
        };
        if n.as_u64().is_none() && n.as_i64().is_none() {
            self.error(path, format!("expected a whole number, got {n}"));
            return None;
        }
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
    pub(super) fn real(
        &mut self,
        path: &str,
        value: &Value,
        rule: fn(f64) -> rules::Rule,
    ) -> Option<f64> {
        let x = match value {
            Value::Number(n) => n.as_f64()?,
            other => {
                self.wrong_type(path, "a number", other);
                return None;
            }
        };
        self.obey(path, x, rule)
    }

    pub(super) fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(path, "true or false", other);
                None
            }
        }
    }

    /// Run `section`'s whole-section check when its keys were all valid.
    pub(super) fn cross_check(
        &mut self,
        before: usize,
        prefix: &str,
        check: Result<(), ConfigError>,
    ) {
        if self.errors.len() == before {
            if let Err(e) = check {
                self.errors.push(e.within(prefix));
            }
        }
    }
}
