//! The embedded idempotency store: sharded and bounded.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Claim, ClaimRequest, IdempotencyStore, StoreError};

/// Settings of a [`MemoryStore`].
///
/// # Default
/// At most 100,000 entries, in 16 shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStoreConfig {
    max_entries: usize,
    shards: usize,
}

impl MemoryStoreConfig {
    /// The defaults.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            max_entries: 100_000,
            shards: 16,
        }
    }

    /// The most keys kept at once (at least the number of shards).
    #[must_use]
    pub const fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// How many independently locked shards (rounded up to a power of two).
    #[must_use]
    pub const fn with_shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
enum State {
    /// Released after a failure: free to claim.
    Free,
    InFlight {
        lease_until: Instant,
    },
    Done {
        record: Arc<[u8]>,
    },
}

#[derive(Debug)]
struct Entry {
    fence: u64,
    state: State,
    fingerprint: Option<u64>,
    expires_at: Instant,
    seq: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Arc<str>, Entry>,
    /// Keys in insertion order, with the sequence number they were
    /// inserted under (a key evicted and inserted again appears twice; the
    /// stale copy is skipped).
    order: VecDeque<(Arc<str>, u64)>,
    next_seq: u64,
    inserts_since_sweep: usize,
}

#[derive(Debug)]
struct Inner {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    evictions: AtomicU64,
}

/// An in-memory [`IdempotencyStore`]: the embedded default. Cheap to clone
/// (clones share state). Sharded (one lock per shard, held for a few map
/// operations) and bounded: when a shard is full, expired entries go first,
/// then the oldest, so a flood of unique keys cannot grow memory without
/// bound. An evicted key that was still in flight loses its protection
/// (its holder's completion is then refused), so size the store above the
/// number of keys in flight at once.
///
/// It deduplicates within one process only; use `RedisStore` or
/// `PostgresStore` across processes and machines.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default settings.
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(MemoryStoreConfig::new())
    }

    /// A store with these settings.
    #[must_use]
    pub fn with_config(config: MemoryStoreConfig) -> Self {
        let shards = config.shards.clamp(1, 1024).next_power_of_two();
        let per_shard = config.max_entries.div_ceil(shards).max(1);
        Self {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
                per_shard,
                hasher: RandomState::new(),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// Keys held now (all states).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Whether the store holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this store keeps at once.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.inner.per_shard * self.inner.shards.len()
    }

    /// How many live (unexpired) entries were evicted to make room.
    #[must_use]
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = (self.inner.hasher.hash_one(key) as usize) & (self.inner.shards.len() - 1);
        self.inner.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn claim_now(&self, request: ClaimRequest<'_>, now: Instant) -> Claim {
        let mut shard = self.shard(request.key);
        let lease_until = crate::clock::later(now, request.lease);
        let expires_at = crate::clock::later(now, request.ttl.max(request.lease));
        if let Some(entry) = shard.map.get_mut(request.key) {
            let live = entry.expires_at > now;
            if live {
                let mismatch = matches!(
                    (entry.fingerprint, request.fingerprint),
                    (Some(stored), Some(asked)) if stored != asked
                );
                match &entry.state {
                    State::Done { .. } | State::InFlight { .. } if mismatch => {
                        return Claim::Mismatch
                    }
                    State::Done { record } => {
                        return Claim::Completed {
                            record: record.to_vec(),
                        }
                    }
                    State::InFlight { lease_until } if *lease_until > now => {
                        return Claim::InFlight {
                            lease_left: Some(*lease_until - now),
                        }
                    }
                    _ => {}
                }
            }
            entry.fence += 1;
            entry.state = State::InFlight { lease_until };
            entry.fingerprint = request.fingerprint;
            entry.expires_at = expires_at;
            return Claim::Acquired { fence: entry.fence };
        }
        self.make_room(&mut shard, now);
        let key: Arc<str> = Arc::from(request.key);
        let seq = shard.next_seq;
        shard.next_seq += 1;
        shard.order.push_back((Arc::clone(&key), seq));
        shard.map.insert(
            key,
            Entry {
                fence: 1,
                state: State::InFlight { lease_until },
                fingerprint: request.fingerprint,
                expires_at,
                seq,
            },
        );
        shard.inserts_since_sweep += 1;
        Claim::Acquired { fence: 1 }
    }

    /// Expired entries first (swept at most once per quarter-shard of
    /// inserts, so a full shard costs amortised O(1)), then the oldest.
    fn make_room(&self, shard: &mut Shard, now: Instant) {
        if shard.map.len() < self.inner.per_shard {
            return;
        }
        if shard.inserts_since_sweep >= self.inner.per_shard / 4 {
            shard.inserts_since_sweep = 0;
            shard.map.retain(|_, entry| entry.expires_at > now);
            let Shard { map, order, .. } = shard;
            order.retain(|(key, seq)| map.get(key).is_some_and(|e| e.seq == *seq));
        }
        while shard.map.len() >= self.inner.per_shard {
            let Some((key, seq)) = shard.order.pop_front() else {
                break;
            };
            if shard.map.get(&key).is_some_and(|e| e.seq == seq) {
                let entry = shard.map.remove(&key);
                if entry.is_some_and(|e| e.expires_at > now) {
                    self.inner.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl IdempotencyStore for MemoryStore {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        Ok(self.claim_now(request, Instant::now()))
    }

    async fn complete(
        &self,
        key: &str,
        fence: u64,
        record: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        match shard.map.get_mut(key) {
            Some(entry)
                if entry.fence == fence && matches!(entry.state, State::InFlight { .. }) =>
            {
                entry.state = State::Done {
                    record: Arc::from(record),
                };
                entry.expires_at = crate::clock::later(now, ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &str, fence: u64) -> Result<(), StoreError> {
        let mut shard = self.shard(key);
        if let Some(entry) = shard.map.get_mut(key) {
            if entry.fence == fence && matches!(entry.state, State::InFlight { .. }) {
                entry.state = State::Free;
            }
        }
        Ok(())
    }
}
