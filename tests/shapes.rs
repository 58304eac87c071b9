//! Generated shapes under the strictest lints: `#[resilient]` output must
//! not trip a single warning in the user's crate (clippy checks this target
//! with `-D warnings` in CI).
#![deny(warnings, clippy::all, clippy::pedantic)]
#![allow(clippy::unused_async)] // the shapes' bodies are trivial on purpose

use std::fmt::Display;

use async_trait::async_trait;
use buttress::{resilient, Classify};

#[derive(Debug, Classify)]
enum ShapeError {
    #[classify(transient)]
    Unavailable,
    #[classify(delegate)]
    Resilience(buttress::Error),
}

impl From<buttress::Error> for ShapeError {
    fn from(e: buttress::Error) -> Self {
        Self::Resilience(e)
    }
}

type ShapeResult<T> = Result<T, ShapeError>;

#[resilient()]
async fn free_0(n: u32) -> Result<u32, ShapeError> {
    Ok(n)
}

#[resilient(provider = "shapes")]
async fn free_1(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 1)
}

#[resilient(timeout = "1s")]
async fn free_2(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 2)
}

#[resilient(deadline = "40s")]
async fn free_3(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 3)
}

#[resilient(timeout = "250ms", deadline = "1s")]
async fn free_4(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 4)
}

#[resilient(retry = off)]
async fn free_5(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 5)
}

#[resilient(retry(max_attempts = 5))]
async fn free_6(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 6)
}

#[resilient(retry(backoff = constant("0s"), jitter = none))]
async fn free_7(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 7)
}

#[resilient(retry(backoff = exponential("1ms", "4ms"), jitter = equal, budget = off))]
async fn free_8(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 8)
}

#[resilient(retry(backoff = decorrelated(base = "1ms", max = "8ms"), budget = ratio(0.5)))]
async fn free_9(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 9)
}

#[resilient(breaker = off)]
async fn free_10(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 10)
}

#[resilient(breaker(failure_rate = 0.25, window = 8, min_calls = 4))]
async fn free_11(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 11)
}

#[resilient(breaker(window = "10s", consecutive_failures = 3))]
async fn free_12(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 12)
}

#[resilient(breaker(slow_rate = 0.5, slow_call = "100ms"))]
async fn free_13(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 13)
}

#[resilient(bulkhead(max_concurrent = 4))]
async fn free_14(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 14)
}

#[resilient(bulkhead(max_concurrent = 2, max_wait = "10ms"))]
async fn free_15(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 15)
}

#[resilient(rate_limit(per_second = 1000, burst = 100))]
async fn free_16(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 16)
}

#[resilient(idempotent)]
async fn free_17(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 17)
}

#[resilient(idempotent(key = 42))]
async fn free_18(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 18)
}

#[resilient(
    provider = "shapes-all",
    timeout = "1s",
    deadline = "5s",
    retry(max_attempts = 2),
    breaker(min_calls = 5, window = 10),
    bulkhead(max_concurrent = 8),
    rate_limit(per_second = 500, burst = 50),
    idempotent
)]
async fn free_19(n: u32) -> Result<u32, ShapeError> {
    Ok(n + 19)
}

struct Client {
    count: u32,
    name: String,
}

impl Client {
    #[resilient(provider = "shapes-client")]
    async fn by_ref(&self, suffix: &str) -> ShapeResult<String> {
        Ok(format!("{}{suffix}", self.name))
    }

    #[resilient(provider = "shapes-client", retry(backoff = constant("0s")))]
    async fn by_mut(&mut self) -> ShapeResult<u32> {
        self.count += 1;
        if self.count < 2 {
            return Err(ShapeError::Unavailable);
        }
        Ok(self.count)
    }

    #[resilient(provider = "shapes-client")]
    async fn by_value(self) -> ShapeResult<usize> {
        Ok(self.name.len())
    }

    #[resilient(provider = "shapes-client")]
    async fn owned_args(&self, text: String, bytes: Vec<u8>) -> ShapeResult<usize> {
        Ok(text.len() + bytes.len() + self.name.len())
    }

    #[resilient(provider = "shapes-client")]
    async fn generic<T: Display + Sync>(&self, value: &T) -> ShapeResult<String> {
        Ok(format!("{}={value}", self.name))
    }

    #[resilient(provider = "shapes-client")]
    async fn where_clause<T>(&self, value: T) -> ShapeResult<String>
    where
        T: Display + Clone + Send,
    {
        Ok(value.clone().to_string())
    }

