//! Webhooks over real HTTP: an axum server on 127.0.0.1:0 with the
//! `Webhook` extractor, posted to with reqwest, deduplicating in the memory
//! store, Redis and PostgreSQL (the latter two skipped when absent unless
//! `BUTTRESS_REQUIRE_SERVICES=1`).
//!
//! For each store: a valid delivery runs the handler; a tampered one is
//! 401 and runs nothing; a replay is 200 and runs nothing; ten concurrent
//! duplicates run the handler once (the others get 409 while it runs); a
//! failing handler is 500, reaches the failure hook, and its redelivery
//! runs the handler again.

#[path = "common/services.rs"]
mod services;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use buttress::idempotency::{MemoryStore, PostgresStore, RedisStore};
use buttress::webhook::axum::{HandlerFailed, Webhook};
use buttress::webhook::{StandardWebhooks, Stripe, WebhookReceiver};
use buttress::IdempotencyStore;
use tokio::sync::Semaphore;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, serde::Deserialize)]
struct Payment {
    amount: u64,
    #[serde(default)]
    fail_first: bool,
    #[serde(default)]
    hold: bool,
}

/// Failed deliveries seen by the hook: id, raw body, error.
type Failures = Arc<Mutex<Vec<(String, Vec<u8>, String)>>>;

#[derive(Clone)]
struct App {
    receiver: WebhookReceiver,
    /// Handler runs per event id.
    runs: Arc<Mutex<HashMap<String, u32>>>,
    /// A `hold` event's handler waits for a permit here.
    gate: Arc<Semaphore>,
    /// Tells the test a `hold` handler started.
    entered: Arc<Semaphore>,
    failures: Failures,
}

impl FromRef<App> for WebhookReceiver {
    fn from_ref(app: &App) -> Self {
        app.receiver.clone()
    }
}

async fn on_payment(
    State(app): State<App>,
    hook: Webhook<Payment>,
) -> Result<StatusCode, HandlerFailed> {
    let run = {
        let mut runs = app.runs.lock().unwrap();
        let run = runs.entry(hook.id().to_owned()).or_default();
        *run += 1;
        *run
    };
    if hook.event().hold {
        app.entered.add_permits(1);
        app.gate.acquire().await.unwrap().forget();
    }
    let result = if hook.event().fail_first && run == 1 {
        Err(format!(
            "ledger unavailable for amount {}",
            hook.event().amount
        ))
    } else {
        Ok(StatusCode::NO_CONTENT)
    };
    hook.finish(result).await
}

struct Server {
    url: String,
    app: App,
    http: reqwest::Client,
    signer: StandardWebhooks,
    prefix: String,
}

impl Server {
    async fn start(store: impl IdempotencyStore + 'static, prefix: &str) -> Self {
        Self::start_with(StandardWebhooks::new(SECRET).unwrap(), store, prefix).await
    }

    async fn start_with(
        scheme: impl buttress::webhook::Scheme,
        store: impl IdempotencyStore + 'static,
        prefix: &str,
    ) -> Self {
        let failures = Failures::default();
        let seen = Arc::clone(&failures);
        let receiver = WebhookReceiver::new(scheme, store).on_failure(move |failed| {
            seen.lock().unwrap().push((
                failed.id.to_owned(),
                failed.body.to_vec(),
                failed.error.to_owned(),
            ));
        });
        let app = App {
            receiver,
            runs: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            entered: Arc::new(Semaphore::new(0)),
            failures,
        };
        let router = Router::new()
            .route("/webhooks", post(on_payment))
            .with_state(app.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            url,
            app,
            http: reqwest::Client::new(),
            signer: StandardWebhooks::new(SECRET).unwrap(),
            prefix: prefix.to_owned(),
        }
    }

