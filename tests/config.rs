//! Configuration files: every error path with its exact message, the three
//! formats, layering over inline settings, what a reload keeps, and hot
//! reload under concurrent calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use buttress::breaker::Window;
use buttress::config::Format;
use buttress::retry::{Backoff, Jitter};
use buttress::{resilient, BreakerState, Classify, PolicyConfig, Registry};

const MS: Duration = Duration::from_millis(1);

fn errors(text: &str, format: Format) -> String {
    Registry::new()
        .load_str(text, format)
        .expect_err("the configuration should be rejected")
        .to_string()
}

fn toml_errors(text: &str) -> String {
    errors(text, Format::Toml)
}

/// A file under the temp dir, unique to this process and `name`.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("buttress-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn malformed_files_report_line_and_column() {
    assert_eq!(
        toml_errors("[providers.stripe]\ntimeout = \"2s\"\ndeadline = \"3s\nbreaker = {}\n"),
        "line 3, column 15: invalid TOML: invalid basic string, expected `\"`"
    );
    assert_eq!(
        toml_errors("[providers.stripe]\ntimeout = \"2s\"\ntimeout = \"3s\"\n"),
        "line 3, column 1: invalid TOML: duplicate key"
    );
    assert_eq!(
        toml_errors("[providers.stripe\n"),
        "line 1, column 18: invalid TOML: unclosed table, expected `]`"
    );
    assert_eq!(
        errors(
            "providers:\n  stripe:\n    timeout: \"2s\"\n   deadline: 3s\n",
            Format::Yaml
        ),
        "line 4, column 4: invalid YAML: did not find expected key, while parsing a block mapping at line 2 column 3"
    );
    assert_eq!(
        errors(
            "{\n  \"providers\": {\n    \"stripe\": { \"timeout\": \"2s\", }\n  }\n}",
            Format::Json
        ),
        "line 3, column 34: invalid JSON: trailing comma"
    );
}

