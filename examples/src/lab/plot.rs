//! One SVG per scenario: what each client did to the provider, and what
//! its callers saw, over time.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::prelude::*;

use super::run::{incident_spans, percentile, RunResult, ScenarioRuns};

/// The width of the windows the latency and success panels aggregate over.
pub const WINDOW: Duration = Duration::from_millis(500);

const FONT: &str = "sans-serif";

fn color_of(client: &str) -> RGBColor {
    match client {
        "buttress" => RGBColor(0x1b, 0x9e, 0x77),
        "tower" => RGBColor(0xe7, 0x29, 0x8a),
        "naive" => RGBColor(0xd9, 0x5f, 0x02),
        _ => RGBColor(0x75, 0x70, 0xb3),
    }
}

/// Write `DIR/<scenario>.svg` for every scenario, creating `dir` if
/// needed. Returns the files written.
///
/// # Errors
/// The directory or a file could not be written.
pub fn write_plots(results: &[ScenarioRuns], dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the plot directory {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for scenario in results {
        let path = dir.join(format!("{}.svg", scenario.scenario));
        plot_scenario(scenario, &path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

type Points = Vec<(f64, f64)>;
type Series = (String, Points);

/// Requests per 100 ms the provider received (the empty buckets after the
/// schedule's end left out).
fn load_series(run: &RunResult, end: Duration) -> Points {
    run.timeline
        .iter()
        .filter(|b| b.start < end || b.requests > 0)
        .map(|b| (b.start.as_secs_f64(), f64::from(b.requests)))
        .collect()
}

/// Per [`WINDOW`] of issue time: (p99 latency in ms, success in %).
fn window_series(run: &RunResult) -> (Points, Points) {
    let mut windows: Vec<Vec<(Duration, bool)>> = Vec::new();
    for s in &run.samples {
        let i = (s.issued.as_nanos() / WINDOW.as_nanos()) as usize;
        if windows.len() <= i {
            windows.resize_with(i + 1, Vec::new);
        }
        windows[i].push((s.latency, s.ok));
    }
    let mut p99 = Vec::new();
    let mut success = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        if w.is_empty() {
            continue;
        }
        let x = (WINDOW * u32::try_from(i).unwrap_or(u32::MAX)).as_secs_f64()
            + WINDOW.as_secs_f64() / 2.0;
        let mut latencies: Vec<Duration> = w.iter().map(|(l, _)| *l).collect();
        latencies.sort_unstable();
        p99.push((x, percentile(&latencies, 0.99).as_secs_f64() * 1000.0));
        let ok = w.iter().filter(|(_, ok)| *ok).count();
        success.push((x, ok as f64 * 100.0 / w.len() as f64));
    }
    (p99, success)
}

fn plot_scenario(scenario: &ScenarioRuns, path: &Path) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (1100, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("outage lab: {}", scenario.scenario),
        (FONT, 26).into_font(),
    )?;
    let panels = root.split_evenly((3, 1));

    let mut x_max = scenario.schedule.duration().as_secs_f64();
    let mut load = Vec::new();
    let mut latency = Vec::new();
    let mut success = Vec::new();
    for run in &scenario.runs {
        let name = run.score.client.clone();
        let l = load_series(run, scenario.schedule.duration());
        let (p99, ok) = window_series(run);
        for (x, _) in l.iter().chain(&p99) {
            x_max = x_max.max(*x);
        }
        load.push((name.clone(), l));
        latency.push((name.clone(), p99));
        success.push((name, ok));
    }

    let incidents: Vec<(f64, f64)> = incident_spans(&scenario.schedule)
        .into_iter()
        .map(|(from, to)| (from.as_secs_f64(), to.as_secs_f64()))
        .collect();
    panel(
        &panels[0],
        &Panel {
            caption: "provider load: requests received per 100 ms (shaded: the incident)",
            y_desc: "requests / 100 ms",
            series: &load,
            y_fixed: None,
            legend: true,
        },
        x_max,
        &incidents,
    )?;
    panel(
        &panels[1],
        &Panel {
            caption: "p99 latency of the operations issued in each 500 ms (retries included)",
            y_desc: "p99 latency (ms)",
            series: &latency,
            y_fixed: None,
            legend: false,
        },
        x_max,
        &incidents,
    )?;
    panel(
        &panels[2],
        &Panel {
            caption: "operations that succeeded, by issue time (500 ms windows)",
            y_desc: "success (%)",
            series: &success,
            y_fixed: Some(105.0),
            legend: false,
        },
        x_max,
        &incidents,
    )?;
    root.present()?;
    Ok(())
}

struct Panel<'a> {
    caption: &'a str,
    y_desc: &'a str,
    series: &'a [Series],
    /// The top of the y axis; `None`: 10 % above the highest point.
    y_fixed: Option<f64>,
    legend: bool,
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    spec: &Panel<'_>,
    x_max: f64,
    incidents: &[(f64, f64)],
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let Panel {
        caption,
        y_desc,
        series,
        y_fixed,
        legend,
    } = *spec;
    let y_max = y_fixed.unwrap_or_else(|| {
        let top = series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|(_, y)| *y))
            .fold(0.0, f64::max);
        (top * 1.1).max(1.0)
    });
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18).into_font())
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time since the start of the run (s)")
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| e.to_string())?;
    // The incident (any phase other than the ordinary healthy one), shaded.
    chart
        .draw_series(incidents.iter().map(|(from, to)| {
            Rectangle::new(
                [(*from, 0.0), (*to, y_max)],
                RGBColor(0xe0, 0x30, 0x30).mix(0.08).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    for (name, points) in series {
        let color = color_of(name);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if !legend {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14).into_font())
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}
