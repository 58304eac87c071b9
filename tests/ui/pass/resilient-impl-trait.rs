use buttress::resilient;

#[derive(Debug, buttress::Classify)]
pub enum ApiError {
    #[classify(transient)]
    Unavailable,
    #[classify(permanent)]
    Rejected(String),
    #[classify(delegate)]
    Resilience(buttress::Error),
}

impl From<buttress::Error> for ApiError {
    fn from(e: buttress::Error) -> Self {
        Self::Resilience(e)
    }
}

#[resilient(provider = "impl-trait")]
async fn total(items: impl IntoIterator<Item = u32> + Clone) -> Result<u32, ApiError> {
    Ok(items.clone().into_iter().sum())
}

#[resilient(provider = "impl-trait")]
async fn describe(n: u32) -> Result<impl std::fmt::Display, ApiError> {
    Ok(format!("n = {n}"))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(total(vec![1, 2, 3]).await.unwrap(), 6);
        assert_eq!(describe(3).await.unwrap().to_string(), "n = 3");
    });
}
