use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(transient)]
    #[classify(permanent)]
    Unavailable,
}

fn main() {}
