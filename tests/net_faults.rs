//! Real network faults between a buttress client and a real HTTP server
//! in a network namespace: the link goes down (partition) and comes back.
//!
//! Needs root and `ip netns`; otherwise prints `skipped: …` and passes,
//! unless `BUTTRESS_REQUIRE_SERVICES=1`.

#[path = "common/netns.rs"]
mod netns;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use buttress::{Classify, Policy, Registry};
use netns::Netns;

#[derive(Debug, thiserror::Error, Classify)]
enum ApiError {
    #[error(transparent)]
    #[classify(delegate)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

fn skip_or_fail(why: &str) {
    if std::env::var("BUTTRESS_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("network namespaces required (BUTTRESS_REQUIRE_SERVICES=1): {why}");
    }
    println!("skipped: {why}");
}

/// The server process inside the namespace, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get(policy: &Policy, client: &reqwest::Client, url: &str) -> Result<u16, ApiError> {
    policy
        .run(|| async {
            let r = client.get(url).send().await?;
            Ok::<_, ApiError>(r.status().as_u16())
        })
        .await
}

#[tokio::test]
async fn a_partition_fails_calls_within_their_deadline_and_heal_restores_them() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let port = 18_000 + (std::process::id() % 1000) as u16;
    let child = ns
        .command("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            &ns.ns_addr,
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let _server = match child {
        Ok(c) => Server(c),
        Err(e) => return skip_or_fail(&format!("python3 cannot run in the namespace: {e}")),
    };
    let url = format!("http://{}:{port}/", ns.ns_addr);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let policy = Policy::builder("netfault-partition")
        .timeout(Duration::from_millis(150))
        .deadline(Duration::from_millis(400))
        .idempotent(true)
        .no_breaker()
        .build_in(registry)
        .unwrap();

    // Bounded wait for the server to answer through the veth.
    let up = Instant::now();
    loop {
        if let Ok(200) = get(&policy, &client, &url).await {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "the server in namespace {} never answered at {url}",
            ns.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    ns.partition();
    for _ in 0..3 {
        let started = Instant::now();
        let err = get(&policy, &client, &url)
            .await
            .expect_err("a call across a downed link must fail");
        let took = started.elapsed();
        eprintln!("partitioned call failed after {took:?}: {err}");
        assert!(
            took < Duration::from_millis(400 + 100),
            "a call outlived its 400 ms deadline by more than 100 ms: {took:?} ({err})"
        );
        let named = match &err {
            ApiError::Resilience(e) => matches!(e.reason(), "timeout" | "deadline"),
            ApiError::Http(e) => e.is_connect() || e.is_timeout(),
        };
        assert!(
            named,
            "a partition must surface as a timeout, deadline or connect error, got {err:?}"
        );
    }

    ns.heal();
    let healed = Instant::now();
    loop {
        if let Ok(200) = get(&policy, &client, &url).await {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "calls did not succeed again within 5 s of heal()"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_partitioned_redis_store_fails_within_its_timeout_and_reconnects_after_heal() {
    use buttress::idempotency::{ClaimRequest, RedisStore};
    use buttress::IdempotencyStore;
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let port = 19_000 + (std::process::id() % 1000) as u16;
    let child = ns
        .command("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            &ns.ns_addr,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let _server = match child {
        Ok(c) => Server(c),
        Err(e) => return skip_or_fail(&format!("redis-server cannot run: {e}")),
    };
    let url = format!("redis://{}:{port}/", ns.ns_addr);
    let up = Instant::now();
    let store = loop {
        if let Ok(s) = RedisStore::connect(&url).await {
            break s.with_timeout(Duration::from_millis(200));
        }
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "redis never answered at {url}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let claim = |key: &'static str| ClaimRequest {
        key,
        fingerprint: None,
        lease: Duration::from_secs(5),
        ttl: Duration::from_secs(60),
    };
    store
        .claim(claim("before"))
        .await
        .expect("claim before the partition");
    ns.partition();
    let started = Instant::now();
    let err = store
        .claim(claim("during"))
        .await
        .expect_err("a claim across a downed link must fail");
    let took = started.elapsed();
    eprintln!("partitioned claim failed after {took:?}: {err}");
    assert!(
        took < Duration::from_millis(200 + 150),
        "a store call outlived its 200 ms timeout by more than 150 ms: {took:?} ({err})"
    );
    ns.heal();
    let healed = Instant::now();
    loop {
        if store.claim(claim("after")).await.is_ok() {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "the store did not reconnect within 5 s of heal()"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
