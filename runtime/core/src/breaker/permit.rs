//! Leave to call through a breaker, and its refusal.

use std::time::Duration;

use super::Breaker;

/// The kind of admission a permit stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitKind {
    /// A call in the closed state; its outcome feeds the window.
    Normal,
    /// A half-open probe; its outcome closes or reopens the breaker.
    Probe,
    /// Forced closed: nothing is recorded.
    Unrecorded,
}

/// Leave to make one call through a breaker. Report the outcome with
/// [`Breaker::record`]; dropping it unreported (a cancelled call) records
/// nothing and returns a probe slot.
#[derive(Debug)]
#[must_use = "report the outcome with Breaker::record"]
pub struct BreakerPermit<'a> {
    pub(super) breaker: &'a Breaker,
    /// The generation that admitted the call, shifted left by two, with the
    /// [`PermitKind`] in the low bits: one word, so the permit moves in two
    /// registers (a separate one-byte kind made every move a partial store
    /// followed by a wide load, which stalls store forwarding).
    pub(super) tag: u64,
}

pub(super) const KIND_BITS: u64 = 2;
pub(super) const KIND_MASK: u64 = (1 << KIND_BITS) - 1;

impl BreakerPermit<'_> {
    /// What kind of admission this is.
    #[must_use]
    pub const fn kind(&self) -> PermitKind {
        match self.tag & KIND_MASK {
            0 => PermitKind::Normal,
            1 => PermitKind::Probe,
            _ => PermitKind::Unrecorded,
        }
    }

    pub(super) const fn generation(&self) -> u64 {
        self.tag >> KIND_BITS
    }
}

impl Drop for BreakerPermit<'_> {
    fn drop(&mut self) {
        if matches!(self.kind(), PermitKind::Probe) {
            self.breaker.release_probe(self.generation());
        }
    }
}

/// A call the breaker did not admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// When the breaker will next admit a probe, if known.
    pub retry_in: Option<Duration>,
}
