use buttress::resilient;

#[derive(Debug, buttress::Classify)]
enum ApiError {
    #[classify(transient)]
    Unavailable,
}

#[resilient]
async fn call() -> Result<u32, ApiError> {
    Err(ApiError::Unavailable)
}

fn main() {}
