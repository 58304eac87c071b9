//! The scorecard's promises, checked: what the buttress row must achieve
//! in every scenario, against the paced oracle and the other clients of
//! the same run.
//!
//! | criterion | bound |
//! |---|---|
//! | success | ≥ 95 % of the paced oracle's, and not below any other client's by more than 1 point |
//! | `incident_amplification` | ≤ 1.0 in `outage`, `flapping`, `storm_429`; elsewhere ≤ 1 + the budget's ratio + its cap ÷ the operations issued during the incident |
//! | `peak_window_amplification` | ≤ 1.5 |
//! | duplicates | 0 |
//! | p99 | ≤ the learning oracle's p99 + 300 ms (the paced oracle that knows only what answers say) |
//! | `recovery_ms` | ≤ 200 |

use super::run::ScenarioRuns;

/// The retry budget's ratio in `PaymentsClient`'s attribute
/// (`budget = ratio(0.2, cap = 50)` in `examples/src/clients/payments.rs`).
pub const BUDGET_RATIO: f64 = 0.2;
/// The retry budget's cap in `PaymentsClient`'s attribute.
pub const BUDGET_CAP: f64 = 50.0;
/// The scenarios where the incident is a failing provider, and the client
/// must send less than the operations issued.
pub const FAILING: [&str; 3] = ["outage", "flapping", "storm_429"];

/// One line per violated criterion of the `buttress` row of each scenario
/// (empty when every promise holds).
#[must_use]
pub fn violations(results: &[ScenarioRuns]) -> Vec<String> {
    let mut out = Vec::new();
    for scenario in results {
        let name = &scenario.scenario;
        let Some(run) = scenario.runs.iter().find(|r| r.score.client == "buttress") else {
            continue;
        };
        let s = &run.score;
        let mut fail = |what: String| out.push(format!("{name}: {what}"));
        let oracle = scenario.oracle;
        if s.success_rate < 0.95 * oracle.success_rate - 1e-9 {
            fail(format!(
                "success {:.1}% is below 95% of the oracle's {:.1}%",
                s.success_rate * 100.0,
                oracle.success_rate * 100.0
            ));
        }
        for other in scenario
            .runs
            .iter()
            .filter(|r| r.score.client != "buttress")
        {
            if s.success_rate + 0.01 < other.score.success_rate - 1e-9 {
                fail(format!(
                    "success {:.1}% is more than 1 point below {}'s {:.1}%",
                    s.success_rate * 100.0,
                    other.score.client,
                    other.score.success_rate * 100.0
                ));
            }
        }
        if let Some(ampl) = s.incident_amplification {
            let bound = if FAILING.contains(&name.as_str()) {
                1.0
            } else {
                let spans = super::incident_spans(&scenario.schedule);
                let inside = |t: std::time::Duration| spans.iter().any(|(a, b)| *a <= t && t < *b);
                let ops = run
                    .samples
                    .iter()
                    .filter(|x| inside(x.issued))
                    .count()
                    .max(1);
                1.0 + BUDGET_RATIO + BUDGET_CAP / ops as f64
            };
            if ampl > bound + 1e-9 {
                fail(format!(
                    "incident amplification {ampl:.2} is above {bound:.2}"
                ));
            }
        }
        if let Some(peak) = s.peak_window_amplification {
            if peak > 1.5 + 1e-9 {
                fail(format!("peak window amplification {peak:.2} is above 1.5"));
            }
        }
        if s.duplicates > 0 {
            fail(format!("{} duplicate effects", s.duplicates));
        }
        let learning = scenario.oracle_learning;
        if s.p99_ms > learning.p99_ms + 300.0 {
            fail(format!(
                "p99 {:.0} ms is above the learning oracle's {:.0} ms + 300 ms",
                s.p99_ms, learning.p99_ms
            ));
        }
        if let Some(recovery) = s.recovery_ms {
            if recovery > 200.0 {
                fail(format!("recovery took {recovery:.0} ms (more than 200)"));
            }
        }
    }
    out
}
