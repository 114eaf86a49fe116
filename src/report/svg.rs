//! Inline SVG charts for `report.html`, drawn in Rust so the report needs no JavaScript and
//! no network: line/step charts with linear or log axes and vertical event markers
//! ([`Chart`]), and a lane timeline ([`Timeline`]) for shard pipelines.
//!
//! The chart frame is `templates/chart.svg`; this file computes scales, ticks and paths and
//! escapes every label. Pure: strings in, a string out.

use std::fmt::Write as _;

use super::template::{escape, fill};

const CHART_SVG: &str = include_str!("templates/chart.svg");

/// Series colours (Tableau 10 without its red and green, which mark faults and recoveries).
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];
/// Fault marker colour.
pub const FAULT_COLOUR: &str = "#d62728";
/// Recovery marker colour.
pub const RECOVERY_COLOUR: &str = "#2ca02c";

const WIDTH: f64 = 760.0;
const PLOT_HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 16.0;
const AXIS_BAND: f64 = 56.0;
const LEGEND_ROW: f64 = 20.0;
const LEGEND_COLUMNS: usize = 3;

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Linear from `min` to `max`.
    Linear {
        /// Lowest value shown.
        min: f64,
        /// Highest value shown.
        max: f64,
    },
    /// Base-10 logarithmic from `min` to `max` (both > 0).
    Log {
        /// Lowest value shown.
        min: f64,
        /// Highest value shown.
        max: f64,
    },
}

impl Scale {
    /// A scale that fits `values`: log when they span more than a factor of 8 (latency
    /// distributions with a slow tail), else linear from 0 (or the data minimum for a tight
    /// band far from 0).
    pub fn fit(values: impl IntoIterator<Item = f64>, from_zero: bool) -> Scale {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Scale::Linear { min: 0.0, max: 1.0 };
        }
        if !from_zero && lo > 0.0 && hi / lo > 8.0 {
            return Scale::Log {
                min: lo * 0.9,
                max: hi * 1.1,
            };
        }
        let max = if hi > 0.0 { hi * 1.05 } else { 1.0 };
        let min = if from_zero || lo < max * 0.5 {
            0.0
        } else {
            lo * 0.95
        };
        Scale::Linear { min, max }
    }

    /// Position of `v` in 0..=1 along the axis.
    fn unit(self, v: f64) -> f64 {
        let u = match self {
            Scale::Linear { min, max } => (v - min) / (max - min),
            Scale::Log { min, max } => (v.max(min).ln() - min.ln()) / (max.ln() - min.ln()),
        };
        if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Tick values: about five "nice" ones (1, 2, 5 x 10^k).
    fn ticks(self) -> Vec<f64> {
        match self {
            Scale::Linear { min, max } => {
                let raw = (max - min) / 5.0;
                let step = nice(raw);
                let mut t = (min / step).ceil() * step;
                let mut out = Vec::new();
                while t <= max + step * 1e-9 && out.len() < 20 {
                    out.push(t);
                    t += step;
                }
                out
            }
            Scale::Log { min, max } => {
                let mut out = Vec::new();
                let mut decade = 10f64.powf(min.log10().floor());
                while decade <= max && out.len() < 30 {
                    for m in [1.0, 2.0, 5.0] {
                        let t = decade * m;
                        if t >= min && t <= max {
                            out.push(t);
                        }
                    }
                    decade *= 10.0;
                }
                out
            }
        }
    }
}

/// The nearest 1, 2 or 5 x 10^k at or above `raw`.
fn nice(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || (v.fract() == 0.0 && v.abs() >= 1.0) {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, y) points in data units, in x order.
    pub points: Vec<(f64, f64)>,
    /// Drawn as a wide band under the other lines (a total that the per-part lines overlap).
    pub wide: bool,
}

/// What a vertical marker stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// A fault was injected.
    Fault,
    /// Service was restored.
    Recovery,
}

/// A vertical line at an x value, labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Where, in x data units.
    pub x: f64,
    /// Label shown next to the line.
    pub label: String,
    /// Fault or recovery.
    pub kind: MarkerKind,
}

/// A chart: axes, series and markers.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title (also the accessible name).
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X scale.
    pub x: Scale,
    /// Y scale.
    pub y: Scale,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
}

