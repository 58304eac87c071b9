//! Webhook verification (Standard Webhooks and Stripe) and deduplication
//! through a `WebhookReceiver`, on an injected clock.
//!
//! - the published Standard Webhooks test vector, and a Stripe vector
//!   computed independently (see `STRIPE_*`), verify;
//! - a re-serialized body, a wrong secret, a timestamp one second outside
//!   the tolerance (either side) and each malformed header fail with their
//!   typed error; secrets never show in `Debug` or errors;
//! - arbitrary header bytes and bodies never panic (proptest);
//! - a receiver runs each event id once: duplicates in flight are
//!   `InFlight`, handled ones `Duplicate`, failures release the claim and
//!   reach the failure hook.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buttress::idempotency::MemoryStore;
use buttress::webhook::{
    ReceiveError, Scheme, Secret, SecretError, StandardWebhooks, Stripe, VerifyError,
    WebhookReceiver,
};
use proptest::prelude::*;

// The Standard Webhooks specification's published test vector (its
// reference libraries' tests use the same values).
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const STANDARD_TS: i64 = 1_614_265_330;
const STANDARD_BODY: &[u8] = br#"{"test": 2432232314}"#;
const STANDARD_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

// Stripe publishes no fixed vector (its libraries' tests sign at run
// time), so this one was computed with an independent implementation,
// Python's standard library:
//   hmac.new(b"whsec_test_secret", b"1614265330." + body, hashlib.sha256).hexdigest()
const STRIPE_SECRET: &str = "whsec_test_secret";
const STRIPE_TS: i64 = 1_614_265_330;
const STRIPE_BODY: &[u8] =
    br#"{"id":"evt_1MqqbKLt4dXK03v5qaIbiNCC","object":"event","type":"payment_intent.succeeded"}"#;
const STRIPE_V1: &str = "337486595e5c2f3d7c48be5591038b247fa8cff336674c7857950c232a1ccc00";

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

fn standard() -> StandardWebhooks {
    StandardWebhooks::new(STANDARD_SECRET).unwrap()
}

fn stripe() -> Stripe {
    Stripe::new(STRIPE_SECRET).unwrap()
}

fn standard_headers(id: &str, ts: &str, sig: &str) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.into()),
        ("webhook-signature".into(), sig.into()),
    ]
}

fn stripe_headers(value: &str) -> Vec<(String, String)> {
    vec![("Stripe-Signature".into(), value.into())]
}

fn malformed(header: &'static str) -> impl Fn(&VerifyError) -> bool {
    move |e| matches!(e, VerifyError::MalformedHeader { header: h, .. } if *h == header)
}

// ------------------------------------------------------------ vectors

#[test]
fn standard_published_vector_verifies() {
    let headers = standard_headers(STANDARD_ID, &STANDARD_TS.to_string(), STANDARD_SIGNATURE);
    let verified = standard()
        .verify_at(&headers, STANDARD_BODY, at(STANDARD_TS))
        .unwrap();
    assert_eq!(verified.id(), STANDARD_ID);
    assert_eq!(verified.timestamp(), STANDARD_TS);
    assert_eq!(
        standard().sign(STANDARD_ID, STANDARD_TS, STANDARD_BODY),
        STANDARD_SIGNATURE
    );
}

#[test]
fn stripe_independent_vector_verifies() {
    let header = format!("t={STRIPE_TS},v1={STRIPE_V1}");
    let verified = stripe()
        .verify_at(&stripe_headers(&header), STRIPE_BODY, at(STRIPE_TS))
        .unwrap();
    assert_eq!(verified.id(), "evt_1MqqbKLt4dXK03v5qaIbiNCC");
    assert_eq!(stripe().sign(STRIPE_TS, STRIPE_BODY), header);
}

#[test]
fn header_names_are_case_insensitive_and_extra_signatures_are_skipped() {
    let sig = format!("v1a,ignored v1,AAAA {STANDARD_SIGNATURE}");
    let headers = vec![
        ("Webhook-Id", STANDARD_ID.to_owned()),
        ("WEBHOOK-TIMESTAMP", STANDARD_TS.to_string()),
        ("Webhook-Signature", sig),
    ];
    standard()
        .verify_at(&headers, STANDARD_BODY, at(STANDARD_TS))
        .unwrap();
    let header = format!("t={STRIPE_TS},v1={},v0=abc,v1={STRIPE_V1}", "00".repeat(32));
    stripe()
        .verify_at(&stripe_headers(&header), STRIPE_BODY, at(STRIPE_TS))
        .unwrap();
}

