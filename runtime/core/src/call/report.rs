//! What the call tells telemetry and the event hooks: its span and each
//! attempt's, the end of an attempt and of the call, local refusals.

use std::time::Duration;

use tokio::time::Instant;

use crate::class::{Classify, ErrorClass};
use crate::error::Error;

use super::{Call, CallOutcome};

impl<'p, T, E> Call<'p, T, E>
where
    E: Classify + From<Error>,
{
    /// Open the call's span (a no-op without an interested subscriber).
    #[inline(always)]
    pub(super) fn open_span(&mut self) {
        if tracing::level_enabled!(tracing::Level::INFO) {
            self.open_span_enabled();
        }
    }

    #[inline(never)]
    fn open_span_enabled(&mut self) {
        let config = &self.policy.config;
        let span = tracing::info_span!(
            "buttress.call",
            provider = &*config.provider,
            operation = &*config.operation,
            correlation_id = tracing::field::Empty,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("correlation_id", &**self.ctx.correlation_id());
            self.ctx.span = span;
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn open_attempt_span(&mut self, attempt: u32) {
        let backoff_ms = if attempt > 1 {
            u64::try_from(self.previous_delay.as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        };
        self.ctx.attempt_span = tracing::info_span!(
            parent: &self.ctx.span,
            "buttress.attempt",
            attempt,
            backoff_ms,
            breaker_state = self.policy.provider.breaker.state().as_str(),
            "error.class" = tracing::field::Empty,
        );
    }

    /// Report the end of an attempt (`class` `None` for a success).
    #[inline]
    pub(super) fn attempt_ended(&mut self, class: Option<ErrorClass>, took: Option<Duration>) {
        let policy = self.policy;
        policy.telemetry.attempt_ended(class, took);
        if !self.ctx.attempt_span.is_disabled() {
            let span = std::mem::replace(&mut self.ctx.attempt_span, tracing::Span::none());
            span.record("error.class", crate::telemetry::class_label(class));
        }
    }

    #[inline(never)]
    pub(super) fn report_end(&mut self, outcome: CallOutcome, error: Option<ErrorClass>) {
        let policy = self.policy;
        let took = self.ctx.started.get().map(|since| {
            self.ended_at
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(since)
        });
        let label = crate::telemetry::call_label(outcome, error.is_none());
        policy.telemetry.call_ended(label, took);
        let span = &self.ctx.span;
        if !span.is_disabled() {
            span.record("attempts", self.ctx.attempt.get());
            span.record("outcome", outcome.as_str());
            match error {
                Some(class) => {
                    span.record("error.type", class.as_str());
                    span.record("otel.status_code", "ERROR");
                }
                None => {
                    span.record("otel.status_code", "OK");
                }
            }
        }
    }

    /// Count a local refusal (of the call or of a retry) in telemetry and
    /// tell the hooks.
    #[cold]
    pub(super) fn refused(&self, reason: &'static str) {
        let policy = self.policy;
        policy.telemetry.rejected(reason);
        crate::events::emit(&crate::events::PolicyEvent::Rejected {
            provider: &policy.config.provider,
            operation: &policy.config.operation,
            reason,
        });
    }
}
