//! `SharedQuota`: a provider quota and cooldown shared by replicas through
//! Redis (`BUTTRESS_REDIS_URL`, default `redis://127.0.0.1:6379/`; skipped
//! when absent unless `BUTTRESS_REQUIRE_SERVICES=1`).
//!
//! - the admission script, driven from several connections at once, books
//!   every slot once: the burst at once, then one slot per interval;
//! - weighted costs, corrections and a provider's remaining-quota header;
//! - a `Retry-After` seen in one process pauses another process;
//! - Redis unreachable or hung: admission falls back to the local share
//!   within the timeout (and never past the call's wait), then rejoins the
//!   shared limit when a Redis starts on that port;
//! - through `#[resilient(rate_limit(shared = …))]` and `PolicyBuilder`.
//!
//! Every test uses its own key prefix (pid + time + test), and the keys
//! expire by themselves.

#[path = "common/instances.rs"]
mod instances;
#[path = "common/services.rs"]
mod services;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buttress::shared_quota::{SharedAdmission, SharedQuota, SharedQuotaConfig};
use buttress::{resilient, Classify, Error, ErrorClass, Policy, Registry};
use tokio::net::TcpListener;
use tokio::time::Instant;

const CHILD_ROLE: &str = "BUTTRESS_QUOTA_CHILD_ROLE";
const CHILD_URL: &str = "BUTTRESS_QUOTA_CHILD_URL";
const CHILD_PREFIX: &str = "BUTTRESS_QUOTA_CHILD_PREFIX";

fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("buttress:test:{}:{nanos}:{test}:", std::process::id())
}

fn quota(url: &str, prefix: &str, config: SharedQuotaConfig) -> SharedQuota {
    SharedQuota::new(url, "payments", "acct-1", config.with_prefix(prefix)).expect("valid settings")
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_slot_is_booked_once_across_connections() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let prefix = prefix("slots");
    // 10 per second (a slot every 100 ms), burst 5; four replicas, each
    // with its own connection, ask for 40 slots at once.
    let config = SharedQuotaConfig::new().with_per_second(10).with_burst(5);
    let replicas: Vec<SharedQuota> = (0..4)
        .map(|_| quota(&url, &prefix, config.clone()))
        .collect();
    // Connect each first, so the burst below is not spread by connecting.
    for r in &replicas {
        r.observe_remaining(1_000).await.expect("Redis answers");
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in &replicas {
        for _ in 0..10 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                (r.admit(1, Duration::from_secs(10)).await, Instant::now())
            }));
        }
    }
    let mut now = 0;
    let mut slots = Vec::new();
    for task in tasks {
        let (admission, at) = task.await.unwrap();
        match admission {
            SharedAdmission::Now => now += 1,
            SharedAdmission::After(wait) => slots.push(at + wait),
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(
        took < ms(100),
        "the 40 admissions took {took:?}: too slow to check"
    );
    assert_eq!(now, 5, "the burst, at once");
    assert_eq!(slots.len(), 35);
    slots.sort_unstable();
    for pair in slots.windows(2) {
        let gap = pair[1] - pair[0];
        // One slot per 100 ms: never two callers on one slot. (The gap is
        // measured on this machine's clock around Redis's: a few ms.)
        assert!(
            (ms(90)..=ms(110)).contains(&gap),
            "slots {gap:?} apart: {slots:?}"
        );
    }
    for r in &replicas {
        assert!(!r.in_fallback());
        assert_eq!(r.fallbacks(), 0);
    }
    // One request per admission or header (and, the first time on a
    // server, one more per script to load it).
    let trips: u64 = replicas.iter().map(SharedQuota::round_trips).sum();
    assert!((44..=44 + 4 * 2).contains(&trips), "{trips} round trips");
}

#[tokio::test]
async fn what_is_not_admitted_reserves_nothing() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let q = quota(
        &url,
        &prefix("refuse"),
        SharedQuotaConfig::new().with_per_second(1).with_burst(1),
    );
    assert_eq!(q.admit(1, Duration::ZERO).await, SharedAdmission::Now);
    for _ in 0..5 {
        match q.admit(1, ms(100)).await {
            SharedAdmission::Refused(next) => assert!(next > ms(800), "{next:?}"),
            other => panic!("{other:?}"),
        }
    }
    // The refusals booked nothing: the next slot is still about 1 s away.
    match q.admit(1, Duration::from_secs(2)).await {
        SharedAdmission::After(wait) => assert!((ms(800)..=ms(1000)).contains(&wait), "{wait:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn weighted_costs_and_corrections() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    // 1000 tokens per second, 3000 at once (an LLM API, say).
    let q = quota(
        &url,
        &prefix("weights"),
        SharedQuotaConfig::new()
            .with_per_second(1000)
            .with_burst(3000),
    );
    assert_eq!(q.admit(2000, Duration::ZERO).await, SharedAdmission::Now);
    assert!(matches!(
        q.admit(2000, Duration::ZERO).await,
        SharedAdmission::Refused(_)
    ));
    // The call used 500 tokens, not 2000: 1500 go back.
    q.correct(-1500).await.expect("Redis answers");
    assert_eq!(q.admit(2000, Duration::ZERO).await, SharedAdmission::Now);
    // Used more than announced: the extra is charged.
    q.correct(2000).await.expect("Redis answers");
    match q.admit(1, Duration::ZERO).await {
        SharedAdmission::Refused(next) => assert!(next > Duration::from_secs(1), "{next:?}"),
        other => panic!("{other:?}"),
    }

    // A provider's header says 2 requests remain: at most 2 go at once.
    let q = quota(
        &url,
        &prefix("remaining"),
        SharedQuotaConfig::new().with_per_second(1).with_burst(100),
    );
    q.observe_remaining(2).await.expect("Redis answers");
    assert_eq!(q.admit(1, Duration::ZERO).await, SharedAdmission::Now);
    assert_eq!(q.admit(1, Duration::ZERO).await, SharedAdmission::Now);
    assert!(matches!(
        q.admit(1, Duration::ZERO).await,
        SharedAdmission::Refused(_)
    ));
    // It only ever tightens.
    q.observe_remaining(50).await.expect("Redis answers");
    assert!(matches!(
        q.admit(1, Duration::ZERO).await,
        SharedAdmission::Refused(_)
    ));
}

/// What a child process does, selected by `BUTTRESS_QUOTA_CHILD_ROLE`.
#[test]
#[ignore = "a child process of the cross-process test, not a test by itself"]
fn child_worker_quota() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let url = std::env::var(CHILD_URL).unwrap();
    let prefix = std::env::var(CHILD_PREFIX).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let q = quota(&url, &prefix, SharedQuotaConfig::new());
            assert_eq!(role, "cool_down");
            q.cool_down(Duration::from_secs(3))
                .await
                .expect("Redis answers");
            println!("cooled");
        });
}

