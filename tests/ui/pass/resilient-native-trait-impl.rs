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

#[allow(async_fn_in_trait)]
pub trait Voice {
    fn place_call(&self, to: &str) -> impl std::future::Future<Output = Result<String, ApiError>> + Send;
    async fn status(&self, id: &str) -> Result<&'static str, ApiError>;
    #[resilient(provider = "voice")]
    async fn hang_up(&self, id: &str) -> Result<bool, ApiError> {
        Ok(!id.is_empty())
    }
}

struct Twilio;

impl Voice for Twilio {
    #[resilient(provider = "voice", timeout = "2s")]
    async fn place_call(&self, to: &str) -> Result<String, ApiError> {
        Ok(format!("call to {to}"))
    }

    #[resilient(provider = "voice")]
    async fn status(&self, id: &str) -> Result<&'static str, ApiError> {
        let _ = id;
        Ok("ringing")
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(Twilio.place_call("+1").await.unwrap(), "call to +1");
        assert_eq!(Twilio.status("c1").await.unwrap(), "ringing");
        assert!(Twilio.hang_up("c1").await.unwrap());
    });
}