#[test]
fn rotation_accepts_any_active_secret() {
    // The sender signs with the new secret only; the receiver has both.
    let new_secret = "whsec_bmV3LXNlY3JldC1mb3Itcm90YXRpb24=";
    let sender = StandardWebhooks::new(new_secret).unwrap();
    let sig = sender.sign(STANDARD_ID, STANDARD_TS, STANDARD_BODY);
    let headers = standard_headers(STANDARD_ID, &STANDARD_TS.to_string(), &sig);
    let old_only = standard();
    assert!(matches!(
        old_only.verify_at(&headers, STANDARD_BODY, at(STANDARD_TS)),
        Err(VerifyError::NoMatchingSignature {
            checked: 1,
            secrets: 1
        })
    ));
    let both = standard().with_secret(new_secret).unwrap();
    both.verify_at(&headers, STANDARD_BODY, at(STANDARD_TS))
        .unwrap();

    let stripe_sender = Stripe::new("whsec_new").unwrap();
    let header = stripe_sender.sign(STRIPE_TS, STRIPE_BODY);
    let rotated = Stripe::from_secrets(vec![
        Secret::stripe(STRIPE_SECRET).unwrap(),
        Secret::stripe("whsec_new").unwrap(),
    ]);
    rotated
        .verify_at(&stripe_headers(&header), STRIPE_BODY, at(STRIPE_TS))
        .unwrap();
}

// ------------------------------------------------------------ rejections

#[test]
fn reserialized_body_and_wrong_secret_do_not_verify() {
    let headers = standard_headers(STANDARD_ID, &STANDARD_TS.to_string(), STANDARD_SIGNATURE);
    // The same JSON value, serialized again without the space.
    let reserialized =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(STANDARD_BODY).unwrap())
            .unwrap();
    assert_ne!(reserialized, STANDARD_BODY);
    assert!(matches!(
        standard().verify_at(&headers, &reserialized, at(STANDARD_TS)),
        Err(VerifyError::NoMatchingSignature { .. })
    ));
    let wrong = StandardWebhooks::new("whsec_d3Jvbmctc2VjcmV0").unwrap();
    assert!(matches!(
        wrong.verify_at(&headers, STANDARD_BODY, at(STANDARD_TS)),
        Err(VerifyError::NoMatchingSignature { .. })
    ));

    let header = stripe_headers(&format!("t={STRIPE_TS},v1={STRIPE_V1}"));
    let reserialized = serde_json::to_vec_pretty(
        &serde_json::from_slice::<serde_json::Value>(STRIPE_BODY).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        stripe().verify_at(&header, &reserialized, at(STRIPE_TS)),
        Err(VerifyError::NoMatchingSignature { .. })
    ));
    assert!(matches!(
        Stripe::new("whsec_wrong")
            .unwrap()
            .verify_at(&header, STRIPE_BODY, at(STRIPE_TS)),
        Err(VerifyError::NoMatchingSignature { .. })
    ));
    // A signed timestamp changed in the header no longer matches.
    let header = stripe_headers(&format!("t={},v1={STRIPE_V1}", STRIPE_TS + 1));
    assert!(matches!(
        stripe().verify_at(&header, STRIPE_BODY, at(STRIPE_TS)),
        Err(VerifyError::NoMatchingSignature { .. })
    ));
}

#[test]
fn tolerance_is_inclusive_and_one_second_beyond_fails_both_ways() {
    let headers = standard_headers(STANDARD_ID, &STANDARD_TS.to_string(), STANDARD_SIGNATURE);
    let stripe_header = stripe_headers(&format!("t={STRIPE_TS},v1={STRIPE_V1}"));
    for (offset, ok) in [(-300, true), (300, true), (-301, false), (301, false)] {
        let now = at(STANDARD_TS + offset);
        let result = standard().verify_at(&headers, STANDARD_BODY, now);
        let stripe_result = stripe().verify_at(&stripe_header, STRIPE_BODY, now);
        if ok {
            result.unwrap();
            stripe_result.unwrap();
        } else {
            for result in [result.map(drop), stripe_result.map(drop)] {
                assert!(
                    matches!(result, Err(VerifyError::TimestampOutsideTolerance { timestamp, tolerance, .. })
                        if timestamp == STANDARD_TS && tolerance == Duration::from_secs(300)),
                    "offset {offset}: {result:?}"
                );
            }
        }
    }
    // A configured tolerance replaces the default.
    let tight = standard().with_tolerance(Duration::from_secs(10));
    assert!(tight
        .verify_at(&headers, STANDARD_BODY, at(STANDARD_TS + 11))
        .is_err());
    tight
        .verify_at(&headers, STANDARD_BODY, at(STANDARD_TS - 10))
        .unwrap();
}