#[tokio::test]
async fn a_retry_after_in_one_process_pauses_another() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let prefix = prefix("cooldown");
    let here = quota(&url, &prefix, SharedQuotaConfig::new());
    assert_eq!(here.admit(1, Duration::ZERO).await, SharedAdmission::Now);
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_worker_quota", "--ignored", "--nocapture"])
        .env(CHILD_ROLE, "cool_down")
        .env(CHILD_URL, &url)
        .env(CHILD_PREFIX, &prefix)
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("cooled"),
        "{output:?}"
    );
    match here.admit(1, Duration::from_secs(10)).await {
        SharedAdmission::Cooldown(left) => {
            assert!(
                (Duration::from_secs(1)..=Duration::from_secs(3)).contains(&left),
                "{left:?}"
            );
        }
        other => panic!("the other process's cooldown did not reach this one: {other:?}"),
    }
    // A shorter pause never shortens it.
    here.cool_down(ms(10)).await.unwrap();
    assert!(matches!(
        here.admit(1, Duration::ZERO).await,
        SharedAdmission::Cooldown(left) if left > Duration::from_secs(1)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_the_local_share_and_comes_back() {
    // A Redis of this test's own, stopped before the first admission and
    // started again on the same port later.
    let Some(mut redis) = instances::RedisInstance::start(instances::Persistence::None) else {
        return;
    };
    redis.kill();
    let url = redis.url();
    // 100 per second over 4 replicas: 25 per second and a burst of 2 each
    // while Redis is away.
    let q = quota(
        &url,
        &prefix("fallback"),
        SharedQuotaConfig::new()
            .with_per_second(100)
            .with_burst(8)
            .with_replicas(4)
            .with_timeout(ms(50))
            .with_recheck(ms(50)),
    );
    let started = std::time::Instant::now();
    // The switch starts the local share without a burst (the shared limit
    // may have spent the account's): one slot per 40 ms from now.
    match q.admit(1, Duration::ZERO).await {
        SharedAdmission::Refused(next) => assert!(next <= ms(40), "{next:?}"),
        other => panic!("the local share is 25/s, and starts drained: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(q.in_fallback());
    assert_eq!(q.fallbacks(), 1);
    match q.admit(1, ms(100)).await {
        SharedAdmission::After(wait) => assert!(wait <= ms(40), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    match q.admit(1, ms(100)).await {
        SharedAdmission::After(wait) => assert!((ms(40)..=ms(80)).contains(&wait), "{wait:?}"),
        other => panic!("one slot per 40 ms: {other:?}"),
    }
    assert_eq!(q.fallbacks(), 1, "one fallback, however many calls");

    redis.restart();
    // Back on the shared limit once Redis answers (tried every 50 ms).
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while q.in_fallback() {
        assert!(std::time::Instant::now() < give_up, "never rejoined");
        let _ = q.admit(1, Duration::from_secs(1)).await;
        tokio::time::sleep(ms(20)).await;
    }
    assert_eq!(q.fallbacks(), 1);
    // The shared limit's burst (8), not the local one's (2).
    let q2 = quota(&url, &prefix("fallback-after"), q.config().clone());
    let mut now = 0;
    for _ in 0..8 {
        if q2.admit(1, Duration::ZERO).await == SharedAdmission::Now {
            now += 1;
        }
    }
    assert!(now >= 7, "{now} of the shared burst of 8");
    assert!(!q2.in_fallback());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_never_holds_a_call_past_its_wait() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let q = quota(
        &format!("redis://127.0.0.1:{port}/"),
        &prefix("hung"),
        SharedQuotaConfig::new().with_timeout(Duration::from_secs(5)),
    );
    let started = std::time::Instant::now();
    // The call has 30 ms left: that bounds the request to Redis too.
    let admitted = q.admit_before(1, ms(30), ms(30)).await;
    assert!(
        matches!(admitted, SharedAdmission::After(wait) if wait <= ms(30)),
        "on the local share (100/s, starting without a burst): {admitted:?}"
    );
    let took = started.elapsed();
    assert!(took < ms(500), "held {took:?}");
    assert!(q.in_fallback());
    hold.abort();
}

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error(transparent)]
    Buttress(#[from] Error),
    #[error("rate limited")]
    Limited(Duration),
}

impl Classify for ApiError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Buttress(e) => e.class(),
            Self::Limited(_) => ErrorClass::RateLimited,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Limited(after) => Some(*after),
            Self::Buttress(e) => e.retry_after(),
        }
    }
}

struct Client {
    quota: SharedQuota,
}

impl Client {
    #[resilient(
        provider = "shared-quota-test",
        timeout = "1s",
        deadline = "3s",
        retry = off,
        rate_limit(shared = self.quota, cost = 2),
    )]
    async fn call(&self, limited: bool) -> Result<u32, ApiError> {
        if limited {
            return Err(ApiError::Limited(Duration::from_secs(2)));
        }
        Ok(7)
    }
}

