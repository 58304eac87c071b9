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

fn consume(_: String) {}

#[resilient]
async fn send(message: String) -> Result<u32, ApiError> {
    consume(message);
    Ok(1)
}

fn main() {}
