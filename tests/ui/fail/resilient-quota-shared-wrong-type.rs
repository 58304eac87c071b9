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

struct Client {
    quota: u32,
}

impl Client {
    #[resilient(rate_limit(shared = self.quota))]
    async fn call(&self) -> Result<u32, ApiError> {
        Ok(1)
    }
}

fn main() {}
