//! Shared test fixtures: a provider error type and helpers.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress::retry::{Backoff, Jitter, RetryConfig};
use buttress::{Classify, Error, ErrorClass, Registry};
use tokio::time::Instant;

/// What a fake provider answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderError {
    Unavailable,
    Throttled(Option<Duration>),
    Lost,
    Declined,
    Buttress(String, ErrorClass),
}

impl Classify for ProviderError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable => ErrorClass::Transient,
            Self::Throttled(_) => ErrorClass::RateLimited,
            Self::Lost => ErrorClass::OutcomeUnknown,
            Self::Declined => ErrorClass::Permanent,
            Self::Buttress(_, class) => *class,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled(after) => *after,
            _ => None,
        }
    }
}

impl From<Error> for ProviderError {
    fn from(e: Error) -> Self {
        let class = e.class();
        Self::Buttress(e.reason().to_owned(), class)
    }
}

impl ProviderError {
    /// The buttress reason (`timeout`, `deadline`, ...) if this came from buttress.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Buttress(reason, _) => Some(reason),
            _ => None,
        }
    }
}

/// A fresh private registry, leaked so policies can borrow it for 'static.
pub fn registry() -> &'static Registry {
    Box::leak(Box::new(Registry::new()))
}

/// Counts provider calls and remembers when each started.
#[derive(Clone, Default)]
pub struct Provider {
    calls: Arc<AtomicU32>,
    starts: Arc<Mutex<Vec<Instant>>>,
}

impl Provider {
    pub fn hit(&self) -> u32 {
        self.starts.lock().unwrap().push(Instant::now());
        self.calls.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
    /// Start times relative to `origin`, in whole milliseconds.
    pub fn starts_ms(&self, origin: Instant) -> Vec<u128> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.duration_since(origin).as_millis())
            .collect()
    }
    /// Gaps between consecutive starts.
    pub fn gaps(&self) -> Vec<Duration> {
        let starts = self.starts.lock().unwrap();
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A `tracing` writer that keeps everything written to it on the thread
/// that installed it.
///
/// One global subscriber (installed once per test binary) writes into the
/// capture of the current thread, if any. A global subscriber, unlike
/// per-thread ones, cannot lose events to another test thread caching a
/// callsite as uninteresting.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static SINK: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

struct ThreadSink;

impl std::io::Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        SINK.with(|sink| {
            if let Some(captured) = &*sink.borrow() {
                captured.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing on drop.
pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        SINK.with(|sink| *sink.borrow_mut() = None);
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    /// Capture this thread's events (debug level and up) until the guard drops.
    pub fn install(&self) -> CaptureGuard {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(|| ThreadSink)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in tests");
        });
        SINK.with(|sink| *sink.borrow_mut() = Some(self.clone()));
        CaptureGuard
    }
}

/// `attempts` attempts a fixed `delay` apart: no jitter, no budget, so the
/// paused clock's instants are exact.
pub fn constant_retry(attempts: u32, delay: Duration) -> RetryConfig {
    RetryConfig::new()
        .with_max_attempts(attempts)
        .with_backoff(Backoff::constant(delay))
        .with_jitter(Jitter::None)
        .with_budget(None)
}
