//! A provider that counts its side effects: a real HTTP server on
//! 127.0.0.1, so processes other than the test's can call it too.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

#[derive(Clone, Default)]
struct Effects {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    delay: Arc<Mutex<Duration>>,
}

/// The server: `POST /effect/{operation}` performs one side effect (counted
/// per operation), waits the configured delay, and answers
/// `{"operation": …, "effect": n}`; `GET /count/{operation}` answers the count.
pub struct EffectsServer {
    pub url: String,
    effects: Effects,
    task: tokio::task::JoinHandle<()>,
}

async fn effect(
    State(effects): State<Effects>,
    Path(operation): Path<String>,
) -> Json<serde_json::Value> {
    let n = {
        let mut counts = effects.counts.lock().unwrap();
        let n = counts.entry(operation.clone()).or_default();
        *n += 1;
        *n
    };
    let delay = *effects.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    Json(serde_json::json!({ "operation": operation, "effect": n }))
}

async fn count(State(effects): State<Effects>, Path(operation): Path<String>) -> Json<u32> {
    Json(
        effects
            .counts
            .lock()
            .unwrap()
            .get(&operation)
            .copied()
            .unwrap_or(0),
    )
}

impl EffectsServer {
    /// Start on an ephemeral port of 127.0.0.1.
    pub async fn start(delay: Duration) -> Self {
        let effects = Effects::default();
        *effects.delay.lock().unwrap() = delay;
        let app = Router::new()
            .route("/effect/{operation}", post(effect))
            .route("/count/{operation}", get(count))
            .with_state(effects.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, effects, task }
    }

    /// Side effects performed for `operation` so far.
    pub fn count(&self, operation: &str) -> u32 {
        self.effects
            .counts
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for EffectsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Call the provider: one side effect for `operation`.
pub async fn perform(
    client: &reqwest::Client,
    url: &str,
    operation: &str,
) -> Result<serde_json::Value, reqwest::Error> {
    client
        .post(format!("{url}/effect/{operation}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}
