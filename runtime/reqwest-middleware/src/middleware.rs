//! The middleware: each request one call under the policy.

use std::ops::ControlFlow;
use std::time::Duration;

use buttress_core::Policy;
use http::{Extensions, HeaderName, HeaderValue};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::failure::Failure;
use crate::idempotent::{decide, idempotency_key};

/// A [`reqwest_middleware::Middleware`] that runs every request as one
/// call under a buttress [`Policy`].
///
/// Each attempt passes the policy's breaker, rate limit and bulkhead and
/// runs under its per-attempt timeout; failures are retried with its
/// backoff, within its deadline and its provider's retry budget. The
/// breaker, budget, limiter and bulkhead belong to the policy's provider,
/// so they are shared with every other user of the same provider name in
/// the process (`#[resilient]` call sites, `Policy::run`, other clients).
///
/// See the [crate documentation](crate) for what is retried, what the
/// caller gets back, and how requests that cannot be resent are handled.
///
/// ```
/// use std::time::Duration;
/// use buttress_core::Policy;
/// use buttress_reqwest_middleware::Resilience;
/// use reqwest_middleware::ClientBuilder;
///
/// let policy = Policy::builder("maps")
///     .timeout(Duration::from_secs(2))
///     .deadline(Duration::from_secs(10))
///     .build()
///     .expect("a valid policy");
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(Resilience::new(policy).with_deadline_header(http::HeaderName::from_static("x-request-timeout")))
///     .build();
/// # drop(client);
/// ```
#[derive(Debug, Clone)]
pub struct Resilience {
    policy: Policy,
    deadline_header: Option<HeaderName>,
}

impl Resilience {
    /// A middleware running each request under `policy`.
    #[must_use]
    pub const fn new(policy: Policy) -> Self {
        Self {
            policy,
            deadline_header: None,
        }
    }

    /// Send, on every attempt, the time this attempt has left in the
    /// header `name`, in whole milliseconds: the smaller of the time left
    /// before the call's deadline and the per-attempt timeout. A provider
    /// that reads it (`X-Request-Timeout`, `Grpc-Timeout`-style budgets)
    /// can give up on work whose answer nobody will wait for. Without a
    /// deadline or a timeout the header is not sent. A header of that name
    /// set by the caller is replaced.
    #[must_use]
    pub fn with_deadline_header(mut self, name: HeaderName) -> Self {
        self.deadline_header = Some(name);
        self
    }

    /// The policy every request runs under.
    #[must_use]
    pub const fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl From<Policy> for Resilience {
    fn from(policy: Policy) -> Self {
        Self::new(policy)
    }
}

#[async_trait::async_trait]
impl Middleware for Resilience {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let mut call = self.policy.call::<Response, Failure>();
        let key = idempotency_key(req.headers());
        let idempotent = decide(
            extensions,
            call.is_idempotent(),
            req.method(),
            key.is_some(),
        );
        call.set_idempotent(idempotent);
        if let Some(key) = key {
            call.set_key(key);
        }
        // A streaming body is read as it is sent: there is nothing left to
        // send a second time.
        let resendable = req.body().is_none_or(|body| body.as_bytes().is_some());
        if !resendable {
            call.limit_attempts(1);
        }
        let mut original = Some(req);
        let deadline_header = self.deadline_header.as_ref();
        let result = loop {
            // Each attempt sends a copy (a reference-counted one for a
            // buffered body); a request that cannot be copied is sent
            // itself, once.
            let request = original
                .as_ref()
                .and_then(Request::try_clone)
                .or_else(|| original.take());
            let timeout = self.policy.attempt_timeout();
            let step = call
                .attempt(async {
                    let Some(mut request) = request else {
                        return Err(Failure::NotResendable);
                    };
                    if let Some(name) = deadline_header {
                        if let Some(left) = attempt_budget(buttress_core::remaining(), timeout) {
                            request
                                .headers_mut()
                                .insert(name.clone(), HeaderValue::from(left));
                        }
                    }
                    match next.clone().run(request, &mut *extensions).await {
                        Ok(response)
                            if response.status().is_client_error()
                                || response.status().is_server_error() =>
                        {
                            Err(Failure::status(response))
                        }
                        Ok(response) => Ok(response),
                        Err(error) => Err(Failure::Transport(error)),
                    }
                })
                .await;
            if let ControlFlow::Break(result) = step {
                break result;
            }
        };
        match result {
            Ok(response) | Err(Failure::Status { response, .. }) => Ok(response),
            Err(Failure::Transport(error)) => Err(error),
            Err(Failure::Local(error)) => Err(reqwest_middleware::Error::Middleware(
                anyhow::Error::new(error),
            )),
            Err(Failure::NotResendable) => {
                Err(reqwest_middleware::Error::Middleware(anyhow::anyhow!(
                    "buttress: the request's body is a stream and was already sent once, so it \
                     cannot be retried; give the request a buffered body (bytes, a string, JSON) \
                     to let it be retried"
                )))
            }
        }
    }
}

/// The time an attempt has, in whole milliseconds: the smaller of the time
/// left before the deadline and the attempt's timeout; `None` with
/// neither. Saturates at `u64::MAX` milliseconds.
fn attempt_budget(remaining: Option<Duration>, timeout: Option<Duration>) -> Option<u64> {
    let left = match (remaining, timeout) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return None,
    };
    Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
}

/// The buttress error behind a request's error, when buttress ended the
/// call: [`Error::CircuitOpen`](buttress_core::Error::CircuitOpen),
/// `BudgetExhausted`, `BulkheadFull`, `RateLimited`, `DeadlineExceeded`,
/// or `Timeout` (the last attempt's timeout). `None` for an error of
/// reqwest or of another middleware.
///
/// The same as matching `reqwest_middleware::Error::Middleware(e)` and
/// calling `e.downcast_ref::<buttress_core::Error>()`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use buttress_core::{Policy, Registry};
/// use buttress_reqwest_middleware::{buttress_error, Resilience};
/// use reqwest_middleware::ClientBuilder;
///
/// let policy = Policy::builder("doc-refused").build().unwrap();
/// Registry::global().breaker("doc-refused").force_open();
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(Resilience::new(policy))
///     .build();
///
/// // Refused locally: nothing is sent, not even a connection attempt.
/// let error = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
/// let refusal = buttress_error(&error).expect("buttress refused the call");
/// assert_eq!(refusal.reason(), "circuit_open");
/// assert!(refusal.is_rejection());
/// # }
/// ```
#[must_use]
pub fn buttress_error(error: &reqwest_middleware::Error) -> Option<&buttress_core::Error> {
    match error {
        reqwest_middleware::Error::Middleware(error) => error.downcast_ref(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_budget_is_the_smaller_bound_in_milliseconds() {
        let ms = Duration::from_millis;
        assert_eq!(attempt_budget(None, None), None);
        assert_eq!(attempt_budget(Some(ms(1500)), None), Some(1500));
        assert_eq!(attempt_budget(None, Some(ms(200))), Some(200));
        assert_eq!(attempt_budget(Some(ms(90)), Some(ms(200))), Some(90));
        assert_eq!(
            attempt_budget(Some(Duration::from_micros(999)), None),
            Some(0)
        );
        assert_eq!(attempt_budget(Some(Duration::MAX), None), Some(u64::MAX));
    }
}
