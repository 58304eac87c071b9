//! Sliding windows of recent outcomes, lock-free.
//!
//! The count window keeps the last `size` outcomes as two bitsets (failure,
//! slow) indexed by a monotonic call counter. Recording a success into a
//! full window that holds no failure and no slow call is a no-op (three
//! relaxed loads, no write): the window is all successes either way, so the
//! healthy steady state costs no read-modify-write and no clock.
//!
//! The time window splits its span into [`TIME_BUCKETS`] buckets, each one
//! `AtomicU64` packing an epoch tag with saturating counters, reset by the
//! first recorder of a new epoch with a single compare-and-swap.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Counts over the window at the moment of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts {
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow: u64,
}

#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u64,
    head: AtomicU64,
    failures: AtomicI64,
    slow: AtomicI64,
    failure_bits: Box<[AtomicU64]>,
    slow_bits: Box<[AtomicU64]>,
}

fn bitset(bits: u64) -> Box<[AtomicU64]> {
    (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect()
}

/// Set or clear one bit; returns its previous value.
#[inline]
fn put_bit(bits: &[AtomicU64], slot: u64, value: bool) -> bool {
    let word = &bits[(slot / 64) as usize];
    let mask = 1u64 << (slot % 64);
    if value {
        word.fetch_or(mask, Ordering::AcqRel) & mask != 0
    } else if word.load(Ordering::Relaxed) & mask == 0 {
        false
    } else {
        word.fetch_and(!mask, Ordering::AcqRel) & mask != 0
    }
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        let size = u64::from(size.max(1));
        Self {
            size,
            head: AtomicU64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
            failure_bits: bitset(size),
            slow_bits: bitset(size),
        }
    }

    /// A full window with no failure and no slow call: recording a success
    /// into it changes nothing.
    #[inline(always)]
    pub(crate) fn is_full_and_clean(&self) -> bool {
        self.failures.load(Ordering::Relaxed) <= 0
            && self.slow.load(Ordering::Relaxed) <= 0
            && self.head.load(Ordering::Relaxed) >= self.size
    }

    #[inline]
    pub(crate) fn record(&self, failed: bool, slow: bool) -> WindowCounts {
        if !failed
            && !slow
            && self.failures.load(Ordering::Relaxed) <= 0
            && self.slow.load(Ordering::Relaxed) <= 0
            && self.head.load(Ordering::Relaxed) >= self.size
        {
            // A full window of successes stays a full window of successes.
            return WindowCounts {
                calls: self.size,
                failures: 0,
                slow: 0,
            };
        }
        self.record_slow(failed, slow)
    }

    #[cold]
    fn record_slow(&self, failed: bool, slow: bool) -> WindowCounts {
        let index = self.head.fetch_add(1, Ordering::AcqRel);
        let slot = index % self.size;
        if put_bit(&self.failure_bits, slot, failed) != failed {
            self.failures
                .fetch_add(if failed { 1 } else { -1 }, Ordering::AcqRel);
        }
        if put_bit(&self.slow_bits, slot, slow) != slow {
            self.slow
                .fetch_add(if slow { 1 } else { -1 }, Ordering::AcqRel);
        }
        WindowCounts {
            calls: (index + 1).min(self.size),
            failures: self.failures.load(Ordering::Acquire).max(0) as u64,
            slow: self.slow.load(Ordering::Acquire).max(0) as u64,
        }
    }

    pub(crate) fn counts(&self) -> WindowCounts {
        WindowCounts {
            calls: self.head.load(Ordering::Acquire).min(self.size),
            failures: self.failures.load(Ordering::Acquire).max(0) as u64,
            slow: self.slow.load(Ordering::Acquire).max(0) as u64,
        }
    }

    pub(crate) fn reset(&self) {
        for word in self.failure_bits.iter().chain(self.slow_bits.iter()) {
            word.store(0, Ordering::Relaxed);
        }
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
        self.head.store(0, Ordering::Release);
    }
}

/// How many buckets a time window is split into.
pub const TIME_BUCKETS: u64 = 20;

const TAG_BITS: u32 = 25;
const CALL_BITS: u32 = 13;
const COUNT_BITS: u32 = 13;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const CALL_MAX: u64 = (1 << CALL_BITS) - 1;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

#[derive(Clone, Copy)]
struct Bucket {
    tag: u64,
    calls: u64,
    failures: u64,
    slow: u64,
}

