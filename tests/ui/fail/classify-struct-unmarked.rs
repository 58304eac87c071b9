use buttress::Classify;

#[derive(Debug, Classify)]
struct Declined {
    reason: String,
}

fn main() {}