#[test]
fn unknown_keys_name_the_valid_ones() {
    assert_eq!(
        toml_errors("[provider.stripe]\ntimeout = \"2s\"\n"),
        "provider: unknown key; valid keys: providers, policies"
    );
    assert_eq!(
        toml_errors("[providers.stripe]\ntimeuot = \"2s\"\n"),
        "providers.stripe.timeuot: unknown key; valid keys: timeout, adaptive_timeout, deadline, retry, breaker, bulkhead, rate_limit, recovery, throttle, shared_quota"
    );
    assert_eq!(
        toml_errors("[providers.stripe.breaker]\nfailure_ratio = 0.5\n"),
        "providers.stripe.breaker.failure_ratio: unknown key; valid keys: failure_rate, slow_rate, slow_call, window, min_calls, consecutive_failures, open_for, probe_interval, max_probe_interval, half_open_probes"
    );
    // Shared state belongs to the provider, not to one operation.
    assert_eq!(
        toml_errors("[providers.stripe]\n[policies.charge]\nprovider = \"stripe\"\nbreaker = { open_for = \"1m\" }\nretry = { budget = \"off\" }\n"),
        "policies.charge.breaker: unknown key; valid keys: provider, timeout, adaptive_timeout, deadline, retry, idempotent, hedge\n\
         policies.charge.retry.budget: unknown key; valid keys: max_attempts, backoff, jitter"
    );
    assert_eq!(
        toml_errors("[providers.stripe]\nretry = { backoff = { type = \"constant\", delay = \"1s\", base = \"1s\" } }\n"),
        "providers.stripe.retry.backoff.base: does not apply to constant backoff"
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    assert_eq!(
        errors("[1, 2]", Format::Json),
        "(top level): expected a table, got a list"
    );
    assert_eq!(
        toml_errors("providers = [1, 2]\n"),
        "providers: expected a table of names, got a list"
    );
    assert_eq!(
        toml_errors("[providers]\nstripe = \"fast\"\n"),
        "providers.stripe: expected a table, got a string"
    );
    assert_eq!(
        toml_errors(
            "[providers.stripe]\ntimeout = 5\nbreaker = { failure_rate = \"high\", min_calls = 2.5, window = true }\nbulkhead = 3\n\n[policies.charge]\nidempotent = \"yes\"\nretry = { jitter = \"lots\", max_attempts = -1 }\n"
        ),
        "providers.stripe.timeout: expected a duration string such as \"150ms\", \"2s\" or \"1m30s\", got a number\n\
         providers.stripe.breaker.failure_rate: expected a number, got a string\n\
         providers.stripe.breaker.window: expected a number of calls or a duration string such as \"30s\", got a boolean\n\
         providers.stripe.breaker.min_calls: expected a whole number, got 2.5\n\
         providers.stripe.bulkhead: expected a table or \"off\", got a number\n\
         policies.charge.idempotent: expected true or false, got a string\n\
         policies.charge.retry.max_attempts: expected a whole number from 0 to 4294967295, got -1\n\
         policies.charge.retry.jitter: unknown jitter \"lots\"; expected \"full\", \"equal\" or \"none\""
    );
}

#[test]
fn out_of_range_values_give_the_range_and_the_value() {
    assert_eq!(
        toml_errors("[providers.stripe]\nbreaker = { failure_rate = 1.5 }\n"),
        "providers.stripe.breaker.failure_rate: must be in (0, 1], got 1.5: it is the fraction of calls in the window"
    );
    assert_eq!(
        toml_errors(
            "[providers.stripe]\nretry = { max_attempts = 0, budget = { ratio = 2, cap = 0 } }\nbreaker = { slow_rate = 0, half_open_probes = 0 }\nrate_limit = { per_second = 0 }\nbulkhead = { max_concurrent = 0 }\n"
        ),
        "providers.stripe.retry.max_attempts: must be at least 1 (1 means no retries), got 0\n\
         providers.stripe.retry.budget.ratio: must be in [0, 1], got 2: it is the extra load retries may add\n\
         providers.stripe.retry.budget.cap: must be at least 1 token, got 0; use `budget = off` to disable the budget\n\
         providers.stripe.breaker.slow_rate: must be in (0, 1], got 0: it is the fraction of calls in the window\n\
         providers.stripe.breaker.half_open_probes: must be in 1..=10000, got 0\n\
         providers.stripe.bulkhead.max_concurrent: must be at least 1, got 0\n\
         providers.stripe.rate_limit.per_second: must be at least 1, got 0"
    );
    // Settings that are only wrong together.
    assert_eq!(
        toml_errors("[providers.stripe]\nbreaker = { window = 10, min_calls = 20 }\nretry = { backoff = { type = \"exponential\", base = \"2s\", max = \"1s\" } }\n"),
        "providers.stripe.retry.backoff: `base` (2s) is larger than `max` (1s); raise max or lower base\n\
         providers.stripe.breaker.min_calls: (20) is larger than the `window` (10 calls), so the rate could never be judged; lower min_calls or widen the window"
    );
    assert_eq!(
        toml_errors("[providers.stripe]\nbreaker = { slow_rate = 0.5 }\n"),
        "providers.stripe.breaker.slow_rate: needs `slow_call`, the duration above which a call is slow, such as `slow_call = \"2s\"`"
    );
}

#[test]
fn a_timeout_longer_than_the_deadline_is_refused() {
    assert_eq!(
        toml_errors("[providers.stripe]\ntimeout = \"5s\"\ndeadline = \"2s\"\n"),
        "providers.stripe.timeout: (5s) is longer than `deadline` (2s); the deadline covers all attempts, so raise it or lower the timeout"
    );
    // A policy's timeout against its provider's deadline.
    assert_eq!(
        toml_errors("[providers.stripe]\ndeadline = \"2s\"\n\n[policies.charge]\nprovider = \"stripe\"\ntimeout = \"3s\"\n"),
        "policies.charge.timeout: (3s) is longer than `deadline` (2s); the deadline covers all attempts, so raise it or lower the timeout"
    );
}

#[test]
fn an_operation_must_name_a_defined_provider() {
    assert_eq!(
        toml_errors("[providers.stripe]\n[providers.twilio]\n\n[policies.charge]\nprovider = \"strip\"\n"),
        "policies.charge.provider: unknown provider `strip`; define it under `providers` (defined: stripe, twilio)"
    );
    assert_eq!(
        errors(r#"{"policies": {"charge": {"provider": "stripe"}}}"#, Format::Json),
        "policies.charge.provider: unknown provider `stripe`; define it under `providers` (none are defined)"
    );
}

#[test]
fn bad_durations_are_explained() {
    assert_eq!(
        toml_errors("[providers.stripe]\ntimeout = \"5 parsecs\"\nbreaker = { open_for = \"0s\" }\ndeadline = \"soon\"\n"),
        "providers.stripe.timeout: invalid duration \"5 parsecs\": unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations); write durations such as \"150ms\", \"2s\" or \"1m30s\"\n\
         providers.stripe.deadline: invalid duration \"soon\": expected number at 0; write durations such as \"150ms\", \"2s\" or \"1m30s\"\n\
         providers.stripe.breaker.open_for: must be longer than zero"
    );
}

#[test]
fn files_are_found_by_extension_and_unreadable_ones_are_reported() {
    let registry = Registry::new();
    let path = temp_file("ext.ini", "");
    let err = registry.load_file(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: unknown format: name the file *.toml, *.yaml, *.yml or *.json, or read it yourself and call `Registry::load_str`", path.display())
    );
    std::fs::remove_file(&path).unwrap();
    let missing = std::env::temp_dir().join("buttress-no-such-file.toml");
    let err = registry.load_file(&missing).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{err}"
    );
    // `off` unquoted reads as `false` in some YAML dialects: both switch off.
    registry
        .load_str(
            "providers:\n  sms:\n    breaker: off\n    retry: false\n",
            Format::Yaml,
        )
        .unwrap();
    let sms = registry.settings_for(&PolicyConfig::named("sms", "send"), None);
    assert_eq!((sms.breaker(), sms.retry().max_attempts()), (None, 1));
    // An empty file is an empty configuration.
    registry.load_str("", Format::Yaml).unwrap();
    registry.load_str("", Format::Toml).unwrap();
}

// The book's examples (configuration chapter), so they cannot rot.
const FULL_TOML: &str = include_str!("../book/src/config/example.toml");
const FULL_YAML: &str = include_str!("../book/src/config/example.yaml");
const FULL_JSON: &str = include_str!("../book/src/config/example.json");

#[test]
fn the_three_formats_say_the_same_thing() {
    let inline = PolicyConfig::named("stripe", "charge");
    let mut seen = Vec::new();
    for (text, format) in [
        (FULL_TOML, Format::Toml),
        (FULL_YAML, Format::Yaml),
        (FULL_JSON, Format::Json),
    ] {
        let registry = Registry::new();
        registry.load_str(text, format).unwrap();
        let provider = registry
            .get("stripe")
            .expect("the file creates the provider");
        let shared = *provider.config();
        let charge = registry.settings_for(&inline, Some("charge"));
        let other = registry.settings_for(&inline, None);
        seen.push((shared, charge.clone(), other.clone()));

        let breaker = shared.breaker.unwrap();
        assert_eq!(breaker.window(), Window::Count(20));
        assert_eq!(breaker.min_calls(), 10);
        assert_eq!(breaker.slow_calls(), Some((0.8, 1500 * MS)));
        assert_eq!(breaker.consecutive_failures(), Some(5));
        assert_eq!(shared.budget.unwrap().cap(), 10);
        assert_eq!(shared.bulkhead.unwrap().max_concurrent(), 32);
        assert_eq!(shared.rate_limit.unwrap().burst(), 20);
        // The policy overrides its provider's per-call settings...
        assert_eq!(charge.timeout(), Some(Duration::from_secs(1)));
        assert_eq!(charge.deadline(), Some(Duration::from_secs(10)));
        assert_eq!(charge.retry().max_attempts(), 2);
        assert_eq!(charge.retry().backoff(), Backoff::constant(250 * MS));
        assert_eq!(charge.retry().jitter(), Jitter::None);
        assert!(charge.idempotent());
        // ...and other call sites of the provider get the provider's.
        assert_eq!(other.timeout(), Some(Duration::from_secs(2)));
        assert_eq!(other.retry().max_attempts(), 4);
        assert!(!other.idempotent());
        assert_eq!(other.shared(), shared);
        let maps = registry.settings_for(&PolicyConfig::named("maps", "geocode"), None);
        assert_eq!(maps.retry().max_attempts(), 1);
        assert_eq!(
            maps.breaker().unwrap().window(),
            Window::Time(Duration::from_secs(30))
        );
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
}

#[test]
fn inline_values_are_the_defaults_a_file_overrides_key_by_key() {
    let registry = Registry::new();
    registry
        .load_str(
            "[providers.maps]\nretry = { max_attempts = 5 }\n\n[providers.sms]\ntimeout = \"1s\"\n",
            Format::Toml,
        )
        .unwrap();
    let inline = PolicyConfig::named("maps", "geocode")
        .with_timeout(Some(300 * MS))
        .with_retry(
            buttress::retry::RetryConfig::new()
                .with_max_attempts(2)
                .with_backoff(Backoff::constant(20 * MS)),
        );
    let settings = registry.settings_for(&inline, None);
    assert_eq!(
        settings.timeout(),
        Some(300 * MS),
        "not in the file: inline"
    );
    assert_eq!(
        settings.retry().max_attempts(),
        5,
        "in the file: the file's"
    );
    assert_eq!(settings.retry().backoff(), Backoff::constant(20 * MS));
    // A provider the file does not name keeps its inline settings.
    let elsewhere = PolicyConfig::named("email", "send").with_timeout(Some(700 * MS));
    assert_eq!(registry.settings_for(&elsewhere, None), elsewhere);
    // A policy name the file does not define changes nothing either.
    assert_eq!(registry.settings_for(&elsewhere, Some("nope")), elsewhere);
}

#[test]
fn an_invalid_file_changes_nothing() {
    let registry = Registry::new();
    registry.load_str(FULL_TOML, Format::Toml).unwrap();
    let before = registry.get("stripe").unwrap();
    let generation = registry.generation();
    let err = registry
        .load_str(
            "[providers.stripe]\ntimeout = \"1s\"\nbreaker = { failure_rate = 1.5 }\n",
            Format::Toml,
        )
        .unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(registry.generation(), generation);
    assert!(Arc::ptr_eq(&before, &registry.get("stripe").unwrap()));
    let charge = registry.settings_for(&PolicyConfig::named("stripe", "charge"), Some("charge"));
    assert_eq!(charge.timeout(), Some(Duration::from_secs(1)));
}

#[test]
fn a_reload_keeps_state_whose_settings_did_not_change() {
    let registry = Registry::new();
    let v1 = "[providers.pay-reload]\ntimeout = \"2s\"\nbreaker = { consecutive_failures = 100, open_for = \"30s\" }\nbulkhead = { max_concurrent = 4 }\n";
    registry.load_str(v1, Format::Toml).unwrap();
    let provider = registry.get("pay-reload").unwrap();
    let handle = registry.breaker("pay-reload");
    for _ in 0..3 {
        let permit = handle.try_acquire().unwrap();
        handle.record(permit, true, None);
    }
    handle.force_open();

    // Only per-call settings change: the provider's state is the same object.
    let v2 = v1.replace("\"2s\"", "\"500ms\"");
    registry.load_str(&v2, Format::Toml).unwrap();
    assert!(Arc::ptr_eq(&provider, &registry.get("pay-reload").unwrap()));
    assert_eq!(
        registry.breaker("pay-reload").state(),
        BreakerState::ForcedOpen
    );
    assert_eq!(registry.breaker("pay-reload").stats().window.failures, 3);

    // The bulkhead changes: the same bulkhead takes the new limit in place,
    // the same breaker.
    let v3 = v2.replace("max_concurrent = 4", "max_concurrent = 8");
    registry.load_str(&v3, Format::Toml).unwrap();
    let after = registry.get("pay-reload").unwrap();
    assert!(!Arc::ptr_eq(&provider, &after));
    assert_eq!(after.bulkhead().unwrap().config().max_concurrent(), 8);
    assert!(std::ptr::eq(
        after.bulkhead().unwrap(),
        provider.bulkhead().unwrap()
    ));
    assert!(std::ptr::eq(after.breaker(), &*handle));
    assert_eq!(after.breaker().stats().window.failures, 3);

    // The breaker changes: a new breaker, with an empty window; the
    // operator's force carries over, and its transitions reach the one
    // channel of events under the same provider.
    let transitions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&transitions);
    let _subscription = buttress::events::subscribe(move |event| {
        if let buttress::events::PolicyEvent::BreakerTransition { provider, to, .. } = event {
            if *provider == "pay-reload" {
                sink.lock().unwrap().push(*to);
            }
        }
    });
    let v4 = v3.replace("\"30s\"", "\"1m\"");
    registry.load_str(&v4, Format::Toml).unwrap();
    let new = registry.breaker("pay-reload");
    assert!(!std::ptr::eq(&*new, &*handle));
    assert_eq!(new.config().open_for(), Duration::from_secs(60));
    assert_eq!(new.state(), BreakerState::ForcedOpen);
    assert_eq!(new.stats().window.calls, 0);
    new.reset();
    assert_eq!(new.state(), BreakerState::Closed);
    assert_eq!(*transitions.lock().unwrap(), [BreakerState::Closed]);

    // A provider dropped from the file keeps its last settings.
    registry.load_str("", Format::Toml).unwrap();
    assert_eq!(
        registry.breaker("pay-reload").config().open_for(),
        Duration::from_secs(60)
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_stats_report_counts_and_time_in_state() {
    let registry = Registry::new();
    registry
        .load_str(
            "[providers.stats]\nbreaker = { window = 10, min_calls = 4, failure_rate = 0.5 }\n",
            Format::Toml,
        )
        .unwrap();
    let breaker = registry.breaker("stats");
    for failed in [false, true, false] {
        let permit = breaker.try_acquire().unwrap();
        breaker.record(permit, failed, None);
    }
    let stats = breaker.stats();
    assert_eq!((stats.window.calls, stats.window.failures), (3, 1));
    assert_eq!(stats.times_opened, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let permit = breaker.try_acquire().unwrap();
    breaker.record(permit, true, None);
    let stats = breaker.stats();
    assert_eq!(stats.state, BreakerState::Open);
    assert_eq!(stats.times_opened, 1);
    assert_eq!(stats.in_state_for, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(breaker.stats().in_state_for, Duration::from_secs(5));
}

// --- hot reload under load, through `#[resilient]` and the global registry.
// The only test in this binary that loads into the global registry.

#[derive(Debug, thiserror::Error, Classify)]
enum LabError {
    #[error("busy")]
    #[classify(transient)]
    Busy,
    #[error(transparent)]
    #[classify(delegate)]
    Resilience(#[from] buttress::Error),
}

/// Fails its first attempt, succeeds on the second after 100 ms; answers
/// the deadline its call started with.
#[resilient(
    provider = "reload-lab",
    policy = "reload-lab-send",
    timeout = "50ms",
    deadline = "1s",
    retry(max_attempts = 2, backoff = constant("10ms"), jitter = none, budget = off)
)]
async fn send() -> Result<Duration, LabError> {
    let remaining = buttress::remaining().expect("inside a call");
    tokio::time::sleep(100 * MS).await;
    if buttress::attempt() == 1 {
        return Err(LabError::Busy);
    }
    // 100 ms of the first attempt and 10 ms of backoff are gone.
    Ok(remaining + 110 * MS)
}

/// Another call site of the provider, with no policy name and a short
/// inline deadline; it answers the timeout it ran under.
#[resilient(provider = "reload-lab", timeout = "200ms", deadline = "1s", retry = off)]
async fn ping() -> Result<(), LabError> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(())
}

async fn ping_timeout() -> Duration {
    match ping().await {
        Err(LabError::Resilience(buttress::Error::Timeout { timeout, .. })) => timeout,
        other => panic!("expected a timeout, got {other:?}"),
    }
}

fn lab_config(deadline: &str, timeout: &str, open_for: &str) -> String {
    format!(
        r#"
[providers.reload-lab]
timeout = "{timeout}"
retry = {{ max_attempts = 3, backoff = {{ type = "constant", delay = "10ms" }}, jitter = "none", budget = "off" }}
breaker = {{ failure_rate = 1.0, window = 1000, min_calls = 1000, open_for = "{open_for}" }}

[policies.reload-lab-send]
provider = "reload-lab"
deadline = "{deadline}"
"#
    )
}

#[tokio::test(start_paused = true)]
async fn hot_reload_under_concurrent_calls() {
    let registry = Registry::global();
    let path = temp_file("reload.toml", &lab_config("10s", "5s", "30s"));
    registry.load_file(&path).unwrap();
    let breaker = registry.breaker("reload-lab");

    // 20 tasks, 10 calls each, one after the other: 210 ms per call.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async {
                let mut seen = Vec::new();
                for _ in 0..10 {
                    seen.push(send().await.expect("no call fails because of a reload"));
                }
                seen
            })
        })
        .collect();
    // Reload at 1 s, while every task is in the backoff-then-retry of its
    // fifth call (started at 840 ms): a longer deadline, a shorter timeout.
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&path, lab_config("20s", "2s", "30s")).unwrap();
    registry.load_file(&path).unwrap();

    for task in tasks {
        let seen = task.await.unwrap();
        let old = Duration::from_secs(10);
        let new = Duration::from_secs(20);
        // Calls in flight finish under the settings they started with; the
        // next call sees the new ones.
        assert_eq!(seen, [old, old, old, old, old, new, new, new, new, new]);
    }
    // The breaker was not touched: the same breaker, every outcome counted.
    let after = registry.breaker("reload-lab");
    assert!(std::ptr::eq(&*after, &*breaker));
    let stats = after.stats();
    assert_eq!((stats.window.calls, stats.window.failures), (400, 200));
    assert_eq!(stats.state, BreakerState::Closed);

    // The operator forces it open; a reload of other settings keeps that.
    after.force_open();
    std::fs::write(&path, lab_config("20s", "1s", "30s")).unwrap();
    registry.load_file(&path).unwrap();
    assert_eq!(
        registry.breaker("reload-lab").state(),
        BreakerState::ForcedOpen
    );
    assert_eq!(registry.breaker("reload-lab").stats().window.calls, 400);
    let rejected = send().await.unwrap_err();
    assert!(matches!(
        rejected,
        LabError::Resilience(buttress::Error::CircuitOpen { .. })
    ));

    // A reload that changes the breaker: a new, empty breaker, still forced.
    std::fs::write(&path, lab_config("20s", "1s", "45s")).unwrap();
    registry.load_file(&path).unwrap();
    let replaced = registry.breaker("reload-lab");
    assert!(!std::ptr::eq(&*replaced, &*breaker));
    assert_eq!(replaced.config().open_for(), Duration::from_secs(45));
    assert_eq!(replaced.state(), BreakerState::ForcedOpen);
    assert_eq!(replaced.stats().window.calls, 0);
    replaced.reset();
    assert_eq!(send().await.unwrap(), Duration::from_secs(20));
    assert_eq!(replaced.stats().window.calls, 2);

    // The provider's timeout applies to every call site of the provider...
    std::fs::write(&path, lab_config("20s", "300ms", "45s")).unwrap();
    registry.load_file(&path).unwrap();
    assert_eq!(ping_timeout().await, 300 * MS);
    // ...but a file timeout longer than a call site's inline deadline is
    // invalid for that call site alone: it keeps its previous settings
    // (with a warning) instead of failing its calls.
    std::fs::write(&path, lab_config("20s", "5s", "45s")).unwrap();
    registry.load_file(&path).unwrap();
    assert_eq!(ping_timeout().await, 300 * MS);
    assert_eq!(send().await.unwrap(), Duration::from_secs(20));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_watched_file_is_reloaded_when_it_changes() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let inline = PolicyConfig::named("watched", "op");
    let path = temp_file("watch.yaml", "providers:\n  watched:\n    timeout: 1s\n");
    let watcher = registry.watch_file(&path, Duration::from_secs(5)).unwrap();
    assert_eq!(
        registry.settings_for(&inline, None).timeout(),
        Some(Duration::from_secs(1))
    );

    std::fs::write(&path, "providers:\n  watched:\n    timeout: 2s\n").unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        registry.settings_for(&inline, None).timeout(),
        Some(Duration::from_secs(2))
    );

    // A bad edit is logged and changes nothing; the next good one is loaded.
    let generation = registry.generation();
    std::fs::write(&path, "providers:\n  watched:\n    timeout: 2 parsecs\n").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(registry.generation(), generation);
    std::fs::write(&path, "providers:\n  watched:\n    timeout: 3s\n").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        registry.settings_for(&inline, None).timeout(),
        Some(Duration::from_secs(3))
    );

    watcher.abort();
    std::fs::remove_file(&path).unwrap();
    // A broken file is reported at once, and nothing is watched.
    let bad = temp_file("watch-bad.json", "{");
    assert_eq!(
        registry
            .watch_file(&bad, Duration::from_secs(5))
            .unwrap_err()
            .to_string(),
        "line 1, column 1: invalid JSON: EOF while parsing an object"
    );
    std::fs::remove_file(&bad).unwrap();
}

