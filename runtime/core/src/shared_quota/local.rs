//! The local share: what a replica admits on its own while Redis is
//! unavailable (or for a local-only quota).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::SharedAdmission;

/// The local share: a weighted GCRA on one atomic word (nanoseconds since
/// `origin`), with its own cooldown.
#[derive(Debug)]
pub(super) struct LocalGcra {
    tat: AtomicU64,
    cool_until: AtomicU64,
    interval: u64,
    capacity: u64,
    origin: Instant,
}

impl LocalGcra {
    pub(super) fn new(per_second: u32, burst: u32, origin: Instant) -> Self {
        let interval = (1_000_000_000 / u64::from(per_second.max(1))).max(1);
        Self {
            tat: AtomicU64::new(0),
            cool_until: AtomicU64::new(0),
            interval,
            capacity: interval.saturating_mul(u64::from(burst.max(1))),
            origin,
        }
    }

    fn now(&self) -> u64 {
        crate::clock::saturating_nanos(Instant::now().duration_since(self.origin))
    }

    pub(super) fn admit(&self, cost: u32, max_wait: Duration) -> SharedAdmission {
        let now = self.now();
        let cool = self.cool_until.load(Ordering::Relaxed);
        if cool > now {
            return SharedAdmission::Cooldown(Duration::from_nanos(cool - now));
        }
        let max_wait = crate::clock::saturating_nanos(max_wait);
        let step = self.interval.saturating_mul(u64::from(cost));
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now).saturating_add(step);
            let wait = new_tat.saturating_sub(now).saturating_sub(self.capacity);
            if wait > max_wait {
                return SharedAdmission::Refused(Duration::from_nanos(wait));
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if wait == 0 => return SharedAdmission::Now,
                Ok(_) => return SharedAdmission::After(Duration::from_nanos(wait)),
                Err(current) => tat = current,
            }
        }
    }

    /// Spend the burst, and admit nothing before `after` (nanoseconds
    /// since the origin, which the quota shares): from then on, one slot
    /// per interval.
    pub(super) fn drain(&self, after: u64) {
        let start = self.now().max(after);
        self.tat
            .fetch_max(start.saturating_add(self.capacity), Ordering::AcqRel);
    }

    /// How far ahead the slots already reserved reach.
    pub(super) fn reserved_for(&self) -> Duration {
        let tat = self.tat.load(Ordering::Acquire);
        Duration::from_nanos(tat.saturating_sub(self.now()).saturating_sub(self.capacity))
    }

    pub(super) fn cool_down(&self, wait: Duration) {
        let until = self
            .now()
            .saturating_add(crate::clock::saturating_nanos(wait));
        self.cool_until.fetch_max(until, Ordering::Relaxed);
    }

    pub(super) fn correct(&self, delta: i64) {
        let step = self.interval.saturating_mul(delta.unsigned_abs());
        let now = self.now();
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |tat| {
                let base = tat.max(now);
                Some(if delta > 0 {
                    base.saturating_add(step)
                } else {
                    base.saturating_sub(step).max(now)
                })
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_local_share_is_a_weighted_gcra() {
        let local = LocalGcra::new(10, 3, Instant::now());
        for _ in 0..3 {
            assert_eq!(local.admit(1, Duration::ZERO), SharedAdmission::Now);
        }
        assert_eq!(
            local.admit(1, Duration::ZERO),
            SharedAdmission::Refused(Duration::from_millis(100))
        );
        assert_eq!(
            local.admit(2, Duration::from_secs(1)),
            SharedAdmission::After(Duration::from_millis(200))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        // Given back: the 200 ms reserved, then it is all free again.
        local.correct(-2);
        assert_eq!(local.admit(3, Duration::ZERO), SharedAdmission::Now);
        local.cool_down(Duration::from_millis(500));
        assert!(matches!(
            local.admit(1, Duration::MAX),
            SharedAdmission::Cooldown(_)
        ));
    }
}
