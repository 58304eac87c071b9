//! `#[derive(Classify)]`: what `class()` and `retry_after()` return for
//! every marker, `delegate`, defaults, `#[retry_after]` fields and the
//! struct form. Under pedantic clippy, so the generated code is proven
//! lint-clean in a user's crate.
#![deny(warnings, clippy::all, clippy::pedantic)]
// Payload fields give the variants their shapes; nothing reads them.
#![allow(dead_code)]

use std::fmt::Debug;
use std::io;
use std::time::Duration;

use buttress::breaker::BreakerConfig;
use buttress::retry::RetryConfig;
use buttress::{Classify, ErrorClass, Policy, Registry};

const WAIT: Duration = Duration::from_millis(1_500);

#[derive(Debug, Classify)]
enum Marked {
    #[classify(transient)]
    Unavailable,
    #[classify(rate_limited)]
    Throttled {
        #[retry_after]
        wait: Option<Duration>,
    },
    #[classify(rate_limited)]
    Quota(u32, #[retry_after] Duration),
    #[classify(outcome_unknown)]
    ConnectionLost { sent_bytes: usize },
    #[classify(permanent)]
    Declined(String),
    #[classify(delegate)]
    Io(io::Error),
    #[classify(delegate)]
    Nested { inner: Box<Marked> },
}

fn assert_classified<E: Classify + Debug>(
    error: &E,
    class: ErrorClass,
    retry_after: Option<Duration>,
) {
    assert_eq!(error.class(), class, "class of {error:?}");
    assert_eq!(error.retry_after(), retry_after, "retry_after of {error:?}");
}

#[test]
fn every_marker_gives_its_class() {
    assert_classified(&Marked::Unavailable, ErrorClass::Transient, None);
    assert_classified(
        &Marked::Throttled { wait: None },
        ErrorClass::RateLimited,
        None,
    );
    assert_classified(
        &Marked::ConnectionLost { sent_bytes: 12 },
        ErrorClass::OutcomeUnknown,
        None,
    );
    assert_classified(
        &Marked::Declined("card".into()),
        ErrorClass::Permanent,
        None,
    );
}

#[test]
fn retry_after_fields_report_the_wait() {
    assert_classified(
        &Marked::Throttled { wait: Some(WAIT) },
        ErrorClass::RateLimited,
        Some(WAIT),
    );
    assert_classified(&Marked::Quota(7, WAIT), ErrorClass::RateLimited, Some(WAIT));
}

#[test]
fn delegate_forwards_to_io_errors_by_kind() {
    let cases = [
        (io::ErrorKind::ConnectionRefused, ErrorClass::Transient),
        (io::ErrorKind::NotConnected, ErrorClass::Transient),
        (io::ErrorKind::AddrNotAvailable, ErrorClass::Transient),
        (io::ErrorKind::WouldBlock, ErrorClass::Transient),
        (io::ErrorKind::ConnectionReset, ErrorClass::OutcomeUnknown),
        (io::ErrorKind::ConnectionAborted, ErrorClass::OutcomeUnknown),
        (io::ErrorKind::BrokenPipe, ErrorClass::OutcomeUnknown),
        (io::ErrorKind::TimedOut, ErrorClass::OutcomeUnknown),
        (io::ErrorKind::UnexpectedEof, ErrorClass::OutcomeUnknown),
        (io::ErrorKind::Interrupted, ErrorClass::OutcomeUnknown),
        (io::ErrorKind::PermissionDenied, ErrorClass::Permanent),
        (io::ErrorKind::InvalidData, ErrorClass::Permanent),
    ];
    for (kind, class) in cases {
        assert_classified(&Marked::Io(kind.into()), class, None);
    }
}

#[test]
fn delegate_forwards_class_and_retry_after() {
    let throttled = Marked::Nested {
        inner: Box::new(Marked::Quota(1, WAIT)),
    };
    assert_classified(&throttled, ErrorClass::RateLimited, Some(WAIT));
    let doubly = Marked::Nested {
        inner: Box::new(Marked::Nested {
            inner: Box::new(Marked::Throttled { wait: Some(WAIT) }),
        }),
    };
    assert_classified(&doubly, ErrorClass::RateLimited, Some(WAIT));
    let reset = Marked::Nested {
        inner: Box::new(Marked::Io(io::ErrorKind::ConnectionReset.into())),
    };
    assert_classified(&reset, ErrorClass::OutcomeUnknown, None);
}

/// A hand-written error with a wait, to see `delegate` forward it from a
/// type the derive did not write.
#[derive(Debug)]
struct Upstream {
    wait: Duration,
}

impl Classify for Upstream {
    fn class(&self) -> ErrorClass {
        ErrorClass::RateLimited
    }
    fn retry_after(&self) -> Option<Duration> {
        Some(self.wait)
    }
}

#[derive(Debug, Classify)]
enum Wrapping {
    #[classify(delegate)]
    Upstream(Upstream),
    #[classify(delegate)]
    Resilience(buttress::Error),
    #[classify(transient)]
    Busy,
}

impl From<buttress::Error> for Wrapping {
    fn from(error: buttress::Error) -> Self {
        Self::Resilience(error)
    }
}

fn single_attempt() -> RetryConfig {
    RetryConfig::new().with_max_attempts(1).with_budget(None)
}

#[tokio::test(start_paused = true)]
async fn delegate_forwards_buttress_timeouts() {
    let policy = Policy::builder("classify-timeout")
        .timeout(Duration::from_millis(10))
        .retry(single_attempt())
        .no_breaker()
        .build_in(Box::leak(Box::new(Registry::new())))
        .unwrap();
    let error = policy
        .run(|| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), Wrapping>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Wrapping::Resilience(inner) if inner.reason() == "timeout"),
        "{error:?}"
    );
    assert_classified(&error, ErrorClass::OutcomeUnknown, None);
}

