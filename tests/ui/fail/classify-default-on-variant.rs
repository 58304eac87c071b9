use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(default = permanent)]
    Declined,
}

fn main() {}
