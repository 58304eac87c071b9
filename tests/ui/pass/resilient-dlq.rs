//! `dlq` in its forms, on free functions and methods, with `&mut self`,
//! generics, a fallback and a policy expression, under deny(warnings).
#![deny(warnings, clippy::pedantic)]

use std::sync::Arc;

use buttress::dlq::{FileSink, MemorySink};
use buttress::resilient;

#[derive(Debug, thiserror::Error, buttress::Classify)]
pub enum ApiError {
    #[error("unavailable")]
    #[classify(transient)]
    Unavailable,
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

#[derive(serde::Serialize)]
pub struct Order {
    pub id: u64,
}

static SINK: std::sync::LazyLock<MemorySink> = std::sync::LazyLock::new(MemorySink::new);

#[resilient(provider = "ui-dlq", dlq = &*SINK)]
pub async fn free(order: &Order, r#type: String) -> Result<u64, ApiError> {
    let _ = r#type;
    Ok(order.id)
}

#[resilient(dlq(sink = &*SINK, on = permanent))]
pub async fn generic<T: serde::Serialize + Send + Sync>(value: T) -> Result<(), ApiError> {
    let _ = &value;
    Ok(())
}

pub struct Client {
    file: Arc<FileSink>,
    sent: u32,
}

impl Client {
    #[resilient(idempotent(key = order.id), dlq(sink = self.file.clone(), on = any))]
    pub async fn send(&mut self, order: &Order) -> Result<u32, ApiError> {
        self.sent += 1;
        let _ = order;
        Ok(self.sent)
    }

    #[resilient(dlq = &*SINK, fallback = Self::cached)]
    pub async fn quote(&self, id: u64) -> Result<u64, ApiError> {
        let _ = self.sent;
        Ok(id)
    }

    async fn cached(&self, id: u64, _error: ApiError) -> Result<u64, ApiError> {
        let _ = self.sent;
        Ok(id)
    }
}

fn assert_send<F: std::future::Future + Send>(_: F) {}

fn main() {
    assert_send(free(&Order { id: 1 }, String::new()));
    let _ = Client {
        file: Arc::new(FileSink::open_blocking(std::path::Path::new("/dev/null")).unwrap()),
        sent: 0,
    };
}
