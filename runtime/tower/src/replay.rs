//! Requests that can be sent again, and whether sending them again is safe.

/// What the layer needs to know about a request: how to make the next
/// attempt's copy, and whether the operation is safe to repeat.
///
/// A request that cannot be replayed ([`Replay::replay`] returns `None`)
/// gets no further attempt: the call ends with the last attempt's outcome
/// (a body too large to record, say, gets one attempt).
///
/// Implemented for common plain types (by `Clone`), for `http::Request<B>`
/// with a replayable body (feature `http`: `String`, `Vec<u8>`, `Bytes`,
/// `()`, `Full<Bytes>`, `Empty<Bytes>`; feature `tonic`:
/// `tonic::body::Body`, recorded as it is sent). For your own `Clone`
/// request types, [`replay_by_clone!`](crate::replay_by_clone) writes the
/// impl; override [`Replay::is_idempotent`] to mark requests safe to repeat.
pub trait Replay: Sized {
    /// What stays behind between attempts (the request itself, for a
    /// `Clone` type).
    type Source: Send + 'static;

    /// Split the request into the first attempt's and what makes the
    /// others.
    fn into_source(self) -> (Self, Self::Source);

    /// The request for one more attempt; `None` when it cannot be made
    /// again. The layer asks for the next attempt's copy before sending
    /// the current one (so it knows whether this attempt is the last).
    fn replay(source: &mut Self::Source) -> Option<Self>;

    /// Whether copies made so far can still be sent: `false` once a
    /// copy made in advance went stale (a recorded body grew too large).
    /// Default: `true`.
    fn can_replay(source: &Self::Source) -> bool {
        let _ = source;
        true
    }

    /// Whether repeating this request is safe even when an earlier attempt
    /// may have been acted on (then `OutcomeUnknown` failures are
    /// retried). The policy's `idempotent` setting makes every request of
    /// the call idempotent whatever this says. Default: `false`.
    fn is_idempotent(&self) -> bool {
        false
    }

    /// Adjust an attempt's request just before it is sent. `time_left`
    /// tells (when asked: it reads the clock) the time left before the
    /// call's deadline or the attempt's timeout, whichever comes first. An
    /// HTTP gRPC request sets `grpc-timeout` here. Default: nothing.
    fn before_attempt(&mut self, time_left: &TimeLeft) {
        let _ = time_left;
    }
}

/// The time an attempt has, read on demand (see [`Replay::before_attempt`]).
#[derive(Debug, Clone, Copy)]
pub struct TimeLeft {
    pub(crate) attempt_timeout: Option<std::time::Duration>,
}

impl TimeLeft {
    /// The time left before the call's deadline or the attempt's timeout,
    /// whichever comes first; `None` when neither bounds the attempt.
    /// Valid inside the attempt (it reads the call's deadline).
    #[must_use]
    pub fn get(&self) -> Option<std::time::Duration> {
        match (buttress_core::remaining(), self.attempt_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Implement [`Replay`] by `Clone` for the given types (`Send + 'static`) (never idempotent
/// by themselves: use the policy's `idempotent` setting, or implement
/// [`Replay`] by hand).
///
/// ```
/// #[derive(Clone)]
/// struct Lookup { id: u64 }
/// buttress_tower::replay_by_clone!(Lookup);
/// ```
#[macro_export]
macro_rules! replay_by_clone {
    ($($ty:ty),* $(,)?) => {
        $(impl $crate::Replay for $ty {
            type Source = Self;
            fn into_source(self) -> (Self, Self) {
                (::core::clone::Clone::clone(&self), self)
            }
            fn replay(source: &mut Self) -> ::core::option::Option<Self> {
                ::core::option::Option::Some(::core::clone::Clone::clone(source))
            }
        })*
    };
}

replay_by_clone!(
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
    String,
    &'static str,
);

impl<T: Clone + Send + 'static> Replay for Vec<T> {
    type Source = Self;
    fn into_source(self) -> (Self, Self) {
        (self.clone(), self)
    }
    fn replay(source: &mut Self) -> Option<Self> {
        Some(source.clone())
    }
}

impl<T: ?Sized + Send + Sync + 'static> Replay for std::sync::Arc<T> {
    type Source = Self;
    fn into_source(self) -> (Self, Self) {
        (std::sync::Arc::clone(&self), self)
    }
    fn replay(source: &mut Self) -> Option<Self> {
        Some(std::sync::Arc::clone(source))
    }
}

/// Marks a request safe to repeat: put it in the request's extensions
/// (`http::Request::extensions_mut`, or tonic's
/// `Request::extensions_mut` before the call) and the layer retries the
/// request's `OutcomeUnknown` failures (gRPC `DEADLINE_EXCEEDED`,
/// `INTERNAL`, …), as it does for an idempotent HTTP method.
///
/// ```
/// # #[cfg(feature = "http")] {
/// let mut request = http::Request::post("/orders").body(String::new()).unwrap();
/// request.extensions_mut().insert(buttress_tower::Idempotent);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idempotent;
