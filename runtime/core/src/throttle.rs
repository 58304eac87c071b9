//! Client-side adaptive throttling: graded admission instead of the
//! breaker's all-or-nothing.
//!
//! The rule of the Google SRE book ("Handling Overload"): over a sliding
//! window, count the requests the client made and the requests the
//! provider accepted; reject a new request locally with probability
//! `max(0, (requests − k × accepts) / (requests + 1))`. While the provider
//! accepts everything nothing is rejected; as it fails, the client sends
//! only about `k` times what gets through, and a recovering provider sees
//! traffic return in proportion to its successes.
//!
//! [`ThrottleConfig`] holds the settings; [`AdaptiveThrottle`] is the
//! state shared by every call to one provider.
//!
//! # Counting
//!
//! The SRE book counts a request when the client attempts it, so requests
//! still in flight count as not (yet) accepted. Here a request is counted
//! once its fate is known, which makes the two counts land together:
//!
//! - a request the throttle rejects counts as a request when
//!   [`AdaptiveThrottle::admit`] rejects it (the caller records nothing);
//! - a request it admits counts when its outcome is recorded with
//!   [`AdaptiveThrottle::record`]: a request, plus an accept if the
//!   provider processed it.
//!
//! Over a window in steady state the counts are the book's. The difference
//! is in flight: a burst of concurrent first calls, or a slow provider, does
//! not look like a failing one, and an attempt that is cancelled before its
//! outcome is recorded counts nothing.
//!
//! # Guarantees
//!
//! - Nothing is rejected while `requests ≤ k × accepts` over the window;
//!   then [`admit`](AdaptiveThrottle::admit) draws no random number and
//!   writes nothing.
//! - With a valid `k` (at least 1) the rejection probability is at most
//!   `requests / (requests + 1)`, below 1: some traffic always reaches the
//!   provider, so its recovery is seen.
//! - Lock-free and allocation-free: the window is [`THROTTLE_BUCKETS`]
//!   atomic words held inline. `admit` reads them (20 loads); a rejection
//!   adds one random draw and one compare-and-swap; `record` is one
//!   compare-and-swap, retried only when another thread wrote the same
//!   bucket in between. Concurrent records lose no count.
//! - Time is tokio's clock ([`tokio::time::Instant`]), so a test on a
//!   paused clock drives the window; the `*_at` methods take the instant
//!   explicitly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use buttress_settings::{defaults, rules};

use crate::error::ConfigError;
use crate::Rng;

/// Settings of the adaptive throttle.
///
/// # Default
/// `k` 2.0, `window` 2 minutes (the SRE book's values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleConfig {
    pub(crate) k: f64,
    pub(crate) window: Duration,
}

/// The shortest throttle window.
pub const MIN_THROTTLE_WINDOW: Duration = rules::MIN_THROTTLE_WINDOW;

impl ThrottleConfig {
    /// The defaults: `k` 2.0, a 2-minute window.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            k: defaults::THROTTLE_K,
            window: defaults::THROTTLE_WINDOW,
        }
    }

    /// The multiplier of accepts: lower rejects sooner (1.1 is aggressive,
    /// 2 is the usual choice). At least 1.
    #[must_use]
    pub const fn with_k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The span over which requests and accepts are counted.
    #[must_use]
    pub const fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// `k`.
    #[must_use]
    pub const fn k(&self) -> f64 {
        self.k
    }

    /// The window.
    #[must_use]
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check("throttle.k", rules::throttle_k(self.k))?;
        ConfigError::check("throttle.window", rules::throttle_window(self.window))
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// How many buckets the throttle's window is split into.
///
/// Counts cover the current bucket and the ones before it, so the span
/// actually counted lies between 19/20 of the window and all of it.
pub const THROTTLE_BUCKETS: u64 = 20;

/// The most requests one bucket counts: 1,048,575.
///
/// Beyond it, further requests and accepts of that bucket are not counted,
/// so the bucket keeps the ratio of its first ones. With the default
/// 2-minute window (6-second buckets) that is about 175,000 requests a
/// second per throttle.
pub const MAX_BUCKET_REQUESTS: u64 = COUNT_MAX;

// One bucket is one word: an epoch tag, requests and accepts. A record
// updates both counts and clears a stale bucket in a single
// compare-and-swap, so a reader never sees more accepts than requests in a
// bucket. The tag is the epoch modulo 2^24: a bucket left untouched for
// 2^24 bucket spans (about 23 hours with the shortest window, 3 years with
// the default) could be mistaken for a current one for one window.
const TAG_BITS: u32 = 24;
const COUNT_BITS: u32 = 20;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

