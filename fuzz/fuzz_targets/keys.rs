//! Idempotency keys of any bytes (clients send them) through the memory
//! store, and `Retry-After` through a whole header map: a claimed and
//! completed key replays exactly its own record, two different keys never
//! meet, and nothing panics.
#![no_main]

use std::time::Duration;

use buttress::idempotency::{Claim, ClaimRequest, IdempotencyStore, MemoryStore};
use libfuzzer_sys::fuzz_target;

fn claim(key: &str) -> ClaimRequest<'_> {
    ClaimRequest {
        key,
        fingerprint: None,
        lease: Duration::from_secs(30),
        ttl: Duration::MAX,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_at(
        text.char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = MemoryStore::new();
        assert_eq!(
            store.claim(claim(a)).await.unwrap(),
            Claim::Acquired { fence: 1 }
        );
        assert!(store
            .complete(a, 1, a.as_bytes(), Duration::MAX)
            .await
            .unwrap());
        let other = store.claim(claim(b)).await.unwrap();
        if a == b {
            assert_eq!(
                other,
                Claim::Completed {
                    record: a.as_bytes().to_vec()
                }
            );
        } else {
            assert_eq!(other, Claim::Acquired { fence: 1 });
        }
        assert_eq!(
            store.claim(claim(a)).await.unwrap(),
            Claim::Completed {
                record: a.as_bytes().to_vec()
            }
        );
    });
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        headers.insert(http::header::RETRY_AFTER, value);
        let _ = buttress::http::retry_after(&headers);
    }
});
