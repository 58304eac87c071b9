use buttress::Classify;

#[derive(Debug, Classify)]
#[classify(permanent)]
enum PayError {
    Declined,
}

fn main() {}
