//! The struct form: a class (with an optional `#[retry_after]` field), or
//! `delegate` to the single field.
use std::time::Duration;

use buttress::Classify;

#[derive(Debug, Classify)]
#[classify(rate_limited)]
struct TooManyRequests {
    #[retry_after]
    retry_after: Option<Duration>,
    body: String,
}

#[derive(Debug, Classify)]
#[classify(transient)]
struct Unavailable;

#[derive(Debug, Classify)]
#[classify(outcome_unknown)]
struct Reset(u64);

#[derive(Debug, Classify)]
#[classify(delegate)]
struct Transport(std::io::Error);

#[derive(Debug, Classify)]
#[classify(delegate)]
struct Named {
    inner: TooManyRequests,
}

fn main() {
    let _ = Unavailable.class();
    let _ = Reset(1).class();
    let _ = Transport(std::io::Error::other("x")).retry_after();
}