#[test]
fn recovery_throttle_and_probe_intervals_from_a_file() {
    let registry = Registry::new();
    registry
        .load_str(
            "[providers.llm]\n\
             breaker = { open_for = \"200ms\", probe_interval = \"50ms\", max_probe_interval = \"400ms\" }\n\
             recovery = { wait = true, max_waiting = 64, pace = 1.25, min_rate = 5, slow_start = \"2s\", learn_quota = false }\n\
             throttle = { k = 1.5, window = \"30s\" }\n\n\
             [providers.sms]\nrecovery = \"fail_fast\"\nthrottle = \"off\"\n",
            Format::Toml,
        )
        .unwrap();
    let llm = registry.settings_for(&PolicyConfig::named("llm", "complete"), None);
    let breaker = llm.breaker().unwrap();
    assert_eq!(breaker.probe_interval(), 50 * MS);
    assert_eq!(breaker.max_probe_interval(), 400 * MS);
    let recovery = llm.recovery();
    assert!(recovery.wait());
    assert_eq!(recovery.max_waiting(), 64);
    assert!((recovery.pace() - 1.25).abs() < 1e-12);
    assert!((recovery.min_rate() - 5.0).abs() < 1e-12);
    assert_eq!(recovery.slow_start(), Duration::from_secs(2));
    assert!(!recovery.learn_quota());
    let throttle = llm.throttle().unwrap();
    assert!((throttle.k() - 1.5).abs() < 1e-12);
    assert_eq!(throttle.window(), Duration::from_secs(30));

    let sms = registry.settings_for(&PolicyConfig::named("sms", "send"), None);
    assert!(!sms.recovery().wait());
    assert!(sms.throttle().is_none());

    // A file that names a provider without `recovery` keeps the inline one.
    let inline = PolicyConfig::named("llm-inline", "x")
        .with_recovery(buttress::recovery::RecoveryConfig::fail_fast());
    registry
        .load_str("[providers.llm-inline]\ntimeout = \"1s\"\n", Format::Toml)
        .unwrap();
    assert!(!registry.settings_for(&inline, None).recovery().wait());
}