// A record for an epoch older than the bucket's tag (a thread that read the
// clock, then was descheduled while others moved on) belongs to a bucket
// already out of the window; it is dropped instead of wiping the newer one.
// Tags further ahead than this are taken for stale ones that wrapped.
const LATE_RECORD_LIMIT: u64 = 64 * THROTTLE_BUCKETS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    tag: u64,
    requests: u64,
    accepts: u64,
}

impl Bucket {
    const fn unpack(word: u64) -> Self {
        Self {
            tag: word >> (2 * COUNT_BITS),
            requests: (word >> COUNT_BITS) & COUNT_MAX,
            accepts: word & COUNT_MAX,
        }
    }

    const fn pack(self) -> u64 {
        (self.tag << (2 * COUNT_BITS)) | (self.requests << COUNT_BITS) | self.accepts
    }
}

/// Client-side adaptive throttling of one provider: the state behind
/// [`ThrottleConfig`].
///
/// Share one per provider (behind an `Arc` or in a `static`); every method
/// takes `&self`. Ask [`admit`](Self::admit) before an attempt; if it
/// returns `false`, fail the attempt locally without calling the provider
/// and record nothing. If it returns `true`, make the attempt and
/// [`record`](Self::record) its outcome. See the [module
/// documentation](self) for how requests are counted and what is
/// guaranteed.
///
/// ```
/// use buttress::Rng;
/// use buttress::throttle::{AdaptiveThrottle, ThrottleConfig};
///
/// let throttle = AdaptiveThrottle::new(ThrottleConfig::new());
/// let rng = Rng::from_entropy();
/// if throttle.admit(&rng) {
///     let outcome: Result<(), ()> = Ok(()); // call the provider here
///     throttle.record(outcome.is_ok());
/// }
/// assert_eq!(throttle.counts(), (1, 1));
/// ```
#[derive(Debug)]
pub struct AdaptiveThrottle {
    config: ThrottleConfig,
    base: Instant,
    bucket_nanos: u64,
    buckets: [AtomicU64; THROTTLE_BUCKETS as usize],
}

impl AdaptiveThrottle {
    /// A throttle with empty counts; its window starts now (tokio's clock).
    ///
    /// The settings are taken as given; check them first with
    /// [`ThrottleConfig::validate`]. Invalid ones never panic: a window
    /// shorter than [`THROTTLE_BUCKETS`] nanoseconds gets 1-nanosecond
    /// buckets, one too long to count in nanoseconds never slides, and the
    /// probability is clamped to `[0, 1]` (a `k` that is not a number
    /// rejects nothing).
    #[must_use]
    pub fn new(config: ThrottleConfig) -> Self {
        let bucket_nanos = (config.window.as_nanos() / u128::from(THROTTLE_BUCKETS))
            .clamp(1, u128::from(u64::MAX)) as u64;
        Self {
            config,
            base: Instant::now(),
            bucket_nanos,
            buckets: [const { AtomicU64::new(0) }; THROTTLE_BUCKETS as usize],
        }
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Whether to send a request now: `false` rejects it locally, with
    /// [`rejection_probability`](Self::rejection_probability).
    ///
    /// A rejected request is counted as a request at once; do not record
    /// it. An admitted one counts nothing until its outcome is
    /// [`record`](Self::record)ed.
    ///
    /// # Cost
    /// While the probability is 0 (the provider keeps up): the window's 20
    /// atomic loads and the arithmetic of the formula; no random draw, no
    /// write, no lock, no allocation. Otherwise one draw from `rng` (one
    /// atomic add), and on rejection one compare-and-swap.
    #[inline]
    #[must_use = "a rejected request must not be sent"]
    pub fn admit(&self, rng: &Rng) -> bool {
        self.admit_at(Instant::now(), rng)
    }

    /// [`admit`](Self::admit) at `now`.
    #[must_use = "a rejected request must not be sent"]
    pub fn admit_at(&self, now: Instant, rng: &Rng) -> bool {
        let epoch = self.epoch(now);
        let probability = self.probability_of(self.counts_in(epoch));
        if probability <= 0.0 {
            return true;
        }
        if unit_interval(rng.next_u64()) >= probability {
            return true;
        }
        self.add(epoch, false);
        false
    }

    /// Count the outcome of an admitted attempt: one request, and one
    /// accept if `accepted`.
    ///
    /// `accepted` means the provider processed the request: any answer that
    /// is not a provider failure, so a success or a permanent error (the
    /// provider understood and refused it). Timeouts, transient errors and
    /// rate limiting are not accepted.
    #[inline]
    pub fn record(&self, accepted: bool) {
        self.record_at(Instant::now(), accepted);
    }

    /// [`record`](Self::record) at `now`.
    ///
    /// A record older than the window as some other thread already moved
    /// it (a `now` read, then a long pause) is dropped.
    pub fn record_at(&self, now: Instant, accepted: bool) {
        self.add(self.epoch(now), accepted);
    }

    /// The probability that [`admit`](Self::admit) rejects a request now:
    /// `max(0, (requests − k × accepts) / (requests + 1))` over the window.
    #[must_use]
    pub fn rejection_probability(&self) -> f64 {
        self.rejection_probability_at(Instant::now())
    }

    /// [`rejection_probability`](Self::rejection_probability) at `now`.
    #[must_use]
    pub fn rejection_probability_at(&self, now: Instant) -> f64 {
        self.probability_of(self.counts_in(self.epoch(now)))
    }

    /// `(requests, accepts)` over the window now.
    ///
    /// Each bucket is read atomically, the buckets one after another: under
    /// concurrent records the total is a sum of consistent buckets, not one
    /// instant's snapshot.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        self.counts_at(Instant::now())
    }

