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

#[resilient(rate_limit(per_second = 10, cost = 3))]
async fn call() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {}
