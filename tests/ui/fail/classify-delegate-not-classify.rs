use buttress::Classify;

#[derive(Debug)]
struct Unclassified;

#[derive(Debug, Classify)]
enum PayError {
    #[classify(delegate)]
    Inner(Unclassified),
}

fn main() {}

#[derive(Debug, Classify)]
#[classify(delegate)]
struct Wrapper {
    inner: Unclassified,
}
