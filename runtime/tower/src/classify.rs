//! What an inner service's outcome means for the call: a success, or a
//! failure of some [`ErrorClass`].

use std::error::Error as StdError;
use std::time::Duration;

use buttress_core::{classify_io_kind, Classify, ErrorClass};

/// A failed attempt: its class, and how long the provider asked to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// What the failure means for retrying (see [`ErrorClass`]).
    pub class: ErrorClass,
    /// How long the provider asked the caller to wait (`Retry-After`,
    /// gRPC `RetryInfo`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure of `class`, without a requested wait.
    #[must_use]
    pub const fn new(class: ErrorClass) -> Self {
        Self {
            class,
            retry_after: None,
        }
    }

    /// The same failure, with the provider's requested wait.
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

/// Decides what an inner service's outcome means: `None` for a success,
/// `Some(failure)` for a failure worth (or not worth) another attempt.
///
/// A failed *response* (an HTTP `503`, a gRPC `UNAVAILABLE` in the
/// headers) is retried like an error; when the call gives up, that last
/// response is what the caller gets, unchanged.
///
/// Classifiers given:
///
/// | classifier | response | error |
/// |---|---|---|
/// | [`Standard`] (the default) | by [`ResponseClass`]: `http::Response` by `grpc-status`, else by status (feature `http`); other types succeed | by its source chain ([`classify_error_chain`]) |
/// | [`ByError`] | always a success | by the error's own [`Classify`] |
/// | a closure `Fn(&Result<Resp, Err>) -> Option<Failure>` | | |
pub trait ClassifyResponse<Resp, Err> {
    /// `None` for a success, else the failure's class.
    fn classify(&self, outcome: &Result<Resp, Err>) -> Option<Failure>;
}

impl<F, Resp, Err> ClassifyResponse<Resp, Err> for F
where
    F: Fn(&Result<Resp, Err>) -> Option<Failure>,
{
    fn classify(&self, outcome: &Result<Resp, Err>) -> Option<Failure> {
        self(outcome)
    }
}

/// Whether a response is a failure in disguise (an HTTP error status, a
/// gRPC error in the headers). Implemented for `http::Response<B>`
/// (feature `http`) and for common plain types, which always succeed;
/// implement it for your own response types (the provided method says
/// "success").
pub trait ResponseClass {
    /// `None` when the response is a success.
    fn failure(&self) -> Option<Failure> {
        None
    }
}

macro_rules! always_succeeds {
    ($($ty:ty),* $(,)?) => {
        $(impl ResponseClass for $ty {})*
    };
}

always_succeeds!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
);

impl<T> ResponseClass for Vec<T> {}
impl<T: ?Sized> ResponseClass for Box<T> {}
impl<T: ?Sized> ResponseClass for std::sync::Arc<T> {}
impl<T> ResponseClass for Option<T> {}

/// The default classifier: responses by [`ResponseClass`], errors by
/// their source chain ([`classify_error_chain`]), which is what a
/// transport's error (hyper's, tonic's `Channel`'s) can be judged by.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standard;

impl<Resp, Err> ClassifyResponse<Resp, Err> for Standard
where
    Resp: ResponseClass,
    Err: StdError + 'static,
{
    fn classify(&self, outcome: &Result<Resp, Err>) -> Option<Failure> {
        match outcome {
            Ok(response) => response.failure(),
            Err(error) => Some(classify_error_chain(error)),
        }
    }
}

/// Every response succeeds; errors are judged by their own [`Classify`]
/// (an error type with `#[derive(Classify)]`, `std::io::Error`,
/// `buttress::Error`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ByError;

impl<Resp, Err: Classify> ClassifyResponse<Resp, Err> for ByError {
    fn classify(&self, outcome: &Result<Resp, Err>) -> Option<Failure> {
        outcome
            .as_ref()
            .err()
            .map(|e| Failure::new(e.class()).with_retry_after(e.retry_after()))
    }
}

/// The class of a transport error, from the first error down its source
/// chain that says something: a `buttress::Error` by its [`Classify`], a
/// `std::io::Error` by its kind (refused: `Transient`; reset, broken
/// pipe, timed out: `OutcomeUnknown`), a `tonic::Status` by its code
/// (feature `tonic`). An error that says nothing is `OutcomeUnknown`: a
/// transport that failed without saying why may have sent the request,
/// so it is retried only for idempotent calls.
#[must_use]
pub fn classify_error_chain(error: &(dyn StdError + 'static)) -> Failure {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(e) = error.downcast_ref::<buttress_core::Error>() {
            return Failure::new(e.class()).with_retry_after(e.retry_after());
        }
        if let Some(e) = error.downcast_ref::<std::io::Error>() {
            let class = classify_io_kind(e.kind());
            // `Other` and friends say nothing: look further down.
            if class != ErrorClass::Permanent {
                return Failure::new(class);
            }
        }
        #[cfg(feature = "tonic")]
        if let Some(status) = error.downcast_ref::<tonic::Status>() {
            return crate::grpc::classify_status(status);
        }
        next = error.source();
    }
    Failure::new(ErrorClass::OutcomeUnknown)
}
