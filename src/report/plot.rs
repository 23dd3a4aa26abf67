//! SVG plots of a simulation: blocking against range size (log scale, with the 95 % band and
//! the target), and ports held over time. Rendered to a string, so the caller writes the
//! file in one piece.
//!
//! The legend has a column of its own, right of the chart, so it never covers a point. A log
//! axis has no 0: blocking that was never seen is drawn on a row labelled 0 one decade below
//! the smallest probability drawn, with a marker of its own, never as a small number.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::sim::{OccupancySeries, Summary};

/// The simulation plot: a chart column and, right of it, the legend column.
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 720;
const LEGEND_WIDTH: u32 = 240;
/// The blocking panel's height; the occupancy panel has the rest.
const BLOCKING_HEIGHT: u32 = 430;
const BAND: RGBColor = RGBColor(120, 160, 220);

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot: {0}")]
pub struct PlotError(String);

fn fail(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// The SVG document for `summary`.
pub fn svg(summary: &Summary) -> Result<String, PlotError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        let (top, bottom) = root.split_vertically(BLOCKING_HEIGHT);
        let (chart, legend_column) = top.split_horizontally(WIDTH - LEGEND_WIDTH);
        let entries = blocking_panel(summary, &chart)?;
        legend(&legend_column, &entries)?;
        // The same chart width below, so the two panels line up.
        let (chart, _) = bottom.split_horizontally(WIDTH - LEGEND_WIDTH);
        occupancy_panel(summary, &chart)?;
        root.present().map_err(fail)?;
    }
    Ok(text)
}

/// Blocking probabilities on a log axis in decades (y = log10 p), with 0 on a row of its
/// own, `zero`, one decade below the smallest positive probability drawn. Clamping zeros to
/// a small probability (1e-7) would claim a blocking nobody saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DecadeAxis {
    /// The decade of the row labelled 0.
    zero: i32,
}

impl DecadeAxis {
    fn new(probabilities: impl IntoIterator<Item = f64>) -> Self {
        let smallest = probabilities
            .into_iter()
            .filter(|p| *p > 0.0 && p.is_finite())
            .fold(1.0, f64::min);
        Self {
            zero: smallest.log10().floor() as i32 - 1,
        }
    }

    fn y(self, p: f64) -> f64 {
        let zero = f64::from(self.zero);
        if p > 0.0 { p.log10().max(zero) } else { zero }
    }

    fn span(self) -> std::ops::Range<f64> {
        f64::from(self.zero) - 0.4..0.25
    }

    /// Labelled rows: 0, then every decade up to 1 (every second, third… when there are more
    /// than ten).
    fn ticks(self) -> Vec<f64> {
        let step = (-self.zero / 10 + 1).max(1);
        std::iter::once(self.zero)
            .chain((self.zero + 1..=0).filter(|k| k % step == 0))
            .map(f64::from)
            .collect()
    }

    /// Light lines at 2..9 × each decade above the gap under the smallest probability.
    fn minor(self) -> Vec<f64> {
        (self.zero + 1..0)
            .flat_map(|k| (2..10).map(move |m| f64::from(k) + f64::from(m).log10()))
            .collect()
    }

    fn label(self, y: f64) -> String {
        let k = y.round() as i32;
        match k {
            _ if k <= self.zero => "0".to_string(),
            0 => "1".to_string(),
            -1 => "0.1".to_string(),
            -2 => "0.01".to_string(),
            -3 => "0.001".to_string(),
            _ => format!("1e{k}"),
        }
    }
}

