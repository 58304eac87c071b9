use buttress::resilient;

#[derive(Debug, thiserror::Error, buttress::Classify)]
enum ApiError {
    #[error("unavailable")]
    #[classify(transient)]
    Unavailable,
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

#[resilient(dlq(on = exhausted))]
async fn charge(cents: u64) -> Result<u64, ApiError> {
    Ok(cents)
}

#[resilient(dlq(sink = buttress::dlq::MemorySink::new(), on = sometimes))]
async fn refund(cents: u64) -> Result<u64, ApiError> {
    Ok(cents)
}

#[resilient(dlq)]
async fn capture(cents: u64) -> Result<u64, ApiError> {
    Ok(cents)
}

fn main() {}
