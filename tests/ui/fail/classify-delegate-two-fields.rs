use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(delegate)]
    Io(String, std::io::Error),
}

fn main() {}
