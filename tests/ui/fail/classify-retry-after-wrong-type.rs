use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(rate_limited)]
    Throttled {
        #[retry_after]
        retry_after_secs: u64,
    },
}

fn main() {}

#[derive(Debug, Classify)]
#[classify(rate_limited)]
struct TooManyRequests(#[retry_after] Option<u64>);
