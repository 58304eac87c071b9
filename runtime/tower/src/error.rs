//! The service's error: the inner service's, or a local refusal.

use std::fmt;

/// What a [`Resilience`](crate::Resilience) service fails with.
///
/// An inner service's *error* (not an error response: those are returned
/// as responses, see [`ClassifyResponse`](crate::ClassifyResponse)) comes
/// back as [`Error::Inner`]; a refusal made here, without the provider's
/// answer (breaker open, retry budget spent, bulkhead full, rate limited,
/// attempt timeout, deadline), as [`Error::Resilience`].
///
/// It implements [`std::error::Error`] (when the inner error does) with
/// the inner error as its [`source`](std::error::Error::source), so it
/// converts into `tower::BoxError` and satisfies tonic's
/// `Error: Into<StdError>` bound; tonic then finds a `tonic::Status` or an
/// `h2` error down the source chain as it does for its own `Channel`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The inner service failed (its last attempt's error).
    Inner(E),
    /// The call was refused or cut here: the provider's answer, if any,
    /// was not awaited.
    Resilience(buttress_core::Error),
    /// The policy asked for another attempt but the request could not be
    /// copied for it. The layer makes an attempt with no copy left its
    /// last, so this is not expected; it is reported rather than panicked.
    NotReplayable,
}

impl<E> Error<E> {
    /// The inner service's error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Resilience(_) | Self::NotReplayable => None,
        }
    }

    /// The local refusal, if that is what this is.
    #[must_use]
    pub const fn resilience(&self) -> Option<&buttress_core::Error> {
        match self {
            Self::Inner(_) | Self::NotReplayable => None,
            Self::Resilience(e) => Some(e),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => e.fmt(f),
            Self::Resilience(e) => e.fmt(f),
            Self::NotReplayable => f.write_str("the request could not be copied for a retry"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Resilience(e) => Some(e),
            Self::NotReplayable => None,
        }
    }
}

impl<E> From<buttress_core::Error> for Error<E> {
    fn from(error: buttress_core::Error) -> Self {
        Self::Resilience(error)
    }
}
