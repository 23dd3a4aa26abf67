//! SVG plots of a simulation: blocking against range size (log scale, with the 95 % band and
//! the target), and ports held over time. Rendered to a string, so the caller writes the
//! file in one piece.

use plotters::prelude::*;

use crate::sim::Summary;

/// Smallest probability drawn on the log axis; zeros are drawn there.
const FLOOR: f64 = 1e-7;

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
        let root = SVGBackend::with_string(&mut text, (900, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        let (top, bottom) = root.split_vertically(420);
        blocking_panel(summary, &top)?;
        occupancy_panel(summary, &bottom)?;
        root.present().map_err(fail)?;
    }
    Ok(text)
}

fn blocking_panel<DB: DrawingBackend>(
    summary: &Summary,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let clamp = |p: f64| p.max(FLOOR);
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
        .build_cartesian_2d(0u64..max_ports + 1, (FLOOR..1.0).log_scale())
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc(format!("ports from {}", summary.context.base_port))
        .y_desc("blocking probability")
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .draw()
        .map_err(fail)?;
    let band = RGBColor(120, 160, 220);
    chart
        .draw_series(summary.blocking.iter().map(|p| {
            let (lo, hi) = (clamp(p.ci95[0]), clamp(p.ci95[1]));
            PathElement::new(vec![(p.ports, lo), (p.ports, hi)], band.stroke_width(3))
        }))
        .map_err(fail)?
        .label("95% interval")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], band.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(
            summary
                .blocking
                .iter()
                .map(|p| (p.ports, clamp(p.probability))),
            BLUE.stroke_width(2),
        ))
        .map_err(fail)?
        .label("simulated blocking")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    let target = summary.context.target_blocking;
    chart
        .draw_series(LineSeries::new(
            vec![(0, target), (max_ports + 1, target)],
            RED,
        ))
        .map_err(fail)?
        .label(format!("target {target}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    if let Some(r) = &summary.recommended {
        chart
            .draw_series(std::iter::once(Circle::new(
                (r.ports, clamp(target)),
                6,
                RED.filled(),
            )))
            .map_err(fail)?
            .label(format!("recommended {}-{}", r.first, r.last))
            .legend(|(x, y)| Circle::new((x + 8, y), 4, RED.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(fail)?;
    Ok(())
}

fn occupancy_panel<DB: DrawingBackend>(
    summary: &Summary,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let points = &summary.occupancy;
    let end = points.last().map_or(1.0, |(t, _)| *t).max(1e-9);
    let (scale, unit) = if end > 7200.0 {
        (3600.0, "h")
    } else if end > 120.0 {
        (60.0, "min")
    } else {
        (1.0, "s")
    };
    let top = points.iter().map(|(_, held)| *held).fold(1.0, f64::max) * 1.1;
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
        .y_desc("mean ports held")
        .draw()
        .map_err(fail)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|(t, held)| (t / scale, *held)),
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
            .x_desc("seconds since the session began sending")
            .y_desc("rate (Mbit/s)")
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
