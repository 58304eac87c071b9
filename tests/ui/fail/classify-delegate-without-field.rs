use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(delegate)]
    Unavailable,
}

fn main() {}
