use std::time::Duration;

use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(rate_limited)]
    Throttled(#[retry_after(seconds)] Duration),
    #[classify(rate_limited)]
    Quota {
        #[retry_after = "1s"]
        reset_in: Duration,
    },
}

fn main() {}