#[test]
fn standard_missing_and_malformed_headers_are_typed() {
    let ts = STANDARD_TS.to_string();
    let now = at(STANDARD_TS);
    let full = standard_headers(STANDARD_ID, &ts, STANDARD_SIGNATURE);
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let headers: Vec<_> = full.iter().filter(|(k, _)| k != missing).cloned().collect();
        let err = standard()
            .verify_at(&headers, STANDARD_BODY, now)
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::MissingHeader { header: missing },
            "{missing}"
        );
    }
    let cases: &[(&str, &str, &str, &'static str)] = &[
        ("", &ts, STANDARD_SIGNATURE, "webhook-id"),
        (&"x".repeat(257), &ts, STANDARD_SIGNATURE, "webhook-id"),
        ("msg\n1", &ts, STANDARD_SIGNATURE, "webhook-id"),
        (STANDARD_ID, "", STANDARD_SIGNATURE, "webhook-timestamp"),
        (
            STANDARD_ID,
            "16142653x0",
            STANDARD_SIGNATURE,
            "webhook-timestamp",
        ),
        (
            STANDARD_ID,
            "+1614265330",
            STANDARD_SIGNATURE,
            "webhook-timestamp",
        ),
        (
            STANDARD_ID,
            "99999999999999999999999",
            STANDARD_SIGNATURE,
            "webhook-timestamp",
        ),
        (STANDARD_ID, &ts, "", "webhook-signature"),
        (STANDARD_ID, &ts, "g0hM9SsE+OTPJTGt", "webhook-signature"),
        (STANDARD_ID, &ts, "v1,not base64!", "webhook-signature"),
        (STANDARD_ID, &ts, "v2,AAAA", "webhook-signature"),
    ];
    for (id, ts, sig, header) in cases {
        let err = standard()
            .verify_at(&standard_headers(id, ts, sig), STANDARD_BODY, now)
            .unwrap_err();
        assert!(malformed(header)(&err), "{id:?} {ts:?} {sig:?}: {err:?}");
    }
    // Not UTF-8.
    let headers: Vec<(&str, &[u8])> = vec![
        ("webhook-id", b"msg_\xff"),
        ("webhook-timestamp", ts.as_bytes()),
        ("webhook-signature", STANDARD_SIGNATURE.as_bytes()),
    ];
    assert!(malformed("webhook-id")(
        &standard()
            .verify_at(&headers, STANDARD_BODY, now)
            .unwrap_err()
    ));
}

#[test]
fn stripe_missing_and_malformed_headers_are_typed() {
    let now = at(STRIPE_TS);
    let err = stripe()
        .verify_at(&Vec::<(String, String)>::new(), STRIPE_BODY, now)
        .unwrap_err();
    assert_eq!(
        err,
        VerifyError::MissingHeader {
            header: "stripe-signature"
        }
    );
    for value in [
        "",
        &format!("v1={STRIPE_V1}"),
        &format!("t={STRIPE_TS}"),
        &format!("t={STRIPE_TS},t={STRIPE_TS},v1={STRIPE_V1}"),
        &format!("t=yesterday,v1={STRIPE_V1}"),
        &format!("t={STRIPE_TS},v1=xyz"),
        &format!("t={STRIPE_TS},v1={STRIPE_V1}0"),
        &format!("t={STRIPE_TS};v1={STRIPE_V1}"),
        &format!("t={STRIPE_TS},{STRIPE_V1}"),
    ] {
        let err = stripe()
            .verify_at(&stripe_headers(value), STRIPE_BODY, now)
            .unwrap_err();
        assert!(malformed("stripe-signature")(&err), "{value:?}: {err:?}");
    }
    let headers: Vec<(&str, &[u8])> = vec![("stripe-signature", b"t=1,\xc3\x28")];
    assert!(malformed("stripe-signature")(
        &stripe().verify_at(&headers, STRIPE_BODY, now).unwrap_err()
    ));
}

