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

#[resilient(hedge)]
async fn not_idempotent() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(idempotent, hedge(after = "100ms"))]
async fn with_arguments() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(idempotent, hedge = true)]
async fn with_a_value() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {}
