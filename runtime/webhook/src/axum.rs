//! An axum extractor for verified, deduplicated webhooks (feature `axum`).
//!
//! [`Webhook<T>`] reads the raw body before anything parses it, verifies
//! it with the route's [`WebhookReceiver`] (taken from the router's state
//! through [`FromRef`]), claims the event id, and deserializes the body
//! into `T` with `serde_json`. The handler then runs at most once per
//! event at a time, and only again if an earlier run failed. It must pass
//! its result to [`Webhook::finish`]:
//!
//! - a redelivery of a handled event is answered `200 OK` without running
//!   the handler;
//! - a duplicate arriving while the event is being handled is answered
//!   `409 Conflict` (with `Retry-After` when the store knows), so the
//!   sender tries again later;
//! - a delivery that does not verify is answered `400 Bad Request`
//!   (missing or malformed headers) or `401 Unauthorized` (no matching
//!   signature, stale timestamp); a store failure `503`;
//! - a body that verifies but does not deserialize into `T` counts as a
//!   failed handling (`400`, and the failure hook runs);
//! - a failed handler gets `500` ([`HandlerFailed`]); its claim is
//!   released so the sender's redelivery runs it again, and
//!   [`WebhookReceiver::on_failure`] receives the event.

use ::axum::body::Bytes;
use ::axum::extract::rejection::BytesRejection;
use ::axum::extract::{FromRef, FromRequest, Request};
use ::axum::http::{header, HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::{Delivery, ReceiveError, VerifyError, WebhookReceiver};

/// A verified event of type `T`, claimed for this handler; see the
/// [module docs](self).
#[derive(Debug)]
#[must_use = "pass the handler's result to `Webhook::finish`"]
pub struct Webhook<T> {
    event: T,
    delivery: Delivery,
}

impl<T> Webhook<T> {
    /// The event, deserialized from the verified body.
    pub const fn event(&self) -> &T {
        &self.event
    }

    /// The delivery: id, signed timestamp, raw body.
    pub const fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The event id.
    #[must_use]
    pub fn id(&self) -> &str {
        self.delivery.id()
    }

    /// The event and the delivery, to finish it later with
    /// [`Delivery::finish`].
    pub fn into_parts(self) -> (T, Delivery) {
        (self.event, self.delivery)
    }

    /// Record the handler's result: on `Ok` the event is remembered as
    /// handled and `value` returned; on `Err` the claim is released (the
    /// sender's redelivery runs the handler again), the
    /// [`on_failure`](WebhookReceiver::on_failure) hook receives the event
    /// and the error, and the answer is a `500` [`HandlerFailed`].
    ///
    /// # Errors
    /// [`HandlerFailed`] when `result` is an error.
    pub async fn finish<R, E: std::fmt::Display>(
        self,
        result: Result<R, E>,
    ) -> Result<R, HandlerFailed> {
        self.delivery
            .finish(result)
            .await
            .map_err(|_| HandlerFailed { _private: () })
    }
}

/// A handler failed: answered `500 Internal Server Error`, so the sender
/// redelivers. The error itself went to the failure hook, not to the
/// sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the webhook handler failed; the event will be handled again on redelivery")]
pub struct HandlerFailed {
    _private: (),
}

impl IntoResponse for HandlerFailed {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// Why [`Webhook`] did not reach the handler, as an HTTP answer (see the
/// [module docs](self) for the status codes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookRejection {
    /// The body could not be read.
    #[error(transparent)]
    Body(#[from] BytesRejection),
    /// Verification or deduplication said no (or: already handled).
    #[error(transparent)]
    Receive(#[from] ReceiveError),
    /// The verified body is not the handler's event type.
    #[error("the verified body is not the expected event: {0}")]
    Payload(serde_json::Error),
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Body(rejection) => return rejection.status().into_response(),
            Self::Receive(ReceiveError::Verify(
                VerifyError::NoMatchingSignature { .. }
                | VerifyError::TimestampOutsideTolerance { .. },
            )) => StatusCode::UNAUTHORIZED,
            Self::Receive(ReceiveError::Verify(_)) | Self::Payload(_) => StatusCode::BAD_REQUEST,
            Self::Receive(ReceiveError::Duplicate { .. }) => StatusCode::OK,
            Self::Receive(ReceiveError::InFlight { retry_after, .. }) => {
                let mut response = (StatusCode::CONFLICT, self.to_string()).into_response();
                if let Some(left) = retry_after {
                    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                }
                return response;
            }
            Self::Receive(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.to_string()).into_response()
    }
}

impl<S, T> FromRequest<S> for Webhook<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
    WebhookReceiver: FromRef<S>,
{
    type Rejection = WebhookRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let receiver = WebhookReceiver::from_ref(state);
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await?;
        let delivery = receiver.receive(&headers, body).await?;
        let error = match serde_json::from_slice(delivery.body()) {
            Ok(event) => return Ok(Self { event, delivery }),
            Err(e) => e,
        };
        delivery.fail(&error).await;
        Err(WebhookRejection::Payload(error))
    }
}
