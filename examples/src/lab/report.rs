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

/// The scorecard as an aligned table, one row per (scenario, client), a
/// blank line between scenarios, and the legend below.
#[must_use]
pub fn scorecard(results: &[ScenarioRuns]) -> String {
    const HEADERS: [&str; 11] = [
        "scenario", "client", "ops", "calls", "ampl", "inc ampl", "success", "p50 ms", "p99 ms",
        "dups", "opens",
    ];
    let mut rows: Vec<Option<[String; 11]>> = Vec::new();
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
                run.incident_amplification
                    .map_or_else(|| String::from("-"), |a| format!("{a:.2}")),
                format!("{:.1}%", s.success_rate * 100.0),
                format!("{:.0}", s.p50_ms),
                format!("{:.0}", s.p99_ms),
                s.duplicates.to_string(),
                s.breaker_opens.to_string(),
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
success  operations that succeeded. Good: high; during an outage nothing can succeed, so what
         counts is failing fast and recovering as soon as the provider does
p50/p99  latency of a logical operation, retries and backoff included (ms). Good: low; a client
         that fails fast keeps p99 bounded by its deadline
dups     operations the provider carried out more than once (a customer charged twice). Good: 0
opens    times the client's circuit breaker opened. Good: 0 when the provider is healthy, a few
         during an outage (rejecting locally instead of calling a provider that is down)
";

/// The scorecard rows as a pretty-printed JSON array of objects with
/// exactly the ten fields of [`Score`].
#[must_use]
pub fn json(results: &[ScenarioRuns]) -> String {
    // Serializing plain numbers and strings cannot fail.
    serde_json::to_string_pretty(&scores(results)).unwrap_or_else(|_| String::from("[]"))
}
