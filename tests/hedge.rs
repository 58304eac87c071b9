//! Hedging on timeout, on tokio's paused clock: an attempt cut by its
//! timeout keeps running alongside the retries, and whichever succeeds
//! first is the call's result; without `hedge` the cut attempt is
//! cancelled, as before.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress::{resilient, CallOutcome, Policy, PolicyConfig, Registry};
use common::{constant_retry, ms, ProviderError};
use tokio::time::Instant;

fn policy(name: &'static str, hedge: bool, attempts: u32) -> Policy {
    Policy::builder(name)
        .timeout(ms(100))
        .deadline(Duration::from_secs(2))
        .retry(constant_retry(attempts, ms(10)))
        .no_breaker()
        .idempotent(true)
        .hedge(hedge)
        .build_in(&Registry::new())
        .unwrap()
}

/// A provider processing one operation under one key: the first request
/// takes `first` and succeeds; any request while it runs is answered
/// "in progress" (a transient error) at once; a request after it finished
/// replays its result.
#[derive(Clone, Default)]
struct Keyed {
    done: Arc<AtomicU32>,
    started: Arc<AtomicU32>,
}

impl Keyed {
    async fn request(&self, first: Duration) -> Result<u32, ProviderError> {
        let n = self.started.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            tokio::time::sleep(first).await;
            self.done.store(1, Ordering::SeqCst);
            return Ok(7);
        }
        tokio::time::sleep(ms(1)).await;
        if self.done.load(Ordering::SeqCst) == 1 {
            Ok(7) // replayed
        } else {
            Err(ProviderError::Unavailable) // in progress
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_attempt_answers_late_and_wins() {
    let p = policy("hedge-wins", true, 4);
    let provider = Keyed::default();
    let origin = Instant::now();
    // The first request takes 250 ms: cut at 100 ms, then 3 retries, each
    // told "in progress" (at 111, 122, 133 ms); the attempts are spent, but
    // the kept first attempt answers at 250 ms, inside the deadline.
    let answer = p.run(|| provider.request(ms(250))).await;
    assert_eq!(answer.unwrap(), 7);
    assert_eq!(origin.elapsed(), ms(250));
    assert_eq!(provider.started.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn without_hedge_the_cut_attempt_is_cancelled() {
    let p = policy("hedge-off", false, 4);
    let provider = Keyed::default();
    let answer = p.run(|| provider.request(ms(250))).await;
    assert_eq!(answer.unwrap_err(), ProviderError::Unavailable);
    assert_eq!(
        provider.done.load(Ordering::SeqCst),
        0,
        "the first request was dropped at its cut"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_first_wins_and_drops_the_kept_attempt() {
    let p = policy("hedge-retry-wins", true, 3);
    let origin = Instant::now();
    let starts = Arc::new(AtomicU32::new(0));
    let answer = p
        .run(|| {
            let starts = Arc::clone(&starts);
            async move {
                let n = starts.fetch_add(1, Ordering::SeqCst);
                // The first request hangs; the retry answers in 20 ms.
                let wait = if n == 0 {
                    Duration::from_secs(3600)
                } else {
                    ms(20)
                };
                tokio::time::sleep(wait).await;
                Ok::<_, ProviderError>(n)
            }
        })
        .await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(origin.elapsed(), ms(100 + 10 + 20));
}

#[tokio::test(start_paused = true)]
async fn the_kept_attempt_is_waited_for_only_until_the_deadline() {
    let p = policy("hedge-deadline", true, 2);
    let provider = Keyed::default();
    let origin = Instant::now();
    // The first request would take 5 s: the deadline (2 s) ends the wait.
    let answer = p.run(|| provider.request(Duration::from_secs(5))).await;
    assert_eq!(answer.unwrap_err(), ProviderError::Unavailable);
    assert_eq!(origin.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_answer_from_a_retry_is_not_overruled() {
    let p = policy("hedge-permanent", true, 3);
    let starts = AtomicU32::new(0);
    let origin = Instant::now();
    let answer = p
        .run(|| async {
            let n = starts.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                tokio::time::sleep(ms(300)).await;
                Ok(1)
            } else {
                tokio::time::sleep(ms(1)).await;
                Err(ProviderError::Declined)
            }
        })
        .await;
    assert_eq!(answer.unwrap_err(), ProviderError::Declined);
    assert_eq!(origin.elapsed(), ms(100 + 10 + 1));
}

#[tokio::test(start_paused = true)]
async fn the_call_reports_one_outcome() {
    let p = policy("hedge-outcome", true, 2);
    let provider = Keyed::default();
    let mut call = p.call::<u32, ProviderError>();
    let mut kept = std::pin::pin!(None);
    let result = loop {
        if let Some(result) = call.backoff_keeping(kept.as_mut()).await {
            break result;
        }
        let body = provider.request(ms(150));
        if let std::ops::ControlFlow::Break(result) =
            call.attempt_keeping(kept.as_mut(), body).await
        {
            break result;
        }
    };
    assert_eq!(result.unwrap(), 7);
    assert_eq!(call.outcome(), Some(CallOutcome::Ok));
    assert_eq!(call.attempts(), 2);
    assert!(kept.is_none(), "nothing is left running");
}

#[test]
fn hedging_needs_idempotent() {
    let err = Policy::from_config(
        PolicyConfig::new("hedge-invalid").with_hedge(true),
        &Registry::new(),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("hedge: needs `idempotent`"),
        "{err}"
    );
}

struct Client {
    provider: Keyed,
    origin: Instant,
}

impl Client {
    #[resilient(
        provider = "hedge-macro",
        timeout = "100ms",
        deadline = "2s",
        retry(max_attempts = 3, backoff = constant("10ms"), jitter = none, budget = off),
        breaker = off,
        idempotent,
        hedge
    )]
    async fn charge(&self) -> Result<u32, ProviderError> {
        self.provider.request(ms(400)).await
    }

    #[resilient(
        provider = "hedge-macro-off",
        timeout = "100ms",
        deadline = "2s",
        retry(max_attempts = 3, backoff = constant("10ms"), jitter = none, budget = off),
        breaker = off,
        idempotent
    )]
    async fn charge_unhedged(&self) -> Result<u32, ProviderError> {
        self.provider.request(ms(400)).await
    }
}

#[tokio::test(start_paused = true)]
async fn through_the_macro() {
    let client = Client {
        provider: Keyed::default(),
        origin: Instant::now(),
    };
    assert_eq!(client.charge().await.unwrap(), 7);
    assert_eq!(client.origin.elapsed(), ms(400));

    let client = Client {
        provider: Keyed::default(),
        origin: Instant::now(),
    };
    assert_eq!(
        client.charge_unhedged().await.unwrap_err(),
        ProviderError::Unavailable
    );
}

#[tokio::test(start_paused = true)]
async fn a_plain_failure_behaves_as_without_hedging() {
    let p = policy("hedge-plain", true, 2);
    let calls = AtomicU32::new(0);
    let origin = Instant::now();
    let answer = p
        .run(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(ms(1)).await;
            Err::<u32, _>(ProviderError::Unavailable)
        })
        .await;
    assert_eq!(answer.unwrap_err(), ProviderError::Unavailable);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(origin.elapsed(), ms(1 + 10 + 1));
}