#[test]
fn bad_recovery_and_throttle_settings_are_explained() {
    assert_eq!(
        toml_errors(
            "[providers.llm]\nrecovery = { pace = 0.5, max_waiting = 0, wait = \"yes\" }\n"
        ),
        "providers.llm.recovery.wait: expected true or false, got a string\n\
         providers.llm.recovery.max_waiting: must be in 1..=1000000, got 0; use `wait = false` to fail fast instead\n\
         providers.llm.recovery.pace: must be in [1, 100], got 0.5; 1.5 lets held calls out at half the rate of new ones"
    );
    assert_eq!(
        toml_errors("[providers.llm]\nrecovery = { pace = 0.5 }\n"),
        "providers.llm.recovery.pace: must be in [1, 100], got 0.5; 1.5 lets held calls out at half the rate of new ones"
    );
    assert_eq!(
        toml_errors("[providers.llm]\nrecovery = \"later\"\nthrottle = { k = 0.5 }\n"),
        "providers.llm.recovery: expected a table or \"fail_fast\", got a string\n\
         providers.llm.throttle.k: must be a number of at least 1, got 0.5; 2 is the usual choice"
    );
    assert_eq!(
        toml_errors("[providers.llm]\nthrottle = { window = \"10ms\", ratio = 2 }\n"),
        "providers.llm.throttle.ratio: unknown key; valid keys: k, window\n\
         providers.llm.throttle.window: must span at least 100ms, got 10ms"
    );
    assert_eq!(
        toml_errors(
            "[providers.llm]\nbreaker = { probe_interval = \"1s\", max_probe_interval = \"100ms\" }\n"
        ),
        "providers.llm.breaker.max_probe_interval: (100ms) is shorter than the probe interval (1s; `probe_interval`, or `open_for` when it is not set): the interval only grows, so raise max_probe_interval or lower probe_interval"
    );
}

