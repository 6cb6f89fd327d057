//! PNG plots (plotters' bitmap backend drawing into a buffer, encoded by the `image` crate):
//! learning curves and the confusion matrix. Text uses the
//! bundled DejaVu Sans Mono (see `assets/DejaVu-LICENSE`), so no system fonts are needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::classification::ClassificationReport;
use crate::error::{Error, Result};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draw on an RGB buffer and write it to `path` as PNG. The `image` crate encodes it: plotters'
/// own encoder (`bitmap_encoder`) would pull a second, older `image` into the build.
fn render_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| err(path, e))?;
    }
    image::save_buffer_with_format(
        path,
        &rgb,
        w,
        h,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| err(path, e))
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// (epoch, value) points.
    pub points: Vec<(f64, f64)>,
}

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Line chart of several series against the epoch, e.g. train/validation loss.
pub fn learning_curves(path: &Path, title: &str, y_label: &str, series: &[Series]) -> Result<()> {
    fonts();
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (x_max, mut y_min, mut y_max) = pts.fold(
        (1.0f64, f64::INFINITY, f64::NEG_INFINITY),
        |(x, lo, hi), &(px, py)| {
            (
                x.max(px),
                if py.is_finite() { lo.min(py) } else { lo },
                if py.is_finite() { hi.max(py) } else { hi },
            )
        },
    );
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-6);
    render_png(path, (800, 500), |root| {
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, (y_min - pad)..(y_max + pad))
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_label)
            .draw()
            .map_err(|e| err(path, e))?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(path, e))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(path, e))?;
        Ok(())
    })
}

/// Heatmap of the confusion matrix with counts (rows: true class, columns: predicted class).
pub fn confusion_matrix(path: &Path, report: &ClassificationReport) -> Result<()> {
    fonts();
    let k = report.confusion.len();
    if k == 0 {
        return Err(err(path, "empty confusion matrix"));
    }
    let size = (120 + 50 * k as u32).clamp(400, 1400);
    render_png(path, (size, size), |root| {
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let names: Vec<String> = report
            .per_class
            .iter()
            .map(|c| c.name.chars().take(10).collect())
            .collect();
        let mut chart = ChartBuilder::on(root)
            .caption("confusion matrix", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(60)
            .y_label_area_size(90)
            .build_cartesian_2d((0..k).into_segmented(), (0..k).into_segmented())
            .map_err(|e| err(path, e))?;
        // Row t of the matrix is drawn at y = k - 1 - t so the first class is on top.
        let label = |names: Vec<String>, flip: bool| {
            move |v: &SegmentValue<usize>| match v {
                SegmentValue::CenterOf(i) if *i < k => {
                    names[if flip { k - 1 - i } else { *i }].clone()
                }
                _ => String::new(),
            }
        };
        let (xl, yl) = (label(names.clone(), false), label(names, true));
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true")
            .x_labels(k + 1)
            .y_labels(k + 1)
            .x_label_formatter(&xl)
            .y_label_formatter(&yl)
            .draw()
            .map_err(|e| err(path, e))?;
        let max = report
            .confusion
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        chart
            .draw_series(report.confusion.iter().enumerate().flat_map(|(t, row)| {
                row.iter().enumerate().map(move |(p, &v)| {
                    let shade = (255.0 * (1.0 - (v as f64 / max).sqrt())) as u8;
                    let (x0, y0) = (SegmentValue::Exact(p), SegmentValue::Exact(k - 1 - t));
                    let (x1, y1) = (SegmentValue::Exact(p + 1), SegmentValue::Exact(k - t));
                    Rectangle::new([(x0, y0), (x1, y1)], RGBColor(shade, shade, 255).filled())
                })
            }))
            .map_err(|e| err(path, e))?;
        let cell = (size as i32 - 160) / k as i32;
        let font_size = (cell / 3).clamp(8, 24);
        chart
            .draw_series(report.confusion.iter().enumerate().flat_map(|(t, row)| {
                row.iter().enumerate().map(move |(p, &v)| {
                    let color = if (v as f64 / max) > 0.5 { WHITE } else { BLACK };
                    let style = ("sans-serif", font_size)
                        .into_font()
                        .color(&color)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    Text::new(
                        v.to_string(),
                        (SegmentValue::CenterOf(p), SegmentValue::CenterOf(k - 1 - t)),
                        style,
                    )
                })
            }))
            .map_err(|e| err(path, e))?;
        Ok(())
    })
}
