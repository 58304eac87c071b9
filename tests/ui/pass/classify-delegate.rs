//! `delegate` to `std::io::Error`, to `buttress::Error`, to a boxed error and
//! to another derived enum, through tuple and named fields.
use buttress::Classify;

#[derive(Debug, Classify)]
enum Inner {
    #[classify(transient)]
    Busy,
}

#[derive(Debug, Classify)]
enum Outer {
    #[classify(delegate)]
    Io(std::io::Error),
    #[classify(delegate)]
    Resilience { source: buttress::Error },
    #[classify(delegate)]
    Boxed(Box<Inner>),
    #[classify(delegate)]
    Borrowed(&'static Inner),
    #[classify(delegate)]
    Inner(Inner),
}

fn main() {
    let _ = Outer::Inner(Inner::Busy).class();
    let _ = Outer::Borrowed(&Inner::Busy).retry_after();
}
