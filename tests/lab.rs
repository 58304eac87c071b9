//! The outage lab in quick mode, against the real loopback provider, and
//! the lab's two simulations.
//!
//! Every scenario runs once per seed (the four clients of a scenario side
//! by side, about 70 s per seed), shared by the tests below: seed 42 and a
//! seed the clients were not tuned on.

#[path = "common/instances.rs"]
mod instances;
#[path = "common/services.rs"]
mod services;

use std::sync::OnceLock;

use buttress_examples::lab::amplification::{self, Mode};
use buttress_examples::lab::backoff::{self, Strategy};
use buttress_examples::lab::{check, report, run_lab, LabOptions, RunResult, ScenarioRuns};

const SEEDS: [u64; 2] = [42, 7];
const CLIENTS: usize = 4;

fn lab_for(seed: u64) -> &'static [ScenarioRuns] {
    static RESULTS: [OnceLock<Vec<ScenarioRuns>>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = SEEDS.iter().position(|s| *s == seed).expect("a known seed");
    RESULTS[slot].get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let options = LabOptions {
            seed,
            ..LabOptions::quick()
        };
        let results = runtime
            .block_on(run_lab(&options, None))
            .expect("the lab runs");
        println!("seed {seed}\n{}", report::scorecard(&results));
        for broken in check::violations(&results) {
            println!("seed {seed}: not met: {broken}");
        }
        results
    })
}

fn lab() -> &'static [ScenarioRuns] {
    lab_for(42)
}

fn run(scenario: &str, client: &str) -> &'static RunResult {
    lab()
        .iter()
        .find(|s| s.scenario == scenario)
        .and_then(|s| s.runs.iter().find(|r| r.score.client == client))
        .unwrap_or_else(|| panic!("no run for {scenario} / {client}"))
}

/// The buttress row of every scenario, for every seed.
fn buttress_rows() -> Vec<(u64, &'static ScenarioRuns, &'static RunResult)> {
    SEEDS
        .iter()
        .flat_map(|&seed| {
            lab_for(seed).iter().map(move |s| {
                let row = s
                    .runs
                    .iter()
                    .find(|r| r.score.client == "buttress")
                    .expect("a buttress row");
                (seed, s, row)
            })
        })
        .collect()
}

#[test]
fn every_run_is_complete() {
    for scenario in lab() {
        assert_eq!(scenario.runs.len(), CLIENTS);
        for r in &scenario.runs {
            let s = &r.score;
            assert_eq!(s.logical_requests, 250, "{s:?}");
            assert_eq!(r.samples.len(), 250);
            assert!((0.0..=1.0).contains(&s.success_rate), "{s:?}");
            assert!(s.p50_ms <= s.p99_ms, "{s:?}");
            assert!(s.oracle_success_rate.is_some(), "{s:?}");
        }
        // The schedules' incidents are all shorter than the deadline and
        // end healthy: every operation is achievable.
        // And the paced oracle loses none of them either (see the book).
        assert_eq!(scenario.oracle_unpaced.served, 250, "{}", scenario.scenario);
        assert_eq!(scenario.oracle.served, 250, "{}", scenario.scenario);
        assert_eq!(
            scenario.oracle_learning.served, 250,
            "{}",
            scenario.scenario
        );
        // Knowing less, the learning oracle is never faster.
        assert!(
            scenario.oracle_learning.p99_ms >= scenario.oracle.p99_ms,
            "{}",
            scenario.scenario
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&report::json(lab())).expect("the JSON scorecard parses");
    let rows = json.as_array().expect("an array");
    assert_eq!(rows.len(), lab().len() * (CLIENTS + 3));
    for row in rows {
        let object = row.as_object().expect("objects");
        if object["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("oracle"))
        {
            for key in [
                "scenario",
                "logical_requests",
                "served",
                "success_rate",
                "p99_ms",
            ] {
                assert!(object.contains_key(key), "{key} in {row}");
            }
            continue;
        }
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "amplification",
                "breaker_opens",
                "client",
                "duplicates",
                "incident_amplification",
                "learning_oracle_p99_ms",
                "logical_requests",
                "oracle_p99_ms",
                "oracle_success_rate",
                "p50_ms",
                "p99_ms",
                "peak_window_amplification",
                "provider_429s",
                "provider_calls",
                "recovery_ms",
                "scenario",
                "success_rate"
            ]
        );
    }
}

