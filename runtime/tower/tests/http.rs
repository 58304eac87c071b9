//! HTTP: statuses classified, the last failed response returned as is,
//! idempotency by method and `Idempotency-Key`, and an end-to-end run
//! through hyper's client against a hyper server on 127.0.0.1.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buttress_core::retry::{Backoff, Jitter, RetryConfig};
use buttress_core::Policy;
use buttress_tower::{Error, ResilienceLayer};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

fn policy(provider: &'static str) -> Policy {
    Policy::builder(provider)
        .no_timeout()
        .no_deadline()
        .no_breaker()
        .retry(
            RetryConfig::new()
                .with_max_attempts(3)
                .with_backoff(Backoff::constant(Duration::from_millis(100)))
                .with_jitter(Jitter::None)
                .with_budget(None),
        )
        .build()
        .unwrap()
}

/// A service answering `statuses` in turn (then 200), counting calls.
fn answering(
    statuses: Vec<(StatusCode, Option<&'static str>)>,
    calls: Arc<AtomicU32>,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = io::Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let statuses = Arc::new(statuses);
    service_fn(move |request: Request<String>| {
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        let (status, retry_after) = statuses.get(n).copied().unwrap_or((StatusCode::OK, None));
        async move {
            let mut response = Response::builder().status(status);
            if let Some(wait) = retry_after {
                response = response.header(http::header::RETRY_AFTER, wait);
            }
            Ok(response.body(request.into_body()).unwrap())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn when_retries_run_out_the_last_failed_response_is_returned() {
    let calls = Arc::new(AtomicU32::new(0));
    let unavailable = (StatusCode::SERVICE_UNAVAILABLE, None);
    let service = ResilienceLayer::new(policy("http-503"))
        .layer(answering(vec![unavailable; 5], Arc::clone(&calls)));
    let response = service
        .oneshot(Request::post("/").body("order".into()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.into_body(),
        "order",
        "the provider's response, unchanged"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_client_error_is_returned_at_once() {
    let calls = Arc::new(AtomicU32::new(0));
    let service = ResilienceLayer::new(policy("http-400")).layer(answering(
        vec![(StatusCode::BAD_REQUEST, None)],
        Arc::clone(&calls),
    ));
    let response = service
        .oneshot(Request::get("/").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_429_waits_what_retry_after_asks() {
    let calls = Arc::new(AtomicU32::new(0));
    let service = ResilienceLayer::new(policy("http-429")).layer(answering(
        vec![(StatusCode::TOO_MANY_REQUESTS, Some("3"))],
        Arc::clone(&calls),
    ));
    let started = Instant::now();
    let response = service
        .oneshot(Request::post("/").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// A transport that resets the connection once (the request may have
/// been acted on), then answers.
async fn reset_once(request: Request<String>) -> usize {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let inner = service_fn(move |_: Request<String>| {
        let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            } else {
                Ok(Response::new(String::new()))
            }
        }
    });
    let provider = format!(
        "http-reset-{}-{:?}",
        request.method(),
        request.headers().keys().collect::<Vec<_>>()
    );
    let policy = Policy::builder(provider)
        .no_breaker()
        .seed(1)
        .build()
        .unwrap();
    let _ = ResilienceLayer::new(policy)
        .layer(inner)
        .oneshot(request)
        .await;
    calls.load(Ordering::SeqCst) as usize
}

#[tokio::test(start_paused = true)]
async fn idempotency_by_method_and_idempotency_key() {
    let request = |method: Method| {
        Request::builder()
            .method(method)
            .uri("/")
            .body(String::new())
            .unwrap()
    };
    assert_eq!(
        reset_once(request(Method::POST)).await,
        1,
        "POST: not repeated"
    );
    assert_eq!(
        reset_once(request(Method::PATCH)).await,
        1,
        "PATCH: not repeated"
    );
    assert_eq!(reset_once(request(Method::PUT)).await, 2, "PUT: idempotent");
    assert_eq!(
        reset_once(request(Method::DELETE)).await,
        2,
        "DELETE: idempotent"
    );
    assert_eq!(reset_once(request(Method::GET)).await, 2, "GET: idempotent");
    let mut keyed = request(Method::POST);
    keyed
        .headers_mut()
        .insert("idempotency-key", "order-7".parse().unwrap());
    assert_eq!(
        reset_once(keyed).await,
        2,
        "POST with Idempotency-Key: repeated"
    );
}

#[tokio::test]
async fn through_hyper_against_a_real_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&served);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let status = if n == 0 {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                StatusCode::OK
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(body))
                                    .unwrap(),
                            )
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let policy = Policy::builder("http-hyper")
        .no_breaker()
        .retry(
            RetryConfig::new()
                .with_backoff(Backoff::constant(Duration::ZERO))
                .with_budget(None),
        )
        .build()
        .unwrap();
    let service = ResilienceLayer::new(policy).layer(client);
    let request = Request::post(format!("http://{addr}/echo"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"payload", "the retry sent the whole body again");
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // A refused connection is `Transient`: retried, then the transport's
    // error comes back as `Error::Inner`.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let policy = Policy::builder("http-hyper-refused")
        .no_breaker()
        .retry(
            RetryConfig::new()
                .with_max_attempts(2)
                .with_backoff(Backoff::constant(Duration::ZERO))
                .with_budget(None),
        )
        .build()
        .unwrap();
    let request = Request::get(format!("http://{dead}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let error = ResilienceLayer::new(policy)
        .layer(client)
        .oneshot(request)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Inner(_)), "{error:?}");
}
