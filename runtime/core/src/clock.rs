//! Time arithmetic shared by every policy: instants that never overflow.

use std::time::Duration;

use tokio::time::Instant;

/// The longest span buttress adds to an instant: about 100 years. Longer
/// durations (a `deadline`, `max_wait`, TTL or lease of `Duration::MAX`, a
/// provider's enormous `Retry-After`) mean "for ever" and are cut to it,
/// the cap `RedisStore` and `PostgresStore` apply to the same values.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `d` in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `now + d`, never overflowing: a `d` beyond `FOREVER` (100 years) counts as it.
pub fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FOREVER))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}
