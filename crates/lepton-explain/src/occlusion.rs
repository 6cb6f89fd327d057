//! Occlusion (Zeiler & Fergus 2014), as captum's `Occlusion`: a `window × window` patch (all
//! channels) slides over the image with `stride`; each position is replaced by `baseline` and the
//! drop of the target score, `y_t(x) − y_t(x_occluded)`, is credited to every pixel under the
//! patch. A pixel's attribution is the mean over the windows that cover it (0 if none does).
//! The occluded copies go through the model in batches of [`OcclusionConfig::batch`].
//!
//! # Shapes
//! `x`: `[C, H, W]` or `[H, W]`; the attribution has the same shape.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::attribution::{Attribution, Method};
use crate::error::{during, Error, Result};
use crate::scorer::{target_scores, values, Scorer};

/// The occlusion settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct OcclusionConfig {
    /// Side of the square patch in pixels. Default 4.
    pub window: usize,
    /// Step between patch positions in pixels. Default 1 (every position, as captum's default).
    pub stride: usize,
    /// The value the patch is filled with. Default 0.
    pub baseline: f32,
    /// Occluded copies per forward pass. Default 128.
    pub batch: usize,
}

impl Default for OcclusionConfig {
    fn default() -> Self {
        Self {
            window: 4,
            stride: 1,
            baseline: 0.0,
            batch: 128,
        }
    }
}

impl OcclusionConfig {
    /// Patch positions for an `h × w` image: `(⌊(h − window)/stride⌋ + 1)·(…)`; the error names
    /// the field that does not fit.
    pub fn positions(&self, h: usize, w: usize) -> Result<usize> {
        if self.window == 0 || self.window > h.min(w) {
            return Err(Error::invalid(
                "window",
                format!("{} does not fit the {h}x{w} image", self.window),
            ));
        }
        if self.stride == 0 {
            return Err(Error::invalid("stride", "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(Error::invalid("batch", "at least 1 input per pass"));
        }
        Ok(((h - self.window) / self.stride + 1) * ((w - self.window) / self.stride + 1))
    }
}

/// The occlusion attribution of `target` at `x`; see the module docs.
pub fn occlusion(
    model: &dyn Scorer,
    x: &Tensor,
    target: usize,
    cfg: &OcclusionConfig,
) -> Result<Attribution> {
    let dims = x.dims().to_vec();
    if !(2..=3).contains(&dims.len()) {
        return Err(Error::invalid(
            "input",
            format!("occlusion needs an image [C, H, W] or [H, W], got {dims:?}"),
        ));
    }
    let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let planes = x.elem_count() / (h * w);
    cfg.positions(h, w)?;
    let (win, s) = (cfg.window, cfg.stride);
    let spots: Vec<(usize, usize)> = (0..=(h - win) / s)
        .flat_map(|i| (0..=(w - win) / s).map(move |j| (i * s, j * s)))
        .collect();
    let x = x
        .to_dtype(DType::F32)
        .map_err(during("reading the input"))?;
    let base = values(&x)?;
    let mut shape = vec![1usize];
    shape.extend_from_slice(&dims);
    let score = target_scores(
        model,
        &x.reshape(shape.as_slice())
            .map_err(during("reading the input"))?,
        target,
    )?[0];
    let mut total = vec![0f64; h * w];
    let mut count = vec![0u32; h * w];
    for chunk in spots.chunks(cfg.batch) {
        let mut batch = Vec::with_capacity(chunk.len() * base.len());
        for &(y0, x0) in chunk {
            let start = batch.len();
            batch.extend_from_slice(&base);
            for p in 0..planes {
                for y in y0..y0 + win {
                    let row = start + (p * h + y) * w;
                    batch[row + x0..row + x0 + win].fill(cfg.baseline);
                }
            }
        }
        shape[0] = chunk.len();
        let t = Tensor::from_vec(batch, shape.as_slice(), x.device())
            .map_err(during("building the occluded inputs"))?;
        let ys = target_scores(model, &t, target)?;
        for (&(y0, x0), &yv) in chunk.iter().zip(&ys) {
            let d = f64::from(score) - f64::from(yv);
            for y in y0..y0 + win {
                for xx in x0..x0 + win {
                    total[y * w + xx] += d;
                    count[y * w + xx] += 1;
                }
            }
        }
    }
    let plane: Vec<f32> = total
        .iter()
        .zip(&count)
        .map(|(&t, &c)| {
            if c == 0 {
                0.0
            } else {
                (t / f64::from(c)) as f32
            }
        })
        .collect();
    let attributions = plane.repeat(planes);
    Ok(Attribution {
        method: Method::Occlusion,
        target,
        shape: dims,
        attributions,
        score,
        params: json!({
            "window": cfg.window,
            "stride": cfg.stride,
            "baseline": cfg.baseline,
            "positions": spots.len(),
        }),
        checks: json!({}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::FnScorer;
    use candle_core::{Device, D};

    #[test]
    fn a_linear_model_gets_the_window_mean_of_its_contributions() {
        // y = Σ x (all weights 1): occluding a window drops y by the window's sum; with window 1
        // every pixel gets exactly its own value, with window = the image every pixel gets Σ x.
        let m = FnScorer(|x: &Tensor| x.flatten_from(1)?.sum_keepdim(D::Minus1));
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 3, 4))
            .unwrap();
        let one = OcclusionConfig {
            window: 1,
            batch: 5,
            ..Default::default()
        };
        let a = occlusion(&m, &x, 0, &one).unwrap();
        assert_eq!(a.attributions, values(&x).unwrap());
        // Window 3 on the 3x4 image: two positions, columns 0-2 (Σ = 45) and 1-3 (Σ = 54);
        // the middle columns are covered by both and get the mean.
        let three = OcclusionConfig {
            window: 3,
            ..Default::default()
        };
        let a = occlusion(&m, &x, 0, &three).unwrap();
        assert_eq!(&a.attributions[..4], &[45.0, 49.5, 49.5, 54.0]);
        assert_eq!(a.params["positions"], 2);
        // Stride 2 leaves column 3 uncovered: attribution 0.
        let strided = OcclusionConfig {
            window: 3,
            stride: 2,
            ..Default::default()
        };
        let a = occlusion(&m, &x, 0, &strided).unwrap();
        assert_eq!(&a.attributions[..4], &[45.0, 45.0, 45.0, 0.0]);
        assert!(occlusion(
            &m,
            &x,
            0,
            &OcclusionConfig {
                window: 5,
                ..Default::default()
            }
        )
        .unwrap_err()
        .to_string()
        .contains("invalid window"));
    }
}
