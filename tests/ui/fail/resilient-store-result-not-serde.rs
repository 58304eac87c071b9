use buttress::resilient;

#[derive(Debug, buttress::Classify)]
enum ApiError {
    #[classify(transient)]
    Unavailable,
    #[classify(delegate)]
    Resilience(buttress::Error),
}

impl From<buttress::Error> for ApiError {
    fn from(e: buttress::Error) -> Self {
        Self::Resilience(e)
    }
}

/// Not `Serialize`/`Deserialize`: cannot be kept in a store.
#[derive(Debug)]
pub struct Receipt {
    pub id: u64,
}

struct Client {
    dedup: buttress::idempotency::MemoryStore,
}

impl Client {
    #[resilient(idempotent(key = "charge-1", store = &self.dedup))]
    async fn charge(&self) -> Result<Receipt, ApiError> {
        Ok(Receipt { id: 1 })
    }
}

fn main() {}
