//! Server-rendered SVG charts: bars (request volume) and lines (latency percentiles, error rate)
//! over time buckets, with axes, units and labels. Each bucket is a link to the span list of that
//! bucket and carries a `<title>`, which browsers show on hover and screen readers read.

use std::fmt::Write;

use maud::{html, Markup, PreEscaped};

use super::layout::fmt_time;

/// The drawing's coordinate box. The SVG keeps this aspect ratio and scales to its container;
/// the box is about as wide as a laptop's content column, so labels stay near their CSS size.
const W: f64 = 1000.0;
const H: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Horizontal gridlines (and y labels) besides zero.
const Y_TICKS: usize = 4;
/// At most this many time labels under the x axis.
const X_LABELS_MAX: usize = 6;

/// One line of a line chart: its legend name, CSS class (colour) and a value per bucket.
pub struct Line<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub values: Vec<Option<f64>>,
}

/// How values of a chart are written: on the axis and in hover titles.
#[derive(Clone, Copy)]
pub enum Unit {
    Count,
    Ms,
    Percent,
}

impl Unit {
    fn fmt(self, v: f64) -> String {
        match self {
            Unit::Count => {
                if v >= 10_000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else if v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            }
            Unit::Ms => super::layout::fmt_ms(v),
            Unit::Percent if v < 0.1 && v > 0.0 => format!("{:.2}%", v * 100.0),
            Unit::Percent => format!("{:.1}%", v * 100.0),
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `max` (so gridlines fall on round numbers).
fn nice_ceiling(max: f64) -> f64 {
    if !(max > 0.0 && max.is_finite()) {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= max)
        .unwrap_or(10.0 * p)
}

struct Frame {
    starts_ms: Vec<u64>,
    bucket_ms: u64,
    y_max: f64,
    unit: Unit,
}

impl Frame {
    fn plot_w(&self) -> f64 {
        W - LEFT - RIGHT
    }
    fn slot(&self) -> f64 {
        self.plot_w() / self.starts_ms.len().max(1) as f64
    }
    fn x(&self, i: usize) -> f64 {
        LEFT + self.slot() * i as f64
    }
    fn y(&self, v: f64) -> f64 {
        let plot_h = H - TOP - BOTTOM;
        TOP + plot_h * (1.0 - (v / self.y_max).clamp(0.0, 1.0))
    }

    /// Gridlines, y labels with units, x labels with times.
    fn axes(&self, svg: &mut String) {
        for t in 0..=Y_TICKS {
            let v = self.y_max * t as f64 / Y_TICKS as f64;
            let y = self.y(v);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="ylabel" x="{}" y="{:.1}">{}</text>"#,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                esc(&self.unit.fmt(v))
            );
        }
        let n = self.starts_ms.len();
        let span_ms = self.bucket_ms * n as u64;
        let step = n.div_ceil(X_LABELS_MAX).max(1);
        for i in (0..n).step_by(step) {
            let label = time_label(self.starts_ms[i], span_ms);
            let _ = write!(
                svg,
                r#"<text class="xlabel" x="{:.1}" y="{}">{}</text>"#,
                self.x(i),
                H - 8.0,
                esc(&label)
            );
        }
        let _ = write!(
            svg,
            r#"<line class="axis" x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}"/>"#,
            W - RIGHT,
            self.y(0.0),
            self.y(0.0)
        );
    }

    /// A transparent full-height link per bucket: click goes to its spans, hover shows `title`.
    fn hotspot(&self, svg: &mut String, i: usize, href: &str, title: &str) {
        let _ = write!(
            svg,
            r#"<a href="{}"><rect class="hot" x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}"><title>{}</title></rect></a>"#,
            esc(href),
            self.x(i),
            self.slot(),
            H - TOP - BOTTOM,
            esc(title)
        );
    }
}

/// `HH:MM` within two days, `MM-DD` beyond (UTC, like every time on the dashboard).
fn time_label(ms: u64, span_ms: u64) -> String {
    let full = fmt_time(ms);
    if span_ms <= 2 * 86_400_000 {
        full[11..16].to_string()
    } else {
        full[5..10].to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn wrap(title: &str, legend: Markup, svg: String) -> Markup {
    html! {
        figure.chart {
            figcaption { strong { (title) } (legend) }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                (PreEscaped(svg))
            }
        }
    }
}

/// Calls per bucket as bars, errors as a darker bar inside each.
pub fn volume(
    title: &str,
    starts_ms: &[u64],
    bucket_ms: u64,
    calls: &[f64],
    errors: &[f64],
    link: impl Fn(u64) -> String,
) -> Markup {
    let max = calls.iter().copied().fold(0.0, f64::max);
    let f = Frame {
        starts_ms: starts_ms.to_vec(),
        bucket_ms,
        y_max: nice_ceiling(max),
        unit: Unit::Count,
    };
    let mut svg = String::new();
    f.axes(&mut svg);
    let bar_w = (f.slot() * 0.8).max(1.0);
    for (i, start) in starts_ms.iter().enumerate() {
        let (c, e) = (calls[i], errors[i]);
        let x = f.x(i) + (f.slot() - bar_w) / 2.0;
        if c > 0.0 {
            let _ = write!(
                svg,
                r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{:.1}"/>"#,
                f.y(c),
                f.y(0.0) - f.y(c)
            );
        }
        if e > 0.0 {
            let _ = write!(
                svg,
                r#"<rect class="bar err" x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{:.1}"/>"#,
                f.y(e),
                f.y(0.0) - f.y(e)
            );
        }
        let tip = format!(
            "{}: {} calls, {} errors",
            fmt_time(*start),
            Unit::Count.fmt(c.round()),
            Unit::Count.fmt(e.round())
        );
        f.hotspot(&mut svg, i, &link(*start), &tip);
    }
    let legend = html! { span.legend { span.key.bar {} "calls" span.key.err {} "errors" } };
    wrap(title, legend, svg)
}

/// One or more lines over the buckets; a bucket without a value breaks the line.
pub fn lines(
    title: &str,
    unit: Unit,
    starts_ms: &[u64],
    bucket_ms: u64,
    lines: &[Line<'_>],
    link: impl Fn(u64) -> String,
) -> Markup {
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .copied()
        .fold(0.0, f64::max);
    let y_max = match unit {
        Unit::Percent => nice_ceiling(max.max(0.01)).min(1.0),
        _ => nice_ceiling(max),
    };
    let f = Frame {
        starts_ms: starts_ms.to_vec(),
        bucket_ms,
        y_max,
        unit,
    };
    let mut svg = String::new();
    f.axes(&mut svg);
    let mid = f.slot() / 2.0;
    for l in lines {
        let mut path = String::new();
        let mut pen_down = false;
        for (i, v) in l.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let cmd = if pen_down { 'L' } else { 'M' };
                    let _ = write!(path, "{cmd}{:.1} {:.1} ", f.x(i) + mid, f.y(*v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            svg,
            r#"<path class="line {}" d="{}"/>"#,
            l.class,
            path.trim_end()
        );
        // Single points would not show as a line; dots make every value visible.
        for (i, v) in l.values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    svg,
                    r#"<circle class="dot {}" cx="{:.1}" cy="{:.1}" r="2.5"/>"#,
                    l.class,
                    f.x(i) + mid,
                    f.y(*v)
                );
            }
        }
    }
    for (i, start) in starts_ms.iter().enumerate() {
        let mut tip = fmt_time(*start);
        for l in lines {
            let v = l.values[i].map_or_else(|| "–".into(), |v| unit.fmt(v));
            let _ = write!(tip, ", {} {v}", l.name);
        }
        f.hotspot(&mut svg, i, &link(*start), &tip);
    }
    let legend = html! {
        span.legend { @for l in lines { span class={ "key " (l.class) } {} (l.name) } }
    };
    wrap(title, legend, svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(0.034), 0.05);
    }

    #[test]
    fn charts_link_every_bucket() {
        let starts = [0u64, 3_600_000, 7_200_000];
        let m = volume(
            "Calls",
            &starts,
            3_600_000,
            &[1.0, 0.0, 3.0],
            &[0.0, 0.0, 1.0],
            |s| format!("/x?from={s}"),
        )
        .into_string();
        assert_eq!(m.matches("<a href=").count(), 3);
        assert!(m.contains("01:00:00 UTC: 0 calls, 0 errors"));
        let l = lines(
            "Latency",
            Unit::Ms,
            &starts,
            3_600_000,
            &[Line {
                name: "p95",
                class: "p95",
                values: vec![Some(5.0), None, Some(12.0)],
            }],
            |_| "/y".into(),
        )
        .into_string();
        assert!(l.contains("M") && l.contains("p95 –"));
    }
}
