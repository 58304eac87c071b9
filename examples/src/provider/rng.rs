//! A small seeded random stream (SplitMix64): the provider's fault decisions
//! must be repeatable from a seed, and the examples carry no `rand`.

/// SplitMix64: fast, tiny state, good enough statistics for fault injection.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The stream of request number `n` of a server seeded with `seed`.
    pub(crate) fn for_request(seed: u64, n: u64) -> Self {
        let mut mix = Self::new(seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03));
        // Decorrelate neighbouring request numbers.
        let state = mix.next_u64();
        Self::new(state)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal variate (Box–Muller).
    pub(crate) fn standard_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeatable_and_roughly_uniform() {
        let a: Vec<u64> = (0..5)
            .map(|n| SplitMix64::for_request(1, n).next_u64())
            .collect();
        let b: Vec<u64> = (0..5)
            .map(|n| SplitMix64::for_request(1, n).next_u64())
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            SplitMix64::for_request(1, 0).next_u64(),
            SplitMix64::for_request(2, 0).next_u64()
        );
        let below = (0..10_000)
            .filter(|n| SplitMix64::for_request(42, *n).unit() < 0.3)
            .count();
        assert!((2_700..3_300).contains(&below), "{below}");
    }
}
