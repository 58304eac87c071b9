//! Ending the call: its outcome and result, a local rejection, a deadline
//! that left no room for another attempt.

use std::ops::ControlFlow;

use crate::class::Classify;
use crate::error::Error;

use super::{Call, CallOutcome, Rejection};

impl<'p, T, E> Call<'p, T, E>
where
    E: Classify + From<Error>,
{
    /// End the call with `result`.
    #[inline]
    pub(super) fn finish(&mut self, outcome: CallOutcome, result: Result<T, E>) -> Result<T, E> {
        self.outcome = Some(outcome);
        if self.keeping && result.is_err() {
            // Reported by `attempt_keeping` once the kept attempt settles.
            return result;
        }
        if self.policy.telemetry.measures() || !self.ctx.span.is_disabled() {
            self.report_end(outcome, result.as_ref().err().map(Classify::class));
        }
        result
    }

    /// The deadline passed before the next attempt could start.
    #[cold]
    pub(super) fn no_time_left(&mut self) -> ControlFlow<Result<T, E>> {
        self.refused("deadline");
        let error = self.give_up();
        ControlFlow::Break(self.finish(CallOutcome::DeadlineExceeded, Err(error)))
    }

    /// The deadline left no room for another attempt: the last provider
    /// error, or `DeadlineExceeded` if there was none.
    fn give_up(&mut self) -> E {
        self.last_error.take().unwrap_or_else(|| {
            E::from(Error::DeadlineExceeded {
                provider: self.provider_name(),
                deadline: self.policy.config.deadline.unwrap_or_default(),
                attempts: self.ctx.attempt.get().saturating_sub(1),
            })
        })
    }

    #[cold]
    pub(super) fn reject(&mut self, why: Rejection, error: Error) -> ControlFlow<Result<T, E>> {
        self.refused(why.as_str());
        {
            let _in_call = self.ctx.span.enter();
            tracing::debug!(
                provider = error.provider(),
                reason = error.reason(),
                attempt = self.ctx.attempt.get(),
                "call rejected locally: {error}"
            );
        }
        ControlFlow::Break(self.finish(CallOutcome::Rejected(why), Err(E::from(error))))
    }
}
