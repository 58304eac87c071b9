//! Unit, tuple and named variants side by side; `#[retry_after]` on a tuple
//! field and on a named field, as `Duration` and as `Option<Duration>`.
use std::time::Duration;

use buttress::Classify;

#[derive(Debug, Classify)]
enum SmsError {
    #[classify(transient)]
    Busy,
    #[classify(rate_limited)]
    Throttled(String, #[retry_after] Duration),
    #[classify(rate_limited)]
    Quota {
        limit: u32,
        #[retry_after]
        resets_in: Option<Duration>,
    },
    #[classify(outcome_unknown)]
    Lost(u64),
    #[classify(permanent)]
    BadNumber { number: String },
    #[classify(permanent)]
    Suspended(#[retry_after] Option<Duration>),
}

fn main() {
    let _ = SmsError::Throttled(String::new(), Duration::ZERO).retry_after();
}
