//! How one attempt failed, classified for the call.

use std::io;
use std::time::Duration;

use buttress_core::{classify_io_kind, Classify, ErrorClass};
use reqwest::Response;

/// Why an attempt did not succeed. The call's error type: it keeps the
/// response of an error status, so that it can be handed back to the
/// caller when the retries end.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The provider answered with a 4xx or 5xx status.
    Status {
        response: Response,
        retry_after: Option<Duration>,
    },
    /// The request failed below this middleware: in reqwest (refused,
    /// timed out, reset) or in a middleware added after this one.
    Transport(reqwest_middleware::Error),
    /// buttress ended the call: a per-attempt timeout, the deadline, or a
    /// local refusal (breaker, budget, bulkhead, rate limit).
    Local(buttress_core::Error),
    /// A request whose body cannot be cloned was asked for a second
    /// attempt. The call limits such requests to one attempt, so this is
    /// never expected.
    NotResendable,
}

impl Failure {
    /// The failure of an error response, with the wait its `Retry-After`
    /// asks for.
    pub(crate) fn status(response: Response) -> Self {
        let retry_after = buttress_core::http::retry_after(response.headers());
        Self::Status {
            response,
            retry_after,
        }
    }
}

impl From<buttress_core::Error> for Failure {
    fn from(error: buttress_core::Error) -> Self {
        Self::Local(error)
    }
}

/// Statuses by `Classify for StatusCode` (500, 502, 504 `OutcomeUnknown`;
/// 408, 425, 503 `Transient`; 429 `RateLimited`; the rest `Permanent`),
/// reqwest errors by `Classify for reqwest::Error`, buttress's own errors
/// by theirs. An error from a middleware further down is classified by the
/// buttress, reqwest or I/O error among its causes; one with none of them
/// is `Permanent`: nothing says the provider failed, so it is neither
/// retried nor counted against the provider.
impl Classify for Failure {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Status { response, .. } => response.status().class(),
            Self::Transport(reqwest_middleware::Error::Reqwest(error)) => error.class(),
            Self::Transport(reqwest_middleware::Error::Middleware(error)) => class_of_chain(error),
            Self::Local(error) => error.class(),
            Self::NotResendable => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Local(error) => error.retry_after(),
            Self::Transport(_) | Self::NotResendable => None,
        }
    }
}

fn class_of_chain(error: &anyhow::Error) -> ErrorClass {
    error
        .chain()
        .find_map(|cause| {
            if let Some(error) = cause.downcast_ref::<buttress_core::Error>() {
                Some(error.class())
            } else if let Some(error) = cause.downcast_ref::<reqwest::Error>() {
                Some(error.class())
            } else {
                cause
                    .downcast_ref::<io::Error>()
                    .map(|error| classify_io_kind(error.kind()))
            }
        })
        .unwrap_or(ErrorClass::Permanent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middleware_errors_are_classified_by_their_causes() {
        let unknown = anyhow::anyhow!("token refresh failed");
        assert_eq!(class_of_chain(&unknown), ErrorClass::Permanent);

        let reset = anyhow::Error::new(io::Error::from(io::ErrorKind::ConnectionReset))
            .context("proxy middleware");
        assert_eq!(class_of_chain(&reset), ErrorClass::OutcomeUnknown);

        let refused = anyhow::Error::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(class_of_chain(&refused), ErrorClass::Transient);
    }
}
