//! Positional encodings: the `positional-embedding` layer (`learned` or `sinusoidal` table added
//! to the input) and [`rope`], the rotary embedding `multi-head-attention` applies to its
//! queries and keys when `rope = true`.
//!
//! - learned: `y[t] = x[t] + P[t]`, `P: [max-len, D]` trained (GPT-2 / nanoGPT's `wpe`).
//! - sinusoidal: `P[t, 2i] = sin(t / 10000^(2i/D))`, `P[t, 2i+1] = cos(t / 10000^(2i/D))`
//!   (Vaswani et al.), no parameters.
//! - RoPE: each head vector `x = [x₁, x₂]` (halves of `hd`) at position `t` becomes
//!   `[x₁·cos − x₂·sin, x₂·cos + x₁·sin]` with angles `t·θ^(−2i/hd)`, `i < hd/2` (the
//!   "rotate-half" layout of GPT-NeoX and Hugging Face LLaMA), built from candle ops that have a
//!   backward (candle's `rotary_emb` ops have none).
//!
//! # Shapes
//! `positional-embedding`: `[T, D]` -> `[T, D]`, `weight: [max-len, D]` when learned. The
//! declared `T` must be at most `max-len`; at run time any `1 ≤ T ≤ max-len` is accepted (a
//! generator feeds shorter prompts) and a longer sequence is an error naming `max-len`.

use candle_core::{Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx, Values};

/// Which positional table `positional-embedding` adds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionalKind {
    /// A trained table (the default).
    #[default]
    Learned,
    /// The fixed sine/cosine table.
    Sinusoidal,
}

/// The `positional-embedding` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PositionalEmbeddingConfig {
    /// The longest sequence the table covers (at least 1; nanoGPT's `block_size`).
    pub max_len: usize,
    /// `learned` or `sinusoidal`. Default `learned`.
    #[serde(default)]
    pub kind: PositionalKind,
}

impl LayerConfig for PositionalEmbeddingConfig {
    fn kind(&self) -> &'static str {
        "positional-embedding"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        let &[t, _] = x else {
            return Err(ctx.error(format!("expects [T, D] per sample, got {x:?}")));
        };
        if self.max_len == 0 {
            return Err(ctx.size_error("max-len", "must be at least 1"));
        }
        if t > self.max_len {
            return Err(ctx.size_error(
                "max-len",
                format!(
                    "the input has {t} positions, more than max-len = {}",
                    self.max_len
                ),
            ));
        }
        Ok(x.to_vec())
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        let trainable = match self.kind {
            PositionalKind::Learned => ctx.count("max-len", &[self.max_len, x[1]])?,
            PositionalKind::Sinusoidal => 0,
        };
        Ok(Values {
            trainable,
            buffers: 0,
        })
    }

    fn size_field(&self) -> Option<&'static str> {
        Some("max-len")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let d = x[1];
        let table = match self.kind {
            PositionalKind::Learned => vb.get_with_hints(
                (self.max_len, d),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            PositionalKind::Sinusoidal => {
                sinusoidal(self.max_len, d, vb.device())?.to_dtype(vb.dtype())?
            }
        };
        Ok(Box::new(PositionalEmbedding { table }))
    }
}

