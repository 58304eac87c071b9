//! The breaker's whole state in one word: the state, the probes admitted
//! and succeeded, and a generation bumped on every transition.

use crate::circuit::BreakerState;

// State word: bits 0..3 state, 3..19 admitted probes, 19..35 succeeded
// probes, 35..64 generation (bumped on every transition).
pub(super) const CLOSED: u64 = 0;
pub(super) const OPEN: u64 = 1;
pub(super) const HALF_OPEN: u64 = 2;
pub(super) const FORCED_OPEN: u64 = 3;
pub(super) const FORCED_CLOSED: u64 = 4;
pub(super) const ADMITTED_SHIFT: u32 = 3;
pub(super) const SUCCEEDED_SHIFT: u32 = 19;
pub(super) const GEN_SHIFT: u32 = 35;
pub(super) const FIELD: u64 = 0xFFFF;

pub(super) const fn code(word: u64) -> u64 {
    word & 0b111
}
pub(super) const fn admitted(word: u64) -> u64 {
    (word >> ADMITTED_SHIFT) & FIELD
}
pub(super) const fn succeeded(word: u64) -> u64 {
    (word >> SUCCEEDED_SHIFT) & FIELD
}
pub(super) const fn generation(word: u64) -> u64 {
    word >> GEN_SHIFT
}
pub(super) const fn make(code: u64, admitted: u64, succeeded: u64, generation: u64) -> u64 {
    code | (admitted << ADMITTED_SHIFT)
        | (succeeded << SUCCEEDED_SHIFT)
        | ((generation & ((1 << (64 - GEN_SHIFT)) - 1)) << GEN_SHIFT)
}

/// The state a packed state word's code stands for.
pub(super) const fn state_of(code: u64) -> BreakerState {
    match code {
        CLOSED => BreakerState::Closed,
        OPEN => BreakerState::Open,
        HALF_OPEN => BreakerState::HalfOpen,
        FORCED_OPEN => BreakerState::ForcedOpen,
        _ => BreakerState::ForcedClosed,
    }
}
