//! An empty enum derives `Classify` (an error type that cannot happen).
use buttress::Classify;

#[derive(Debug, Classify)]
enum Never {}

#[derive(Debug, Classify)]
#[classify(default = permanent)]
enum NeverWithDefault {}

fn classifies<E: Classify>() {}

fn main() {
    classifies::<Never>();
    classifies::<NeverWithDefault>();
}
