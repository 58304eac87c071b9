use buttress::Classify;

#[derive(Debug, Classify)]
#[classify(default = permanent)]
#[classify(default = transient)]
enum PayError {
    Declined,
}

fn main() {}