#[test]
fn adaptive_timeouts_from_a_file() {
    let registry = Registry::new();
    registry
        .load_str(
            "[providers.llm]\ntimeout = \"2s\"\n\
             adaptive_timeout = { min = \"80ms\", max = \"4s\", percentile = 0.95, multiplier = 2 }\n\n\
             [providers.sms]\ndeadline = \"5s\"\nadaptive_timeout = {}\n\n\
             [policies.quick]\nprovider = \"sms\"\nadaptive_timeout = \"off\"\n",
            Format::Toml,
        )
        .unwrap();
    let llm = registry.settings_for(&PolicyConfig::named("llm", "complete"), None);
    let adaptive = llm.adaptive_timeout().expect("set by the file");
    assert_eq!(adaptive.min(), 80 * MS);
    assert_eq!(adaptive.max(), Duration::from_secs(4));
    assert!((adaptive.percentile() - 0.95).abs() < 1e-12);
    assert!((adaptive.multiplier() - 2.0).abs() < 1e-12);
    assert_eq!(llm.timeout(), Some(Duration::from_secs(2)), "the start");

    let sms = registry.settings_for(&PolicyConfig::named("sms", "send"), None);
    assert_eq!(
        sms.adaptive_timeout(),
        Some(&buttress::adaptive_timeout::AdaptiveTimeoutConfig::new()),
        "an empty table is the defaults (the deadline bounds `max`)"
    );
    let quick = registry.settings_for(&PolicyConfig::named("sms", "quick"), Some("quick"));
    assert!(
        quick.adaptive_timeout().is_none(),
        "turned off per operation"
    );

    // A file that does not mention it keeps the inline setting.
    let inline = PolicyConfig::named("maps", "geocode").with_adaptive_timeout(Some(
        buttress::adaptive_timeout::AdaptiveTimeoutConfig::new().with_min(30 * MS),
    ));
    registry
        .load_str("[providers.maps]\ntimeout = \"1s\"\n", Format::Toml)
        .unwrap();
    assert_eq!(
        registry
            .settings_for(&inline, None)
            .adaptive_timeout()
            .map(|a| a.min()),
        Some(30 * MS)
    );
}

