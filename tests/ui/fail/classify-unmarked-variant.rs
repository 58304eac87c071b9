use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(transient)]
    Unavailable,
    Declined,
}

fn main() {}
