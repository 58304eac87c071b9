use async_trait::async_trait;
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

#[async_trait]
pub trait Payments {
    async fn charge(&self, cents: u64) -> Result<String, ApiError>;
    async fn refund(&mut self, id: &str) -> Result<bool, ApiError>;

    /// A default method: `#[resilient]` inside an `#[async_trait]` trait.
    #[resilient(provider = "payments")]
    async fn ping(&self) -> Result<&'static str, ApiError> {
        Ok("pong")
    }
}

pub struct Stripe {
    refunds: u32,
}

#[async_trait]
impl Payments for Stripe {
    #[resilient(provider = "payments", retry(max_attempts = 2, backoff = constant("0s")))]
    async fn charge(&self, cents: u64) -> Result<String, ApiError> {
        Ok(format!("ch_{cents}"))
    }

    #[doc = "attributes on either side of #[resilient] are kept"]
    #[resilient(provider = "payments")]
    #[allow(clippy::needless_pass_by_ref_mut)]
    async fn refund(&mut self, id: &str) -> Result<bool, ApiError> {
        self.refunds += 1;
        Ok(!id.is_empty())
    }
}

/// The full path of the attribute, and `#[resilient]` written first.
pub struct Adyen;

#[async_trait::async_trait]
impl Payments for Adyen {
    #[resilient(provider = "payments-adyen")]
    async fn charge(&self, cents: u64) -> Result<String, ApiError> {
        Ok(format!("psp_{cents}"))
    }

    async fn refund(&mut self, _id: &str) -> Result<bool, ApiError> {
        Ok(true)
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut stripe = Stripe { refunds: 0 };
        assert_eq!(assert_send(stripe.charge(5)).await.unwrap(), "ch_5");
        assert!(stripe.refund("ch_5").await.unwrap());
        assert_eq!(stripe.refunds, 1);
        assert_eq!(stripe.ping().await.unwrap(), "pong");
        assert_eq!(Adyen.charge(6).await.unwrap(), "psp_6");
    });
}
