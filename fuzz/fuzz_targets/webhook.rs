//! Webhook verification, both schemes: any headers and body are either
//! verified or refused with a reason; nothing panics.
#![no_main]

use std::time::{Duration, SystemTime};

use buttress::webhook::{Scheme, StandardWebhooks, Stripe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xFF: id, timestamp, signature, stripe header, body.
    let mut parts = data.splitn(5, |b| *b == 0xFF);
    let id = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let stripe_header = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);

    let standard =
        StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a valid secret");
    let headers: [(&str, &[u8]); 3] = [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ];
    let _ = standard.verify_at(&headers, body, now);
    // A correctly signed delivery of the same bytes always verifies.
    if let (Ok(id), Ok(ts)) = (std::str::from_utf8(id), std::str::from_utf8(timestamp)) {
        if let Ok(ts) = ts.parse::<i64>() {
            if !id.is_empty() && id.len() < 256 && (ts - 1_700_000_000).abs() < 60 {
                let signed = standard.sign(id, ts, body);
                let headers: [(&str, &[u8]); 3] = [
                    ("webhook-id", id.as_bytes()),
                    ("webhook-timestamp", timestamp),
                    ("webhook-signature", signed.as_bytes()),
                ];
                assert!(standard.verify_at(&headers, body, now).is_ok());
            }
        }
    }

    let stripe = Stripe::new("whsec_test_secret").expect("a valid secret");
    let headers: [(&str, &[u8]); 1] = [("stripe-signature", stripe_header)];
    let _ = stripe.verify_at(&headers, body, now);
});