    #[resilient(provider = "shapes-client")]
    async fn impl_arg(
        &self,
        items: impl IntoIterator<Item = u32> + Clone + Send,
    ) -> ShapeResult<u32> {
        Ok(items.clone().into_iter().sum())
    }

    #[resilient(provider = "shapes-client")]
    async fn impl_return(&self) -> ShapeResult<impl Display> {
        Ok(self.count)
    }

    #[resilient(provider = "shapes-client", idempotent(key = format!("{}-{}", self.name, id)))]
    async fn keyed(&self, id: u32) -> ShapeResult<String> {
        Ok(buttress::idempotency_key()
            .map(|k| k.to_string())
            .unwrap_or_default())
    }

    #[resilient(provider = "shapes-client", fallback = Self::recover)]
    async fn with_fallback(&self, n: u32) -> ShapeResult<u32> {
        if n == 0 {
            return Err(ShapeError::Unavailable);
        }
        Ok(n)
    }

    async fn recover(&self, n: u32, error: ShapeError) -> ShapeResult<u32> {
        let _ = (n, self.count);
        match error {
            ShapeError::Unavailable => Ok(100),
            other @ ShapeError::Resilience(_) => Err(other),
        }
    }

    #[resilient(provider = "shapes-client")]
    async fn context(&self) -> ShapeResult<(u32, bool)> {
        Ok((buttress::attempt(), buttress::remaining().is_some()))
    }
}

trait Native {
    async fn native(&self, n: u32) -> ShapeResult<u32>;
    #[resilient(provider = "shapes-trait")]
    async fn native_default(&self) -> ShapeResult<u32> {
        Ok(7)
    }
}

impl Native for Client {
    #[resilient(provider = "shapes-trait")]
    async fn native(&self, n: u32) -> ShapeResult<u32> {
        Ok(n * self.count)
    }
}

#[async_trait]
trait Boxed {
    async fn boxed(&self, n: u32) -> ShapeResult<u32>;
    async fn boxed_mut(&mut self) -> ShapeResult<u32>;
    #[resilient(provider = "shapes-async-trait")]
    async fn boxed_default(&self) -> ShapeResult<u32> {
        Ok(8)
    }
}

#[async_trait]
impl Boxed for Client {
    #[resilient(provider = "shapes-async-trait", timeout = "1s")]
    async fn boxed(&self, n: u32) -> ShapeResult<u32> {
        Ok(n + self.count)
    }

    #[resilient(provider = "shapes-async-trait", retry = off)]
    async fn boxed_mut(&mut self) -> ShapeResult<u32> {
        self.count += 10;
        Ok(self.count)
    }
}

struct Generic<T>(T);

impl<T: Clone + Send + Sync + Display> Generic<T> {
    #[resilient(provider = "shapes-generic")]
    async fn get(&self) -> ShapeResult<T> {
        Ok(self.0.clone())
    }

    #[resilient(provider = "shapes-generic", retry = off)]
    async fn show(&self, prefix: &str) -> Result<String, ShapeError> {
        Ok(format!("{prefix}{}", self.0))
    }
}

#[resilient(provider = "shapes-lifetimes")]
async fn lifetimes<'a, 'b: 'a>(a: &'a str, b: &'b str) -> ShapeResult<&'a str> {
    Ok(if a.len() >= b.len() { a } else { b })
}

#[resilient(provider = "shapes-question-mark")]
async fn question_mark(text: &str) -> ShapeResult<u32> {
    let n: u32 = text.parse().map_err(|_| ShapeError::Unavailable)?;
    Ok(n)
}

#[resilient(provider = "shapes-buttress-error")]
async fn buttress_error() -> Result<u8, buttress::Error> {
    Ok(1)
}

#[resilient(provider = "shapes-io-error")]
async fn io_like() -> Result<u8, ShapeError> {
    let error = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let _ = error.class();
    Ok(2)
}

#[resilient(retry(max_attempts = 1))]
async fn extra_100(n: u32) -> Result<u32, ShapeError> {
    Ok(n * 2)
}

#[resilient(breaker(open_for = "1m30s", half_open_probes = 1))]
async fn extra_101(n: u32) -> Result<u32, ShapeError> {
    Ok(n * 2)
}

#[resilient(bulkhead(max_wait = "1ms"))]
async fn extra_102(n: u32) -> Result<u32, ShapeError> {
    Ok(n * 2)
}

#[resilient(rate_limit(burst = 5))]
async fn extra_103(n: u32) -> Result<u32, ShapeError> {
    Ok(n * 2)
}