#[test]
fn stripe_body_without_an_id_cannot_be_deduplicated() {
    let signer = stripe();
    for body in [&br#"{"object":"event"}"#[..], b"not json", br#"{"id":42}"#] {
        let header = stripe_headers(&signer.sign(STRIPE_TS, body));
        assert_eq!(
            signer.verify_at(&header, body, at(STRIPE_TS)).unwrap_err(),
            VerifyError::MissingEventId
        );
    }
}

#[test]
fn secrets_are_redacted_and_validated() {
    let verifier = standard().with_secret("whsec_c2Vjb25k").unwrap();
    let shown = format!("{verifier:?} {:?}", stripe());
    assert!(
        !shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "{shown}"
    );
    assert!(
        !shown.contains("c2Vjb25k") && !shown.contains("test_secret"),
        "{shown}"
    );
    assert!(shown.contains("redacted"));
    let headers = standard_headers(STANDARD_ID, &STANDARD_TS.to_string(), "v1,AAAA");
    let err = verifier
        .verify_at(&headers, STANDARD_BODY, at(STANDARD_TS))
        .unwrap_err();
    assert!(!err.to_string().contains("MfKQ"));
    assert_eq!(
        StandardWebhooks::new("whsec_").unwrap_err(),
        SecretError::Empty
    );
    assert_eq!(
        StandardWebhooks::new("whsec_!!!").unwrap_err(),
        SecretError::NotBase64
    );
    assert_eq!(Stripe::new("").unwrap_err(), SecretError::Empty);
}

// ------------------------------------------------------------ no panics

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_standard_headers_never_panic(
        id in proptest::collection::vec(any::<u8>(), 0..300),
        ts in prop_oneof![proptest::collection::vec(any::<u8>(), 0..30), "-?[0-9]{0,25}".prop_map(String::into_bytes)],
        sig in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "(v[0-9a-z]{0,2},[A-Za-z0-9+/=]{0,60} ?){0,4}".prop_map(String::into_bytes),
        ],
        body in proptest::collection::vec(any::<u8>(), 0..100),
        now in any::<i64>(),
    ) {
        let headers: Vec<(&str, Vec<u8>)> = vec![
            ("webhook-id", id), ("webhook-timestamp", ts), ("webhook-signature", sig),
        ];
        let now = if now >= 0 { UNIX_EPOCH + Duration::from_secs(now.unsigned_abs() >> 20) } else { UNIX_EPOCH - Duration::from_secs(now.unsigned_abs() >> 20) };
        let result = standard().verify_at(&headers, &body, now);
        prop_assert!(result.is_err());
    }

    #[test]
    fn arbitrary_stripe_headers_never_panic(
        value in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "([tv0-9]{1,3}=[0-9a-fA-F-]{0,70},?){0,5}".prop_map(String::into_bytes),
        ],
        body in proptest::collection::vec(any::<u8>(), 0..100),
        now in any::<u32>(),
    ) {
        let headers = [("stripe-signature", value)];
        let result = stripe().verify_at(&headers, &body, UNIX_EPOCH + Duration::from_secs(u64::from(now)));
        prop_assert!(result.is_err());
    }
}

// ------------------------------------------------------------ dedup

fn signed(id: &str, body: &[u8]) -> Vec<(String, String)> {
    standard_headers(
        id,
        &STANDARD_TS.to_string(),
        &standard().sign(id, STANDARD_TS, body),
    )
}

type Failures = Arc<Mutex<Vec<(String, String, Vec<u8>, String)>>>;

fn receiver(store: MemoryStore) -> (WebhookReceiver, Failures) {
    let failures = Failures::default();
    let seen = Arc::clone(&failures);
    let receiver = WebhookReceiver::new(standard(), store).on_failure(move |failed| {
        seen.lock().unwrap().push((
            failed.scheme.to_owned(),
            failed.id.to_owned(),
            failed.body.to_vec(),
            failed.error.to_owned(),
        ));
    });
    (receiver, failures)
}

