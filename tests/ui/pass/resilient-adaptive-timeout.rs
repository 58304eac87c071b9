//! The adaptive timeout's spellings; its default `max` (10 s) is bounded by
//! a shorter deadline instead of refused.
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

#[resilient(timeout = "500ms", deadline = "5s", adaptive_timeout)]
async fn bare() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(adaptive_timeout = off)]
async fn off() -> Result<u32, ApiError> {
    Ok(1)
}

#[resilient(timeout = "1s", deadline = "3s", adaptive_timeout(min = "100ms"))]
async fn with_min() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(bare().await.unwrap(), 1);
        assert_eq!(off().await.unwrap(), 1);
        assert_eq!(with_min().await.unwrap(), 1);
    });
}
