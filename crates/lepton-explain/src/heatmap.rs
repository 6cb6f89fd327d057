//! Heatmap PNGs: an attribution over an image as a colour overlay on the (grey) input, and a grid
//! of feature-map channels.
//!
//! Colours come from perceptually uniform colormaps (the `colorous` crate, d3's schemes): `viridis`
//! for magnitudes (saliency, feature maps) and the blue-white-red `RdBu` for signed attributions
//! (integrated gradients, occlusion; white is 0). Values are scaled
//! by the 99th percentile of their magnitude (as captum's `visualize_image_attr` clips the top
//! 1 %), and small images are enlarged (nearest neighbour) to at least [`MIN_SIDE`] pixels.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{Error, Result};

/// Smallest side of a written image, in pixels (a 28x28 input becomes 224x224).
pub const MIN_SIDE: usize = 224;

/// Whether the values are signed (diverging map, centred on 0) or magnitudes (viridis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Magnitude,
    Signed,
}

fn rgb(c: colorous::Color) -> [u8; 3] {
    [c.r, c.g, c.b]
}

/// viridis at `t ∈ [0, 1]` (clamped).
fn viridis(t: f32) -> [u8; 3] {
    rgb(colorous::VIRIDIS.eval_continuous(f64::from(t.clamp(0.0, 1.0))))
}

/// The colour of `v` on `scale` with the magnitude `max` mapped to the end of the map.
pub fn color(v: f32, max: f32, scale: Scale) -> [u8; 3] {
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    match scale {
        Scale::Magnitude => viridis(v.abs() / max),
        // d3's RdBu runs red (0) to blue (1): negative values blue, positive red.
        Scale::Signed => {
            rgb(colorous::RED_BLUE
                .eval_continuous(f64::from((0.5 - 0.5 * v / max).clamp(0.0, 1.0))))
        }
    }
}

/// The 99th percentile of `|v|` (0 for an empty or all-zero slice).
pub fn robust_max(v: &[f32]) -> f32 {
    let mut a: Vec<f32> = v
        .iter()
        .map(|x| x.abs())
        .filter(|x| x.is_finite())
        .collect();
    if a.is_empty() {
        return 0.0;
    }
    let k = ((a.len() - 1) as f64 * 0.99).round() as usize;
    let (_, m, _) = a.select_nth_unstable_by(k, f32::total_cmp);
    *m
}

