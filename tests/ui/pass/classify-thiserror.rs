//! Alongside thiserror: `#[from]` and `#[source]` fields delegate, and
//! `#[error(transparent)]` variants are classified by their inner error.
use std::time::Duration;

use buttress::Classify;

#[derive(Debug, thiserror::Error, Classify)]
pub enum PayError {
    #[error("rate limited")]
    #[classify(rate_limited)]
    RateLimited {
        #[retry_after]
        retry_after: Option<Duration>,
    },
    #[error("provider unavailable")]
    #[classify(transient)]
    Unavailable,
    #[error("connection lost after the request was sent")]
    #[classify(outcome_unknown)]
    ConnectionLost,
    #[error("card declined: {0}")]
    #[classify(permanent)]
    Declined(String),
    #[error(transparent)]
    #[classify(delegate)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

fn charge() -> Result<(), PayError> {
    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))?;
    Ok(())
}

fn main() {
    let _ = charge().unwrap_err().class();
}
