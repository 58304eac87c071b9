use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(delegate)]
    Resilience(#[retry_after] buttress::Error),
}

fn main() {}
