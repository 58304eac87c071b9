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

pub struct Client {
    http: std::sync::Arc<str>,
}

impl Client {
    #[resilient(provider = "send")]
    pub async fn get(&self, path: &str) -> Result<String, ApiError> {
        tokio::task::yield_now().await;
        Ok(format!("{}{path}", self.http))
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = std::sync::Arc::new(Client { http: "https://api.example".into() });
        let handle = tokio::spawn(async move { client.get("/v1").await });
        assert_eq!(handle.await.unwrap().unwrap(), "https://api.example/v1");
    });
}
