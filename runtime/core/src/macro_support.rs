//! What the macros' generated code calls. Not public API: reached only as
//! `::buttress::__private_<version>::…`, and free to change between releases.

use std::time::Duration;

use crate::call::Call;
use crate::class::Classify;
use crate::dlq::{DeadLetter, DeadLetterArgs, DeadLetterOn, DeadLetterSink};
use crate::error::Error;
use crate::policy::Policy;
use crate::site::Site;

/// The value of a `#[retry_after]` field: `Duration` or `Option<Duration>`.
#[diagnostic::on_unimplemented(
    message = "`#[retry_after]` is on a field of type `{Self}`",
    label = "expected `Duration` or `Option<Duration>`",
    note = "`#[retry_after]` marks the field holding how long the provider asked us to wait; it must be a `std::time::Duration` or an `Option<std::time::Duration>`"
)]
pub trait RetryAfterField {
    /// The wait the field holds.
    fn retry_after_value(&self) -> Option<Duration>;
}

impl RetryAfterField for Duration {
    fn retry_after_value(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl RetryAfterField for Option<Duration> {
    fn retry_after_value(&self) -> Option<Duration> {
        *self
    }
}

impl<T: RetryAfterField + ?Sized> RetryAfterField for &T {
    fn retry_after_value(&self) -> Option<Duration> {
        (**self).retry_after_value()
    }
}

/// The error type of a `#[resilient]` function: classifiable, and able to
/// carry buttress's own errors.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a `#[resilient]` function",
    label = "`{Self}` must implement `buttress::Classify` and `From<buttress::Error>`",
    note = "derive `buttress::Classify` for `{Self}`, and add a variant such as `#[error(transparent)] #[classify(delegate)] Resilience(#[from] buttress::Error)` so timeouts and open breakers can be returned"
)]
pub trait ResilientError: Classify + From<Error> {}

impl<E: Classify + From<Error>> ResilientError for E {}

/// The return type of a `#[resilient]` function: a `Result`.
#[diagnostic::on_unimplemented(
    message = "a `#[resilient]` function must return `Result<T, E>`, not `{Self}`",
    label = "not a `Result`",
    note = "buttress decides what to retry from the error; return `Result<T, E>` where `E: buttress::Classify + From<buttress::Error>`"
)]
pub trait IsResult {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
}

impl<T, E> IsResult for Result<T, E> {
    type Ok = T;
    type Err = E;
}

/// Start a logical call at `site`, typed by the function's return type `R`.
///
/// # Errors
/// The site's configuration error, as a `buttress::Error`.
#[inline]
pub fn begin<R>(site: &'static Site) -> Result<Call<'static, R::Ok, R::Err>, Error>
where
    R: IsResult,
    R::Err: ResilientError,
{
    site.call()
}

/// The policy a call site resolved to, from which the call starts in
/// place ([`SitePolicy::begin`]): what `#[resilient]` expands to, so that
/// the call is built where it lives rather than moved out of a `Result`.
#[derive(Debug)]
pub struct SitePolicy(std::sync::Arc<crate::bound::PolicyInner>);

/// The policy of `site` in the global registry.
///
/// # Errors
/// The site's configuration error, as a `buttress::Error`.
#[inline]
pub fn site_policy(site: &'static Site) -> Result<SitePolicy, Error> {
    site.policy().map(SitePolicy)
}

impl SitePolicy {
    /// Start a logical call, typed by the function's return type `R`.
    #[inline(always)]
    pub fn begin<R>(self) -> Call<'static, R::Ok, R::Err>
    where
        R: IsResult,
        R::Err: ResilientError,
    {
        Call::holding(self.0)
    }

    /// Like [`SitePolicy::begin`], for return types that cannot be named.
    #[inline(always)]
    pub fn begin_inferred<T, E>(self) -> Call<'static, T, E>
    where
        E: ResilientError,
    {
        Call::holding(self.0)
    }
}

/// Like [`begin`], for return types that cannot be named (`impl Trait`).
///
/// # Errors
/// The site's configuration error, as a `buttress::Error`.
#[inline]
pub fn begin_inferred<T, E>(site: &'static Site) -> Result<Call<'static, T, E>, Error>
where
    E: ResilientError,
{
    site.call()
}

/// Start a logical call under a policy given as an expression
/// (`policy = EXPR`).
#[inline]
pub fn begin_with<R>(policy: &Policy) -> Call<'_, R::Ok, R::Err>
where
    R: IsResult,
    R::Err: ResilientError,
{
    policy.call_straight_on()
}

/// Like [`begin_with`], for return types that cannot be named.
#[inline]
pub fn begin_with_inferred<T, E>(policy: &Policy) -> Call<'_, T, E>
where
    E: ResilientError,
{
    policy.call_straight_on()
}

/// An idempotency key from any `Display` value.
pub fn key_string<K: std::fmt::Display + ?Sized>(key: &K) -> std::sync::Arc<str> {
    std::sync::Arc::from(key.to_string())
}

/// The error type of a `#[resilient(dlq = …)]` function: also `Display`,
/// since a dead letter keeps the error's text.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be recorded in a dead letter",
    label = "`{Self}` must implement `std::fmt::Display`",
    note = "with `dlq`, a dead letter keeps the error's text and class; implement `Display` for `{Self}` (for example with `thiserror`'s `#[error(\"…\")]`)"
)]
pub trait DeadLetterError: ResilientError + std::fmt::Display {}

impl<E: ResilientError + std::fmt::Display> DeadLetterError for E {}

/// Whether the finished `call` is a failure that `on` sends to the sink.
#[inline]
pub fn dead_letter_due<T, E: ResilientError>(call: &Call<'_, T, E>, on: DeadLetterOn) -> bool {
    call.outcome().is_some_and(|outcome| on.covers(outcome))
}

/// The dead letter for the finished `call` (only built after a failure).
#[cold]
pub fn dead_letter_entry<T, E: DeadLetterError>(
    call: &Call<'_, T, E>,
    error: &E,
    arguments: DeadLetterArgs,
) -> DeadLetter {
    DeadLetter::from_call(call, error, arguments.into_value())
}

/// Send `entry` to `sink`; a failure is logged in full at `ERROR` by
/// [`crate::dlq::send`], and the call returns its own error regardless.
pub async fn send_dead_letter<S: DeadLetterSink + ?Sized>(sink: &S, entry: DeadLetter) {
    let _ = crate::dlq::send(sink, entry).await;
}
