//! A dead letter: what failed, with what, when, and how to replay it.
//!
//! # What it guarantees
//!
//! - An entry is plain data that serializes to one JSON object (times as
//!   unix milliseconds, the class as its lower-case name) and back, so every
//!   sink stores the same thing and an operator can read it.
//! - The idempotency key is kept in clear in storage (a replay must reuse
//!   it) but `Display`, `Debug`, [`DeadLetter::to_redacted_json`] and every
//!   log show only a short hash of it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::call::Call;
use crate::class::{Classify, ErrorClass};
use crate::idempotency::key_hash;

/// An idempotency key kept in a dead letter: stored in clear so a replay
/// can reuse it, shown everywhere else as `#` and a short hash.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    /// Wrap a key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key in clear, to pass to the replayed call (`Call::set_key`,
    /// `idempotent(key = …)`). Never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The short hash shown instead of the key.
    #[must_use]
    pub fn hash(&self) -> String {
        key_hash(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey(#{})", self.hash())
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.hash())
    }
}

impl Serialize for IdempotencyKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// One unit of work that could not be done, with everything needed to do
/// it later.
///
/// Serialized (by every sink) as one JSON object:
///
/// ```json
/// {"id":"0193…","provider":"payments","operation":"charge",
///  "arguments":{"order":{"id":42}},"error":"provider unavailable",
///  "class":"transient","reason":"attempts_exhausted","attempts":3,
///  "first_attempt_at":1764250000000,"last_attempt_at":1764250000300,
///  "correlation_id":"…","idempotency_key":"charge-42","replays":0,
///  "last_replay_error":null,"parked":false}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// A unique id (a UUIDv7, so ids sort by creation time).
    pub id: String,
    /// The provider called.
    pub provider: String,
    /// The operation (the function's name with `#[resilient]`).
    pub operation: String,
    /// The call's arguments, as a JSON object keyed by parameter name.
    pub arguments: serde_json::Value,
    /// The error, as its `Display` text.
    pub error: String,
    /// The error's class.
    #[serde(with = "class_name")]
    pub class: ErrorClass,
    /// How the call ended ([`CallOutcome::as_str`](crate::CallOutcome::as_str):
    /// `not_retryable`, `attempts_exhausted`, `budget_exhausted`,
    /// `deadline_exceeded`, `rejected`), or `manual` for entries built by hand.
    pub reason: String,
    /// Attempts started, including one refused locally (breaker, rate
    /// limit, bulkhead) before it reached the provider.
    pub attempts: u32,
    /// When the first attempt started (wall clock; unix milliseconds in JSON).
    #[serde(with = "unix_millis")]
    pub first_attempt_at: SystemTime,
    /// When the last attempt started (wall clock; unix milliseconds in JSON).
    #[serde(with = "unix_millis")]
    pub last_attempt_at: SystemTime,
    /// The call's correlation id.
    pub correlation_id: String,
    /// The call's idempotency key, if it had one: reuse it on replay.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    /// Failed replays so far.
    #[serde(default)]
    pub replays: u32,
    /// The error of the latest failed replay.
    #[serde(default)]
    pub last_replay_error: Option<String>,
    /// Parked after too many failed replays: not replayed until un-parked.
    #[serde(default)]
    pub parked: bool,
}

impl DeadLetter {
    /// An entry for `operation` on `provider` that failed with `error`,
    /// made now (one attempt, a fresh id and correlation id, reason
    /// `manual`). Adjust the public fields as needed.
    pub fn new<E: Classify + fmt::Display + ?Sized>(
        provider: impl Into<String>,
        operation: impl Into<String>,
        arguments: serde_json::Value,
        error: &E,
    ) -> Self {
        let now = whole_millis(SystemTime::now());
        Self {
            id: new_id(),
            provider: provider.into(),
            operation: operation.into(),
            arguments,
            error: error.to_string(),
            class: error.class(),
            reason: "manual".to_owned(),
            attempts: 1,
            first_attempt_at: now,
            last_attempt_at: now,
            correlation_id: uuid::Uuid::now_v7().to_string(),
            idempotency_key: None,
            replays: 0,
            last_replay_error: None,
            parked: false,
        }
    }

