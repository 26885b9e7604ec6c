//! `--plot FILE.svg`: an HdrHistogram-style percentile plot of latency
//! histograms, written as a small hand-made SVG (no plotting crate, no font
//! libraries: the browser lays out the text).
//!
//! x axis: percentile on a "nines" scale, `x = -log10(1 - q)`, so that 0%,
//! 90%, 99%, 99.9%, 99.99% are evenly spaced (further nines when a series
//! has enough samples to say something about them); y axis: latency in ms,
//! linear from 0. One polyline per series, a legend with each series' count
//! and p50/p99/max, and a title naming the workload.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// One line of the plot: a histogram in microseconds (as [`crate::stats`]
/// records them).
pub struct Series<'a> {
    pub name: &'a str,
    pub hist: &'a Histogram<u64>,
}

const W: f64 = 900.0;
/// Height of the plot area.
const PH: f64 = 410.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 60.0;
/// Points per decade ("nine") of the x axis.
const STEPS_PER_NINE: u32 = 50;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// Escapes text for an SVG text node or attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The label of the tick at `nines` (0 → "0%", 1 → "90%", 3 → "99.9%").
pub fn nines_label(nines: u32) -> String {
    match nines {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!(
            "99{}{}%",
            if n > 2 { "." } else { "" },
            "9".repeat(n as usize - 2)
        ),
    }
}

/// A "nice" axis step (1, 2, 2.5 or 5 × 10^k) giving about five intervals
/// up to `max`, and the axis top (a multiple of the step ≥ `max`).
pub fn nice_axis(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (0.2, 1.0);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let top = (max / step - 1e-9).ceil().max(1.0) * step;
    (step, top)
}

/// A number for an axis label, without trailing zeros.
fn num_label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// (nines, latency ms) points of a histogram's percentile curve up to
/// `max_nines`.
pub fn percentile_curve(h: &Histogram<u64>, max_nines: u32) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = max_nines * STEPS_PER_NINE;
    (0..=n)
        .map(|i| {
            let x = f64::from(i) / f64::from(STEPS_PER_NINE);
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

/// The whole SVG document. `title` may hold several lines (`\n`).
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let most = series.iter().map(|s| s.hist.len()).max().unwrap_or(0);
    // Nines the data can speak for (at least up to 99.99%, as asked).
    let max_nines = ((most.max(1) as f64).log10().ceil() as u32).clamp(4, 6);
    let y_max = series
        .iter()
        .filter(|s| !s.hist.is_empty())
        .map(|s| s.hist.max() as f64 / 1000.0)
        .fold(0.0, f64::max);
    let (y_step, y_top) = nice_axis(y_max);
    let pw = W - LEFT - RIGHT;
    let ph = PH;
    // The legend goes below the axes, where it cannot hide a curve.
    let legend_h = 10.0 + 18.0 * series.len() as f64;
    let h = TOP + ph + BOTTOM + legend_h + 10.0;
    let px = |x: f64| LEFT + pw * x / f64::from(max_nines);
    let py = |y: f64| TOP + ph * (1.0 - y / y_top);

    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // Title.
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">"#,
        W / 2.0
    );
    for (i, line) in title.lines().enumerate() {
        let _ = writeln!(
            s,
            r#"<tspan x="{}" dy="{}"{}>{}</tspan>"#,
            W / 2.0,
            if i == 0 { 0 } else { 18 },
            if i == 0 {
                ""
            } else {
                r#" font-size="12" font-weight="normal""#
            },
            escape(line)
        );
    }
    let _ = writeln!(s, "</text>");
    // Grid and ticks.
    let _ = writeln!(s, r##"<g stroke="#ddd" stroke-width="1">"##);
    for k in 0..=max_nines {
        let x = px(f64::from(k));
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/>"#,
            TOP + ph
        );
    }
    let mut y = 0.0;
    while y <= y_top * (1.0 + 1e-9) {
        let yy = py(y);
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/>"#,
            LEFT + pw
        );
        y += y_step;
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    for k in 0..=max_nines {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(f64::from(k)),
            TOP + ph + 18.0,
            nines_label(k)
        );
    }
    let mut y = 0.0;
    while y <= y_top * (1.0 + 1e-9) {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            py(y) + 4.0,
            num_label(y)
        );
        y += y_step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile</text>"#,
        LEFT + pw / 2.0,
        TOP + ph + 40.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">Latency (ms)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // Lines.
    for (i, se) in series.iter().enumerate() {
        let pts = percentile_curve(se.hist, max_nines);
        if pts.is_empty() {
            continue;
        }
        let mut p = String::new();
        for (x, y) in pts {
            let _ = write!(p, "{:.1},{:.1} ", px(x), py(y));
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round" points="{}"><title>{}</title></polyline>"#,
            COLOURS[i % COLOURS.len()],
            p.trim_end(),
            escape(se.name)
        );
    }
    // Legend, below the axes.
    let labels: Vec<String> = series.iter().map(legend_label).collect();
    let (lx, ly, lw, lh) = (LEFT, TOP + ph + BOTTOM, pw, legend_h);
    let _ = writeln!(
        s,
        r##"<g><rect x="{lx}" y="{ly}" width="{lw:.0}" height="{lh}" fill="white" fill-opacity="0.9" stroke="#999"/>"##
    );
    for (i, label) in labels.iter().enumerate() {
        let y = ly + 18.0 * (i as f64 + 1.0);
        let colour = COLOURS[i % COLOURS.len()];
        let dash = if series[i].hist.is_empty() {
            r#" stroke-dasharray="3,3""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{colour}" stroke-width="2"{dash}/>"#,
            lx + 8.0,
            y - 4.0,
            lx + 30.0,
            y - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{y:.1}">{}</text>"#,
            lx + 36.0,
            escape(label)
        );
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(s, "</svg>");
    s
}