    /// [`counts`](Self::counts) at `now`.
    #[must_use]
    pub fn counts_at(&self, now: Instant) -> (u64, u64) {
        self.counts_in(self.epoch(now))
    }

    /// The bucket span index of `now` since the throttle was made.
    fn epoch(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.base);
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        nanos / self.bucket_nanos
    }

    fn probability_of(&self, (requests, accepts): (u64, u64)) -> f64 {
        let requests = requests as f64;
        let probability = (requests - self.config.k * accepts as f64) / (requests + 1.0);
        // A NaN (from a `k` that is not a number) fails the test too.
        if probability > 0.0 {
            probability.min(1.0)
        } else {
            0.0
        }
    }

    fn counts_in(&self, epoch: u64) -> (u64, u64) {
        let tag = epoch & TAG_MASK;
        let (mut requests, mut accepts) = (0, 0);
        for bucket in &self.buckets {
            let b = Bucket::unpack(bucket.load(Ordering::Acquire));
            if tag.wrapping_sub(b.tag) & TAG_MASK < THROTTLE_BUCKETS {
                requests += b.requests;
                accepts += b.accepts;
            }
        }
        (requests, accepts)
    }

    /// Count one request, and one accept if `accepted`, in `epoch`'s bucket,
    /// clearing it first if it still holds an older epoch.
    fn add(&self, epoch: u64, accepted: bool) {
        let tag = epoch & TAG_MASK;
        let bucket = &self.buckets[(epoch % THROTTLE_BUCKETS) as usize];
        let accept = u64::from(accepted);
        let mut current = bucket.load(Ordering::Acquire);
        loop {
            let old = Bucket::unpack(current);
            let new = if old.tag == tag {
                if old.requests == COUNT_MAX {
                    return;
                }
                Bucket {
                    tag,
                    requests: old.requests + 1,
                    accepts: old.accepts + accept,
                }
            } else if old.tag.wrapping_sub(tag) & TAG_MASK < LATE_RECORD_LIMIT {
                // The bucket already counts a later epoch: this record is
                // out of the window.
                return;
            } else {
                Bucket {
                    tag,
                    requests: 1,
                    accepts: accept,
                }
            };
            match bucket.compare_exchange_weak(
                current,
                new.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

/// 64 random bits as a uniform number in `[0, 1)`, from the top 53 bits.
fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formula(k: f64, requests: u64, accepts: u64) -> f64 {
        let (r, a) = (requests as f64, accepts as f64);
        ((r - k * a) / (r + 1.0)).max(0.0)
    }

    /// `requests` outcomes at `now`, the first `accepts` of them accepted.
    fn fill(throttle: &AdaptiveThrottle, now: Instant, requests: u64, accepts: u64) {
        for i in 0..requests {
            throttle.record_at(now, i < accepts);
        }
    }

    /// The generator's next draw, without advancing it.
    fn peek(rng: &Rng) -> u64 {
        rng.clone().next_u64()
    }

    #[tokio::test(start_paused = true)]
    async fn probability_follows_the_formula() {
        let pairs = [
            (0, 0),
            (1, 0),
            (10, 0),
            (7, 2),
            (10, 3),
            (10, 5),
            (10, 10),
            (100, 30),
            (1000, 1),
        ];
        for k in [1.0, 1.1, 1.5, 2.0, 3.0] {
            for (requests, accepts) in pairs {
                let throttle = AdaptiveThrottle::new(ThrottleConfig::new().with_k(k));
                fill(&throttle, Instant::now(), requests, accepts);
                assert_eq!(throttle.counts(), (requests, accepts));
                let p = throttle.rejection_probability();
                let expected = formula(k, requests, accepts);
                assert!(
                    (p - expected).abs() < 1e-12,
                    "k {k}, ({requests}, {accepts}): {p} vs {expected}"
                );
                assert!(p < 1.0);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_rejection_while_accepts_keep_up() {
        let rng = Rng::seeded(11);
        let untouched = peek(&rng);
        // k = 2: one accept in two keeps requests == k × accepts.
        let throttle = AdaptiveThrottle::new(ThrottleConfig::new());
        for _ in 0..1000 {
            assert!(throttle.admit(&rng));
            throttle.record(true);
            assert!(throttle.admit(&rng));
            throttle.record(false);
            assert_eq!(throttle.rejection_probability(), 0.0);
        }
        assert_eq!(throttle.counts(), (2000, 1000));
        // k = 1.5 at exactly requests == k × accepts.
        let throttle = AdaptiveThrottle::new(ThrottleConfig::new().with_k(1.5));
        fill(&throttle, Instant::now(), 3, 2);
        assert_eq!(throttle.rejection_probability(), 0.0);
        assert!(throttle.admit(&rng));
        // The healthy path never drew a random number.
        assert_eq!(peek(&rng), untouched);
        // One more failure tips it over: now admission draws.
        throttle.record(false);
        assert!(throttle.rejection_probability() > 0.0);
        let _ = throttle.admit(&rng);
        assert_ne!(peek(&rng), untouched);
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_follow_the_probability() {
        let rng = Rng::seeded(0x7468_726f_7474_6c65);
        const ADMITS: u32 = 10_000;
        for failures in [1, 3, 9] {
            let expected = formula(2.0, failures, 0);
            let mut rejected = 0;
            for _ in 0..ADMITS {
                // A fresh throttle each time, so every admit sees the same
                // counts (a rejection would add a request).
                let throttle = AdaptiveThrottle::new(ThrottleConfig::new());
                fill(&throttle, Instant::now(), failures, 0);
                assert_eq!(throttle.rejection_probability(), expected);
                if !throttle.admit(&rng) {
                    rejected += 1;
                    // The rejected request counts as one.
                    assert_eq!(throttle.counts(), (failures + 1, 0));
                } else {
                    assert_eq!(throttle.counts(), (failures, 0));
                }
            }
            let fraction = f64::from(rejected) / f64::from(ADMITS);
            assert!(
                (fraction - expected).abs() < 0.02,
                "{failures} failures: rejected {fraction}, expected {expected}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_requests_raise_the_probability() {
        let rng = Rng::seeded(3);
        let throttle = AdaptiveThrottle::new(ThrottleConfig::new());
        throttle.record(false);
        let mut previous = throttle.rejection_probability();
        let mut rejected = 0;
        for _ in 0..200 {
            if !throttle.admit(&rng) {
                rejected += 1;
                let p = throttle.rejection_probability();
                assert!(p > previous && p < 1.0);
                previous = p;
            }
        }
        assert_eq!(throttle.counts(), (1 + rejected, 0));
        assert!(rejected > 150, "{rejected}");
    }

    #[tokio::test(start_paused = true)]
    async fn old_buckets_leave_the_window() {
        use tokio::time::advance;
        // 1-second buckets.
        let throttle =
            AdaptiveThrottle::new(ThrottleConfig::new().with_window(Duration::from_secs(20)));
        for _ in 0..3 {
            throttle.record(false);
        }
        advance(Duration::from_secs(10)).await;
        throttle.record(true);
        throttle.record(false);
        assert_eq!(throttle.counts(), (5, 1));
        assert!((throttle.rejection_probability() - formula(2.0, 5, 1)).abs() < 1e-12);
        // Still inside the first bucket's last moment in the window.
        advance(Duration::from_millis(9_999)).await;
        assert_eq!(throttle.counts(), (5, 1));
        // The first bucket leaves.
        advance(Duration::from_millis(1)).await;
        assert_eq!(throttle.counts(), (2, 1));
        assert_eq!(throttle.rejection_probability(), 0.0);
        // The second one too.
        advance(Duration::from_secs(10)).await;
        assert_eq!(throttle.counts(), (0, 0));
        // A record reuses the second one's slot, cleared on the way.
        throttle.record(true);
        assert_eq!(throttle.counts(), (1, 1));
        advance(Duration::from_secs(3600)).await;
        assert_eq!(throttle.counts(), (0, 0));
    }

    #[test]
    fn concurrent_records_lose_no_count() {
        const THREADS: u64 = 4;
        const RECORDS: u64 = 20_000;
        let throttle = AdaptiveThrottle::new(ThrottleConfig::new());
        let base = throttle.base;
        let bucket = Duration::from_secs(6);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let throttle = &throttle;
                scope.spawn(move || {
                    for i in 0..RECORDS {
                        // Two buckets shared by every thread.
                        let now = base + bucket * u32::from(i % 3 == 0);
                        throttle.record_at(now, (i + thread) % 2 == 0);
                    }
                });
            }
        });
        let now = base + bucket;
        assert_eq!(
            throttle.counts_at(now),
            (THREADS * RECORDS, THREADS * RECORDS / 2)
        );
    }

    #[test]
    fn a_late_record_does_not_wipe_a_newer_bucket() {
        let throttle =
            AdaptiveThrottle::new(ThrottleConfig::new().with_window(Duration::from_secs(20)));
        let later = throttle.base + Duration::from_secs(20);
        throttle.record_at(later, true);
        // Same slot, one window earlier: already out of the window.
        throttle.record_at(throttle.base, false);
        assert_eq!(throttle.counts_at(later), (1, 1));
        assert_eq!(throttle.counts_at(throttle.base), (0, 0));
    }

    #[test]
    fn a_full_bucket_keeps_its_ratio() {
        let throttle = AdaptiveThrottle::new(ThrottleConfig::new());
        let now = throttle.base;
        for i in 0..(MAX_BUCKET_REQUESTS + 1000) {
            throttle.record_at(now, i % 4 == 0);
        }
        assert_eq!(
            throttle.counts_at(now),
            (MAX_BUCKET_REQUESTS, MAX_BUCKET_REQUESTS.div_ceil(4))
        );
        // The next bucket counts afresh.
        let next = now + Duration::from_secs(6);
        throttle.record_at(next, true);
        assert_eq!(
            throttle.counts_at(next),
            (MAX_BUCKET_REQUESTS + 1, MAX_BUCKET_REQUESTS.div_ceil(4) + 1)
        );
    }

    #[test]
    fn invalid_settings_do_not_panic() {
        let rng = Rng::seeded(5);
        for config in [
            ThrottleConfig::new().with_window(Duration::ZERO),
            ThrottleConfig::new().with_window(Duration::MAX),
            ThrottleConfig::new().with_k(f64::NAN),
            ThrottleConfig::new().with_k(-3.0),
        ] {
            let throttle = AdaptiveThrottle::new(config);
            assert_eq!(throttle.config().window(), config.window());
            let now = throttle.base + Duration::from_secs(1);
            throttle.record_at(now, true);
            throttle.record_at(now, false);
            let _ = throttle.admit_at(now, &rng);
            let p = throttle.rejection_probability_at(now);
            assert!((0.0..=1.0).contains(&p), "{config:?}: {p}");
        }
        let forever = AdaptiveThrottle::new(ThrottleConfig::new().with_window(Duration::MAX));
        forever.record_at(forever.base, false);
        assert_eq!(
            forever.counts_at(forever.base + Duration::from_secs(1 << 40)),
            (1, 0)
        );
    }

    #[test]
    fn buckets_pack_and_unpack() {
        let bucket = Bucket {
            tag: TAG_MASK,
            requests: COUNT_MAX,
            accepts: COUNT_MAX - 1,
        };
        assert_eq!(Bucket::unpack(bucket.pack()), bucket);
        assert_eq!(unit_interval(0), 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }
}
