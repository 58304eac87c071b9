//! Experiment: retry amplification through layers of services.
//!
//! A request enters service 1, which calls service 2, …, which calls the
//! provider at the bottom; the provider is completely down. Every layer
//! retries.
//!
//! - **naive**: every layer makes up to 4 attempts (3 retries), so one
//!   top-level request costs the provider `4^depth` calls.
//! - **budget only**: every layer runs a real [`buttress::Policy`] (4
//!   attempts, a [`RetryBudget`](buttress::budget::RetryBudget) of ratio 0.2
//!   and cap 10), but an inner layer's failure reaches the outer layer as a
//!   retryable error (as a 503 would). Each layer adds at most
//!   `10 + 0.2 × its calls`, so the load still grows, by about 1.2× per layer.
//! - **buttress**: the same policies, and an outer layer treats an inner
//!   layer's failure (retries exhausted, budget spent, breaker open) as
//!   `Permanent`, the way a buttress-wrapped call classifies buttress's own
//!   local rejections: only the layer next to the provider retries, under its
//!   budget, whatever the depth.
//!
//! The policies have no timeout, no deadline and a zero backoff, so the
//! simulation never touches a timer and runs in microseconds.

use std::cell::Cell;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use buttress::budget::BudgetConfig;
use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{Classify, Error, ErrorClass, Policy, Registry};

/// Attempts per layer (the first included), for every mode.
pub const ATTEMPTS: u32 = 4;
/// The budget of every buttress layer.
pub const BUDGET: BudgetConfig = BudgetConfig::new().with_ratio(0.2).with_cap(10);
/// Top-level requests per simulation.
pub const REQUESTS: u64 = 1000;
/// The depths simulated.
pub const DEPTHS: std::ops::RangeInclusive<u32> = 1..=5;

/// How layers above the bottom one see an inner layer's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain retry loops, no budget.
    Naive,
    /// buttress policies with a retry budget; inner failures are retryable.
    BudgetOnly,
    /// buttress policies with a retry budget; inner failures are permanent.
    Buttress,
}

/// Provider calls for [`REQUESTS`] top-level requests at one depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmplificationRow {
    /// Layers of services between the caller and the provider.
    pub depth: u32,
    /// Provider calls with naive retry loops.
    pub naive: u64,
    /// Provider calls with buttress policies whose inner failures stay retryable.
    pub budget_only: u64,
    /// Provider calls with buttress policies (inner failures are permanent).
    pub buttress: u64,
}

#[derive(Debug)]
enum LayerError {
    /// The provider is down: a 503 before doing anything.
    ProviderDown,
    /// The layer below gave up.
    InnerFailed { retryable: bool },
    /// buttress's own errors.
    Resilience(Error),
}

impl Classify for LayerError {
    fn class(&self) -> ErrorClass {
        match self {
            LayerError::ProviderDown => ErrorClass::Transient,
            LayerError::InnerFailed { retryable: true } => ErrorClass::Transient,
            LayerError::InnerFailed { retryable: false } => ErrorClass::Permanent,
            LayerError::Resilience(e) => e.class(),
        }
    }
}

impl From<Error> for LayerError {
    fn from(e: Error) -> Self {
        LayerError::Resilience(e)
    }
}

type LayerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), LayerError>> + 'a>>;

/// One call through `layers` (outermost first) to a provider that is down.
fn call_through<'a>(
    layers: &'a [Policy],
    inner_retryable: bool,
    calls: &'a Cell<u64>,
) -> LayerFuture<'a> {
    Box::pin(async move {
        let Some((policy, inner)) = layers.split_first() else {
            calls.set(calls.get() + 1);
            return Err(LayerError::ProviderDown);
        };
        policy
            .run(|| async move {
                if inner.is_empty() {
                    calls.set(calls.get() + 1);
                    return Err(LayerError::ProviderDown);
                }
                call_through(inner, inner_retryable, calls)
                    .await
                    .map_err(|_| LayerError::InnerFailed {
                        retryable: inner_retryable,
                    })
            })
            .await
    })
}

/// One layer of naive code: up to [`ATTEMPTS`] attempts, no budget.
fn naive_call(depth: u32, calls: &mut u64) -> Result<(), ()> {
    for _ in 0..ATTEMPTS {
        let result = if depth <= 1 {
            *calls += 1;
            Err(())
        } else {
            naive_call(depth - 1, calls)
        };
        if result.is_ok() {
            return Ok(());
        }
    }
    Err(())
}