#[tokio::test(start_paused = true)]
async fn delegate_forwards_the_open_breakers_retry_in() {
    let policy = Policy::builder("classify-breaker")
        .retry(single_attempt())
        .breaker(
            BreakerConfig::new()
                .with_consecutive_failures(1)
                .with_open_for(Duration::from_secs(30)),
        )
        .build_in(Box::leak(Box::new(Registry::new())))
        .unwrap();
    let busy = policy.run(|| async { Err::<(), _>(Wrapping::Busy) }).await;
    assert!(matches!(busy, Err(Wrapping::Busy)));
    let error = policy
        .run(|| async { Ok::<(), Wrapping>(()) })
        .await
        .unwrap_err();
    let Wrapping::Resilience(inner) = &error else {
        panic!("expected the open breaker, got {error:?}");
    };
    assert_eq!(inner.reason(), "circuit_open");
    assert!(inner.retry_after().is_some(), "{inner:?}");
    assert_classified(&error, ErrorClass::Permanent, inner.retry_after());
}

#[test]
fn delegate_forwards_retry_after_from_hand_written_impls() {
    assert_classified(
        &Wrapping::Upstream(Upstream { wait: WAIT }),
        ErrorClass::RateLimited,
        Some(WAIT),
    );
    assert_classified(&Wrapping::Busy, ErrorClass::Transient, None);
}

#[derive(Debug, Classify)]
#[classify(default = permanent)]
enum Defaulted {
    #[classify(transient)]
    Busy,
    BadRequest,
    Unauthorized {
        realm: String,
    },
    Gone(u16, #[retry_after] Option<Duration>),
}

#[derive(Debug, Classify)]
#[classify(default = outcome_unknown)]
enum DefaultedUnknown {
    Lost,
    #[classify(permanent)]
    Rejected,
}

#[test]
fn the_default_covers_unmarked_variants_only() {
    assert_classified(&Defaulted::Busy, ErrorClass::Transient, None);
    assert_classified(&Defaulted::BadRequest, ErrorClass::Permanent, None);
    assert_classified(
        &Defaulted::Unauthorized {
            realm: "api".into(),
        },
        ErrorClass::Permanent,
        None,
    );
    assert_classified(
        &Defaulted::Gone(410, Some(WAIT)),
        ErrorClass::Permanent,
        Some(WAIT),
    );
    assert_classified(&DefaultedUnknown::Lost, ErrorClass::OutcomeUnknown, None);
    assert_classified(&DefaultedUnknown::Rejected, ErrorClass::Permanent, None);
}

#[derive(Debug, Classify)]
#[classify(rate_limited)]
struct TooManyRequests {
    #[retry_after]
    retry_after: Option<Duration>,
}

#[derive(Debug, Classify)]
#[classify(transient)]
struct Overloaded;

#[derive(Debug, Classify)]
#[classify(permanent)]
struct Invalid(&'static str, #[retry_after] Duration);

#[derive(Debug, Classify)]
#[classify(delegate)]
struct Transport(io::Error);

#[derive(Debug, Classify)]
#[classify(delegate)]
struct Inner {
    source: TooManyRequests,
}

#[test]
fn structs_carry_one_class() {
    assert_classified(
        &TooManyRequests {
            retry_after: Some(WAIT),
        },
        ErrorClass::RateLimited,
        Some(WAIT),
    );
    assert_classified(
        &TooManyRequests { retry_after: None },
        ErrorClass::RateLimited,
        None,
    );
    assert_classified(&Overloaded, ErrorClass::Transient, None);
    assert_classified(&Invalid("amount", WAIT), ErrorClass::Permanent, Some(WAIT));
    assert_classified(
        &Transport(io::ErrorKind::BrokenPipe.into()),
        ErrorClass::OutcomeUnknown,
        None,
    );
    assert_classified(
        &Inner {
            source: TooManyRequests {
                retry_after: Some(WAIT),
            },
        },
        ErrorClass::RateLimited,
        Some(WAIT),
    );
}

#[derive(Debug, Classify)]
enum Generic<E, W>
where
    E: Debug,
{
    #[classify(delegate)]
    Provider(E),
    #[classify(rate_limited)]
    Throttled(#[retry_after] W),
    #[classify(transient)]
    Busy,
}

#[test]
fn generic_delegates_and_waits() {
    type Error = Generic<io::Error, Option<Duration>>;
    assert_classified(
        &Error::Provider(io::ErrorKind::ConnectionRefused.into()),
        ErrorClass::Transient,
        None,
    );
    assert_classified(
        &Error::Throttled(Some(WAIT)),
        ErrorClass::RateLimited,
        Some(WAIT),
    );
    assert_classified(&Error::Busy, ErrorClass::Transient, None);
    assert_classified(
        &Generic::<Upstream, Duration>::Provider(Upstream { wait: WAIT }),
        ErrorClass::RateLimited,
        Some(WAIT),
    );
}

#[derive(Debug, Classify)]
enum NoWaits {
    #[classify(transient)]
    A,
    #[classify(permanent)]
    B(u8),
}

#[test]
fn without_wait_fields_retry_after_is_the_default_none() {
    assert_classified(&NoWaits::A, ErrorClass::Transient, None);
    assert_classified(&NoWaits::B(1), ErrorClass::Permanent, None);
}

#[derive(Debug, Classify)]
enum Never {}

#[test]
fn an_empty_enum_derives() {
    fn classifies<E: Classify>() {}
    classifies::<Never>();
}
