use buttress::Classify;

#[derive(Debug, Classify)]
enum PayError {
    #[classify]
    Bare,
    #[classify()]
    Empty,
    #[classify(transient permanent)]
    MissingComma,
    #[classify(transient = true)]
    WithValue,
}

#[derive(Debug, Classify)]
#[classify(defualt = permanent)]
enum Misspelled {
    A,
}

fn main() {}
