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
    sent: Vec<String>,
    base: String,
}

impl Client {
    #[resilient(provider = "sms")]
    pub async fn status(&self, id: u32) -> Result<String, ApiError> {
        Ok(format!("{}/{id}", self.base))
    }

    /// `&mut self`: the body borrows mutably on each attempt.
    #[resilient(provider = "sms", retry(max_attempts = 3, backoff = constant("0s")))]
    pub async fn send(&mut self, to: &str, text: &str) -> Result<usize, ApiError> {
        self.sent.push(format!("{to}: {text}"));
        if self.sent.len() < 2 {
            return Err(ApiError::Unavailable);
        }
        Ok(self.sent.len())
    }

    /// By-value arguments, used by reference (cloned where needed).
    #[resilient(provider = "sms")]
    pub async fn send_owned(&mut self, to: String, tags: Vec<u8>) -> Result<usize, ApiError> {
        self.sent.push(to.clone());
        Ok(tags.len())
    }

    /// `self` by value, used by reference.
    #[resilient(provider = "sms")]
    pub async fn into_count(self) -> Result<usize, ApiError> {
        Ok(self.sent.len())
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = Client { sent: Vec::new(), base: "https://sms.example".into() };
        assert_eq!(client.status(7).await.unwrap(), "https://sms.example/7");
        assert_eq!(client.send("+1", "hi").await.unwrap(), 2);
        assert_eq!(client.send_owned("+2".into(), vec![1, 2]).await.unwrap(), 2);
        assert_eq!(client.into_count().await.unwrap(), 3);
    });
}