impl Chart {
    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let legend_rows = self.series.len().div_ceil(LEGEND_COLUMNS);
        let height = TOP + PLOT_HEIGHT + AXIS_BAND + legend_rows as f64 * LEGEND_ROW;
        let plot_w = WIDTH - LEFT - RIGHT;
        let px = |v: f64| LEFT + self.x.unit(v) * plot_w;
        let py = |v: f64| TOP + (1.0 - self.y.unit(v)) * PLOT_HEIGHT;
        let bottom = TOP + PLOT_HEIGHT;

        let mut grid = String::new();
        let mut axes = String::new();
        for t in self.x.ticks() {
            let x = px(t);
            let _ = write!(
                grid,
                r#"<line x1="{x:.1}" y1="{TOP:.1}" x2="{x:.1}" y2="{bottom:.1}"/>"#
            );
            let _ = write!(
                axes,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                bottom + 16.0,
                tick_label(t)
            );
        }
        for t in self.y.ticks() {
            let y = py(t);
            let _ = write!(
                grid,
                r#"<line x1="{LEFT:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/>"#,
                LEFT + plot_w
            );
            let _ = write!(
                axes,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                tick_label(t)
            );
        }

        let mut markers = String::new();
        for m in &self.markers {
            let x = px(m.x);
            let (colour, class) = match m.kind {
                MarkerKind::Fault => (FAULT_COLOUR, "fault"),
                MarkerKind::Recovery => (RECOVERY_COLOUR, "recovery"),
            };
            let _ = write!(
                markers,
                r#"<g class="marker {class}"><line x1="{x:.1}" y1="{TOP:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{colour}" stroke-width="2" stroke-dasharray="6 3"/><text x="{:.1}" y="{:.1}" fill="{colour}">{}</text><title>{}</title></g>"#,
                x + 4.0,
                TOP + 12.0,
                escape(&m.label),
                escape(&m.label)
            );
        }

        let mut series = String::new();
        let mut legend = String::new();
        for (i, s) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let mut d = String::new();
            for (j, &(x, y)) in s.points.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1} {:.1}",
                    if j == 0 { "M" } else { " L" },
                    px(x),
                    py(y)
                );
            }
            let _ = write!(
                series,
                r#"<path class="series" d="{d}" fill="none" stroke="{colour}" stroke-width="{}"><title>{}</title></path>"#,
                if s.wide { 7.0 } else { 2.5 },
                escape(&s.label)
            );
            // A path of one point draws nothing: a series measured once is a dot.
            if let [(x, y)] = s.points[..] {
                let _ = write!(
                    series,
                    r#"<circle class="series" cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"><title>{}</title></circle>"#,
                    px(x),
                    py(y),
                    escape(&s.label)
                );
            }
            let col = i % LEGEND_COLUMNS;
            let row = i / LEGEND_COLUMNS;
            let lx = LEFT + col as f64 * (plot_w / LEGEND_COLUMNS as f64);
            let ly = bottom + AXIS_BAND + row as f64 * LEGEND_ROW;
            let _ = write!(
                legend,
                r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                ly - 4.0,
                lx + 14.0,
                ly - 4.0,
                lx + 20.0,
                ly,
                escape(&s.label)
            );
        }

        fill(
            CHART_SVG,
            &[
                ("width", &format!("{WIDTH:.0}")),
                ("height", &format!("{height:.0}")),
                ("title", &escape(&self.title)),
                ("plot_x", &format!("{LEFT:.1}")),
                ("plot_y", &format!("{TOP:.1}")),
                ("plot_w", &format!("{plot_w:.1}")),
                ("plot_h", &format!("{PLOT_HEIGHT:.1}")),
                ("grid", &grid),
                ("axes", &axes),
                ("markers", &markers),
                ("series", &series),
                ("legend", &legend),
                ("x_label", &escape(&self.x_label)),
                ("x_label_x", &format!("{:.1}", LEFT + plot_w / 2.0)),
                ("x_label_y", &format!("{:.1}", bottom + 34.0)),
                ("y_label", &escape(&self.y_label)),
                ("y_label_y", &format!("{:.1}", TOP + PLOT_HEIGHT / 2.0)),
            ],
        )
    }
}

/// One bar of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineBar {
    /// The lane (e.g. the worker that ran the shard).
    pub lane: String,
    /// Start, ms since the run started.
    pub start_ms: f64,
    /// End, ms since the run started.
    pub end_ms: f64,
    /// Text on hover.
    pub label: String,
    /// False draws the bar in the fault colour.
    pub ok: bool,
}