/// The axis itself: linear in decades, its bold lines at [`DecadeAxis::ticks`] and its light
/// ones at [`DecadeAxis::minor`].
impl Ranged for DecadeAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.span();
        let fraction = (value - span.start) / (span.end - span.start);
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor()
        } else {
            self.ticks()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.span()
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
enum Glyph {
    Line(RGBColor, u32),
    Dot(RGBColor),
    Ring(RGBColor),
}

fn blocking_panel<DB: DrawingBackend>(
    summary: &Summary,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<Vec<(String, Glyph)>, PlotError>
where
    DB::ErrorType: 'static,
{
    let target = summary.context.target_blocking;
    let axis = DecadeAxis::new(
        summary
            .blocking
            .iter()
            .flat_map(|p| [p.probability, p.ci95[0], p.ci95[1]])
            .chain([target]),
    );
    let max_ports = summary.blocking.last().map_or(1, |p| p.ports).max(1);
    let title = format!(
        "{}: blocking by client range size",
        summary.context.scenario
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..max_ports + 1, axis)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "client range size (ports, from {})",
            summary.context.base_port
        ))
        .y_desc("blocking probability (log scale; 0 at the bottom)")
        .y_label_formatter(&|y| axis.label(*y))
        .draw()
        .map_err(fail)?;
    // A break in the y axis between the 0 row and the first decade: the gap is not a decade.
    let (x, y) = chart.backend_coord(&(0, f64::from(axis.zero) + 0.5));
    for dy in [-3, 3] {
        area.draw(&PathElement::new(
            vec![(x - 6, y + dy + 3), (x + 6, y + dy - 3)],
            BLACK.stroke_width(1),
        ))
        .map_err(fail)?;
    }
    area.draw(&Rectangle::new(
        [(x - 1, y - 2), (x + 1, y + 2)],
        WHITE.filled(),
    ))
    .map_err(fail)?;
    let mut entries = vec![("95% interval".to_string(), Glyph::Line(BAND, 3))];
    chart
        .draw_series(summary.blocking.iter().map(|p| {
            let (lo, hi) = (axis.y(p.ci95[0]), axis.y(p.ci95[1]));
            PathElement::new(vec![(p.ports, lo), (p.ports, hi)], BAND.stroke_width(3))
        }))
        .map_err(fail)?;
    chart
        .draw_series(LineSeries::new(
            summary
                .blocking
                .iter()
                .map(|p| (p.ports, axis.y(p.probability))),
            BLUE.stroke_width(2),
        ))
        .map_err(fail)?;
    entries.push(("simulated blocking".to_string(), Glyph::Line(BLUE, 2)));
    let zeros: Vec<u64> = summary
        .blocking
        .iter()
        .filter(|p| p.probability == 0.0)
        .map(|p| p.ports)
        .collect();
    if !zeros.is_empty() {
        chart
            .draw_series(
                zeros
                    .iter()
                    .map(|&ports| Circle::new((ports, axis.y(0.0)), 4, BLUE.stroke_width(2))),
            )
            .map_err(fail)?;
        entries.push(("none blocked (drawn at 0)".to_string(), Glyph::Ring(BLUE)));
    }
    chart
        .draw_series(LineSeries::new(
            vec![(0, axis.y(target)), (max_ports + 1, axis.y(target))],
            RED,
        ))
        .map_err(fail)?;
    entries.push((format!("target {target}"), Glyph::Line(RED, 1)));
    if let Some(r) = &summary.recommended {
        chart
            .draw_series(std::iter::once(Circle::new(
                (r.ports, axis.y(target)),
                6,
                RED.filled(),
            )))
            .map_err(fail)?;
        entries.push((
            format!("recommended {}-{}", r.first, r.last),
            Glyph::Dot(RED),
        ));
    }
    Ok(entries)
}

