//! A seedable, lock-free random source for jitter.
//!
//! SplitMix64 over one `AtomicU64`: each draw is a single `fetch_add`, so a
//! policy shared by many tasks never locks, and a policy built with a seed
//! yields the same sequence every run (for sequential use), which is what
//! deterministic tests need.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Random numbers for jitter: seeded for tests, random otherwise.
#[derive(Debug)]
pub struct Rng {
    state: AtomicU64,
}

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    #[must_use]
    pub const fn seeded(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the process's random hasher keys.
    #[must_use]
    pub fn from_entropy() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x6275_7474_7265_7373);
        Self::seeded(hasher.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniformly random duration in `[low, high]` (nanosecond resolution).
    pub fn duration_between(&self, low: Duration, high: Duration) -> Duration {
        if high <= low {
            return low;
        }
        let span = (high - low).as_nanos().min(u128::from(u64::MAX)) as u64;
        // Lemire's multiply-shift: unbiased enough for jitter, no division.
        let offset = ((u128::from(self.next_u64()) * (u128::from(span) + 1)) >> 64) as u64;
        low + Duration::from_nanos(offset)
    }
}

impl Clone for Rng {
    fn clone(&self) -> Self {
        Self::seeded(self.state.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_repeat() {
        let a = Rng::seeded(7);
        let b = Rng::seeded(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::seeded(8).next_u64(), Rng::seeded(7).next_u64());
    }

    #[test]
    fn durations_stay_in_range() {
        let rng = Rng::seeded(1);
        let (lo, hi) = (Duration::from_millis(10), Duration::from_millis(20));
        let mut seen_low_half = false;
        let mut seen_high_half = false;
        for _ in 0..1000 {
            let d = rng.duration_between(lo, hi);
            assert!(d >= lo && d <= hi, "{d:?}");
            seen_low_half |= d < Duration::from_millis(15);
            seen_high_half |= d > Duration::from_millis(15);
        }
        assert!(seen_low_half && seen_high_half);
        assert_eq!(rng.duration_between(hi, lo), hi);
    }
}