#[tokio::test]
async fn the_attribute_and_the_builder_admit_through_the_shared_quota() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    let prefix = prefix("attribute");
    // 1 unit per second, burst 4; each call costs 2.
    let config = SharedQuotaConfig::new().with_per_second(1).with_burst(4);
    let client = Client {
        quota: quota(&url, &prefix, config.clone()),
    };
    assert_eq!(client.call(false).await.unwrap(), 7);
    assert_eq!(client.call(false).await.unwrap(), 7);
    // The next slot is 2 s away: past the wait this call may spend? No:
    // the deadline is 3 s, so it waits for it.
    let started = Instant::now();
    assert_eq!(client.call(false).await.unwrap(), 7);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // A 429 with Retry-After pauses every replica: another handle (another
    // replica) sees the cooldown in Redis.
    let err = client.call(true).await.unwrap_err();
    assert!(matches!(err, ApiError::Limited(_)), "{err:?}");
    let other = quota(&url, &prefix, config);
    let give_up = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match other.admit(1, Duration::ZERO).await {
            SharedAdmission::Cooldown(left) => {
                assert!(left <= Duration::from_secs(2), "{left:?}");
                break;
            }
            seen => assert!(
                std::time::Instant::now() < give_up,
                "no shared cooldown: {seen:?}"
            ),
        }
        tokio::time::sleep(ms(10)).await;
    }

    // The builder: a call whose slot is past its deadline is refused at
    // once, as `RateLimited`, and sends nothing.
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let policy = Policy::builder("shared-quota-builder")
        .timeout(ms(100))
        .deadline(ms(200))
        .shared_quota(quota(
            &url,
            &format!("{prefix}builder:"),
            SharedQuotaConfig::new().with_per_second(1).with_burst(1),
        ))
        .build_in(registry)
        .unwrap();
    assert_eq!(
        policy.run(|| async { Ok::<_, ApiError>(1) }).await.unwrap(),
        1
    );
    let sent = std::sync::atomic::AtomicBool::new(false);
    let err = policy
        .run(|| async {
            sent.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, ApiError>(2)
        })
        .await
        .unwrap_err();
    assert!(!sent.into_inner(), "nothing is sent");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
    assert!(err.to_string().contains("rate"), "{err}");
}