#[test]
fn bad_adaptive_timeouts_are_explained() {
    assert_eq!(
        toml_errors("[providers.llm]\nadaptive_timeout = { percentile = 1.5 }\n"),
        "providers.llm.adaptive_timeout.percentile: must lie in [0.5, 0.999], got 1.5; 0.99 follows the provider's tail"
    );
    assert_eq!(
        toml_errors("[providers.llm]\nadaptive_timeout = { multiplier = 0.5, min = \"0s\" }\n"),
        "providers.llm.adaptive_timeout.min: must be longer than zero\n\
         providers.llm.adaptive_timeout.multiplier: must lie in [1, 10], got 0.5; 1.5 is the usual choice (above 1, so the timeout can grow when the provider slows down)"
    );
    assert_eq!(
        toml_errors("[providers.llm]\nadaptive_timeout = { min = \"2s\", max = \"1s\" }\n"),
        "providers.llm.adaptive_timeout.max: (1s) is shorter than `min` (2s); raise max or lower min"
    );
    assert_eq!(
        toml_errors("[providers.llm]\nadaptive_timeout = { p99 = true }\n"),
        "providers.llm.adaptive_timeout.p99: unknown key; valid keys: min, max, percentile, multiplier"
    );
    assert_eq!(
        toml_errors("[providers.llm]\nadaptive_timeout = \"on\"\n"),
        "providers.llm.adaptive_timeout: expected a table or \"off\", got a string"
    );
}

