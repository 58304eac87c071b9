//! HTTP (feature `http`): replaying `http::Request`s, idempotency by method
//! and `Idempotency-Key`, classifying `http::Response`s by status or by
//! their `grpc-status` header, and the `grpc-timeout` that carries the
//! call's remaining time to a gRPC server.

use std::time::Duration;

use buttress_core::Classify;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{request, Request, Response};

use crate::classify::{Failure, ResponseClass};
use crate::grpc_code;
use crate::replay::{Idempotent, Replay, TimeLeft};

/// The `Idempotency-Key` header: a request carrying one is safe to repeat
/// (the provider deduplicates it).
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// A request body that can be sent again. Implemented by `Clone` for
/// `String`, `Vec<u8>`, `Bytes`, `()`, `&'static str`, `Full<Bytes>` and
/// `Empty<Bytes>`, and (feature `tonic`) for `tonic::body::Body`, recorded
/// as the first attempt sends it.
pub trait ReplayBody: Sized {
    /// What stays behind between attempts.
    type Source: Send + 'static;
    /// Split the body into the first attempt's and what makes the others.
    fn into_source(self) -> (Self, Self::Source);
    /// The body for one more attempt; `None` when it cannot be sent again.
    fn replay(source: &mut Self::Source) -> Option<Self>;
    /// Whether the copies made so far can still be sent. Default: `true`.
    fn can_replay(source: &Self::Source) -> bool {
        let _ = source;
        true
    }
}

macro_rules! replay_body_by_clone {
    ($($ty:ty),* $(,)?) => {
        $(impl ReplayBody for $ty {
            type Source = Self;
            fn into_source(self) -> (Self, Self) {
                (self.clone(), self)
            }
            fn replay(source: &mut Self) -> Option<Self> {
                Some(source.clone())
            }
        })*
    };
}

replay_body_by_clone!(
    String,
    Vec<u8>,
    Bytes,
    (),
    &'static str,
    http_body_util::Full<Bytes>,
    http_body_util::Empty<Bytes>,
);

/// An `http::Request` whose body can be sent again: the head is cloned per
/// attempt. Idempotent when its method is (RFC 9110 §9.2.2: `GET`, `HEAD`,
/// `OPTIONS`, `TRACE`, `PUT`, `DELETE`), when it carries an
/// `Idempotency-Key` header, or when its extensions hold [`Idempotent`].
/// For a gRPC request (`content-type: application/grpc…`), each attempt
/// carries `grpc-timeout`: the time left before the call's deadline (or
/// the attempt's timeout, if sooner), so the server stops working when the
/// caller has stopped waiting.
impl<B: ReplayBody> Replay for Request<B> {
    type Source = (request::Parts, B::Source);

    fn into_source(self) -> (Self, Self::Source) {
        let (parts, body) = self.into_parts();
        let (first, source) = body.into_source();
        (Request::from_parts(parts.clone(), first), (parts, source))
    }

    fn replay(source: &mut Self::Source) -> Option<Self> {
        let body = B::replay(&mut source.1)?;
        Some(Request::from_parts(source.0.clone(), body))
    }

    fn can_replay(source: &Self::Source) -> bool {
        B::can_replay(&source.1)
    }

    fn is_idempotent(&self) -> bool {
        self.method().is_idempotent()
            || self.headers().contains_key(&IDEMPOTENCY_KEY)
            || self.extensions().get::<Idempotent>().is_some()
    }

    fn before_attempt(&mut self, time_left: &TimeLeft) {
        if is_grpc(self.headers().get(CONTENT_TYPE)) {
            if let Some(left) = time_left.get() {
                let value = grpc_timeout(left);
                self.headers_mut().insert(GRPC_TIMEOUT.clone(), value);
            }
        }
    }
}

fn is_grpc(content_type: Option<&HeaderValue>) -> bool {
    content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `grpc-timeout` for `left`: at most 8 digits and a unit, in the finest
/// unit that fits, rounded down (the server must not outwait the caller).
#[must_use]
pub fn grpc_timeout(left: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let units: [(u128, &str); 6] = [
        (left.as_nanos(), "n"),
        (left.as_micros(), "u"),
        (left.as_millis(), "m"),
        (u128::from(left.as_secs()), "S"),
        (u128::from(left.as_secs() / 60), "M"),
        (u128::from(left.as_secs() / 3600), "H"),
    ];
    let (value, unit) = units
        .into_iter()
        .find(|(value, _)| *value <= MAX)
        .unwrap_or((MAX, "H"));
    // Digits and an ASCII letter: always a valid header value.
    HeaderValue::from_str(&format!("{value}{unit}"))
        .unwrap_or_else(|_| HeaderValue::from_static("99999999H"))
}

/// An error status, or a gRPC error in the headers (a trailers-only
/// response, how gRPC servers answer a call that failed before any
/// message), is a failure:
///
/// - with a `grpc-status` header, by the gRPC code (see [`crate::grpc_code`]),
///   waiting what a `google.rpc.RetryInfo` detail asks;
/// - else a `4xx`/`5xx` by buttress's `Classify for http::StatusCode`,
///   waiting what `Retry-After` asks.
///
/// A gRPC status sent in the trailers, after the response's messages, is
/// not seen here (the layer does not hold the body back); a unary call's
/// errors come in the headers.
impl<B> ResponseClass for Response<B> {
    fn failure(&self) -> Option<Failure> {
        let headers = self.headers();
        if let Some(code) = headers.get(&GRPC_STATUS) {
            return grpc_code::failure_from_headers(code, headers);
        }
        let status = self.status();
        (status.is_client_error() || status.is_server_error()).then(|| {
            Failure::new(status.class()).with_retry_after(buttress_core::http::retry_after(headers))
        })
    }
}
