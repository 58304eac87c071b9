//! How a call ended (`Call::outcome`) and its correlation id, on tokio's
//! paused clock.

mod common;

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress::budget::BudgetConfig;
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{CallOutcome, ErrorClass, Policy, Rejection};
use common::{ms, registry, ProviderError};

fn retry(attempts: u32, budget: Option<BudgetConfig>) -> RetryConfig {
    RetryConfig::new()
        .with_max_attempts(attempts)
        .with_backoff(Backoff::constant(ms(10)))
        .with_jitter(Jitter::None)
        .with_budget(budget)
}

fn policy(name: &str, attempts: u32) -> Policy {
    Policy::builder(name.to_owned())
        .retry(retry(attempts, None))
        .no_breaker()
        .build_in(registry())
        .unwrap()
}

/// Drive a call whose every attempt answers `answer`; return how it ended
/// and how many attempts it made.
async fn outcome_of(
    policy: &Policy,
    answer: Result<u32, ProviderError>,
) -> (Option<CallOutcome>, u32) {
    let mut call = policy.call::<u32, ProviderError>();
    assert_eq!(call.outcome(), None, "no outcome before the call ends");
    loop {
        let answer = answer.clone();
        if let ControlFlow::Break(_) = call.attempt(async move { answer }).await {
            break;
        }
        assert_eq!(call.outcome(), None, "no outcome while retrying");
    }
    (call.outcome(), call.attempts())
}

#[tokio::test(start_paused = true)]
async fn each_ending_is_reported() {
    let p = policy("outcome-each", 3);
    assert_eq!(outcome_of(&p, Ok(1)).await, (Some(CallOutcome::Ok), 1));
    assert_eq!(
        outcome_of(&p, Err(ProviderError::Declined)).await,
        (Some(CallOutcome::NotRetryable(ErrorClass::Permanent)), 1)
    );
    assert_eq!(
        outcome_of(&p, Err(ProviderError::Lost)).await,
        (
            Some(CallOutcome::NotRetryable(ErrorClass::OutcomeUnknown)),
            1
        ),
        "an unknown outcome is not retried on a call that is not idempotent"
    );
    assert_eq!(
        outcome_of(&p, Err(ProviderError::Unavailable)).await,
        (Some(CallOutcome::AttemptsExhausted), 3)
    );
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_and_an_open_breaker_are_told_apart() {
    let spent = Policy::builder("outcome-budget")
        .retry(retry(
            5,
            Some(BudgetConfig::new().with_ratio(0.0).with_cap(1)),
        ))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    assert_eq!(
        outcome_of(&spent, Err(ProviderError::Unavailable)).await,
        (Some(CallOutcome::BudgetExhausted), 2),
        "one token for one retry, then the budget is spent"
    );

    let reg = registry();
    let open = Policy::builder("outcome-breaker")
        .retry(retry(3, None))
        .build_in(reg)
        .unwrap();
    reg.breaker("outcome-breaker").force_open();
    assert_eq!(
        outcome_of(&open, Ok(1)).await,
        (Some(CallOutcome::Rejected(Rejection::CircuitOpen)), 1)
    );
    assert_eq!(Rejection::CircuitOpen.as_str(), "circuit_open");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_cuts_an_attempt_is_reported() {
    let p = Policy::builder("outcome-deadline")
        .timeout(Duration::from_secs(1))
        .deadline(Duration::from_secs(1))
        .retry(retry(3, None))
        .no_breaker()
        .build_in(registry())
        .unwrap();
    let mut call = p.call::<u32, ProviderError>();
    let flow = call
        .attempt(async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(1)
        })
        .await;
    assert!(matches!(flow, ControlFlow::Break(Err(_))));
    assert_eq!(call.outcome(), Some(CallOutcome::DeadlineExceeded));
    assert!(CallOutcome::DeadlineExceeded.is_failure());
    assert!(!CallOutcome::Ok.is_failure());
}

#[tokio::test(start_paused = true)]
async fn attempt_times_are_kept_for_retries() {
    let p = policy("outcome-times", 3);
    let mut call = p.call::<u32, ProviderError>();
    let origin = tokio::time::Instant::now();
    while let ControlFlow::Continue(()) = call
        .attempt(async {
            tokio::task::yield_now().await;
            Err(ProviderError::Unavailable)
        })
        .await
    {}
    assert_eq!(call.started_at(), Some(origin));
    assert_eq!(call.last_attempt_at(), Some(origin + ms(20)));
}

#[tokio::test(start_paused = true)]
async fn the_correlation_id_is_the_same_on_every_attempt_and_new_per_call() {
    let p = policy("outcome-correlation", 3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..2 {
        let seen = Arc::clone(&seen);
        let _ = p
            .run(move || {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock()
                        .unwrap()
                        .push(buttress::correlation_id().unwrap());
                    Err::<u32, _>(ProviderError::Unavailable)
                }
            })
            .await;
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    assert!(seen[..3].iter().all(|id| *id == seen[0]));
    assert!(seen[3..].iter().all(|id| *id == seen[3]));
    assert_ne!(seen[0], seen[3], "each logical call gets its own id");
    assert_eq!(seen[0].len(), 36, "a UUID: {}", seen[0]);
    assert_eq!(
        buttress::correlation_id(),
        None,
        "none outside a wrapped body"
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_supplied_correlation_id_is_used() {
    let p = policy("outcome-correlation-caller", 1);
    let inside = buttress::with_correlation_id("req-42", async {
        p.run(|| async { Ok::<_, ProviderError>(buttress::correlation_id()) })
            .await
    })
    .await
    .unwrap();
    assert_eq!(inside.as_deref(), Some("req-42"));

    let mut call = p.call::<u32, ProviderError>();
    call.set_correlation_id("set-on-the-call");
    assert_eq!(&**call.correlation_id(), "set-on-the-call");
}