#[test]
fn hedging_from_a_file() {
    let registry = Registry::new();
    registry
        .load_str(
            "[providers.pay]\n\n[policies.charge]\nprovider = \"pay\"\nidempotent = true\nhedge = true\n",
            Format::Toml,
        )
        .unwrap();
    let charge = registry.settings_for(&PolicyConfig::named("pay", "charge"), Some("charge"));
    assert!(charge.hedge() && charge.idempotent());
    assert_eq!(
        toml_errors("[providers.pay]\n[policies.charge]\nprovider = \"pay\"\nhedge = \"yes\"\n"),
        "policies.charge.hedge: expected true or false, got a string"
    );
    assert_eq!(
        toml_errors("[providers.pay]\nhedge = true\n"),
        "providers.pay.hedge: unknown key; valid keys: timeout, adaptive_timeout, deadline, retry, breaker, bulkhead, rate_limit, recovery, throttle, shared_quota"
    );
}

#[test]
fn deeply_nested_yaml_is_refused_before_parsing() {
    // 100 kB of `[` or `{a: ` once kept the YAML parser busy for seconds
    // before it reported its recursion limit.
    assert_eq!(
        errors(&"[".repeat(100_000), Format::Yaml),
        "line 1, column 65: invalid YAML: collections nested more than 64 levels deep; a configuration needs two or three"
    );
    assert_eq!(
        errors(&format!("providers:\n  x: {}", "{a: ".repeat(25_000)), Format::Yaml),
        "line 2, column 262: invalid YAML: collections nested more than 64 levels deep; a configuration needs two or three"
    );
    // Brackets in quoted scalars and comments do not count, nor does a
    // nesting the parser handles.
    let registry = Registry::new();
    registry
        .load_str(
            &format!(
                "# {}\nproviders:\n  \"{}\":\n    timeout: '2s'\n",
                "[".repeat(100),
                "[{".repeat(100)
            ),
            Format::Yaml,
        )
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reload_carries_calls_in_flight_and_reservations_over() {
    let registry = Registry::new();
    let v1 = "[providers.pay]\nbulkhead = { max_concurrent = 2 }\nrate_limit = { per_second = 10, burst = 2 }\n";
    registry.load_str(v1, Format::Toml).unwrap();
    let before = registry.get("pay").unwrap();
    let bulkhead = before.bulkhead().unwrap();
    let held = [
        bulkhead.try_acquire().unwrap(),
        bulkhead.try_acquire().unwrap(),
    ];
    let limiter = before.rate_limiter().unwrap();
    for _ in 0..2 {
        assert_eq!(
            limiter.acquire(|| Duration::ZERO),
            Ok(buttress::rate_limit::Admission::Now)
        );
    }

    // A reload in the middle: a larger limit counts the two calls in
    // flight, and the burst spent stays spent.
    let v2 = v1
        .replace("max_concurrent = 2", "max_concurrent = 3")
        .replace("burst = 2", "burst = 3");
    registry.load_str(&v2, Format::Toml).unwrap();
    let after = registry.get("pay").unwrap();
    let bulkhead = after.bulkhead().unwrap();
    assert_eq!(bulkhead.in_flight(), 2);
    let third = bulkhead
        .try_acquire()
        .expect("one more slot under the new limit");
    assert!(bulkhead.try_acquire().is_none(), "never 2 + 3 in flight");
    drop(third);
    drop(held);
    assert_eq!(bulkhead.in_flight(), 0);
    let limiter = after.rate_limiter().unwrap();
    assert_eq!(limiter.config().burst(), 3);
    // One more at once (the burst grew by one), then a wait: not a fresh
    // burst of three.
    assert_eq!(
        limiter.acquire(|| Duration::ZERO),
        Ok(buttress::rate_limit::Admission::Now)
    );
    assert!(limiter.acquire(|| Duration::ZERO).is_err());
}
