use std::sync::LazyLock;
use std::time::Duration;
use buttress::{resilient, Policy, PolicyConfig, Registry};

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

static SHARED: LazyLock<Policy> = LazyLock::new(|| {
    Policy::builder("policy-expr").timeout(Duration::from_secs(1)).build().unwrap()
});

#[resilient(policy = &SHARED)]
async fn with_expr() -> Result<u8, ApiError> {
    Ok(1)
}

struct Client {
    policy: Policy,
}

impl Client {
    #[resilient(policy = &self.policy)]
    async fn with_field(&self) -> Result<u8, ApiError> {
        Ok(2)
    }
}

#[resilient(policy = "payments-default", provider = "policy-named", timeout = "3s")]
async fn with_name() -> Result<u8, ApiError> {
    Ok(3)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        Registry::global()
            .define_policy("payments-default", PolicyConfig::new("policy-named"))
            .unwrap();
        assert_eq!(with_expr().await.unwrap(), 1);
        let client = Client { policy: Policy::builder("policy-field").build().unwrap() };
        assert_eq!(client.with_field().await.unwrap(), 2);
        assert_eq!(with_name().await.unwrap(), 3);
    });
}
