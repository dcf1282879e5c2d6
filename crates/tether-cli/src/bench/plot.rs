//! `--plot FILE.svg`: latency and throughput over the run, drawn as one SVG
//! file a browser opens. Written by hand (a few dozen elements): a plotting
//! crate would bring a font stack and an image encoder to a load generator
//! for two line charts.
//!
//! Two panels share the time axis: above, the p50, p99 and maximum latency
//! of the echoes that arrived in each second (on a log scale: a stall is a
//! thousand times the median); below, the echoes per second. Gaps show as
//! gaps: a second with no echo has no latency point.

use std::fmt::Write as _;

/// What was measured in one interval of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Seconds from the start of the run to the end of the interval.
    pub at: f64,
    /// Echoes received in the interval, per second.
    pub per_second: f64,
    /// Latency quantiles in milliseconds: p50, p99, max; `None` when no
    /// echo arrived.
    pub latency_ms: Option<[f64; 3]>,
}

const WIDTH: f64 = 900.0;
const PANEL: f64 = 230.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;

const SERIES: [(&str, &str); 3] = [("p50", "#1f77b4"), ("p99", "#ff7f0e"), ("max", "#d62728")];

/// The SVG document for `samples`, titled `title`.
pub fn svg(title: &str, samples: &[Sample]) -> String {
    let height = TOP + PANEL + GAP + PANEL + 40.0;
    let span = samples.last().map_or(1.0, |sample| sample.at).max(1.0);
    let x = |at: f64| LEFT + (WIDTH - LEFT - RIGHT) * at / span;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#, escape(title));

    // Latency, log scale from the smallest to the largest value seen.
    let values: Vec<f64> = samples.iter().filter_map(|s| s.latency_ms).flatten().filter(|v| *v > 0.0).collect();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    let (low, high) = if values.is_empty() { (0.01, 1.0) } else { decades(low, high) };
    let top = TOP;
    let y = |ms: f64| top + PANEL - PANEL * (ms.max(low).log10() - low.log10()) / (high.log10() - low.log10());
    frame(&mut out, top, "latency (ms, log)");
    let mut tick = low;
    while tick <= high * 1.0001 {
        axis_label(&mut out, y(tick), &format_value(tick));
        tick *= 10.0;
    }
    for (index, (name, colour)) in SERIES.iter().enumerate() {
        let points = samples.iter().map(|s| s.latency_ms.map(|ms| (x(s.at), y(ms[index]))));
        polyline(&mut out, points, colour);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" fill="{colour}">{name}</text>"#,
            WIDTH - RIGHT - 120.0 + 40.0 * index as f64,
            top - 6.0
        );
    }

    // Throughput, linear from zero.
    let top = TOP + PANEL + GAP;
    let peak = samples.iter().map(|s| s.per_second).fold(0.0, f64::max);
    let ceiling = nice_ceiling(peak);
    let y = |rate: f64| top + PANEL - PANEL * rate / ceiling;
    frame(&mut out, top, "echoes per second");
    for step in 0..=4 {
        let rate = ceiling * f64::from(step) / 4.0;
        axis_label(&mut out, y(rate), &format_value(rate));
    }
    polyline(&mut out, samples.iter().map(|s| Some((x(s.at), y(s.per_second)))), "#2ca02c");

    // The shared time axis.
    let bottom = top + PANEL;
    for step in 0..=5 {
        let at = span * f64::from(step) / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(at),
            bottom + 16.0,
            format_value(at)
        );
    }
    let _ =
        writeln!(out, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#, WIDTH / 2.0, bottom + 32.0);
    out.push_str("</svg>\n");
    out
}

/// The powers of ten around `[low, high]`.
fn decades(low: f64, high: f64) -> (f64, f64) {
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf(high.log10().ceil());
    if high <= low {
        (low, low * 10.0)
    } else {
        (low, high)
    }
}

/// 1, 2 or 5 times a power of ten, at least `value` (and at least 1).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 1.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|c| *c >= value).unwrap_or(10.0 * power)
}

fn format_value(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v if v >= 10.0 || v == 0.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.1}"),
        v => format!("{v}"),
    }
}

fn frame(out: &mut String, top: f64, label: &str) {
    let width = WIDTH - LEFT - RIGHT;
    let _ =
        writeln!(out, r##"<rect x="{LEFT}" y="{top}" width="{width}" height="{PANEL}" fill="none" stroke="#888"/>"##);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="{:.1}">{label}</text>"#, top - 6.0);
}

fn axis_label(out: &mut String, y: f64, text: &str) {
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{text}</text>"##,
        WIDTH - RIGHT,
        LEFT - 6.0,
        y + 4.0
    );
}

/// One polyline per run of consecutive points (`None` breaks the line).
fn polyline(out: &mut String, points: impl Iterator<Item = Option<(f64, f64)>>, colour: &str) {
    let mut run: Vec<(f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(f64, f64)>, out: &mut String| {
        match run.as_slice() {
            [] => {}
            [(x, y)] => {
                let _ = writeln!(out, r#"<circle cx="{x:.1}" cy="{y:.1}" r="2" fill="{colour}"/>"#);
            }
            points => {
                let list: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = writeln!(
                    out,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                    list.join(" ")
                );
            }
        }
        run.clear();
    };
    for point in points {
        match point {
            Some(point) => run.push(point),
            None => flush(&mut run, out),
        }
    }
    flush(&mut run, out);
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_draws_each_series_and_breaks_lines_where_no_echo_arrived() {
        let samples = [
            Sample { at: 1.0, per_second: 900.0, latency_ms: Some([0.2, 1.5, 3.0]) },
            Sample { at: 2.0, per_second: 1000.0, latency_ms: Some([0.25, 2.0, 40.0]) },
            Sample { at: 3.0, per_second: 0.0, latency_ms: None },
            Sample { at: 4.0, per_second: 950.0, latency_ms: Some([0.2, 1.0, 2.0]) },
        ];
        let svg = svg("tether bench ws://a<b>", &samples);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("ws://a&lt;b&gt;"), "the title is escaped");
        // Three latency series, each a line of two points then a lone dot;
        // the throughput one line of four points.
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        // The log axis spans the decades around 0.2 and 40 ms.
        assert!(svg.contains(">0.1<") && svg.contains(">100<"), "{svg}");
        assert!(svg.contains(">1000<"), "the rate axis ends on a round number: {svg}");
    }

    #[test]
    fn round_axis_bounds() {
        assert_eq!(decades(0.2, 40.0), (0.1, 100.0));
        assert_eq!(decades(1.0, 1.0), (1.0, 10.0));
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(nice_ceiling(1001.0), 2000.0);
        assert_eq!(nice_ceiling(3.2e6), 5e6);
    }
}
