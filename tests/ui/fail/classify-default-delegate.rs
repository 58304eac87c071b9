use buttress::Classify;

#[derive(Debug, Classify)]
#[classify(default = delegate)]
enum PayError {
    Io(std::io::Error),
}

fn main() {}