#[test]
fn seeds_move_the_incidents() {
    for (a, b) in lab_for(42).iter().zip(lab_for(7)) {
        if a.scenario != "healthy" {
            assert_ne!(a.schedule, b.schedule, "{}", a.scenario);
        }
    }
}

#[test]
fn buttress_reaches_the_oracle_and_every_other_client() {
    for (seed, scenario, row) in buttress_rows() {
        let s = &row.score;
        let context = format!("seed {seed}, {}: {s:?}", scenario.scenario);
        assert!(
            s.success_rate >= 0.95 * scenario.oracle.success_rate,
            "below 95 % of the oracle ({:?}): {context}",
            scenario.oracle
        );
        for other in scenario
            .runs
            .iter()
            .filter(|r| r.score.client != "buttress")
        {
            assert!(
                s.success_rate + 0.01 >= other.score.success_rate,
                "more than a point below {}: {context}",
                other.score.client
            );
        }
    }
}

#[test]
fn buttress_protects_the_provider_during_incidents() {
    for (seed, scenario, row) in buttress_rows() {
        let s = &row.score;
        let context = format!("seed {seed}, {}: {s:?}", scenario.scenario);
        assert_eq!(s.duplicates, 0, "{context}");
        if let Some(ampl) = s.incident_amplification {
            let bound = if check::FAILING.contains(&scenario.scenario.as_str()) {
                1.0
            } else {
                // 1 + ratio + cap / 25: a loose bound for the quick incidents.
                1.0 + check::BUDGET_RATIO + check::BUDGET_CAP / 25.0
            };
            assert!(
                ampl <= bound,
                "incident amplification above {bound}: {context}"
            );
        }
    }
}

#[test]
fn buttress_latency_stays_within_300_ms_of_the_learning_oracle() {
    for (seed, scenario, row) in buttress_rows() {
        let s = &row.score;
        assert!(
            s.p99_ms <= scenario.oracle_learning.p99_ms + 300.0,
            "seed {seed}, {}: p99 {} ms, learning oracle {:?}: {s:?}",
            scenario.scenario,
            s.p99_ms,
            scenario.oracle_learning
        );
    }
}

#[test]
fn buttress_recovers_within_200_ms_of_the_provider() {
    for (seed, scenario, row) in buttress_rows() {
        let s = &row.score;
        if let Some(recovery) = s.recovery_ms {
            assert!(
                recovery <= 200.0,
                "seed {seed}, {}: recovered in {recovery} ms: {s:?}",
                scenario.scenario
            );
        }
    }
}

#[test]
fn late_answers_cause_no_duplicate_with_buttress() {
    let buttress = run("late_answers", "buttress");
    let naive = run("late_answers", "naive");
    println!(
        "late_answers: duplicates buttress {}, naive {}, none {}",
        buttress.score.duplicates,
        naive.score.duplicates,
        run("late_answers", "none").score.duplicates
    );
    assert_eq!(buttress.score.duplicates, 0, "{:?}", buttress.score);
}

#[test]
fn the_tower_peer_keeps_one_key_per_operation_and_opens_its_breaker() {
    let late = run("late_answers", "tower");
    assert_eq!(late.score.duplicates, 0, "{:?}", late.score);
    let outage = run("outage", "tower");
    println!(
        "outage: tower amplification {} (incident {:?}), breaker opened {} times",
        outage.score.amplification, outage.score.incident_amplification, outage.score.breaker_opens
    );
    assert!(outage.score.breaker_opens >= 1, "{:?}", outage.score);
    assert!(outage.rejected_locally > 0, "{:?}", outage.score);
}