    /// The entry for a finished `call` that failed with `error`: provider,
    /// operation, attempts, attempt times (converted to wall-clock time),
    /// correlation id, idempotency key and how the call ended.
    pub fn from_call<T, E>(call: &Call<'_, T, E>, error: &E, arguments: serde_json::Value) -> Self
    where
        E: Classify + From<crate::Error> + fmt::Display,
    {
        let wall_now = SystemTime::now();
        let mono_now = tokio::time::Instant::now();
        let wall = |at: Option<tokio::time::Instant>| {
            at.map_or(wall_now, |at| {
                wall_now
                    .checked_sub(mono_now.saturating_duration_since(at))
                    .unwrap_or(wall_now)
            })
        };
        let mut entry = Self::new(call.provider(), call.operation(), arguments, error);
        entry.reason = call
            .outcome()
            .map_or("unfinished", |outcome| outcome.as_str())
            .to_owned();
        entry.attempts = call.attempts();
        entry.first_attempt_at = whole_millis(wall(call.started_at()));
        entry.last_attempt_at = whole_millis(wall(call.last_attempt_at()));
        entry.correlation_id = call.correlation_id().to_string();
        entry.idempotency_key = call.key().map(|k| IdempotencyKey::new(Arc::clone(k)));
        entry
    }

    /// The arguments deserialized as `A` (e.g. a struct with the call's
    /// parameter names as fields), to call the operation again.
    ///
    /// # Errors
    /// When the stored arguments do not fit `A`.
    pub fn arguments_as<A: serde::de::DeserializeOwned>(&self) -> Result<A, serde_json::Error> {
        A::deserialize(&self.arguments)
    }

    /// The entry as JSON with the idempotency key replaced by its hash: what
    /// logs show.
    #[must_use]
    pub fn to_redacted_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let (Some(object), Some(key)) = (value.as_object_mut(), &self.idempotency_key) {
            object.insert(
                "idempotency_key".to_owned(),
                serde_json::Value::String(key.to_string()),
            );
        }
        value.to_string()
    }
}

impl fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {} after {} attempt(s) ({}: {}), first {}, last {}, correlation {}",
            self.id,
            self.provider,
            self.operation,
            self.reason,
            self.attempts,
            self.class,
            self.error,
            rfc3339(self.first_attempt_at),
            rfc3339(self.last_attempt_at),
            self.correlation_id,
        )?;
        if let Some(key) = &self.idempotency_key {
            write!(f, ", key {key}")?;
        }
        if self.replays > 0 {
            write!(f, ", {} failed replay(s)", self.replays)?;
            if let Some(error) = &self.last_replay_error {
                write!(f, " (last: {error})")?;
            }
        }
        if self.parked {
            f.write_str(", parked")?;
        }
        Ok(())
    }
}

/// `time` rounded down to whole milliseconds, the precision entries keep.
fn whole_millis(time: SystemTime) -> SystemTime {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `time` as RFC 3339 in UTC with milliseconds (`2026-11-27T15:20:15.123Z`).
#[must_use]
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

mod unix_millis {
    use super::{Duration, SystemTime, UNIX_EPOCH};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = u64::deserialize(d)?;
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| serde::de::Error::custom("a time beyond the representable range"))
    }
}

mod class_name {
    use super::ErrorClass;
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(super) fn serialize<S: Serializer>(class: &ErrorClass, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(class.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorClass, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "transient" => ErrorClass::Transient,
            "rate_limited" => ErrorClass::RateLimited,
            "outcome_unknown" => ErrorClass::OutcomeUnknown,
            "permanent" => ErrorClass::Permanent,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown error class {other:?} (expected transient, rate_limited, \
                     outcome_unknown or permanent)"
                )))
            }
        })
    }
}

/// An argument kept in a dead letter: anything `Serialize`.
#[diagnostic::on_unimplemented(
    message = "the argument type `{Self}` cannot be kept in a dead letter",
    label = "`{Self}` must implement `serde::Serialize`",
    note = "with `dlq`, a failed call's arguments are serialized into its dead letter so it can be replayed later; derive `serde::Serialize` for the argument's type, or remove `dlq`"
)]
pub trait DeadLetterArgument: Serialize {}

impl<T: Serialize + ?Sized> DeadLetterArgument for T {}

/// The arguments of a failed call, collected by name into a JSON object.
#[derive(Debug, Default)]
pub struct DeadLetterArgs(serde_json::Map<String, serde_json::Value>);

impl DeadLetterArgs {
    /// No arguments yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the argument `name`. A value that fails to serialize (a map with
    /// non-string keys, say) is kept as a string saying why, with a warning:
    /// the dead letter is still recorded.
    pub fn push<A: DeadLetterArgument + ?Sized>(&mut self, name: &str, value: &A) {
        let value = serde_json::to_value(value).unwrap_or_else(|e| {
            tracing::warn!(argument = name, error = %e, "a dead letter's argument could not be serialized");
            serde_json::Value::String(format!("<not serializable: {e}>"))
        });
        self.0.insert(name.to_owned(), value);
    }

    /// The JSON object.
    #[must_use]
    pub fn into_value(self) -> serde_json::Value {
        serde_json::Value::Object(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_764_256_815_123);
        assert_eq!(rfc3339(t), "2025-11-27T15:20:15.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_key_is_stored_but_never_shown() {
        let mut entry = DeadLetter::new(
            "p",
            "op",
            serde_json::json!({"a": 1}),
            &crate::Error::BudgetExhausted {
                provider: "p".into(),
            },
        );
        entry.idempotency_key = Some(IdempotencyKey::new("secret-key-123"));
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains("secret-key-123"));
        for shown in [
            format!("{entry}"),
            format!("{entry:?}"),
            entry.to_redacted_json(),
        ] {
            assert!(!shown.contains("secret-key-123"), "{shown}");
            assert!(shown.contains(&key_hash("secret-key-123")), "{shown}");
        }
        let back: DeadLetter = serde_json::from_str(&json).unwrap();
        assert_eq!(back, entry);
    }
}