/// The legend, in its own column beside the chart: a box of one row per entry.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, Glyph)],
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    const ROW: i32 = 22;
    // Level with the top of the chart's plotting area (below its caption).
    let (x0, y0) = (8, 48);
    let width = LEGEND_WIDTH as i32 - 2 * x0;
    let height = ROW * entries.len() as i32 + 12;
    let corners = [(x0, y0), (x0 + width, y0 + height)];
    area.draw(&Rectangle::new(corners, WHITE.filled()))
        .map_err(fail)?;
    area.draw(&Rectangle::new(corners, BLACK)).map_err(fail)?;
    let font = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (label, glyph)) in entries.iter().enumerate() {
        let y = y0 + 6 + ROW * i as i32 + ROW / 2;
        let (from, to) = ((x0 + 10, y), (x0 + 30, y));
        match *glyph {
            Glyph::Line(color, width) => {
                area.draw(&PathElement::new(vec![from, to], color.stroke_width(width)))
            }
            Glyph::Dot(color) => area.draw(&Circle::new((x0 + 20, y), 5, color.filled())),
            Glyph::Ring(color) => area.draw(&Circle::new((x0 + 20, y), 4, color.stroke_width(2))),
        }
        .map_err(fail)?;
        area.draw(&Text::new(label.clone(), (x0 + 38, y), font.clone()))
            .map_err(fail)?;
    }
    Ok(())
}

/// Ports held in bins of a round width: the simulator keeps 2^k-nanosecond buckets (1099.51 s
/// in a day-long run); each bin here is the time-weighted mean of the buckets it covers.
#[derive(Debug, Clone, PartialEq)]
struct Bins {
    /// Width of a bin, seconds.
    width: f64,
    /// Mean ports held in each bin, the first from 0 s.
    means: Vec<f64>,
    /// Where the series ends, seconds (the last bin may be cut short there).
    end: f64,
}

impl Bins {
    /// `points`: `(bucket start in seconds, mean ports held)` of equal buckets.
    fn of(points: &[(f64, f64)]) -> Self {
        let bucket = match points {
            [(a, _), (b, _), ..] => b - a,
            _ => OccupancySeries::FIRST_WIDTH_S,
        };
        let width = round_width(bucket);
        let end = points.last().map_or(0.0, |(t, _)| t + bucket);
        let count = (end / width).ceil() as usize;
        let mut area = vec![0.0; count];
        for &(start, mean) in points {
            let (mut t, stop) = (start, start + bucket);
            while t < stop {
                let mut i = (t / width) as usize;
                if (i + 1) as f64 * width <= t {
                    i += 1;
                }
                let i = i.min(count - 1);
                let bin_end = if i + 1 == count {
                    stop
                } else {
                    ((i + 1) as f64 * width).min(stop)
                };
                area[i] += mean * (bin_end - t);
                t = bin_end;
            }
        }
        let means = area
            .iter()
            .enumerate()
            .map(|(i, a)| a / (((i + 1) as f64 * width).min(end) - i as f64 * width))
            .collect();
        Self { width, means, end }
    }

    /// The outline of the bins: each one's mean, level across its width.
    fn steps(&self) -> Vec<(f64, f64)> {
        self.means
            .iter()
            .enumerate()
            .flat_map(|(i, &mean)| {
                let from = i as f64 * self.width;
                [(from, mean), ((from + self.width).min(self.end), mean)]
            })
            .collect()
    }
}

/// The smallest round width of at least `seconds`: 1-2-5 steps up to 10 s, then 15 s, 20 s,
/// 30 s, 1, 2, 5, 10, 15, 20, 30 min, 1, 2, 3, 6, 12 h, then 1-2-5 steps of days.
fn round_width(seconds: f64) -> f64 {
    const LADDER: [f64; 29] = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0,
        30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0,
        43200.0, 86400.0,
    ];
    // A hair of slack: a bucket of exactly 2 s computed as 1.9999999 s is 2 s.
    let wanted = seconds * (1.0 - 1e-9);
    if let Some(&width) = LADDER.iter().find(|&&w| w >= wanted) {
        return width;
    }
    if !wanted.is_finite() {
        return seconds;
    }
    let mut days = 1.0;
    loop {
        for step in [1.0, 2.0, 5.0] {
            if step * days * 86400.0 >= wanted {
                return step * days * 86400.0;
            }
        }
        days *= 10.0;
    }
}