/// The `buttress_shared_quota_fallback` gauge of `provider`, from a
/// recorder installed for this binary.
fn fallback_gauge(provider: &str) -> Option<f64> {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    static SNAPSHOTTER: std::sync::OnceLock<Snapshotter> = std::sync::OnceLock::new();
    static LAST: std::sync::Mutex<Option<f64>> = std::sync::Mutex::new(None);
    let snapshotter = SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("one recorder in this binary");
        snapshotter
    });
    let mut last = LAST.lock().unwrap();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let ours = key
            .labels()
            .any(|l| l.key() == "provider" && l.value() == provider);
        if key.name() == "buttress_shared_quota_fallback" && ours {
            if let DebugValue::Gauge(v) = value {
                *last = Some(v.into_inner());
            }
        }
    }
    *last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_mid_run_goes_on_at_the_local_share_and_back() {
    let _ = fallback_gauge("outage-mid-run");
    let Some(mut redis) = instances::RedisInstance::start(instances::Persistence::None) else {
        return;
    };
    // 40 per second shared by 4 replicas: 10 per second each without Redis.
    let q = SharedQuota::new(
        &redis.url(),
        "outage-mid-run",
        "acct",
        SharedQuotaConfig::new()
            .with_per_second(40)
            .with_burst(4)
            .with_replicas(4)
            .with_timeout(ms(100))
            .with_recheck(ms(100))
            .with_prefix(prefix("outage")),
    )
    .unwrap();
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let policy = Policy::builder("outage-mid-run")
        .timeout(ms(100))
        .deadline(ms(300))
        .shared_quota(q.clone())
        .build_in(registry)
        .unwrap();
    // Calls every 10 ms (100/s offered) for `span`: how many got through.
    let run = |span: Duration| {
        let policy = policy.clone();
        async move {
            let end = Instant::now() + span;
            let mut tasks = Vec::new();
            while Instant::now() < end {
                let policy = policy.clone();
                tasks.push(tokio::spawn(async move {
                    policy.run(|| async { Ok::<_, ApiError>(()) }).await.is_ok()
                }));
                tokio::time::sleep(ms(10)).await;
            }
            let mut ok = 0u32;
            for t in tasks {
                ok += u32::from(t.await.expect("no panic"));
            }
            ok
        }
    };
    let shared = run(Duration::from_secs(1)).await;
    assert!(!q.in_fallback());
    assert_ne!(fallback_gauge("outage-mid-run"), Some(1.0));

    redis.kill();
    let local = run(Duration::from_secs(1)).await;
    assert!(q.in_fallback(), "Redis is down");
    assert_eq!(
        fallback_gauge("outage-mid-run"),
        Some(1.0),
        "the gauge shows it"
    );
    assert_eq!(q.fallbacks(), 1);

    redis.restart();
    // Back on the shared limit within a recheck or two.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while q.in_fallback() {
        assert!(std::time::Instant::now() < give_up, "never rejoined");
        let _ = policy.run(|| async { Ok::<_, ApiError>(()) }).await;
        tokio::time::sleep(ms(50)).await;
    }
    let again = run(Duration::from_secs(1)).await;
    assert_eq!(fallback_gauge("outage-mid-run"), Some(0.0));
    println!("admitted per second: shared {shared}, local share {local}, shared again {again}");
    // 40/s (+ the burst of 4) with Redis; 10/s (+ 1) on the local share;
    // calls issued in the last 200 ms may take a slot up to 200 ms later
    // (their deadline less their timeout): 1.2 s of slots.
    assert!((40..=56).contains(&shared), "shared {shared}");
    assert!((6..=16).contains(&local), "local {local}");
    assert!((40..=56).contains(&again), "again {again}");
}

