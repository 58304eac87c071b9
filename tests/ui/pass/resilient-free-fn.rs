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

#[resilient]
pub async fn ping() -> Result<&'static str, ApiError> {
    Ok("pong")
}

#[resilient(provider = "maps", timeout = "500ms", deadline = "2s")]
async fn geocode(address: &str) -> Result<(f64, f64), ApiError> {
    if address.is_empty() {
        return Err(ApiError::Rejected("empty address".into()));
    }
    Ok((52.5, 13.4))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(ping().await.unwrap(), "pong");
        assert_eq!(geocode("Berlin").await.unwrap(), (52.5, 13.4));
        assert!(geocode("").await.is_err());
    });
}