#[tokio::test]
async fn receiver_runs_each_event_once() {
    let (receiver, failures) = receiver(MemoryStore::new());
    let now = at(STANDARD_TS);
    let headers = signed("msg_1", b"{}");
    let first = receiver
        .receive_at(&headers, b"{}".to_vec(), now)
        .await
        .unwrap();
    assert_eq!(first.id(), "msg_1");
    // While the first is being handled, a duplicate is told to come back.
    assert!(matches!(
        receiver.receive_at(&headers, b"{}".to_vec(), now).await,
        Err(ReceiveError::InFlight { ref id, retry_after: Some(_) }) if id == "msg_1"
    ));
    first.complete().await.unwrap();
    // Once handled, redeliveries (even re-signed later) are duplicates.
    let later = standard_headers(
        "msg_1",
        &(STANDARD_TS + 60).to_string(),
        &standard().sign("msg_1", STANDARD_TS + 60, b"{}"),
    );
    assert_eq!(
        receiver
            .receive_at(&later, b"{}".to_vec(), at(STANDARD_TS + 60))
            .await
            .unwrap_err(),
        ReceiveError::Duplicate { id: "msg_1".into() }
    );
    // A different scheme with the same id does not collide.
    let stripe_receiver = WebhookReceiver::new(stripe(), MemoryStore::new());
    let body = br#"{"id":"msg_1"}"#;
    let delivery = stripe_receiver
        .receive_at(
            &stripe_headers(&stripe().sign(STRIPE_TS, body)),
            body.to_vec(),
            at(STRIPE_TS),
        )
        .await
        .unwrap();
    delivery.complete().await.unwrap();
    // Verification failures never touch the store.
    assert!(matches!(
        receiver.receive_at(&headers, b"{ }".to_vec(), now).await,
        Err(ReceiveError::Verify(
            VerifyError::NoMatchingSignature { .. }
        ))
    ));
    assert!(failures.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_handler_releases_the_event_and_reports_it() {
    let store = MemoryStore::new();
    let (receiver, failures) = receiver(store.clone());
    let now = at(STANDARD_TS);
    let body = br#"{"amount":1}"#;
    let headers = signed("msg_fail", body);
    let delivery = receiver
        .receive_at(&headers, body.to_vec(), now)
        .await
        .unwrap();
    let result: Result<(), String> = Err("database down".into());
    assert!(delivery.finish(result).await.is_err());
    assert_eq!(
        failures.lock().unwrap().as_slice(),
        [(
            "standard".to_owned(),
            "msg_fail".to_owned(),
            body.to_vec(),
            "database down".to_owned()
        )]
    );
    // The redelivery runs the handler again, and its success sticks.
    let again = receiver
        .receive_at(&headers, body.to_vec(), now)
        .await
        .unwrap();
    again.finish(Ok::<_, String>(())).await.unwrap();
    assert!(matches!(
        receiver.receive_at(&headers, body.to_vec(), now).await,
        Err(ReceiveError::Duplicate { .. })
    ));
    assert_eq!(failures.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_dropped_delivery_counts_as_failed() {
    let (receiver, failures) = receiver(MemoryStore::new());
    let now = at(STANDARD_TS);
    let headers = signed("msg_drop", b"{}");
    drop(
        receiver
            .receive_at(&headers, b"{}".to_vec(), now)
            .await
            .unwrap(),
    );
    assert_eq!(failures.lock().unwrap().len(), 1);
    // The release runs on a spawned task.
    let mut released = None;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if let Ok(d) = receiver.receive_at(&headers, b"{}".to_vec(), now).await {
            released = Some(d);
            break;
        }
    }
    released
        .expect("claim released after drop")
        .complete()
        .await
        .unwrap();
}

#[tokio::test]
async fn failed_handlers_become_dead_letters() {
    use buttress::dlq::{DeadLetterSink, MemorySink, Selection};
    let sink = MemorySink::new();
    let receiver =
        WebhookReceiver::new(standard(), MemoryStore::new()).dead_letter_to(sink.clone());
    let now = at(STANDARD_TS);
    let body = br#"{"amount":7}"#;
    let headers = signed("msg_dead", body);
    let delivery = receiver
        .receive_at(&headers, body.to_vec(), now)
        .await
        .unwrap();
    assert!(delivery
        .finish(Err::<(), _>("ledger unavailable".to_owned()))
        .await
        .is_err());
    // The entry is stored by a spawned task.
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = sink.list(Selection::All).await.unwrap();
        if !entries.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.provider, "webhook:standard");
    assert_eq!(entry.operation, "handle");
    assert_eq!(entry.error, "ledger unavailable");
    assert_eq!(entry.class, buttress::ErrorClass::OutcomeUnknown);
    assert_eq!(entry.arguments["id"], "msg_dead");
    assert_eq!(entry.arguments["body"], r#"{"amount":7}"#);
    assert_eq!(
        entry
            .idempotency_key
            .as_ref()
            .map(|k| k.expose().to_owned()),
        Some("webhook:standard:msg_dead".to_owned())
    );
}
