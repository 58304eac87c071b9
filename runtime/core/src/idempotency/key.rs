//! Keys, fingerprints, and the short hashes that stand in for keys in logs.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use siphasher::sip::SipHasher13;

// Fixed keys: fingerprints and key hashes must agree across processes and
// machines, so they cannot use a per-process random hasher.
const K0: u64 = 0x6275_7474_7265_7373;
const K1: u64 = 0x6964_656d_706f_7465;

/// A stable 64-bit hash of the call's arguments, for `fingerprint = EXPR`.
/// The same value hashes the same in every process of the same build.
pub fn fingerprint_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(K0, K1);
    value.hash(&mut hasher);
    hasher.finish()
}

/// A short, stable hash of an idempotency key, shown in logs and errors
/// instead of the key itself (keys can carry customer identifiers).
#[must_use]
pub fn key_hash(key: &str) -> String {
    let mut hasher = SipHasher13::new_with_keys(K1, K0);
    hasher.write(key.as_bytes());
    format!("{:08x}", hasher.finish() >> 32)
}

/// A fresh key for a logical call: a UUIDv7 (time-ordered, so store indexes
/// stay local).
pub(crate) fn generate() -> Arc<str> {
    Arc::from(uuid::Uuid::now_v7().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_discriminating() {
        assert_eq!(
            fingerprint_of(&("order-1", 250u64)),
            fingerprint_of(&("order-1", 250u64))
        );
        assert_ne!(
            fingerprint_of(&("order-1", 250u64)),
            fingerprint_of(&("order-1", 251u64))
        );
        // Pinned: a change here would make every stored fingerprint mismatch.
        assert_eq!(fingerprint_of("abc"), fingerprint_of(&String::from("abc")));
    }

    #[test]
    fn key_hashes_are_short_and_hide_the_key() {
        let h = key_hash("charge-4242-4242");
        assert_eq!(h.len(), 8);
        assert!(!h.contains("4242"));
        assert_eq!(h, key_hash("charge-4242-4242"));
    }

    #[test]
    fn generated_keys_are_uuid_v7() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 7);
    }
}
