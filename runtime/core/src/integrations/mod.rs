//! Integrations with HTTP crates (features `http`, `reqwest`).
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "reqwest")]
pub mod reqwest;
