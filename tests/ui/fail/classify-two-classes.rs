use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(transient, permanent)]
    Unavailable,
}

fn main() {}
