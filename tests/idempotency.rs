//! Idempotency with the embedded store, on tokio's paused clock: the
//! store's states, its memory bound, and the dedup layer through the macro
//! and the builder.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress::idempotency::{
    Claim, ClaimRequest, DedupOptions, IdempotencyStore, MemoryStore, MemoryStoreConfig,
    OnStoreError, StoreError, StoreErrorKind,
};
use buttress::{resilient, Classify, Error, ErrorClass, Policy, Registry};
use common::ms;

fn request(key: &str) -> ClaimRequest<'_> {
    ClaimRequest {
        key,
        fingerprint: None,
        lease: Duration::from_secs(10),
        ttl: Duration::from_secs(3600),
    }
}

#[tokio::test(start_paused = true)]
async fn memory_store_states_leases_and_fences() {
    let store = MemoryStore::new();
    assert_eq!(
        store.claim(request("k")).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    assert_eq!(
        store.claim(request("k")).await.unwrap(),
        Claim::InFlight {
            lease_left: Some(Duration::from_secs(10))
        }
    );
    // Only the holder's fence completes.
    assert!(!store
        .complete("k", 7, b"x", Duration::from_secs(60))
        .await
        .unwrap());
    assert!(store
        .complete("k", 1, b"\"done\"", Duration::from_secs(60))
        .await
        .unwrap());
    assert_eq!(
        store.claim(request("k")).await.unwrap(),
        Claim::Completed {
            record: b"\"done\"".to_vec()
        }
    );
    // Retention ends: the key is fresh again, with a higher fence.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        store.claim(request("k")).await.unwrap(),
        Claim::Acquired { fence: 2 }
    );
    // A released key can be claimed at once.
    store.release("k", 2).await.unwrap();
    assert_eq!(
        store.claim(request("k")).await.unwrap(),
        Claim::Acquired { fence: 3 }
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashed_holder_is_taken_over_and_fenced_out() {
    let store = MemoryStore::new();
    let Claim::Acquired { fence: crashed } = store.claim(request("pay-1")).await.unwrap() else {
        panic!("fresh key")
    };
    tokio::time::advance(Duration::from_secs(10)).await;
    let Claim::Acquired { fence: next } = store.claim(request("pay-1")).await.unwrap() else {
        panic!("the lease expired: take over")
    };
    assert!(next > crashed);
    assert!(store
        .complete("pay-1", next, b"1", Duration::from_secs(60))
        .await
        .unwrap());
    // The old holder wakes up: its completion is refused, the new one kept.
    assert!(!store
        .complete("pay-1", crashed, b"2", Duration::from_secs(60))
        .await
        .unwrap());
    store.release("pay-1", crashed).await.unwrap();
    assert_eq!(
        store.claim(request("pay-1")).await.unwrap(),
        Claim::Completed {
            record: b"1".to_vec()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn fingerprints_detect_reuse_with_other_arguments() {
    let store = MemoryStore::new();
    let with = |fp| ClaimRequest {
        fingerprint: Some(fp),
        ..request("refund-9")
    };
    assert_eq!(
        store.claim(with(1)).await.unwrap(),
        Claim::Acquired { fence: 1 }
    );
    assert_eq!(store.claim(with(2)).await.unwrap(), Claim::Mismatch);
    assert!(matches!(
        store.claim(with(1)).await.unwrap(),
        Claim::InFlight { .. }
    ));
    store
        .complete("refund-9", 1, b"0", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.claim(with(2)).await.unwrap(), Claim::Mismatch);
    assert_eq!(
        store.claim(with(1)).await.unwrap(),
        Claim::Completed {
            record: b"0".to_vec()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_million_unique_keys_stay_under_the_bound() {
    let store = MemoryStore::with_config(
        MemoryStoreConfig::new()
            .with_max_entries(10_000)
            .with_shards(16),
    );
    let bound = store.capacity();
    assert!((10_000..10_016).contains(&bound));
    let mut key = String::new();
    for i in 0..1_000_000u32 {
        key.clear();
        std::fmt::Write::write_fmt(&mut key, format_args!("k{i}")).unwrap();
        let Claim::Acquired { fence } = store.claim(request(&key)).await.unwrap() else {
            panic!("unique keys are fresh")
        };
        store
            .complete(&key, fence, b"1", Duration::from_secs(3600))
            .await
            .unwrap();
        if i % 100_000 == 0 {
            assert!(
                store.len() <= bound,
                "{} > {bound} after {i} keys",
                store.len()
            );
        }
    }
    assert!(store.len() <= bound, "{} > {bound}", store.len());
    assert!(
        store.len() > bound * 9 / 10,
        "the store stays useful: {}",
        store.len()
    );
    // Recent keys are still deduplicated.
    assert!(matches!(
        store.claim(request("k999999")).await.unwrap(),
        Claim::Completed { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_evicted_before_live_ones() {
    let store =
        MemoryStore::with_config(MemoryStoreConfig::new().with_max_entries(8).with_shards(1));
    for i in 0..4 {
        let key = format!("short-{i}");
        store
            .claim(ClaimRequest {
                ttl: ms(10),
                lease: ms(10),
                ..request(&key)
            })
            .await
            .unwrap();
    }
    for i in 0..4 {
        let key = format!("long-{i}");
        store.claim(request(&key)).await.unwrap();
    }
    tokio::time::advance(ms(20)).await;
    for i in 0..4 {
        let key = format!("new-{i}");
        store.claim(request(&key)).await.unwrap();
    }
    assert_eq!(store.evictions(), 0, "only expired entries made room");
    for i in 0..4 {
        let key = format!("long-{i}");
        assert!(matches!(
            store.claim(request(&key)).await.unwrap(),
            Claim::InFlight { .. }
        ));
    }
}

// --- through the macro -------------------------------------------------

#[derive(Debug, Clone, PartialEq, buttress::Classify)]
enum PayError {
    #[classify(transient)]
    Unavailable,
    #[classify(outcome_unknown)]
    Lost,
    #[classify(delegate)]
    Resilience(Error),
}

impl From<Error> for PayError {
    fn from(e: Error) -> Self {
        Self::Resilience(e)
    }
}

impl PayError {
    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Resilience(e) => Some(e.reason()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Receipt {
    order: u64,
    charge: u32,
}

struct Payments {
    dedup: MemoryStore,
    effects: AtomicU32,
    fail_first: AtomicU32,
    hold: Duration,
}

impl Payments {
    fn new(hold: Duration) -> Self {
        Self {
            dedup: MemoryStore::new(),
            effects: AtomicU32::new(0),
            fail_first: AtomicU32::new(0),
            hold,
        }
    }

    #[resilient(
        provider = "idem-macro",
        retry(max_attempts = 3, backoff = constant("10ms"), jitter = none),
        idempotent(key = format!("charge-{order}"), store = &self.dedup, ttl = "1h", fingerprint = (order, cents)),
    )]
    async fn charge(&self, order: u64, cents: u32) -> Result<Receipt, PayError> {
        tokio::time::sleep(self.hold).await;
        if self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            return Err(PayError::Lost);
        }
        let charge = self.effects.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = cents;
        Ok(Receipt { order, charge })
    }

    #[resilient(
        provider = "idem-macro-wait",
        retry = off,
        idempotent(key = format!("refund-{order}"), store = &self.dedup, wait = "1s"),
    )]
    async fn refund(&self, order: u64) -> Result<Receipt, PayError> {
        tokio::time::sleep(self.hold).await;
        let charge = self.effects.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Receipt { order, charge })
    }
}

#[tokio::test(start_paused = true)]
async fn duplicates_replay_the_stored_result() {
    let payments = Payments::new(ms(5));
    let first = payments.charge(7, 250).await.unwrap();
    for _ in 0..5 {
        assert_eq!(payments.charge(7, 250).await.unwrap(), first);
    }
    assert_eq!(payments.effects.load(Ordering::SeqCst), 1);
    assert_eq!(
        payments.charge(8, 250).await.unwrap().charge,
        2,
        "another key is another operation"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_duplicates_get_in_flight() {
    let payments = Payments::new(ms(200));
    let calls = (0..20).map(|_| payments.charge(11, 100));
    let results = futures_join(calls).await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1);
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.reason(), Some("in_flight"), "{e:?}");
        }
    }
    assert_eq!(payments.effects.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn waiting_duplicates_get_the_result() {
    let payments = Payments::new(ms(200));
    let results = futures_join((0..10).map(|_| payments.refund(3))).await;
    for r in &results {
        assert_eq!(
            r.as_ref().unwrap(),
            &Receipt {
                order: 3,
                charge: 1
            }
        );
    }
    assert_eq!(payments.effects.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn reuse_with_other_arguments_is_refused() {
    let payments = Payments::new(ms(1));
    payments.charge(5, 100).await.unwrap();
    let err = payments.charge(5, 999).await.unwrap_err();
    assert_eq!(err.reason(), Some("key_reused"));
    assert_eq!(payments.effects.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn outcome_unknown_is_retried_under_one_key_and_failures_release_it() {
    let payments = Payments::new(ms(1));
    payments.fail_first.store(2, Ordering::SeqCst);
    let receipt = payments.charge(21, 5).await.unwrap();
    assert_eq!(receipt.charge, 1, "two lost attempts, then one effect");

    payments.fail_first.store(10, Ordering::SeqCst);
    assert_eq!(payments.charge(22, 5).await.unwrap_err(), PayError::Lost);
    payments.fail_first.store(0, Ordering::SeqCst);
    assert_eq!(
        payments.charge(22, 5).await.unwrap().charge,
        2,
        "the failed call released its key"
    );
}

// --- store outages -----------------------------------------------------

/// A store whose server is gone.
struct Down;

impl IdempotencyStore for Down {
    async fn claim(&self, _: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "connection refused",
        ))
    }
    async fn complete(&self, _: &str, _: u64, _: &[u8], _: Duration) -> Result<bool, StoreError> {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "connection refused",
        ))
    }
    async fn release(&self, _: &str, _: u64) -> Result<(), StoreError> {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "connection refused",
        ))
    }
}

static DOWN: Down = Down;
static OUTAGE_EFFECTS: AtomicU32 = AtomicU32::new(0);

#[resilient(provider = "idem-down", idempotent(key = "order-1", store = &DOWN))]
async fn fail_closed() -> Result<u32, PayError> {
    Ok(OUTAGE_EFFECTS.fetch_add(1, Ordering::SeqCst) + 1)
}

#[resilient(provider = "idem-down", idempotent(key = "order-2", store = &DOWN, on_store_error = proceed))]
async fn proceed() -> Result<u32, PayError> {
    Ok(OUTAGE_EFFECTS.fetch_add(1, Ordering::SeqCst) + 1)
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_fails_closed_or_proceeds_as_configured() {
    let err = fail_closed().await.unwrap_err();
    assert_eq!(err.reason(), Some("store"));
    assert_eq!(err.class(), ErrorClass::Permanent);
    let PayError::Resilience(inner) = &err else {
        panic!()
    };
    let text = inner.to_string();
    assert!(
        text.contains("store error") && text.contains("connection refused"),
        "{text}"
    );
    assert!(
        !text.contains("order-1"),
        "the key never appears in clear: {text}"
    );
    assert_eq!(
        OUTAGE_EFFECTS.load(Ordering::SeqCst),
        0,
        "fail closed: the provider is not called"
    );
    assert_eq!(
        proceed().await.unwrap(),
        1,
        "proceed: the provider is called"
    );
}

#[tokio::test(start_paused = true)]
async fn the_builder_path_shares_the_store_semantics() {
    let policy = Policy::builder("idem-builder")
        .build_in(&Registry::new())
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let effects = AtomicU32::new(0);
    let options =
        DedupOptions::new().with_fingerprint(buttress::idempotency::fingerprint_of(&42u32));
    for _ in 0..3 {
        let r: Result<u32, Error> = policy
            .run_idempotent(&store, "builder-key", &options, || async {
                assert_eq!(buttress::idempotency_key().as_deref(), Some("builder-key"));
                Ok(effects.fetch_add(1, Ordering::SeqCst) + 1)
            })
            .await;
        assert_eq!(r.unwrap(), 1);
    }
    let other = DedupOptions::new().with_fingerprint(buttress::idempotency::fingerprint_of(&43u32));
    let r: Result<u32, Error> = policy
        .run_idempotent(&store, "builder-key", &other, || async { Ok(0) })
        .await;
    assert!(matches!(r, Err(Error::KeyReused { .. })));
    let proceed = DedupOptions::new().with_on_store_error(OnStoreError::Proceed);
    let r: Result<u32, Error> = policy
        .run_idempotent(&Down, "k", &proceed, || async { Ok(9) })
        .await;
    assert_eq!(r.unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn idempotent_calls_without_a_key_get_one_per_logical_call() {
    #[resilient(provider = "idem-generated", retry(max_attempts = 3, backoff = constant("0s")), idempotent)]
    async fn keyed(seen: &std::sync::Mutex<Vec<String>>) -> Result<(), PayError> {
        seen.lock()
            .unwrap()
            .push(buttress::idempotency_key().unwrap().to_string());
        Err(PayError::Unavailable)
    }
    let seen = std::sync::Mutex::new(Vec::new());
    let _ = keyed(&seen).await;
    let _ = keyed(&seen).await;
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 6);
    assert!(
        seen[..3].iter().all(|k| *k == seen[0]),
        "the same key on every attempt"
    );
    assert_ne!(seen[0], seen[3], "a new key per logical call");
    assert_eq!(uuid_version(&seen[0]), Some('7'));
}

fn uuid_version(key: &str) -> Option<char> {
    (key.len() == 36).then(|| key.chars().nth(14)).flatten()
}

/// Poll a set of futures together (no extra crate).
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<_> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}