#[tokio::test]
async fn a_configuration_file_names_the_shared_quota() {
    use buttress::config::Format;
    use buttress::PolicyConfig;
    // Its mistakes, each with what to do.
    let errors = |text: &str| {
        Registry::new()
            .load_str(text, Format::Toml)
            .expect_err("rejected")
            .to_string()
    };
    assert_eq!(
        errors("[providers.p.shared_quota]\naccount = \"a\"\n"),
        "providers.p.shared_quota.url: missing: the Redis server holding the quota, e.g. url = \"redis://127.0.0.1:6379/\""
    );
    let bad_url = errors("[providers.p.shared_quota]\nurl = \"http://x\"\n");
    assert!(
        bad_url.starts_with("providers.p.shared_quota.url: invalid Redis URL http://x"),
        "{bad_url}"
    );
    let zero = errors("[providers.p.shared_quota]\nurl = \"redis://127.0.0.1/\"\nreplicas = 0\n");
    assert!(
        zero.starts_with("providers.p.shared_quota.replicas:"),
        "{zero}"
    );
    let unknown = errors("[providers.p.shared_quota]\nurl = \"redis://127.0.0.1/\"\nrate = 3\n");
    assert!(
        unknown.contains("valid keys: url, account, per_second"),
        "{unknown}"
    );

    let Some(url) = services::redis_url().await else {
        return;
    };
    // Two per second, one at once: the second call waits half a second.
    let text = format!(
        "[providers.quota-file.shared_quota]\nurl = \"{url}\"\naccount = \"acct\"\nper_second = 2\nburst = 1\nprefix = \"{}\"\n",
        prefix("file")
    );
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    registry
        .load_str(&text, Format::Toml)
        .expect("a valid file");
    let inline = PolicyConfig::new("quota-file")
        .with_timeout(Some(ms(100)))
        .with_deadline(Some(Duration::from_secs(2)));
    let settings = registry.settings_for(&inline, None);
    let quota = settings.shared_quota().expect("the file's quota").clone();
    assert_eq!((quota.provider(), quota.account()), ("quota-file", "acct"));
    // The same file read again names the same quota: a reload changes nothing.
    registry.load_str(&text, Format::Toml).unwrap();
    assert_eq!(registry.settings_for(&inline, None), settings);
    let policy = Policy::from_config(settings, registry).unwrap();
    let started = Instant::now();
    for _ in 0..2 {
        policy
            .run(|| async { Ok::<_, ApiError>(()) })
            .await
            .unwrap();
    }
    assert!(started.elapsed() >= ms(400), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_agrees_with_a_reference_gcra_across_connections() {
    let Some(url) = services::redis_url().await else {
        return;
    };
    // One unit per second, a burst of 40: the few milliseconds the
    // sequence takes are a small fraction of a slot, so the reference can
    // read time as this process sees it. Waits allowed fall between whole
    // slots (x.5 s), so no decision sits on a boundary.
    let prefix = prefix("reference");
    let config = SharedQuotaConfig::new().with_per_second(1).with_burst(40);
    let connections: Vec<SharedQuota> = (0..3)
        .map(|_| quota(&url, &prefix, config.clone()))
        .collect();
    for c in &connections {
        assert!(c.connect().await);
    }
    let second = Duration::from_secs(1);
    let capacity = second * 40;
    let start = Instant::now();
    let mut tat = Duration::ZERO; // since `start`, in the reference
    let mut state: u64 = 0x5eed;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seen = [0u32; 3];
    for step in 0..300 {
        let which = (next() % 3) as usize;
        let cost = (next() % 5 + 1) as u32;
        let max_wait = Duration::from_millis((next() % 30) * 1000 + 500);
        let now = start.elapsed();
        let admitted = connections[which].admit(cost, max_wait).await;
        // The reference GCRA.
        let new_tat = tat.max(now) + second * cost;
        let wait = (new_tat - now).saturating_sub(capacity);
        let expected = if wait > max_wait {
            SharedAdmission::Refused(wait)
        } else {
            tat = new_tat;
            if wait.is_zero() {
                SharedAdmission::Now
            } else {
                SharedAdmission::After(wait)
            }
        };
        seen[match expected {
            SharedAdmission::Now => 0,
            SharedAdmission::After(_) => 1,
            _ => 2,
        }] += 1;
        let close = |a: Duration, b: Duration| a.abs_diff(b) < ms(300);
        let agree = match (admitted, expected) {
            (SharedAdmission::Now, SharedAdmission::Now) => true,
            (SharedAdmission::After(a), SharedAdmission::After(b))
            | (SharedAdmission::Refused(a), SharedAdmission::Refused(b)) => close(a, b),
            // A wait within a fraction of a slot of zero may round either way.
            (SharedAdmission::Now, SharedAdmission::After(b)) => b < ms(300),
            (SharedAdmission::After(a), SharedAdmission::Now) => a < ms(300),
            _ => false,
        };
        assert!(
            agree,
            "step {step} (connection {which}, cost {cost}, may wait {max_wait:?}): script {admitted:?}, reference {expected:?}"
        );
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(
        seen.iter().all(|n| *n >= 5),
        "every kind of answer exercised: {seen:?}"
    );
}