/// Provider calls made for `requests` top-level requests through `depth`
/// layers in `mode`. Every call builds fresh policies (in a private
/// [`Registry`], so budgets start full and nothing leaks between runs).
///
/// # Panics
/// If the policies are invalid (they are constants).
pub async fn provider_calls(mode: Mode, depth: u32, requests: u64) -> u64 {
    if mode == Mode::Naive {
        let mut calls = 0;
        for _ in 0..requests {
            let _ = naive_call(depth, &mut calls);
        }
        return calls;
    }
    let registry = Registry::new();
    let layers: Vec<Policy> = (1..=depth)
        .map(|layer| {
            Policy::builder(format!("amplification-layer-{layer}"))
                .no_timeout()
                .no_deadline()
                .no_breaker()
                .retry(
                    RetryConfig::new()
                        .with_max_attempts(ATTEMPTS)
                        .with_backoff(Backoff::constant(Duration::ZERO))
                        .with_jitter(Jitter::None)
                        .with_budget(Some(BUDGET)),
                )
                .build_in(&registry)
                .expect("a valid layer policy")
        })
        .collect();
    let calls = Cell::new(0);
    let inner_retryable = mode == Mode::BudgetOnly;
    for _ in 0..requests {
        let _ = call_through(&layers, inner_retryable, &calls).await;
    }
    calls.get()
}

/// Every depth in [`DEPTHS`], [`REQUESTS`] top-level requests each.
pub async fn run() -> Vec<AmplificationRow> {
    let mut rows = Vec::new();
    for depth in DEPTHS {
        rows.push(AmplificationRow {
            depth,
            naive: provider_calls(Mode::Naive, depth, REQUESTS).await,
            budget_only: provider_calls(Mode::BudgetOnly, depth, REQUESTS).await,
            buttress: provider_calls(Mode::Buttress, depth, REQUESTS).await,
        });
    }
    rows
}

/// The rows as a table.
#[must_use]
pub fn table(rows: &[AmplificationRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Retry amplification: {REQUESTS} requests through N layers, provider fully down, \
         {ATTEMPTS} attempts per layer\n"
    );
    let _ = writeln!(
        s,
        "{:>5}  {:>18}  {:>14}  {:>14}",
        "depth", "naive", "budget only", "buttress"
    );
    let cell = |calls: u64| format!("{calls} ({:.1}x)", calls as f64 / REQUESTS as f64);
    for r in rows {
        let _ = writeln!(
            s,
            "{:>5}  {:>18}  {:>14}  {:>14}",
            r.depth,
            cell(r.naive),
            cell(r.budget_only),
            cell(r.buttress)
        );
    }
    let _ = writeln!(
        s,
        "\nCells: provider calls (calls per top-level request).\n\
         naive: {ATTEMPTS} attempts per layer, so {ATTEMPTS}^depth calls per request.\n\
         budget only: a buttress policy per layer (retry budget ratio {}, cap {}), inner failures retryable.\n\
         buttress: the same policies; an inner layer's failure is Permanent for the layers above,\n\
         \x20         so only the bottom layer retries, within cap + ratio x calls = {} extra calls.",
        BUDGET.ratio(),
        BUDGET.cap(),
        f64::from(BUDGET.cap()) + BUDGET.ratio() * REQUESTS as f64,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn naive_multiplies_and_buttress_does_not() {
        for depth in DEPTHS {
            let naive = provider_calls(Mode::Naive, depth, 100).await;
            assert_eq!(naive, 100 * u64::from(ATTEMPTS).pow(depth));
            let buttress = provider_calls(Mode::Buttress, depth, 100).await;
            // 100 first attempts + at most cap + ratio × 100 retries.
            assert!(buttress <= 100 + 10 + 20, "depth {depth}: {buttress}");
            assert!(buttress > 100);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn budgets_alone_still_compound() {
        let one = provider_calls(Mode::BudgetOnly, 1, REQUESTS).await;
        let five = provider_calls(Mode::BudgetOnly, 5, REQUESTS).await;
        assert_eq!(one, provider_calls(Mode::Buttress, 1, REQUESTS).await);
        assert!(five > 2 * one, "{one} {five}");
        assert!(five < provider_calls(Mode::Naive, 2, REQUESTS).await);
    }
}