fn legend_label(se: &Series<'_>) -> String {
    let h = se.hist;
    if h.is_empty() {
        return format!("{}: no samples", se.name);
    }
    let ms = |v: u64| v as f64 / 1000.0;
    format!(
        "{} (n={}): p50 {:.2}, p99 {:.2}, max {:.2} ms",
        se.name,
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

/// Writes [`svg`] to `path`.
pub fn write_svg(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    std::fs::write(path, svg(title, series)).with_context(|| format!("write {}", path.display()))
}

/// Notes the outcome of [`write_svg`] in a report: `plot` (the path) or
/// `plot_error` (the run's results stand; `main` exits 2 after printing).
pub fn note_in_report(report: &mut serde_json::Value, path: &Path, r: Result<()>) {
    match r {
        Ok(()) => report["plot"] = path.display().to_string().into(),
        Err(e) => report["plot_error"] = format!("{e:#}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    #[test]
    fn labels_and_axis() {
        assert_eq!(nines_label(0), "0%");
        assert_eq!(nines_label(1), "90%");
        assert_eq!(nines_label(2), "99%");
        assert_eq!(nines_label(4), "99.99%");
        assert_eq!(nice_axis(7.3), (2.0, 8.0));
        assert_eq!(nice_axis(10.0), (2.0, 10.0));
        assert_eq!(nice_axis(0.0), (0.2, 1.0));
        let (step, top) = nice_axis(0.37);
        assert!((step - 0.1).abs() < 1e-12 && (top - 0.4).abs() < 1e-12);
        assert_eq!(num_label(0.30000000000000004), "0.3");
        assert_eq!(num_label(20.0), "20");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn svg_has_lines_legend_and_title() {
        let mut ack = new_hist();
        for v in 1..=1000u64 {
            ack.record(v * 10).unwrap();
        }
        let empty = new_hist();
        let out = svg(
            "load <10 clients>\nsecond line",
            &[
                Series {
                    name: "ack",
                    hist: &ack,
                },
                Series {
                    name: "delivery",
                    hist: &empty,
                },
            ],
        );
        assert!(out.starts_with("<?xml"));
        assert!(out.trim_end().ends_with("</svg>"));
        assert_eq!(out.matches("<polyline").count(), 1);
        assert!(out.contains("load &lt;10 clients&gt;"));
        assert!(out.contains("delivery: no samples"));
        assert!(out.contains("ack (n=1000)"));
        assert!(out.contains(">99.99%<"));
        // Max is 10 ms: the y axis goes to 10 in steps of 2.
        assert!(out.contains(">10</text>"));
        // The curve rises monotonically (y decreases in SVG coordinates).
        let pts = percentile_curve(&ack, 4);
        assert!(pts.windows(2).all(|w| w[1].1 >= w[0].1));
        // Within the histogram's 1% precision.
        assert!((pts.last().unwrap().1 - 10.0).abs() < 0.11);
        // Balanced tags (a cheap well-formedness check).
        for tag in ["text", "tspan", "g", "svg", "polyline"] {
            let open =
                out.matches(&format!("<{tag} ")).count() + out.matches(&format!("<{tag}>")).count();
            assert_eq!(open, out.matches(&format!("</{tag}>")).count(), "{tag}");
        }
    }
}
