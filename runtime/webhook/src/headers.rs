//! Reading request headers without tying verification to an HTTP crate.

/// Where verification reads request headers from. Names are matched without
/// regard to ASCII case; with a repeated header, the first value counts.
///
/// Implemented for slices, arrays and vectors of `(name, value)` pairs (any
/// `AsRef<str>` name and `AsRef<[u8]>` value), and, with the `http` or
/// `axum` feature, for `http::HeaderMap`.
pub trait HeaderSource {
    /// The raw value of header `name`, if present.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderSource for [(K, V)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>, const N: usize> HeaderSource for [(K, V); N] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderSource for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

// One `http` crate either way: axum re-exports the one the `http` feature
// names.
#[cfg(feature = "axum")]
use ::axum::http as http_types;
#[cfg(all(feature = "http", not(feature = "axum")))]
use ::http as http_types;

#[cfg(any(feature = "http", feature = "axum"))]
impl HeaderSource for http_types::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(http_types::HeaderValue::as_bytes)
    }
}
