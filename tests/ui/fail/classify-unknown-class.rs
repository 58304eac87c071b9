use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(transiant)]
    Unavailable,
    #[classify(RateLimited)]
    Throttled,
}

fn main() {}