/// A lane timeline (Gantt): one lane per worker, one bar per shard execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Title.
    pub title: String,
    /// The bars.
    pub bars: Vec<TimelineBar>,
}

impl Timeline {
    /// The timeline as an `<svg>` element; empty when there are no bars.
    pub fn render(&self) -> String {
        if self.bars.is_empty() {
            return String::new();
        }
        let mut lanes: Vec<&str> = Vec::new();
        for b in &self.bars {
            if !lanes.contains(&b.lane.as_str()) {
                lanes.push(&b.lane);
            }
        }
        let lane_h = 26.0;
        let left = 140.0;
        let plot_w = WIDTH - left - RIGHT;
        let x = Scale::fit(
            self.bars.iter().flat_map(|b| [0.0, b.end_ms / 1000.0]),
            true,
        );
        let height = TOP + lanes.len() as f64 * lane_h + AXIS_BAND;
        let mut body = String::new();
        for (i, lane) in lanes.iter().enumerate() {
            let _ = write!(
                body,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 8.0,
                TOP + i as f64 * lane_h + 17.0,
                escape(lane)
            );
        }
        for b in &self.bars {
            let i = lanes.iter().position(|l| *l == b.lane).unwrap_or(0);
            let x0 = left + x.unit(b.start_ms / 1000.0) * plot_w;
            let x1 = left + x.unit(b.end_ms / 1000.0) * plot_w;
            let colour = if b.ok {
                PALETTE[i % PALETTE.len()]
            } else {
                FAULT_COLOUR
            };
            let _ = write!(
                body,
                r#"<rect class="bar" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}</title></rect>"#,
                TOP + i as f64 * lane_h + 4.0,
                (x1 - x0).max(1.0),
                lane_h - 8.0,
                escape(&b.label)
            );
        }
        let axis_y = TOP + lanes.len() as f64 * lane_h;
        for t in x.ticks() {
            let _ = write!(
                body,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                left + x.unit(t) * plot_w,
                axis_y + 16.0,
                tick_label(t)
            );
        }
        format!(
            r#"<svg class="chart timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:.0} {height:.0}" width="{WIDTH:.0}" height="{height:.0}" role="img" aria-label="{t}"><title>{t}</title>{body}<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis-label">seconds since the run started</text></svg>"#,
            left + plot_w / 2.0,
            axis_y + 34.0,
            t = escape(&self.title)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_ticks() {
        assert_eq!(nice(0.7), 1.0);
        assert_eq!(nice(13.0), 20.0);
        let s = Scale::fit([10.0, 12.0, 90.0], false);
        assert!(matches!(s, Scale::Log { .. }), "{s:?}");
        assert!(s.ticks().contains(&20.0));
        let s = Scale::fit([10.0, 12.0], true);
        assert_eq!(
            s,
            Scale::Linear {
                min: 0.0,
                max: 12.0 * 1.05
            }
        );
        assert_eq!(s.unit(0.0), 0.0);
    }

    #[test]
    fn chart_fills_every_placeholder_and_escapes_labels() {
        let c = Chart {
            title: "a <b>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x: Scale::Linear {
                min: 0.0,
                max: 10.0,
            },
            y: Scale::Linear { min: 0.0, max: 1.0 },
            series: vec![Series {
                label: "s&t".into(),
                points: vec![(0.0, 0.0), (5.0, 0.5), (10.0, 1.0)],
                wide: false,
            }],
            markers: vec![Marker {
                x: 3.0,
                label: "kill_browser chromium#1".into(),
                kind: MarkerKind::Fault,
            }],
        };
        let svg = c.render();
        assert!(!svg.contains("{{"), "{svg}");
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("s&amp;t"));
        assert!(svg.contains(r#"class="series" d="M64.0 276.0 L"#), "{svg}");
        assert!(svg.contains("marker fault"));
        assert_eq!(
            Timeline {
                title: "t".into(),
                bars: vec![]
            }
            .render(),
            ""
        );
    }

    #[test]
    fn a_series_of_one_point_is_drawn_as_a_dot() {
        let chart = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x: Scale::Linear { min: 0.0, max: 1.0 },
            y: Scale::Linear { min: 0.0, max: 1.0 },
            series: vec![Series {
                label: "once".into(),
                points: vec![(0.5, 0.5)],
                wide: false,
            }],
            markers: Vec::new(),
        };
        assert!(chart.render().contains("<circle"), "{}", chart.render());
    }
}