    fn id(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn runs(&self, id: &str) -> u32 {
        self.app.runs.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    /// Post `body` signed for `id` now, then possibly tampered.
    async fn post(&self, id: &str, body: &str, tamper: bool) -> StatusCode {
        self.post_signed_at(id, body, tamper, 0).await
    }

    /// Post `body` signed for `id` at now + `offset` seconds.
    async fn post_signed_at(&self, id: &str, body: &str, tamper: bool, offset: i64) -> StatusCode {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let now = i64::try_from(now).unwrap() + offset;
        let signature = self.signer.sign(id, now, body.as_bytes());
        let body = if tamper {
            body.replace("1", "9")
        } else {
            body.to_owned()
        };
        let status = self
            .http
            .post(&self.url)
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        StatusCode::from_u16(status.as_u16()).unwrap()
    }
}

async fn exactly_once(server: Server) {
    // Valid, tampered, replayed.
    let id = server.id("evt_valid");
    let body = r#"{"amount": 100}"#;
    assert_eq!(server.post(&id, body, false).await, StatusCode::NO_CONTENT);
    assert_eq!(server.runs(&id), 1);
    let tampered = server.id("evt_tampered");
    assert_eq!(
        server.post(&tampered, body, true).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.runs(&tampered), 0);
    assert_eq!(server.post(&id, body, false).await, StatusCode::OK);
    assert_eq!(server.post(&id, body, false).await, StatusCode::OK);
    assert_eq!(server.runs(&id), 1);

    // Signed too long ago, or in the future: 401, nothing runs (a few
    // seconds beyond the tolerance, so a second ticking during the
    // request cannot bring it back within).
    let stale = server.id("evt_stale");
    for offset in [-305, 305] {
        assert_eq!(
            server.post_signed_at(&stale, body, false, offset).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(server.runs(&stale), 0);

    // Ten concurrent duplicates while the first is held in its handler.
    let id = server.id("evt_concurrent");
    let body = r#"{"amount": 7, "hold": true}"#;
    let server = Arc::new(server);
    let posts: Vec<_> = (0..10)
        .map(|_| {
            let (server, id) = (Arc::clone(&server), id.clone());
            tokio::spawn(async move { server.post(&id, body, false).await })
        })
        .collect();
    // One handler entered; the other nine were answered while it waits.
    server.app.entered.acquire().await.unwrap().forget();
    let mut statuses = Vec::new();
    let mut pending = Vec::new();
    for post in posts {
        if post.is_finished() {
            statuses.push(post.await.unwrap());
        } else {
            pending.push(post);
        }
    }
    // Wait for the rest of the nine (answered 409 without the gate).
    while statuses.len() < 9 {
        let mut still = Vec::new();
        for post in pending {
            if post.is_finished() {
                statuses.push(post.await.unwrap());
            } else {
                still.push(post);
            }
        }
        pending = still;
        tokio::task::yield_now().await;
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    server.app.gate.add_permits(1);
    for post in pending {
        assert_eq!(post.await.unwrap(), StatusCode::NO_CONTENT);
    }
    assert_eq!(server.runs(&id), 1);
    assert_eq!(server.post(&id, body, false).await, StatusCode::OK);
    assert_eq!(server.runs(&id), 1);

    // A failing handler: 500, reported, and run again on redelivery.
    let id = server.id("evt_flaky");
    let body = r#"{"amount": 5, "fail_first": true}"#;
    assert_eq!(
        server.post(&id, body, false).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        server.app.failures.lock().unwrap().as_slice(),
        [(
            id.clone(),
            body.as_bytes().to_vec(),
            "ledger unavailable for amount 5".to_owned()
        )]
    );
    assert_eq!(server.post(&id, body, false).await, StatusCode::NO_CONTENT);
    assert_eq!(server.post(&id, body, false).await, StatusCode::OK);
    assert_eq!(server.runs(&id), 2);

    // A verified body that is not a Payment: 400, reported, nothing stored.
    let id = server.id("evt_shape");
    assert_eq!(
        server.post(&id, r#"{"amount": "many"}"#, false).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(server.runs(&id), 0);
    assert_eq!(server.app.failures.lock().unwrap().len(), 2);

    // Missing headers: 400.
    let status = server
        .http
        .post(&server.url)
        .body("{}")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 400);
}

fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}_", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_with_the_memory_store() {
    exactly_once(Server::start(MemoryStore::new(), "").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_with_redis() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    let store = RedisStore::connect(&url)
        .await
        .expect("connect to Redis")
        .with_prefix(format!("buttress:webhook-test:{prefix}"));
    exactly_once(Server::start(store, &prefix).await).await;
    // Leave nothing behind on the server.
    let client = redis::Client::open(url.as_str()).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("buttress:webhook-test:{prefix}*"))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    assert!(!keys.is_empty(), "the store wrote under its prefix");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .expect("DEL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_with_postgres() {
    let Some(url) = services::postgres_url().await else {
        return;
    };
    let table = format!("buttress_webhook_test_{}", std::process::id());
    let store = PostgresStore::connect_with_table(&url, &table)
        .await
        .expect("connect to PostgreSQL");
    exactly_once(Server::start(store.clone(), &unique_prefix()).await).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
        .await
        .expect("drop the test table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_deliveries_are_deduplicated_on_the_body_id() {
    let secret = "whsec_e2e";
    let server = Server::start_with(Stripe::new(secret).unwrap(), MemoryStore::new(), "").await;
    let signer = Stripe::new(secret).unwrap();
    let body = r#"{"id":"evt_stripe_1","object":"event","amount":3}"#;
    for expected in [204, 200] {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let status = server
            .http
            .post(&server.url)
            .header(
                "Stripe-Signature",
                signer.sign(i64::try_from(now).unwrap(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), expected);
    }
    assert_eq!(server.runs("evt_stripe_1"), 1);
}
