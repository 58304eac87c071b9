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

#[resilient(adaptive_timeout(percentile = 1.5, multiplier = 0.5))]
async fn out_of_range() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(adaptive_timeout(min = "0ms"))]
async fn zero_min() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(adaptive_timeout(min = "2s", max = "1s"))]
async fn max_below_min() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(timeout = "1s", deadline = "5s", adaptive_timeout(max = "8s"))]
async fn max_beyond_deadline() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(adaptive_timeout(p99 = "1s"))]
async fn unknown_key() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(adaptive_timeout = "on")]
async fn not_a_switch() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {}
