use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(rate_limited)]
    #[retry_after]
    Throttled(std::time::Duration),
}

fn main() {}
