//! What the provider says: a pause every caller waits out (a cooldown,
//! from `Retry-After`), and a quota learned from `429`s without one.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::gate::{Gate, Inner};
use super::metrics::Metric;
use super::pace::MIN_DEMAND_SPAN;
use crate::clock::saturating_nanos;

/// How often a learned quota grows while no `429` comes.
const QUOTA_STEP_EVERY: Duration = Duration::from_millis(100);
/// The growth of a learned quota per [`QUOTA_STEP_EVERY`] without a `429`.
const QUOTA_GROWTH: f64 = 0.01;
/// The multiplicative decrease of a learned quota after a `429`.
const QUOTA_DECREASE: f64 = 0.75;
/// The first learned quota, as a fraction of the demand that met a `429`.
const QUOTA_FIRST: f64 = 0.5;
/// After a decrease, `429`s to requests sent within this long are taken
/// as the same signal.
const QUOTA_HOLD: Duration = Duration::from_millis(250);
/// How long a learned quota is kept after the last `429` while demand
/// stays below it.
const QUOTA_MEMORY: Duration = Duration::from_secs(30);

impl Gate {
    /// The provider asked every caller to wait `retry_after` (a `429` or
    /// `503` with `Retry-After`): nothing is sent to it before then.
    #[cold]
    pub fn cool_down(&self, retry_after: Duration) {
        if retry_after.is_zero() {
            return;
        }
        let now = Instant::now();
        let until = self
            .nanos(now)
            .saturating_add(saturating_nanos(retry_after))
            .max(1);
        let before = self.cooldown_until.fetch_max(until, Ordering::AcqRel);
        if before < self.nanos(now) {
            self.cooldowns.fetch_add(1, Ordering::Relaxed);
            self.metric(Metric::Cooldown);
            tracing::info!(
                provider = &*self.provider,
                retry_after = ?retry_after,
                "provider asked for a pause: every caller waits"
            );
        }
        self.activate();
        let mut inner = self.inner.write();
        let paced = until.saturating_add(saturating_nanos(self.config.slow_start));
        inner.paced_until = inner.paced_until.max(paced);
    }

    /// A request sent at `sent_at` was answered `429`: lower the learned
    /// quota (at most once per round of requests).
    #[cold]
    pub fn rate_limited(&self, sent_at: Instant, retry_after: Option<Duration>) {
        // A `Retry-After` says when capacity returns: the cooldown follows
        // it (and a token-bucket provider refills meanwhile). Only a 429
        // without one leaves the rate to be learned.
        if !self.config.learn_quota || retry_after.is_some() {
            return;
        }
        self.activate();
        let now = self.nanos(Instant::now());
        let sent = self.nanos(sent_at);
        let mut inner = self.inner.write();
        match inner.quota {
            None => inner.quota_pending = true,
            Some(q) => {
                // One decrease per round: requests sent before the last
                // decrease, or so soon after it that the provider's own
                // allowance had no time to refill, say nothing new.
                if sent
                    < inner
                        .last_decrease
                        .saturating_add(saturating_nanos(QUOTA_HOLD))
                {
                    return;
                }
                inner.quota = Some((q * QUOTA_DECREASE).max(self.config.min_rate));
                tracing::debug!(
                    provider = &*self.provider,
                    quota = inner.quota,
                    "a 429: learned quota lowered"
                );
            }
        }
        inner.last_decrease = now;
        inner.last_increase = now;
    }

    /// Bring the learned quota up to date at `now`, with new calls
    /// arriving at `demand` per second: learn a first quota after a `429`
    /// that found none, grow it while no `429` comes, and forget it once
    /// the demand has long stayed below it.
    pub(super) fn update_quota(&self, inner: &mut Inner, now: u64, demand: f64) {
        if inner.quota_pending
            && now.saturating_sub(inner.active_since) >= saturating_nanos(MIN_DEMAND_SPAN)
        {
            inner.quota_pending = false;
            inner.quota = Some((demand * QUOTA_FIRST).max(self.config.min_rate));
            inner.last_increase = now;
        }
        if let Some(q) = inner.quota {
            // Additive increase while no 429 comes.
            let since = now.saturating_sub(inner.last_increase);
            let step = saturating_nanos(QUOTA_STEP_EVERY);
            if since >= step {
                let steps = (since / step) as f64;
                inner.quota = Some(q * (1.0 + QUOTA_GROWTH).powf(steps));
                inner.last_increase = now;
                self.quota_metric(inner.quota);
            }
            let forget = now.saturating_sub(inner.last_decrease) > saturating_nanos(QUOTA_MEMORY)
                && demand * self.config.pace < inner.quota.unwrap_or(q);
            if forget {
                inner.quota = None;
                self.quota_metric(None);
            }
        }
    }
}
