//! `Retry-After` parsing: delta-seconds and HTTP-dates, any bytes, any
//! clock reading. Never panics; a parsed wait is at most an hour.
#![no_main]

use std::time::{Duration, SystemTime};

use buttress::http::parse_retry_after;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (clock, value) = data.split_at(data.len().min(8));
    let mut secs = [0u8; 8];
    secs[..clock.len()].copy_from_slice(clock);
    let now = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(
            u64::from_le_bytes(secs) % (400 * 365 * 86_400),
        ))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if let Ok(value) = http::HeaderValue::from_bytes(value) {
        if let Some(wait) = parse_retry_after(&value, now) {
            assert!(wait <= Duration::from_secs(3600), "{wait:?}");
        }
    }
});
