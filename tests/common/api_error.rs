//! The error of the HTTP tests' clients: a status the provider answered,
//! a transport error, or buttress ending the call. Included by path
//! (`#[path = "common/api_error.rs"]`) where the whole `common` module is
//! not wanted.
#![allow(dead_code)]

use buttress::http::HttpError;
use buttress::Classify;

#[derive(Debug, thiserror::Error, Classify)]
pub enum ApiError {
    #[error(transparent)]
    #[classify(delegate)]
    Status(#[from] HttpError),
    #[error(transparent)]
    #[classify(delegate)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

impl ApiError {
    /// The buttress reason (`timeout`, `deadline`, `circuit_open`, ...),
    /// if buttress ended the call.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Resilience(e) => Some(e.reason()),
            _ => None,
        }
    }
}
