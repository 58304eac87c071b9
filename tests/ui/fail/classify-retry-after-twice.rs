use std::time::Duration;

use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(rate_limited)]
    Throttled {
        #[retry_after]
        retry_after: Option<Duration>,
        #[retry_after]
        reset_in: Duration,
    },
}

fn main() {}