/// The sine/cosine table `[len, d]` (f32).
pub fn sinusoidal(len: usize, d: usize, dev: &Device) -> Result<Tensor> {
    let mut v = Vec::with_capacity(len * d);
    for t in 0..len {
        for j in 0..d {
            let i2 = (j - j % 2) as f64;
            let angle = t as f64 / 10000f64.powf(i2 / d as f64);
            v.push(if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    Tensor::from_vec(v, (len, d), dev)
}

/// A built `positional-embedding`: `y = x + table[..T]`.
#[derive(Debug, Clone)]
pub struct PositionalEmbedding {
    table: Tensor,
}

impl Layer for PositionalEmbedding {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let max_len = self.table.dim(0)?;
        let (_, t, d) = x.dims3().map_err(|_| {
            candle_core::Error::Msg(format!(
                "positional-embedding: expects [B, T, D], got {:?}",
                x.dims()
            ))
        })?;
        if t > max_len || d != self.table.dim(1)? {
            candle_core::bail!(
                "positional-embedding: input [B, T, D] = {:?} does not fit the table [max-len = {max_len}, {}]{}",
                x.dims(),
                self.table.dim(1)?,
                if t > max_len { ": the sequence is longer than max-len" } else { "" }
            );
        }
        x.broadcast_add(&self.table.narrow(0, 0, t)?)
    }
}

/// RoPE on `x: [B, T, H, hd]` (any strides; `hd` even): positions `0..T`, base `theta`.
/// Returns a contiguous `[B, T, H, hd]`.
pub fn rope(x: &Tensor, theta: f64) -> Result<Tensor> {
    let (_, t, _, hd) = x.dims4()?;
    if hd % 2 != 0 {
        candle_core::bail!("rope: the head size {hd} must be even");
    }
    let half = hd / 2;
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in 0..t {
        for i in 0..half {
            let angle = p as f64 * theta.powf(-2.0 * i as f64 / hd as f64);
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let table = |v: Vec<f64>| -> Result<Tensor> {
        Tensor::from_vec(v, (1, t, 1, half), x.device())?.to_dtype(x.dtype())
    };
    let (cos, sin) = (table(cos)?, table(sin)?);
    let x1 = x.narrow(3, 0, half)?;
    let x2 = x.narrow(3, half, half)?;
    let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Tensor::cat(&[a, b], 3)
}

/// [`rope`] on host vectors, one vector at a time: the reference in the tests.
#[cfg(test)]
fn rope_naive(x: &[f64], pos: usize, theta: f64) -> Vec<f64> {
    let hd = x.len();
    let half = hd / 2;
    let mut y = vec![0.0; hd];
    for i in 0..half {
        let a = pos as f64 * theta.powf(-2.0 * i as f64 / hd as f64);
        y[i] = x[i] * a.cos() - x[i + half] * a.sin();
        y[i + half] = x[i + half] * a.cos() + x[i] * a.sin();
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn rope_rotates_each_pair_by_its_angle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (2, 5, 3, 6), &dev).unwrap();
        let y = rope(&x, 100.0).unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let yv = y.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (n, (xc, yc)) in xv.chunks(6).zip(yv.chunks(6)).enumerate() {
            let pos = (n / 3) % 5;
            let want = rope_naive(xc, pos, 100.0);
            for (a, b) in yc.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "{a} vs {b}");
            }
        }
        // Position 0 is the identity; the norm of every head vector is kept.
        let first = y.narrow(1, 0, 1).unwrap();
        let x0 = x.narrow(1, 0, 1).unwrap();
        assert_eq!(
            (first - x0)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            0.0
        );
    }

    #[test]
    fn sinusoidal_table_matches_the_formula() {
        let p = sinusoidal(4, 6, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(p[0], [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        let a = 3.0 / 10000f64.powf(2.0 / 6.0);
        assert!((p[3][2] as f64 - a.sin()).abs() < 1e-6);
        assert!((p[3][3] as f64 - a.cos()).abs() < 1e-6);
    }

    #[test]
    fn shorter_sequences_take_the_first_rows_and_longer_ones_name_max_len() {
        let dev = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let cfg = PositionalEmbeddingConfig {
            max_len: 4,
            kind: PositionalKind::Sinusoidal,
        };
        let layer = cfg.build(&[4, 6], vb, &mut BuildCtx::default()).unwrap();
        let x = Tensor::zeros((2, 3, 6), DType::F32, &dev).unwrap();
        let y = layer.forward(&x, &Ctx::EVAL).unwrap();
        let want = sinusoidal(4, 6, &dev).unwrap().narrow(0, 0, 3).unwrap();
        assert_eq!(
            y.get(1).unwrap().to_vec2::<f32>().unwrap(),
            want.to_vec2::<f32>().unwrap()
        );
        let long = Tensor::zeros((1, 5, 6), DType::F32, &dev).unwrap();
        let e = layer.forward(&long, &Ctx::EVAL).unwrap_err().to_string();
        assert!(e.contains("max-len = 4") && e.contains("longer"), "{e}");
    }
}
