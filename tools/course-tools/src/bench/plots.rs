//! The plots of `cargo xtask bench batching`, `cargo xtask bench paged` and
//! `cargo xtask bench --compare`, as SVG.

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
/// One row of the batching benchmark's JSON (the fields the plot and `--compare` read).
pub struct BatchingRow {
    pub concurrency: usize,
    pub tokens_per_s: f64,
    pub mean_inter_token_ms: f64,
}

/// The rows the batching benchmark wrote to `json`.
pub fn read_batching(json: &Path) -> Result<Vec<BatchingRow>> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("cannot read {}", json.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not the batching benchmark's output", json.display()))
}

/// Aggregate tokens/s (left axis) and time per token of one request (right axis) against the
/// number of concurrent requests.
pub fn plot_batching(json: &Path, svg: &Path) -> Result<()> {
    let rows = read_batching(json)?;
    let max_x = rows.iter().map(|row| row.concurrency).max().unwrap_or(1) as f64;
    let max_rate = rows.iter().map(|row| row.tokens_per_s).fold(1.0, f64::max);
    let max_ms = rows
        .iter()
        .map(|row| row.mean_inter_token_ms)
        .fold(1.0, f64::max);

    let root = SVGBackend::new(svg, (720, 420)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Continuous batching: throughput and per-token latency",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x * 1.05, 0.0..max_rate * 1.15)?
            .set_secondary_coord(0.0..max_x * 1.05, 0.0..max_ms * 1.15);
        chart
            .configure_mesh()
            .x_desc("concurrent requests")
            .y_desc("aggregate tokens/s")
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("ms per token (one request)")
            .draw()?;
        let rate: Vec<(f64, f64)> = rows
            .iter()
            .map(|row| (row.concurrency as f64, row.tokens_per_s))
            .collect();
        let latency: Vec<(f64, f64)> = rows
            .iter()
            .map(|row| (row.concurrency as f64, row.mean_inter_token_ms))
            .collect();
        chart
            .draw_series(LineSeries::new(rate.clone(), BLUE.stroke_width(2)))?
            .label("aggregate tokens/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        chart.draw_series(
            rate.iter()
                .map(|&point| Circle::new(point, 4, BLUE.filled())),
        )?;
        chart
            .draw_secondary_series(LineSeries::new(latency.clone(), RED.stroke_width(2)))?
            .label("ms per token")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart.draw_secondary_series(
            latency
                .iter()
                .map(|&point| Circle::new(point, 4, RED.filled())),
        )?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|error| anyhow::anyhow!("cannot draw {}: {error}", svg.display()))
}

/// One bar group of the comparison plot: a system and its median speeds.
pub struct CompareBar {
    pub label: String,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
}

/// Which figure of a bar a panel shows.
type Metric = fn(&CompareBar) -> f64;

/// Prefill (left panel) and decode (right panel) tokens/s of each system, as bars.
pub fn plot_compare(bars: &[CompareBar], title: &str, svg: &Path) -> Result<()> {
    let root = SVGBackend::new(svg, (900, 440)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 20))?;
        let panels = root.split_evenly((1, 2));
        let metrics: [(&str, Metric); 2] = [
            ("prefill tokens/s", |bar| bar.prefill_tok_s),
            ("decode tokens/s", |bar| bar.decode_tok_s),
        ];
        let colors = [BLUE, CYAN, RED, MAGENTA, GREEN, BLACK];
        for (panel, (name, value)) in panels.iter().zip(metrics) {
            let max = bars.iter().map(value).fold(1.0, f64::max);
            let mut chart = ChartBuilder::on(panel)
                .margin(12)
                .x_label_area_size(70)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5..bars.len() as f64 - 0.5, 0.0..max * 1.15)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(bars.len())
                .x_label_formatter(&|x| {
                    let index = x.round();
                    if (x - index).abs() > 0.01 || index < 0.0 {
                        return String::new();
                    }
                    bars.get(index as usize)
                        .map_or_else(String::new, |bar| bar.label.clone())
                })
                .y_desc(name)
                .draw()?;
            chart.draw_series(bars.iter().enumerate().map(|(index, bar)| {
                let x = index as f64;
                Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, value(bar))],
                    colors[index % colors.len()].filled(),
                )
            }))?;
            chart.draw_series(bars.iter().enumerate().map(|(index, bar)| {
                Text::new(
                    format!("{:.0}", value(bar)),
                    (index as f64 - 0.2, value(bar) + max * 0.03),
                    ("sans-serif", 14),
                )
            }))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|error| anyhow::anyhow!("cannot draw {}: {error}", svg.display()))
}

/// One turn of the paged benchmark's chat (the fields the plot reads).
#[derive(Deserialize)]
struct TurnRow {
    turn: usize,
    ttft_ms_without: f64,
    ttft_ms_with: f64,
}

/// Which time of a turn a line shows.
type TurnMetric = fn(&TurnRow) -> f64;

#[derive(Deserialize)]
struct PagedReport {
    turns: Vec<TurnRow>,
}

/// Time to first token of each turn of a chat, without and with the prefix cache.
pub fn plot_prefix_cache(json: &Path, svg: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("cannot read {}", json.display()))?;
    let report: PagedReport = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the paged benchmark's output", json.display()))?;
    let rows = report.turns;
    let max_x = rows.iter().map(|row| row.turn).max().unwrap_or(1) as f64;
    let max_ms = rows
        .iter()
        .map(|row| row.ttft_ms_without.max(row.ttft_ms_with))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(svg, (720, 420)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Multi-turn chat: time to first token per turn",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5..max_x + 0.5, 0.0..max_ms * 1.15)?;
        chart
            .configure_mesh()
            .x_desc("turn (each resends the whole history)")
            .y_desc("time to first token (ms)")
            .draw()?;
        let series: [(&str, RGBColor, TurnMetric); 2] = [
            ("without the prefix cache", RED, |row| row.ttft_ms_without),
            ("with the prefix cache", BLUE, |row| row.ttft_ms_with),
        ];
        for (label, color, value) in series {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .map(|row| (row.turn as f64, value(row)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            chart.draw_series(
                points
                    .iter()
                    .map(|&point| Circle::new(point, 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|error| anyhow::anyhow!("cannot draw {}: {error}", svg.display()))
}
