//! The PNG chart of the packet-rate run: packets recorded (or counted) per second against
//! packets offered per second, one colour per receiver (a line per run), with the diagonal
//! a receiver that loses nothing would follow. The `(tmpfs)` rows are left out: beside
//! their disk twins they would double the lines of the busiest part of the chart, and the
//! tables put the two side by side.
//!
//! Drawn with plotters' bitmap backend; text uses a TrueType font read at run time
//! (DejaVu Sans from Debian's fonts-dejavu-core, which `cargo xtask setup` installs), so
//! the binary carries no font and needs no fontconfig.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::measurement::{RowResults, by_receiver};

/// Fonts tried in order; the first that exists is used.
pub const FONT_CANDIDATES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// No usable font file.
    #[error("no TrueType font found (tried {tried}); install fonts-dejavu-core")]
    NoFont {
        /// The paths tried.
        tried: String,
    },
    /// plotters failed to register the font.
    #[error("cannot use font {path}")]
    Font {
        /// The font file.
        path: PathBuf,
    },
    /// Drawing or writing the PNG failed.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The PNG file.
        path: PathBuf,
        /// plotters' error.
        message: String,
    },
}

/// Registers the first font of [`FONT_CANDIDATES`] as plotters' `sans-serif`.
fn register_font() -> Result<(), ChartError> {
    let Some(path) = FONT_CANDIDATES.iter().map(Path::new).find(|p| p.is_file()) else {
        return Err(ChartError::NoFont {
            tried: FONT_CANDIDATES.join(", "),
        });
    };
    let bytes = std::fs::read(path).map_err(|_| ChartError::Font {
        path: path.to_owned(),
    })?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| {
        ChartError::Font {
            path: path.to_owned(),
        }
    })
}

/// A line colour per row, distinct enough on white.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draws `rows` into a PNG at `path` (1200 × 720).
///
/// # Errors
/// [`ChartError`] when no font is available or drawing fails.
pub fn draw(path: &Path, title: &str, rows: &[RowResults]) -> Result<(), ChartError> {
    register_font()?;
    let draw_err = |e: &dyn std::fmt::Display| ChartError::Draw {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mpps = |pps: f64| pps / 1e6;
    let receivers: Vec<_> = by_receiver(rows)
        .into_iter()
        .filter(|r| !r.receiver.records_in_memory())
        .collect();
    let max = receivers
        .iter()
        .flat_map(|r| r.runs.iter().flat_map(|run| run.steps.iter()))
        .filter(|m| m.error.is_none())
        .map(|m| mpps(m.offered_pps()).max(mpps(m.handled_pps())))
        .fold(0.5, f64::max)
        * 1.08;

    let root = BitMapBackend::new(path, (1200, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max, 0.0..max)
        .map_err(|e| draw_err(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered (Mpps)")
        .y_desc("recorded / counted (Mpps)")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(|e| draw_err(&e))?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (max, max)],
            ShapeStyle::from(&BLACK.mix(0.25)).stroke_width(1),
        ))
        .map_err(|e| draw_err(&e))?
        .label("no loss (recorded = offered)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.25)));

    for (i, receiver) in receivers.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut labelled = false;
        for run in &receiver.runs {
            let mut points: Vec<(f64, f64)> = run
                .steps
                .iter()
                .filter(|m| m.error.is_none())
                .map(|m| (mpps(m.offered_pps()), mpps(m.handled_pps())))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if points.is_empty() {
                continue;
            }
            let series = chart
                .draw_series(LineSeries::new(
                    points.clone(),
                    ShapeStyle::from(&colour).stroke_width(2),
                ))
                .map_err(|e| draw_err(&e))?;
            if !std::mem::replace(&mut labelled, true) {
                series
                    .label(receiver.receiver.label())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
            }
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 4, ShapeStyle::from(&colour).filled())),
                )
                .map_err(|e| draw_err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| draw_err(&e))?;
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::harness::measurement::{Measurement, Receiver};

    #[test]
    fn a_chart_is_written_as_png() {
        if !FONT_CANDIDATES.iter().any(|p| Path::new(p).is_file()) {
            eprintln!("SKIP chart test: no DejaVu font (fonts-dejavu-core)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chart.png");
        let step = |offered: u64, handled: u64| Measurement {
            offered,
            handled,
            elapsed: Duration::from_secs(1),
            ..Measurement::default()
        };
        let rows = vec![RowResults {
            receiver: Receiver::CountDrop,
            run: 0,
            steps: vec![step(1_000_000, 1_000_000), step(2_000_000, 1_500_000)],
        }];
        draw(&path, "test", &rows).expect("draw");
        let bytes = std::fs::read(&path).expect("read png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
