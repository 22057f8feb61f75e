//! The `--report FILE.svg` plot: latency against percentile, the percentile axis stretched
//! logarithmically towards 100 % (0, 90, 99, 99.9, 99.99, 99.999 % equally spaced), as
//! HdrHistogram's plotter draws it. Hand-written SVG: no dependency, opens in any browser.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::latency::Percentiles;
use crate::run::fmt_us;

const W: f64 = 800.0;
const H: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 72.0;
const BOTTOM: f64 = 60.0;
/// Nines shown on the x axis: up to 99.999 %.
const NINES: f64 = 5.0;

/// x position of quantile `q` in "nines": 0.9 → 1, 0.99 → 2 …
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        return NINES;
    }
    (-(1.0 - q).log10()).clamp(0.0, NINES)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value axis maximum that reads well: 1, 2 or 5 × 10^k, at least `max`.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let exp = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * exp >= max {
            return m * exp;
        }
    }
    10.0 * exp
}

/// Plots `h` (microseconds); `title` and `subtitle` head the picture.
pub fn percentile_plot(h: &Histogram<u64>, title: &str, subtitle: &str) -> String {
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let max_ms = nice_ceiling(h.max() as f64 / 1000.0);
    let x = |n: f64| LEFT + n / NINES * plot_w;
    let y = |ms: f64| TOP + plot_h - ms / max_ms * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Long command lines are cut: the JSON report keeps the whole one.
    let subtitle: String = if subtitle.chars().count() > 110 {
        subtitle.chars().take(109).chain(['…']).collect()
    } else {
        subtitle.to_string()
    };
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="42" fill="#555">{}</text>"##,
        escape(&subtitle)
    );
    let p = Percentiles::of(h);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="56" fill="#555">p50 {} · p90 {} · p99 {} · p99.9 {} · max {} · n = {}</text>"##,
        fmt_us(p.p50),
        fmt_us(p.p90),
        fmt_us(p.p99),
        fmt_us(p.p999),
        fmt_us(p.max),
        p.count
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let xi = x(i as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xi:.1}" y1="{TOP}" x2="{xi:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xi:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    for i in 0..=5 {
        let ms = max_ms * f64::from(i) / 5.0;
        let yi = y(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yi:.1}" x2="{:.1}" y2="{yi:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yi + 4.0,
            trim(ms)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        H - 16.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (ms)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    if h.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">no samples</text>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    } else {
        let mut points = String::new();
        for v in h.iter_quantiles(8) {
            let q = v.quantile_iterated_to();
            let ms = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
            let _ = write!(points, "{:.1},{:.1} ", x(nines(q)), y(ms.min(max_ms)));
            if nines(q) >= NINES {
                break;
            }
        }
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
            points.trim_end()
        );
    }
    s.push_str("</svg>\n");
    s
}

fn trim(ms: f64) -> String {
    let t = format!("{ms:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::new_histogram;

    #[test]
    fn nines_spread_the_tail() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), NINES);
    }

    #[test]
    fn axis_ceiling_is_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(31.0), 50.0);
    }

    #[test]
    fn plot_is_a_complete_svg_with_a_curve() {
        let mut h = new_histogram();
        for v in 1..=10_000 {
            h.record(v).unwrap();
        }
        let svg = percentile_plot(&h, "fan-out <QoS 1>", "coremq-loadtest --scenario fan-out");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("fan-out &lt;QoS 1&gt;"));
        assert!(svg.contains("n = 10000"));
        let long = percentile_plot(&h, "t", &"x".repeat(300));
        assert!(long.contains(&format!("{}…", "x".repeat(109))));
        let empty = percentile_plot(&new_histogram(), "t", "s");
        assert!(empty.contains("no samples") && !empty.contains("<polyline"));
    }
}
