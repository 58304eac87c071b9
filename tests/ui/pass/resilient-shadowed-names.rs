//! The user's scope shadows `Result`, `Ok`, `Err`, `Option`, `Some`, `None`,
//! `Duration` and `loop`-adjacent names; generated code must not care.
#![allow(dead_code)]
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

type Result<T> = std::result::Result<T, ApiError>;
struct Option;
struct Some;
struct None;
struct Duration;
struct ControlFlow;
mod core {}

#[resilient(provider = "shadowed", timeout = "1s", retry(backoff = exponential("1ms", "2ms")))]
async fn fetch(id: u32) -> Result<u32> {
    std::result::Result::Ok(id)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(fetch(9).await.unwrap(), 9);
    });
}
