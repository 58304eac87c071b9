use std::fmt::Display;
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

#[resilient(provider = "generic")]
async fn render<T, U>(value: &T, suffix: U) -> Result<String, ApiError>
where
    T: Display + ?Sized,
    U: AsRef<str>,
{
    Ok(format!("{value}{}", suffix.as_ref()))
}

#[resilient(provider = "generic")]
async fn parse<T: std::str::FromStr + Send>(text: &str) -> Result<T, ApiError>
where
    T::Err: Display,
{
    text.parse::<T>().map_err(|e| ApiError::Rejected(e.to_string()))
}

struct Wrapper<T>(T);

impl<T: Clone + Send + Sync> Wrapper<T> {
    #[resilient(provider = "generic")]
    async fn get(&self) -> Result<T, ApiError> {
        Ok(self.0.clone())
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(render("a", "b").await.unwrap(), "ab");
        assert_eq!(parse::<u8>("42").await.unwrap(), 42);
        assert!(parse::<u8>("x").await.is_err());
        assert_eq!(Wrapper(5).get().await.unwrap(), 5);
    });
}