#[test]
fn an_outage_is_not_amplified_by_buttress() {
    let buttress = run("outage", "buttress");
    let naive = run("outage", "naive");
    println!(
        "outage: amplification buttress {} (incident {:?}), naive {} (incident {:?})",
        buttress.score.amplification,
        buttress.score.incident_amplification,
        naive.score.amplification,
        naive.score.incident_amplification
    );
    assert!(buttress.score.amplification <= 1.3, "{:?}", buttress.score);
    let during = |r: &RunResult| {
        r.score
            .incident_amplification
            .expect("outage has an incident")
    };
    assert!(
        during(buttress) <= 1.0,
        "{:?}",
        buttress.score.incident_amplification
    );
    // The provider is down for 35 % of the quick schedule: over the whole run
    // the naive client's 4 attempts per operation average about 2; while the
    // provider is down, they are all made.
    assert!(
        during(naive) >= 3.0,
        "{:?}",
        naive.score.incident_amplification
    );
    assert!(naive.score.amplification >= 1.8, "{:?}", naive.score);
}

#[test]
fn buttress_never_calls_before_retry_after() {
    let buttress = run("storm_429", "buttress");
    println!(
        "storm_429: retry-after violations buttress {}, naive {}",
        buttress.retry_after_violations,
        run("storm_429", "naive").retry_after_violations
    );
    assert_eq!(buttress.retry_after_violations, 0, "{:?}", buttress.score);
}

#[test]
fn buttress_succeeds_at_least_as_often_as_naive_in_a_503_burst() {
    let buttress = run("burst_503", "buttress");
    let naive = run("burst_503", "naive");
    println!(
        "burst_503: success buttress {}, naive {}",
        buttress.score.success_rate, naive.score.success_rate
    );
    assert!(
        buttress.score.success_rate >= naive.score.success_rate,
        "buttress {:?}\nnaive {:?}",
        buttress.score,
        naive.score
    );
}

