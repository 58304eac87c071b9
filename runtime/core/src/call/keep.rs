//! Hedging: an attempt cut by its timeout kept running beside the retries
//! ([`Call::attempt_keeping`]), and whichever answers with success first
//! is the call's result.

use std::future::Future;
use std::ops::ControlFlow;
use std::task::Poll;

use crate::class::Classify;
use crate::error::Error;

use super::{Call, CallOutcome};

/// Poll the attempt kept in `kept`, if any: `Ready` with its value when it
/// succeeded; a late failure empties the slot and stays `Pending` (it says
/// nothing the retries do not).
fn poll_kept<F, T, E>(
    kept: &mut std::pin::Pin<&mut Option<F>>,
    cx: &mut std::task::Context<'_>,
) -> Poll<T>
where
    F: Future<Output = Result<T, E>>,
{
    let Some(Poll::Ready(answer)) = kept.as_mut().as_pin_mut().map(|running| running.poll(cx))
    else {
        return Poll::Pending;
    };
    kept.set(None);
    match answer {
        Ok(value) => Poll::Ready(value),
        Err(_) => Poll::Pending,
    }
}

/// Who answered first in [`Call::attempt_keeping`].
enum Raced<T, F> {
    Kept(T),
    Step(F),
}

impl<T, E> Call<'_, T, E>
where
    E: Classify + From<Error>,
{
    /// As [`attempt`](Self::attempt), but an attempt cut by its timeout is
    /// not cancelled when the policy hedges
    /// ([`PolicyConfig::with_hedge`](crate::PolicyConfig::with_hedge)) and
    /// the call is idempotent: it goes on in `kept` while the retries run,
    /// and whichever answers with success first is the call's result (the
    /// others are dropped). Until the deadline, a kept attempt may still
    /// answer after the retries gave up (attempts or budget spent, a
    /// refusal); a provider's final answer (a `Permanent` error) is not
    /// overruled. One attempt is kept at a time, the earliest cut; a
    /// later retry cut by its timeout is cancelled as usual.
    ///
    /// `kept` is a pinned slot the caller keeps across the attempts of one
    /// call (`#[resilient(hedge)]` and [`Policy::run`](crate::Policy::run)
    /// do this); nothing is allocated. Inside a kept attempt, after its
    /// cut, the context accessors ([`crate::attempt`],
    /// [`crate::idempotency_key`], ...) answer `None`: read them before
    /// the first `.await` of the body.
    pub async fn attempt_keeping<F>(
        &mut self,
        mut kept: std::pin::Pin<&mut Option<F>>,
        body: F,
    ) -> ControlFlow<Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        if !(self.policy.config.hedge && self.ctx.idempotent) {
            return self.attempt(body).await;
        }
        if kept.is_none() {
            // This attempt runs in the slot, so it can stay there if cut.
            kept.set(Some(body));
            let flow = match kept.as_mut().as_pin_mut() {
                Some(running) => self.attempt(running).await,
                None => unreachable!("the slot was just filled"),
            };
            if !(flow.is_continue() && self.timed_out) {
                kept.set(None);
            }
            return flow;
        }
        // An earlier attempt is still running: race it with this one.
        self.keeping = true;
        let raced = {
            let body = std::pin::pin!(body);
            let step = self.attempt(body);
            let mut step = std::pin::pin!(step);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(value) = poll_kept(&mut kept, cx) {
                    return Poll::Ready(Raced::Kept(value));
                }
                step.as_mut().poll(cx).map(Raced::Step)
            })
            .await
        };
        self.keeping = false;
        match raced {
            // The retry in progress was dropped; the call ends now.
            Raced::Kept(value) => ControlFlow::Break(self.late_success(value)),
            Raced::Step(ControlFlow::Continue(())) => ControlFlow::Continue(()),
            Raced::Step(ControlFlow::Break(result)) => {
                let held_back = result.is_err();
                let result = match (result, kept.as_mut().as_pin_mut()) {
                    (Err(error), Some(running))
                        if !matches!(self.outcome, Some(CallOutcome::NotRetryable(_))) =>
                    {
                        self.wait_for_kept(running, error).await
                    }
                    (result, _) => result,
                };
                kept.set(None);
                if held_back && (self.policy.telemetry.measures() || !self.ctx.span.is_disabled()) {
                    // The end `finish` held back.
                    let outcome = self.outcome.unwrap_or(CallOutcome::Ok);
                    self.report_end(outcome, result.as_ref().err().map(Classify::class));
                }
                ControlFlow::Break(result)
            }
        }
    }

    /// [`backoff`](Self::backoff) while an attempt kept by
    /// [`attempt_keeping`](Self::attempt_keeping) runs: `Some` with the
    /// call's result when that attempt answers with success first.
    pub async fn backoff_keeping<F>(
        &mut self,
        mut kept: std::pin::Pin<&mut Option<F>>,
    ) -> Option<Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let at = self.next_attempt_at?;
        if kept.is_none() {
            self.backoff().await;
            return None;
        }
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(at));
        let answer = std::future::poll_fn(|cx| {
            if let Poll::Ready(value) = poll_kept(&mut kept, cx) {
                return Poll::Ready(Some(value));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await;
        self.next_attempt_at = None;
        answer.map(|value| self.late_success(value))
    }

    /// The kept attempt answered with success first: the call's result.
    fn late_success(&mut self, value: T) -> Result<T, E> {
        self.ended_at = None;
        self.finish(CallOutcome::Ok, Ok(value))
    }

    /// The retries gave up with `error` while a kept attempt still runs:
    /// wait for it until the deadline (not at all without one).
    #[cold]
    async fn wait_for_kept<F>(&mut self, running: std::pin::Pin<&mut F>, error: E) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let Some(deadline) = self.ctx.deadline_at(self.ctx.now()) else {
            return Err(error);
        };
        let answer = tokio::time::timeout_at(deadline, running).await;
        self.ended_at = None;
        match answer {
            Ok(Ok(value)) => {
                self.outcome = Some(CallOutcome::Ok);
                Ok(value)
            }
            _ => Err(error),
        }
    }
}
