//! The per-call overhead of buttress and of its Rust peers, side by side.
//!
//! Every row wraps the same body (see [`bodies`]) in one library's
//! resilience stack, configured the way that library's documentation
//! recommends (see [`rows`] and the README). The drivers (`paired`,
//! `icount`) run the rows of a [`Group`] on one current-thread tokio
//! runtime, as `runtime/benches/overhead_paired.rs` does for buttress alone.

use std::fmt;
use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

pub mod bodies;
pub mod rows;

/// The per-attempt timeout of every row (buttress's default).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The whole-call deadline, where a stack has one (buttress's default).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// What every row returns.
pub type Out = Result<u64, BenchError>;

/// The bodies' error, and what each stack's own errors are mapped to.
#[derive(Debug, buttress::Classify)]
pub enum BenchError {
    /// The body's failure (the `retry` group's first two attempts).
    #[classify(transient)]
    Transient,
    /// A peer's own per-attempt timeout or deadline fired.
    #[classify(outcome_unknown)]
    Timeout,
    /// A peer refused the call (open breaker, limiter), or any other error
    /// of a peer's stack.
    #[classify(permanent)]
    Rejected,
    /// buttress's own errors.
    #[classify(delegate)]
    Resilience(buttress::Error),
}

impl From<buttress::Error> for BenchError {
    fn from(e: buttress::Error) -> Self {
        BenchError::Resilience(e)
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Transient => f.write_str("transient failure"),
            BenchError::Timeout => f.write_str("timed out"),
            BenchError::Rejected => f.write_str("rejected"),
            BenchError::Resilience(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl BenchError {
    /// What the peers' retry predicates retry: the body's transient failure
    /// and their own per-attempt timeout.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, BenchError::Transient | BenchError::Timeout)
    }
}

/// One row: a stack wrapped around a body, called once per `call`.
#[allow(async_fn_in_trait)] // Only ever used generically, on one thread.
pub trait Row {
    async fn call(&mut self) -> Out;
}

/// A row as the drivers see it: timed or counted `calls` times. The timed
/// loop is monomorphic; dynamic dispatch happens once per batch.
pub trait Measure {
    /// Nanoseconds per call over `calls` calls back to back.
    fn time(&mut self, rt: &Runtime, calls: u32) -> f64;
    /// `calls` calls back to back, untimed (for callgrind).
    fn run(&mut self, rt: &Runtime, calls: u64);
}

impl<R: Row> Measure for R {
    fn time(&mut self, rt: &Runtime, calls: u32) -> f64 {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..calls {
                let _ = black_box(self.call().await);
            }
            start.elapsed().as_nanos() as f64 / f64::from(calls)
        })
    }

    fn run(&mut self, rt: &Runtime, calls: u64) {
        rt.block_on(async {
            for _ in 0..calls {
                let _ = black_box(self.call().await);
            }
        });
    }
}

/// A row that is a plain `async fn` (the baselines and the `#[resilient]`
/// functions).
#[derive(Debug, Clone, Copy)]
pub struct FnRow<F>(pub F);

impl<F, Fut> Row for FnRow<F>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Out>,
{
    async fn call(&mut self) -> Out {
        (self.0)().await
    }
}

/// A named row of a group.
pub struct NamedRow {
    pub name: &'static str,
    pub row: Box<dyn Measure>,
}

impl fmt::Debug for NamedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedRow")
            .field("name", &self.name)
            .finish()
    }
}

impl NamedRow {
    pub fn new(name: &'static str, row: impl Measure + 'static) -> Self {
        NamedRow {
            name,
            row: Box::new(row),
        }
    }
}

/// The groups of rows: two happy-path bodies and a retried one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Every stack around a body ready at its first poll.
    Ready,
    /// Every stack around a body that yields once.
    YieldOnce,
    /// The retrying stacks around a body that fails twice (transient,
    /// ready at first poll), then succeeds; zero backoff.
    Retry,
    /// The same, for the stacks whose zero backoff still waits for tokio's
    /// timer (a millisecond per retry): fewer calls per round.
    RetryTimer,
}

impl Group {
    pub const ALL: [Group; 4] = [
        Group::Ready,
        Group::YieldOnce,
        Group::Retry,
        Group::RetryTimer,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Group::Ready => "ready",
            Group::YieldOnce => "yield_once",
            Group::Retry => "retry",
            Group::RetryTimer => "retry_timer",
        }
    }

    /// The group called `name` (`yield` for `yield_once` too).
    #[must_use]
    pub fn parse(name: &str) -> Option<Group> {
        match name {
            "ready" => Some(Group::Ready),
            "yield" | "yield_once" => Some(Group::YieldOnce),
            "retry" => Some(Group::Retry),
            "retry_timer" => Some(Group::RetryTimer),
            _ => None,
        }
    }

    /// Calls per row per round and rounds, by default, in the paired
    /// driver: the `retry_timer` rows take milliseconds a call.
    #[must_use]
    pub fn default_size(self) -> (u32, usize) {
        match self {
            Group::RetryTimer => (500, 10),
            _ => (20_000, 100),
        }
    }

    /// The group's rows, baseline first. Builds the stacks, so it must run
    /// inside `rt`'s context (tokio timers; seatbelt's clock spawns its
    /// driver task).
    #[must_use]
    pub fn rows(self, rt: &Runtime) -> Vec<NamedRow> {
        let _context = rt.enter();
        match self {
            Group::Ready => rows::happy(
                bodies::ready,
                rows::buttress_default_ready,
                rows::buttress_full_ready,
            ),
            Group::YieldOnce => rows::happy(
                bodies::yield_once,
                rows::buttress_default_yield,
                rows::buttress_full_yield,
            ),
            Group::Retry => rows::retry(),
            Group::RetryTimer => rows::retry_timer(),
        }
    }
}

/// The runtime every row runs on, as in `runtime/benches/common`.
#[must_use]
pub fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}
