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

/// Not `Serialize`: cannot be kept in a dead letter.
pub struct Order {
    pub id: u64,
}

static SINK: std::sync::LazyLock<buttress::dlq::MemorySink> =
    std::sync::LazyLock::new(buttress::dlq::MemorySink::new);

#[resilient(dlq = &*SINK)]
async fn charge(order: &Order, cents: u64) -> Result<u64, ApiError> {
    let _ = cents;
    Ok(order.id)
}

fn main() {}
