//! Which requests are safe to send twice.

use std::sync::Arc;

use http::{Extensions, HeaderMap, Method};

/// The header a provider reads the idempotency key from.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Says whether one request is safe to repeat, overriding what its method
/// and headers say. Put it in the request's extensions:
///
/// ```
/// use buttress_reqwest_middleware::Idempotent;
///
/// # fn build(client: &reqwest_middleware::ClientWithMiddleware) {
/// // This POST only sets a value: resending it is harmless.
/// let request = client
///     .post("https://api.example.com/v1/flags/dark-mode")
///     .with_extension(Idempotent(true));
/// // This DELETE has side effects the provider does not deduplicate.
/// let request = client
///     .delete("https://api.example.com/v1/sessions/current")
///     .with_extension(Idempotent(false));
/// # }
/// ```
///
/// `Idempotent(true)` lets the request be retried after an
/// `OutcomeUnknown` failure (a 500, 502 or 504, a timeout, a reset after
/// sending); `Idempotent(false)` returns such a failure at once. Neither
/// adds nor removes an `Idempotency-Key` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Idempotent(pub bool);

/// Whether the method is idempotent by RFC 9110 §9.2.2: GET, HEAD,
/// OPTIONS, TRACE, PUT and DELETE. POST, PATCH, CONNECT and extension
/// methods are not.
#[must_use]
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request's `Idempotency-Key`, if it has one. A value that is not
/// UTF-8 is kept with its invalid bytes replaced: it still marks the
/// request idempotent, and the header sent stays the caller's own bytes.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Option<Arc<str>> {
    let value = headers.get(IDEMPOTENCY_KEY)?;
    Some(match value.to_str() {
        Ok(key) => Arc::from(key),
        Err(_) => Arc::from(String::from_utf8_lossy(value.as_bytes()).as_ref()),
    })
}

/// Whether the request may be retried after an unknown outcome: the
/// caller's [`Idempotent`] marker if there is one, else the policy's
/// `idempotent`, an idempotent method, or an `Idempotency-Key`.
pub(crate) fn decide(
    extensions: &Extensions,
    policy_idempotent: bool,
    method: &Method,
    has_key: bool,
) -> bool {
    match extensions.get::<Idempotent>() {
        Some(Idempotent(idempotent)) => *idempotent,
        None => policy_idempotent || is_idempotent_method(method) || has_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn idempotent_methods_are_those_of_rfc_9110() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent_method(&method.parse().unwrap()), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(!is_idempotent_method(&method.parse().unwrap()), "{method}");
        }
    }

    #[test]
    fn the_marker_overrides_method_key_and_policy() {
        let mut marked = Extensions::new();
        marked.insert(Idempotent(false));
        assert!(!decide(&marked, true, &Method::GET, true));
        marked.insert(Idempotent(true));
        assert!(decide(&marked, false, &Method::POST, false));

        let none = Extensions::new();
        assert!(!decide(&none, false, &Method::POST, false));
        assert!(decide(&none, false, &Method::POST, true));
        assert!(decide(&none, true, &Method::PATCH, false));
        assert!(decide(&none, false, &Method::PUT, false));
    }

    #[test]
    fn a_key_that_is_not_utf8_is_still_a_key() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers), None);
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("order-7"));
        assert_eq!(idempotency_key(&headers).as_deref(), Some("order-7"));
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_bytes(b"k\xff").unwrap());
        assert_eq!(idempotency_key(&headers).as_deref(), Some("k\u{fffd}"));
    }
}