impl Bucket {
    const fn unpack(word: u64) -> Self {
        Self {
            tag: word >> (CALL_BITS + 2 * COUNT_BITS),
            calls: (word >> (2 * COUNT_BITS)) & CALL_MAX,
            failures: (word >> COUNT_BITS) & COUNT_MASK,
            slow: word & COUNT_MASK,
        }
    }

    const fn pack(self) -> u64 {
        (self.tag << (CALL_BITS + 2 * COUNT_BITS))
            | (self.calls << (2 * COUNT_BITS))
            | (self.failures << COUNT_BITS)
            | self.slow
    }
}

/// A time-based window. Per bucket it counts up to 8,191 calls; beyond
/// that, calls in the same bucket are not recorded (the rates stay those of
/// the first 8,191), so the breaker keeps working at any throughput.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[AtomicU64]>,
}

impl TimeWindow {
    pub(crate) fn new(span: Duration) -> Self {
        let bucket_nanos = u64::try_from(span.as_nanos() / u128::from(TIME_BUCKETS))
            .unwrap_or(u64::MAX)
            .max(1_000_000);
        Self {
            bucket_nanos,
            buckets: (0..TIME_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn record(&self, now_nanos: u64, failed: bool, slow: bool) -> WindowCounts {
        let epoch = now_nanos / self.bucket_nanos;
        let tag = epoch & TAG_MASK;
        let bucket = &self.buckets[(epoch % TIME_BUCKETS) as usize];
        let mut current = bucket.load(Ordering::Acquire);
        loop {
            let old = Bucket::unpack(current);
            let new = if old.tag != tag || old.calls == 0 {
                Bucket {
                    tag,
                    calls: 1,
                    failures: u64::from(failed),
                    slow: u64::from(slow),
                }
            } else if old.calls == CALL_MAX {
                break;
            } else {
                Bucket {
                    tag,
                    calls: old.calls + 1,
                    failures: old.failures + u64::from(failed),
                    slow: old.slow + u64::from(slow),
                }
            };
            match bucket.compare_exchange_weak(
                current,
                new.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.counts(now_nanos)
    }

    pub(crate) fn counts(&self, now_nanos: u64) -> WindowCounts {
        let tag = (now_nanos / self.bucket_nanos) & TAG_MASK;
        let mut counts = WindowCounts::default();
        for bucket in self.buckets.iter() {
            let b = Bucket::unpack(bucket.load(Ordering::Acquire));
            if b.calls > 0 && (tag.wrapping_sub(b.tag) & TAG_MASK) < TIME_BUCKETS {
                counts.calls += b.calls;
                counts.failures += b.failures;
                counts.slow += b.slow;
            }
        }
        counts
    }

    pub(crate) fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_slides() {
        let w = CountWindow::new(4);
        assert_eq!(w.record(true, false).failures, 1);
        w.record(false, false);
        w.record(false, true);
        let c = w.record(false, false);
        assert_eq!((c.calls, c.failures, c.slow), (4, 1, 1));
        // The failure falls out of the window.
        let c = w.record(false, false);
        assert_eq!((c.calls, c.failures, c.slow), (4, 0, 1));
        w.record(false, false);
        let c = w.record(false, false);
        assert_eq!((c.calls, c.failures, c.slow), (4, 0, 0));
        w.reset();
        assert_eq!(w.counts(), WindowCounts::default());
    }

    #[test]
    fn count_window_larger_than_a_word() {
        let w = CountWindow::new(130);
        for i in 0..1000u64 {
            w.record(i % 10 == 0, false);
        }
        assert_eq!(w.counts().failures, 13);
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        let w = TimeWindow::new(Duration::from_secs(20)); // 1 s buckets
        let s = 1_000_000_000;
        w.record(0, true, false);
        w.record(s / 2, false, false);
        let c = w.record(10 * s, true, false);
        assert_eq!((c.calls, c.failures), (3, 2));
        let c = w.counts(20 * s);
        assert_eq!((c.calls, c.failures), (1, 1));
        let c = w.counts(31 * s);
        assert_eq!((c.calls, c.failures), (0, 0));
    }

    #[test]
    fn time_window_saturates_instead_of_overflowing() {
        let w = TimeWindow::new(Duration::from_secs(20));
        for _ in 0..(CALL_MAX + 100) {
            w.record(5, true, true);
        }
        let c = w.counts(5);
        assert_eq!(
            (c.calls, c.failures, c.slow),
            (CALL_MAX, CALL_MAX, CALL_MAX)
        );
    }
}
