//! Hand-rendered SVG charts (grouped bars and lines) for docs/benchmarks.md: no chart library,
//! just strings, so the charts diff cleanly and need nothing to build.

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 6] = [
    "#2f6fdf", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#5899da",
];

/// A named series of values, one per category (bars) or a list of points (lines).
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Bars: one value per category. Lines: y values matching `xs`.
    pub values: Vec<f64>,
    /// Lines only: x values.
    pub xs: Vec<f64>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A readable number: 12 345, 1.2, 0.05.
pub fn human(value: f64) -> String {
    if value >= 1000.0 {
        let n = value.round() as u64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push('\u{202f}');
            }
            out.push(c);
        }
        out
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A "nice" upper bound for an axis.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
}

fn legend(out: &mut String, series: &[Series]) {
    let mut x = LEFT;
    let y = HEIGHT - 18.0;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            x + 16.0,
            escape(&s.name)
        );
        x += 26.0 + 7.0 * s.name.len() as f64;
    }
}

/// Horizontal grid lines and y labels for a linear axis 0..=max.
fn y_axis(out: &mut String, max: f64, unit: &str) {
    let plot_h = HEIGHT - TOP - BOTTOM;
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            human(v)
        );
    }
    let _ = write!(
        out,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(unit)
    );
}

/// Grouped bars: one group per category, one bar per series, value labels on top.
pub fn bar_chart(title: &str, unit: &str, categories: &[String], series: &[Series]) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let max = nice_max(
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    );
    y_axis(&mut out, max, unit);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let group_w = plot_w / categories.len().max(1) as f64;
    let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
    for (c, category) in categories.iter().enumerate() {
        let gx = LEFT + group_w * c as f64 + group_w * 0.1;
        for (s, ser) in series.iter().enumerate() {
            let Some(&v) = ser.values.get(c) else {
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            let h = plot_h * (v / max).clamp(0.0, 1.0);
            let x = gx + bar_w * s as f64;
            let y = TOP + plot_h - h;
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                bar_w * 0.92,
                COLORS[s % COLORS.len()],
                x + bar_w * 0.46,
                y - 3.0,
                human(v)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + group_w * (c as f64 + 0.5),
            TOP + plot_h + 16.0,
            escape(category)
        );
    }
    if series.len() > 1 {
        legend(&mut out, series);
    }
    out.push_str("</svg>\n");
    out
}

/// Lines over a log10 x axis (rates) and a log10 y axis (latencies).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let points = || {
        series
            .iter()
            .flat_map(|s| s.xs.iter().zip(&s.values))
            .filter(|(x, y)| **x > 0.0 && **y > 0.0)
    };
    let (x_lo, x_hi, y_lo, y_hi) = points().fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    if x_lo > x_hi {
        out.push_str("</svg>\n");
        return out;
    }
    let (x_lo, x_hi) = (
        x_lo.log10().floor(),
        x_hi.log10().ceil().max(x_lo.log10().floor() + 1.0),
    );
    let (y_lo, y_hi) = (
        y_lo.log10().floor(),
        y_hi.log10().ceil().max(y_lo.log10().floor() + 1.0),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + plot_w * (x.log10() - x_lo) / (x_hi - x_lo);
    let py = |y: f64| TOP + plot_h - plot_h * (y.log10() - y_lo) / (y_hi - y_lo);
    let mut e = y_lo;
    while e <= y_hi {
        let v = 10f64.powf(e);
        let y = py(v);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            human(v)
        );
        e += 1.0;
    }
    let mut e = x_lo;
    while e <= x_hi {
        let v = 10f64.powf(e);
        let x = px(v);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            human(v)
        );
        e += 1.0;
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        TOP + plot_h + 34.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> =
            s.xs.iter()
                .zip(&s.values)
                .filter(|(x, y)| **x > 0.0 && **y > 0.0)
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
        }
    }
    legend(&mut out, series);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg() {
        let bars = bar_chart(
            "t <1>",
            "ms",
            &["a".into(), "b".into()],
            &[Series {
                name: "p99".into(),
                values: vec![1.0, 2500.0],
                xs: vec![],
            }],
        );
        assert!(bars.starts_with("<svg") && bars.ends_with("</svg>\n"));
        assert!(bars.contains("t &lt;1&gt;"));
        assert_eq!(bars.matches("<rect x=").count(), 2);
        let lines = line_chart(
            "l",
            "x",
            "y",
            &[Series {
                name: "s".into(),
                values: vec![1.0, 10.0],
                xs: vec![100.0, 1000.0],
            }],
        );
        assert!(lines.contains("<polyline"));
        assert_eq!(human(12_345.0), "12\u{202f}345");
        assert_eq!(human(0.5), "0.50");
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
