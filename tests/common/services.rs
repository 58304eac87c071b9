//! Finding the real services a test needs, or skipping it with a reason.
//!
//! On a developer's machine without Redis or PostgreSQL, a test that needs
//! one prints one line saying why it is skipped and passes. With
//! `BUTTRESS_REQUIRE_SERVICES=1` (CI), a missing service fails the test.
#![allow(dead_code)]

use std::time::Duration;

fn required() -> bool {
    std::env::var("BUTTRESS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

async fn reachable(name: &str, addr: &str, url: &str, hint: &str) -> bool {
    let outcome =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await;
    let error = match outcome {
        Ok(Ok(_)) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 2 s".to_owned(),
    };
    assert!(
        !required(),
        "{name} is required (BUTTRESS_REQUIRE_SERVICES=1) but {url} is unreachable: {error}; {hint}"
    );
    eprintln!("skipped: {name} is not reachable at {url} ({error}); {hint}");
    false
}

/// The Redis URL (`BUTTRESS_REDIS_URL`, default `redis://127.0.0.1:6379/`),
/// or `None` (after printing why) when Redis is not running.
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("BUTTRESS_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .rsplit('@')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    reachable(
        "Redis",
        &addr,
        &url,
        "start redis-server or set BUTTRESS_REDIS_URL",
    )
    .await
    .then_some(url)
}

/// The PostgreSQL connection string (`BUTTRESS_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test`), or `None` (after printing
/// why) when PostgreSQL is not running.
pub async fn postgres_url() -> Option<String> {
    let url = std::env::var("BUTTRESS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let addr =
        std::env::var("BUTTRESS_POSTGRES_ADDR").unwrap_or_else(|_| "127.0.0.1:5432".to_owned());
    reachable(
        "PostgreSQL",
        &addr,
        &url,
        "start PostgreSQL or set BUTTRESS_POSTGRES_URL and BUTTRESS_POSTGRES_ADDR",
    )
    .await
    .then_some(url)
}