#[test]
fn the_backoff_experiment_is_deterministic_and_matches_the_blog() {
    let trials = 20;
    let a = backoff::run(trials, 42);
    assert_eq!(a, backoff::run(trials, 42), "same seed, same results");
    assert_ne!(a, backoff::run(trials, 43), "another seed, another run");
    println!("{}", backoff::table(&a));
    for clients in backoff::CLIENT_COUNTS {
        let work = |strategy: Strategy| {
            a.iter()
                .find(|r| r.strategy == strategy && r.clients == clients)
                .expect("every strategy ran")
                .calls
        };
        let time = |strategy: Strategy| {
            a.iter()
                .find(|r| r.strategy == strategy && r.clients == clients)
                .expect("every strategy ran")
                .completion
        };
        // Full jitter does the least work of all.
        for other in Strategy::ALL {
            if other != Strategy::FullJitter {
                assert!(
                    work(Strategy::FullJitter) < work(other),
                    "{clients}: {other:?}"
                );
            }
        }
        // Exponential backoff without jitter is the worst of the backoffs,
        // in work and in time.
        for jittered in [
            Strategy::FullJitter,
            Strategy::EqualJitter,
            Strategy::Decorrelated,
        ] {
            assert!(
                work(Strategy::Exponential) > work(jittered),
                "{clients}: {jittered:?}"
            );
            assert!(
                time(Strategy::Exponential) > time(jittered),
                "{clients}: {jittered:?}"
            );
        }
        // Without backoff, every client competes in every round.
        assert!(
            work(Strategy::NoBackoff) > work(Strategy::Exponential),
            "{clients}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_amplification_experiment_uses_real_budgets() {
    let rows = amplification::run().await;
    assert_eq!(rows, amplification::run().await, "deterministic");
    println!("{}", amplification::table(&rows));
    for row in &rows {
        assert_eq!(row.naive, 1000 * 4u64.pow(row.depth), "{row:?}");
        // One layer retries, under a budget of cap 10 + 0.2 per call.
        assert!(row.buttress <= 1000 + 10 + 200, "{row:?}");
        assert_eq!(row.buttress, rows[0].buttress, "depth does not matter");
    }
    assert_eq!(rows[0].budget_only, rows[0].buttress);
    assert!(rows[4].budget_only > 2 * rows[0].budget_only);
    assert_eq!(amplification::provider_calls(Mode::Naive, 3, 10).await, 640);
}

/// A replica process of the `shared_quota` scenario: this binary, run
/// with the scenario's arguments in its environment.
#[test]
#[ignore = "a replica process of shared_quota_keeps_four_replicas_within_the_account, not a test by itself"]
fn child_replica() {
    use buttress_examples::lab::shared_quota;
    let Ok(args) = std::env::var(shared_quota::REPLICA_ENV) else {
        return;
    };
    let args: shared_quota::ReplicaArgs = serde_json::from_str(&args).expect("replica arguments");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(shared_quota::replica(&args))
        .expect("the replica runs");
}

/// A replica process: this test binary, running [`child_replica`].
fn replica_command() -> tokio::process::Command {
    let exe = std::env::current_exe().expect("this test binary");
    let mut command = tokio::process::Command::new(exe);
    command.args([
        "--exact",
        "child_replica",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

#[test]
fn shared_quota_keeps_four_replicas_within_the_account() {
    use buttress_examples::lab::shared_quota;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let Some(redis) = runtime.block_on(services::redis_url()) else {
        return;
    };
    let spawn = replica_command;
    let rows = runtime
        .block_on(shared_quota::run(true, 42, &redis, &spawn))
        .expect("the scenario runs");
    let oracle = shared_quota::scenario_oracle(true);
    println!("{}", shared_quota::table(&rows, &oracle));
    assert_eq!(rows.len(), 3);
    assert!(
        shared_quota::violations(&rows).is_empty(),
        "{:?}",
        shared_quota::violations(&rows)
    );
    let shared = &rows[0];
    assert_eq!(shared.client, "buttress");
    assert_eq!(shared.fallbacks, 0, "Redis answered throughout");
    // The tower stack has no notion of the account's quota.
    let tower = &rows[2];
    assert!(tower.share_429 > 0.2, "{tower:?}");
}

#[test]
fn shared_quota_goes_on_through_a_redis_outage_mid_run() {
    use buttress_examples::lab::shared_quota::{self, Mode};
    use std::time::Duration;
    let Some(redis) = instances::RedisInstance::start(instances::Persistence::None) else {
        return;
    };
    let url = redis.url();
    let redis = std::sync::Arc::new(std::sync::Mutex::new(redis));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let spawn = replica_command;
    // The replicas start issuing 1.5 s after the run starts, for 5 s:
    // Redis goes away 1.5 s into that, and comes back 1.5 s later (empty:
    // it keeps nothing).
    let outage = {
        let redis = std::sync::Arc::clone(&redis);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3_000));
            redis.lock().unwrap().kill();
            std::thread::sleep(Duration::from_millis(1_500));
            redis.lock().unwrap().restart();
        })
    };
    let rows = runtime
        .block_on(shared_quota::run_modes(
            true,
            42,
            &url,
            &spawn,
            &[Mode::Shared],
        ))
        .expect("the scenario runs through the outage");
    outage.join().unwrap();
    let row = &rows[0];
    println!(
        "{}",
        shared_quota::table(&rows, &shared_quota::scenario_oracle(true))
    );
    // Every replica fell back to its local share (a quarter of the quota,
    // rounded down: the account never sees more than its quota) ...
    assert_eq!(row.fallbacks, 4, "{row:?}");
    assert!(row.share_429 <= 0.01, "{row:?}");
    assert!(row.oracle_share >= 0.95, "{row:?}");
    // ... and came back to the shared limit: the restarted, empty Redis
    // holds the quota's keys again.
    let keys = redis.lock().unwrap().dbsize();
    assert!(keys >= 1, "no replica used Redis after its restart");
}