fn save(img: &RgbImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs_err::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| Error::Image {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes the attribution `attr` (`[C, H, W]` or `[H, W]`, summed over channels) over the input
/// `image` (same shape, any range: min-max scaled to grey) as a PNG; `alpha` is the overlay's
/// opacity (0.6 is a good default).
pub fn write_overlay(
    path: &Path,
    image: &[f32],
    attr: &[f32],
    shape: &[usize],
    scale: Scale,
    alpha: f32,
) -> Result<()> {
    let (h, w) = match shape {
        [.., h, w] if shape.len() >= 2 => (*h, *w),
        _ => {
            return Err(Error::invalid(
                "input",
                format!("a heatmap needs an image [C, H, W] or [H, W], got {shape:?}"),
            ))
        }
    };
    let plane = h * w;
    if plane == 0 || image.len() != attr.len() || attr.len() % plane != 0 {
        return Err(Error::invalid(
            "input",
            format!(
                "{} image values and {} attributions do not fit {shape:?}",
                image.len(),
                attr.len()
            ),
        ));
    }
    let sum_channels = |v: &[f32]| -> Vec<f32> {
        let mut s = vec![0f32; plane];
        for c in v.chunks(plane) {
            s.iter_mut().zip(c).for_each(|(a, b)| *a += b);
        }
        s
    };
    let (grey, heat) = (sum_channels(image), sum_channels(attr));
    let (lo, hi) = grey
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let max = robust_max(&heat);
    let k = MIN_SIDE.div_ceil(h.max(w)).max(1);
    let img = RgbImage::from_fn((w * k) as u32, (h * k) as u32, |x, y| {
        let i = (y as usize / k) * w + x as usize / k;
        let g = (grey[i] - lo) / span * 255.0;
        let c = color(heat[i], max, scale);
        Rgb(std::array::from_fn(|j| {
            (g * (1.0 - alpha) + f32::from(c[j]) * alpha).round() as u8
        }))
    });
    save(&img, path)
}

/// Writes the channels of a feature map `[C, H, W]` as a grid (`⌈√C⌉` columns, one pixel of
/// gap), each channel scaled by its own range on viridis.
pub fn write_grid(path: &Path, values: &[f32], shape: &[usize]) -> Result<()> {
    let (c, h, w) = match *shape {
        [c, h, w] => (c, h, w),
        [h, w] => (1, h, w),
        [n] => (1, 1, n),
        _ => {
            return Err(Error::invalid(
                "layer",
                format!("cannot draw a feature map of shape {shape:?}"),
            ))
        }
    };
    let cols = (c as f64).sqrt().ceil().max(1.0) as usize;
    let rows = c.div_ceil(cols);
    let k = (MIN_SIDE / 2).div_ceil(h.max(w)).max(1);
    let (cw, ch) = (w * k + 1, h * k + 1);
    let mut img = RgbImage::from_pixel((cols * cw) as u32, (rows * ch) as u32, Rgb([255; 3]));
    for (i, plane) in values.chunks(h * w).take(c).enumerate() {
        let (lo, hi) = plane
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (ox, oy) = ((i % cols) * cw, (i / cols) * ch);
        for y in 0..h * k {
            for x in 0..w * k {
                let v = (plane[(y / k) * w + x / k] - lo) / span;
                img.put_pixel((ox + x) as u32, (oy + y) as u32, Rgb(viridis(v)));
            }
        }
    }
    save(&img, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormaps_run_dark_to_bright_and_blue_white_red() {
        // matplotlib's viridis ends: #440154 and #fde725.
        assert_eq!(color(0.0, 1.0, Scale::Magnitude), [0x44, 0x01, 0x54]);
        assert_eq!(color(5.0, 1.0, Scale::Magnitude), [0xfd, 0xe7, 0x25]);
        // Signed: 0 is near-white, negative blue, positive red.
        let [r, g, b] = color(0.0, 1.0, Scale::Signed);
        assert!(r > 230 && g > 230 && b > 230, "{r} {g} {b}");
        let [r, _, b] = color(-1.0, 1.0, Scale::Signed);
        assert!(b > r);
        let [r, _, b] = color(1.0, 1.0, Scale::Signed);
        assert!(r > b);
        // Luminance rises monotonically along viridis (perceptually ordered).
        let lum = |c: [u8; 3]| {
            0.2126 * f32::from(c[0]) + 0.7152 * f32::from(c[1]) + 0.0722 * f32::from(c[2])
        };
        for i in 0..16 {
            assert!(lum(viridis((i + 1) as f32 / 16.0)) > lum(viridis(i as f32 / 16.0)));
        }
        let v: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        assert_eq!(robust_max(&v), 99.0);
    }

    #[test]
    fn the_overlay_is_enlarged_and_puts_the_hot_pixel_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/x.png");
        let mut attr = vec![0f32; 28 * 28];
        attr[28 * 3 + 5] = 1.0;
        write_overlay(
            &p,
            &vec![0.0; 28 * 28],
            &attr,
            &[1, 28, 28],
            Scale::Magnitude,
            1.0,
        )
        .unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (224, 224));
        assert_eq!(img.get_pixel(5 * 8 + 3, 3 * 8 + 3).0, viridis(1.0));
        assert_eq!(img.get_pixel(0, 0).0, viridis(0.0));
        let e = write_overlay(&p, &[0.0; 3], &[0.0; 3], &[3], Scale::Signed, 0.5).unwrap_err();
        assert!(e.to_string().contains("invalid input"));
    }
}
