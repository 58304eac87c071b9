// One build reports every mistake, and the type still implements
// `Classify`, so its uses add no follow-on errors.
use buttress::{Classify, ErrorClass};

#[derive(Debug, Classify)]
enum PayError {
    Unmarked,
    #[classify(transiant)]
    Misspelled,
    #[classify(delegate)]
    NoField,
}

fn main() {
    assert_eq!(PayError::Unmarked.class(), ErrorClass::Permanent);
}
