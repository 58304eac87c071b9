use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(permanent)]
    Io(#[classify(delegate)] std::io::Error),
}

fn main() {}
