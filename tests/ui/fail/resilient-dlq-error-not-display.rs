use buttress::resilient;

#[derive(Debug, buttress::Classify)]
enum ApiError {
    #[classify(transient)]
    Unavailable,
    #[classify(delegate)]
    Resilience(buttress::Error),
}

impl From<buttress::Error> for ApiError {
    fn from(e: buttress::Error) -> Self {
        Self::Resilience(e)
    }
}

static SINK: std::sync::LazyLock<buttress::dlq::MemorySink> =
    std::sync::LazyLock::new(buttress::dlq::MemorySink::new);

#[resilient(dlq = &*SINK)]
async fn charge(cents: u64) -> Result<u64, ApiError> {
    Ok(cents)
}

fn main() {}