/// A duration in the unit that reads best: `20 min`, `2 h`, `500 ms`.
fn duration_text(seconds: f64) -> String {
    let (value, unit) = match seconds {
        s if s >= 86400.0 => (s / 86400.0, "d"),
        s if s >= 3600.0 => (s / 3600.0, "h"),
        s if s >= 60.0 => (s / 60.0, "min"),
        s if s >= 1.0 => (s, "s"),
        s => (s * 1e3, "ms"),
    };
    format!("{} {unit}", tick(value))
}

/// A tick label: at most three decimals, no trailing zeros (`50`, `2.5`).
fn tick(x: f64) -> String {
    let text = format!("{x:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0" } else { text }.to_string()
}

fn occupancy_panel<DB: DrawingBackend>(
    summary: &Summary,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let points: Vec<(f64, f64)> = summary.occupancy.points().collect();
    let bins = Bins::of(&points);
    let end = bins.end.max(1e-9);
    let (scale, unit) = if end > 7200.0 {
        (3600.0, "h")
    } else if end > 120.0 {
        (60.0, "min")
    } else {
        (1.0, "s")
    };
    let top = bins.means.iter().copied().fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("ports held over time (replication 0)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end / scale, 0.0..top)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc(format!("simulated time ({unit})"))
        .y_desc(format!(
            "ports held (mean per {})",
            duration_text(bins.width)
        ))
        .x_label_formatter(&|x| tick(*x))
        .y_label_formatter(&|y| tick(*y))
        .draw()
        .map_err(fail)?;
    chart
        .draw_series(LineSeries::new(
            bins.steps().into_iter().map(|(t, held)| (t / scale, held)),
            BLACK,
        ))
        .map_err(fail)?;
    Ok(())
}

/// The SVG of a blast run's sessions: each one's pacing rate over time (delay-based
/// policies; a fixed policy draws its target as a flat line), seconds since its sending
/// began on the x axis.
pub fn rates_svg(report: &crate::blast::BlastReport) -> Result<String, PlotError> {
    let series: Vec<Vec<(f64, f64)>> = report
        .sessions
        .iter()
        .map(|s| {
            if s.rate_bps.is_empty() {
                let end = s.completion_s.unwrap_or(s.holding_s).max(0.0);
                let target = report.header.rate_bps as f64 / 1e6;
                vec![(0.0, target), (end, target)]
            } else {
                s.rate_bps.iter().map(|[t, bps]| (*t, bps / 1e6)).collect()
            }
        })
        .filter(|points: &Vec<(f64, f64)>| points.len() > 1)
        .collect();
    let end = series
        .iter()
        .flat_map(|points| points.iter().map(|(t, _)| *t))
        .fold(1e-3, f64::max);
    let top = series
        .iter()
        .flat_map(|points| points.iter().map(|(_, r)| *r))
        .fold(report.header.rate_bps as f64 / 1e6, f64::max)
        .max(1e-3)
        * 1.1;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (900, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "pacing rate of each session (policy {})",
                    report.header.policy.name()
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end, 0.0..top)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_desc("time since the session began sending (s)")
            .y_desc("pacing rate (Mbit/s)")
            .x_label_formatter(&|x| tick(*x))
            .y_label_formatter(&|y| tick(*y))
            .draw()
            .map_err(fail)?;
        for (i, points) in series.iter().enumerate() {
            let color = Palette99::pick(i).mix(0.8);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color))
                .map_err(fail)?;
        }
        root.present().map_err(fail)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_has_a_row_of_its_own_below_the_smallest_probability() {
        let axis = DecadeAxis::new([0.5, 0.0, 3e-5, 0.001]);
        assert_eq!(axis.zero, -6);
        assert_eq!(axis.y(0.0), -6.0);
        assert!((axis.y(3e-5) - 3e-5f64.log10()).abs() < 1e-12);
        let labels: Vec<String> = axis.ticks().into_iter().map(|y| axis.label(y)).collect();
        assert_eq!(labels, ["0", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1"]);
        // No light line in the gap between the 0 row and the first decade.
        assert!(axis.minor().iter().all(|&y| y > -5.0 && y < 0.0));
        // Only zeros and the target: the target sets the scale.
        assert_eq!(DecadeAxis::new([0.0, 0.01]).zero, -3);
        // Many decades: every second one labelled, the 0 row always.
        let wide = DecadeAxis::new([1e-12]);
        let ticks = wide.ticks();
        assert_eq!(wide.label(ticks[0]), "0");
        assert!(ticks.len() <= 8, "{ticks:?}");
    }

    #[test]
    fn the_axis_maps_decades_linearly() {
        let axis = DecadeAxis::new([1e-3]);
        let span = axis.span();
        assert_eq!(axis.map(&span.start, (400, 0)), 400);
        assert_eq!(axis.map(&span.end, (400, 0)), 0);
        assert!(axis.map(&axis.y(0.0), (400, 0)) > axis.map(&axis.y(1e-3), (400, 0)));
    }

    #[test]
    fn bins_have_round_widths() {
        for (bucket, width, text) in [
            ((1u64 << 40) as f64 / 1e9, 1200.0, "20 min"),
            ((1u64 << 39) as f64 / 1e9, 600.0, "10 min"),
            ((1u64 << 42) as f64 / 1e9, 7200.0, "2 h"),
            ((1u64 << 43) as f64 / 1e9, 10800.0, "3 h"),
            (OccupancySeries::FIRST_WIDTH_S, 0.002, "2 ms"),
            (2.0, 2.0, "2 s"),
            (3.0 * 86400.0, 5.0 * 86400.0, "5 d"),
        ] {
            let got = round_width(bucket);
            assert_eq!(got, width, "{bucket}");
            assert!(got >= bucket * (1.0 - 1e-9));
            assert_eq!(duration_text(got), text);
        }
        assert_eq!(tick(50.0), "50");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(-0.0001), "0");
    }

    #[test]
    fn rebinning_keeps_the_time_weighted_mean() {
        let bucket = (1u64 << 40) as f64 / 1e9;
        let points: Vec<(f64, f64)> = (0..79)
            .map(|i| (f64::from(i) * bucket, f64::from(i % 7) + 0.5))
            .collect();
        let bins = Bins::of(&points);
        assert_eq!(bins.width, 1200.0);
        assert_eq!(bins.end, 79.0 * bucket);
        assert_eq!(bins.means.len(), (bins.end / 1200.0).ceil() as usize);
        let area = |pairs: &[(f64, f64)], width: f64| -> f64 {
            pairs.iter().map(|(_, mean)| mean * width).sum()
        };
        let last_span = bins.end - (bins.means.len() - 1) as f64 * bins.width;
        let binned: f64 = bins.means[..bins.means.len() - 1]
            .iter()
            .map(|m| m * bins.width)
            .sum::<f64>()
            + bins.means.last().unwrap() * last_span;
        let original = area(&points, bucket);
        assert!(
            (binned - original).abs() < 1e-9 * original,
            "{binned} {original}"
        );
        // Constant occupancy stays constant.
        let flat = Bins::of(&[(0.0, 3.0), (bucket, 3.0), (2.0 * bucket, 3.0)]);
        assert!(
            flat.means.iter().all(|m| (m - 3.0).abs() < 1e-9),
            "{flat:?}"
        );
        // The outline: two points a bin, level, ending where the series ends.
        let steps = flat.steps();
        assert_eq!(steps.len(), 2 * flat.means.len());
        assert_eq!(steps.last().unwrap().0, flat.end);
        assert!(Bins::of(&[]).means.is_empty());
        // One point: a bin cut short where the series ends, its mean kept.
        assert_eq!(Bins::of(&[(0.0, 2.0)]).means, [2.0]);
    }
}
