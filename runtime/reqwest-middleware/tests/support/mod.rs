//! A real HTTP provider on 127.0.0.1 that answers from a script, and
//! records every request it saw.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the provider does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer this status, with the attempt number as the body.
    Status(u16),
    /// Answer this status with a `Retry-After` header.
    RetryAfter(u16, &'static str),
    /// Never answer.
    Hang,
}

/// One request as the provider saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Script {
    replies: Vec<Reply>,
    seen: Vec<Seen>,
}

/// The provider: `url` to call, `seen()` for what it received.
pub struct Provider {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Provider {
    /// Serves `replies` in order, one per request; the last repeats.
    pub async fn start(replies: Vec<Reply>) -> Self {
        assert!(!replies.is_empty(), "a script needs at least one reply");
        let script = Arc::new(Mutex::new(Script {
            replies,
            seen: Vec::new(),
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/things", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, script }
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    /// How many requests were seen, once `expected` were or 5 s passed:
    /// for requests cut by a timeout, which the provider may record a
    /// moment after the client gave up on them.
    pub async fn count_settled(&self, expected: usize) -> usize {
        let give_up = Instant::now() + Duration::from_secs(5);
        loop {
            let count = self.script.lock().unwrap().seen.len();
            if count >= expected || Instant::now() >= give_up {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (reply, attempt) = {
        let mut script = script.lock().unwrap();
        script.seen.push(Seen {
            method,
            headers,
            body,
            at: Instant::now(),
        });
        let n = script.seen.len();
        (
            script.replies[(n - 1).min(script.replies.len() - 1)].clone(),
            n,
        )
    };
    let status = |code: u16| StatusCode::from_u16(code).unwrap();
    match reply {
        Reply::Status(code) => (status(code), format!("attempt {attempt}")).into_response(),
        Reply::RetryAfter(code, wait) => {
            let mut response = (status(code), format!("attempt {attempt}")).into_response();
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static(wait));
            response
        }
        Reply::Hang => std::future::pending().await,
    }
}

/// A provider that reads each request's head, then writes the start of a
/// response head and closes the connection: the connection is lost in the
/// middle of the response. Returns the URL and the count of requests.
pub async fn cut_mid_response() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/things", listener.local_addr().unwrap());
    let count = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0_u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                *counter.lock().unwrap() += 1;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
                let _ = socket.flush().await;
            });
        }
    });
    (url, count)
}

/// A reqwest client that bypasses any proxy; its 10 s timeout is a safety
/// net so that a broken test fails instead of hanging.
pub fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
