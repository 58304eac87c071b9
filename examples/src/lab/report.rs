//! The scorecard: a table for people, JSON for machines.

use std::fmt::Write as _;

use super::run::{ScenarioRuns, Score};

/// The scorecard rows of `results`, in run order.
#[must_use]
pub fn scores(results: &[ScenarioRuns]) -> Vec<&Score> {
    results
        .iter()
        .flat_map(|s| s.runs.iter().map(|r| &r.score))
        .collect()
}

/// The scorecard as an aligned table, one row per (scenario, client) and
/// the two oracle rows, a blank line between scenarios, and the legend
/// below.
#[must_use]
pub fn scorecard(results: &[ScenarioRuns]) -> String {
    const HEADERS: [&str; 15] = [
        "scenario", "client", "ops", "calls", "ampl", "inc ampl", "peak", "success", "/oracle",
        "p50 ms", "p99 ms", "rec ms", "429s", "dups", "opens",
    ];
    let dash = || String::from("-");
    let opt = |v: Option<f64>, digits: usize| v.map_or_else(dash, |x| format!("{x:.digits$}"));
    let mut rows: Vec<Option<[String; 15]>> = Vec::new();
    for (i, scenario) in results.iter().enumerate() {
        if i > 0 {
            rows.push(None);
        }
        for run in &scenario.runs {
            let s = &run.score;
            rows.push(Some([
                s.scenario.clone(),
                s.client.clone(),
                s.logical_requests.to_string(),
                s.provider_calls.to_string(),
                format!("{:.2}", s.amplification),
                opt(s.incident_amplification, 2),
                opt(s.peak_window_amplification, 2),
                format!("{:.1}%", s.success_rate * 100.0),
                opt(s.oracle_success_rate.map(|r| r * 100.0), 1),
                format!("{:.0}", s.p50_ms),
                format!("{:.0}", s.p99_ms),
                opt(s.recovery_ms, 0),
                s.provider_429s.to_string(),
                s.duplicates.to_string(),
                s.breaker_opens.to_string(),
            ]));
        }
        for (name, o) in [
            ("oracle", &scenario.oracle),
            ("oracle_unpaced", &scenario.oracle_unpaced),
            ("oracle_learning", &scenario.oracle_learning),
        ] {
            rows.push(Some([
                scenario.scenario.clone(),
                name.to_owned(),
                o.operations.to_string(),
                dash(),
                dash(),
                dash(),
                dash(),
                format!("{:.1}%", o.success_rate * 100.0),
                dash(),
                dash(),
                format!("{:.0}", o.p99_ms),
                dash(),
                dash(),
                dash(),
                dash(),
            ]));
        }
    }
    let mut widths = HEADERS.map(str::len);
    for row in rows.iter().flatten() {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            // Names left-aligned, numbers right-aligned.
            if i < 2 {
                let _ = write!(out, "{cell:<w$}");
            } else {
                let _ = write!(out, "{cell:>w$}");
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut out, &HEADERS.map(String::from));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &rule);
    for row in &rows {
        match row {
            Some(cells) => line(&mut out, cells),
            None => out.push('\n'),
        }
    }
    out.push('\n');
    out.push_str(LEGEND);
    out
}

/// What each column means and what good looks like.
pub const LEGEND: &str = "\
ops      logical operations issued (charges the caller wanted), at a fixed rate whatever the answers
calls    requests the provider received, retries included
ampl     calls / ops: the load a client puts on its provider per operation. Good: close to 1
inc ampl the same, during the incident only (the shaded phases of the plots; - when none): calls
         received then / ops issued then. Good: at most about 1, below 1 once a breaker opens;
         a client that multiplies load while the provider is failing prolongs the outage
peak     the highest calls / ops over any 100 ms window from each incident's start to 1 s after
         its end, so a burst at the start or a flood of held calls at recovery shows. Good: <= 1.5
success  operations that succeeded within the 5 s deadline, each carried out once by the provider
/oracle  success as a share of the paced oracle's, in %. Good: 95 or more
p50/p99  latency of a logical operation, retries, backoff and waiting included (ms)
rec ms   time from the incident's end (or the end of the last Retry-After the provider gave) until
         this client's successes stay at 90 % of the offered rate per 100 ms for 500 ms. Good: low
429s     rate-limited answers the provider gave this client
dups     operations the provider carried out more than once (a customer charged twice). Good: 0
opens    times the client's circuit breaker opened
oracle   the best any client can do sending one request per operation at the best moment inside
         its deadline, while keeping the storm bound (<= 1.5 x the operations of each 100 ms
         window); oracle_unpaced drops that bound (every held operation at the instant of recovery);
         oracle_learning keeps it and knows only what answers say (which requests fail, when a
         provider is back, when a rate limit lifted, which answers come late): p99's reference
";

/// The scorecard rows as a pretty-printed JSON array: one object per
/// client row with exactly the fields of [`Score`], then per scenario one
/// object per oracle (`client` `oracle`, `oracle_unpaced` and
/// `oracle_learning`, with
/// `logical_requests`, `served`, `success_rate` and `p99_ms`).
#[must_use]
pub fn json(results: &[ScenarioRuns]) -> String {
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for scenario in results {
        for run in &scenario.runs {
            rows.push(serde_json::to_value(&run.score).unwrap_or_default());
        }
        for (name, o) in [
            ("oracle", &scenario.oracle),
            ("oracle_unpaced", &scenario.oracle_unpaced),
            ("oracle_learning", &scenario.oracle_learning),
        ] {
            rows.push(serde_json::json!({
                "scenario": scenario.scenario,
                "client": name,
                "logical_requests": o.operations,
                "served": o.served,
                "success_rate": o.success_rate,
                "p99_ms": o.p99_ms,
            }));
        }
    }
    // Serializing plain numbers and strings cannot fail.
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| String::from("[]"))
}