#[resilient(deadline = "1h")]
async fn extra_104(n: u32) -> Result<u32, ShapeError> {
    Ok(n * 2)
}

#[resilient(timeout = "1500ms")]
async fn extra_105(n: u32) -> Result<u32, ShapeError> {
    Ok(n * 2)
}

#[resilient(retry(jitter = full, budget = ratio(ratio = 0.3, cap = 20)))]
async fn extra_106(n: u32) -> Result<u32, ShapeError> {
    Ok(n * 2)
}

#[resilient(idempotent(key = "static-key"))]
async fn extra_107(n: u32) -> Result<u32, ShapeError> {
    Ok(n * 2)
}

#[tokio::test]
async fn every_shape_runs() {
    assert_eq!(extra_100(2).await.unwrap(), 4);
    assert_eq!(extra_101(2).await.unwrap(), 4);
    assert_eq!(extra_102(2).await.unwrap(), 4);
    assert_eq!(extra_103(2).await.unwrap(), 4);
    assert_eq!(extra_104(2).await.unwrap(), 4);
    assert_eq!(extra_105(2).await.unwrap(), 4);
    assert_eq!(extra_106(2).await.unwrap(), 4);
    assert_eq!(extra_107(2).await.unwrap(), 4);
    assert_eq!(free_0(1).await.unwrap(), 1);
    assert_eq!(free_1(1).await.unwrap(), 2);
    assert_eq!(free_2(1).await.unwrap(), 3);
    assert_eq!(free_3(1).await.unwrap(), 4);
    assert_eq!(free_4(1).await.unwrap(), 5);
    assert_eq!(free_5(1).await.unwrap(), 6);
    assert_eq!(free_6(1).await.unwrap(), 7);
    assert_eq!(free_7(1).await.unwrap(), 8);
    assert_eq!(free_8(1).await.unwrap(), 9);
    assert_eq!(free_9(1).await.unwrap(), 10);
    assert_eq!(free_10(1).await.unwrap(), 11);
    assert_eq!(free_11(1).await.unwrap(), 12);
    assert_eq!(free_12(1).await.unwrap(), 13);
    assert_eq!(free_13(1).await.unwrap(), 14);
    assert_eq!(free_14(1).await.unwrap(), 15);
    assert_eq!(free_15(1).await.unwrap(), 16);
    assert_eq!(free_16(1).await.unwrap(), 17);
    assert_eq!(free_17(1).await.unwrap(), 18);
    assert_eq!(free_18(1).await.unwrap(), 19);
    assert_eq!(free_19(1).await.unwrap(), 20);
    let mut client = Client {
        count: 0,
        name: "c".to_owned(),
    };
    assert_eq!(client.by_ref("!").await.unwrap(), "c!");
    assert_eq!(client.by_mut().await.unwrap(), 2);
    assert_eq!(
        client.owned_args("ab".to_owned(), vec![1]).await.unwrap(),
        4
    );
    assert_eq!(client.generic(&5).await.unwrap(), "c=5");
    assert_eq!(client.where_clause(6).await.unwrap(), "6");
    assert_eq!(client.impl_arg(vec![1, 2]).await.unwrap(), 3);
    assert_eq!(client.impl_return().await.unwrap().to_string(), "2");
    assert_eq!(client.keyed(3).await.unwrap(), "c-3");
    assert_eq!(client.with_fallback(0).await.unwrap(), 100);
    assert_eq!(client.with_fallback(4).await.unwrap(), 4);
    assert_eq!(client.context().await.unwrap(), (1, true));
    assert_eq!(client.native(3).await.unwrap(), 6);
    assert_eq!(client.native_default().await.unwrap(), 7);
    assert_eq!(client.boxed(1).await.unwrap(), 3);
    assert_eq!(client.boxed_mut().await.unwrap(), 12);
    assert_eq!(client.boxed_default().await.unwrap(), 8);
    assert_eq!(client.by_value().await.unwrap(), 1);
    assert_eq!(Generic(9).get().await.unwrap(), 9);
    assert_eq!(Generic("x").show(">").await.unwrap(), ">x");
    assert_eq!(lifetimes("ab", "c").await.unwrap(), "ab");
    assert_eq!(question_mark("12").await.unwrap(), 12);
    assert!(question_mark("x").await.is_err());
    assert_eq!(buttress_error().await.unwrap(), 1);
    assert_eq!(io_like().await.unwrap(), 2);
}
