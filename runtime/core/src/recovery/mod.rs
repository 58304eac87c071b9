//! Recovery at the provider's pace: a call that meets an open breaker or a
//! provider's cooldown may wait inside its deadline instead of failing,
//! sending nothing meanwhile; waiting calls are released earliest deadline
//! first at a pace the provider can take; a `Retry-After` pauses every
//! caller of the provider; and `429`s without a stated limit teach the
//! admitted rate.
//!
//! Guarantees:
//! - **Nothing is sent while blocked.** A waiting call sends nothing until
//!   the gate admits it; it never outlives its deadline (it leaves the
//!   queue when the deadline passes, or at once when what blocks it cannot
//!   end before its deadline).
//! - **Earliest deadline first.** Only the waiter with the earliest
//!   deadline may be admitted; the others wait behind it.
//! - **Bounded.** At most `max_waiting` calls wait; a call beyond that is
//!   rejected at once.
//! - **Paced.** While paced (during an incident, `slow_start` after it, and
//!   while calls wait), the provider receives at most `pace` × the arrival
//!   rate of new calls (at least `min_rate` per second), retries, probes
//!   and held calls included, over any 100 ms; with a learned quota, at
//!   most the quota. While calls are held the measure keeps the demand of
//!   the last 2 s and the pace the provider took over the last second, so
//!   a backlog drains even when new calls stop.
//! - **One cooldown per provider.** A `Retry-After` seen by one call pauses
//!   every call of the provider in the process until it has passed.
//! - **Free when idle.** In the steady state a call reads one atomic flag.

mod config;
mod gate;
mod metrics;
mod pace;
mod pushback;
mod queue;

pub use config::{RecoveryConfig, MAX_PACE, MAX_WAITING};
pub use gate::{BlockReason, Blocked, Gate, RecoveryStats};
