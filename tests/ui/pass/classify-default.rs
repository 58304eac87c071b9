//! `#[classify(default = …)]` covers the unmarked variants; marked variants,
//! delegates and `#[retry_after]` fields work alongside it.
use std::time::Duration;

use buttress::Classify;

#[derive(Debug, Classify)]
#[classify(default = permanent)]
enum MapsError {
    InvalidAddress,
    Forbidden {
        key_id: u32,
    },
    #[classify(rate_limited)]
    OverQuery(#[retry_after] Option<Duration>),
    #[classify(delegate)]
    Io(std::io::Error),
}

#[derive(Debug, Classify)]
#[classify(default = transient)]
enum AllDefault {
    A,
    B(u8),
}

fn main() {
    let _ = MapsError::InvalidAddress.class();
    let _ = AllDefault::B(1).class();
}
