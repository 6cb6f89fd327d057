//! LoRA adapters applied by the decoder: for a targeted projection `W` (its output `y = W x`
//! computed by the quantized kernels as for the base), rows that run under an adapter get
//! ```text
//! y += s · B (A x)      A: [r, in], B: [out, r], s = lora_alpha / r
//! ```
//! in f32, row by row (the same operations for a row whatever else is in the batch, so the
//! batch-invariance of the base kernels holds). Rows without an adapter are not touched, so they
//! are bit-identical to a decoder with no adapters.
//!
//! [`Lora::new`] lays a [`PeftAdapter`] out for one decoder: `s` is folded into `B`, and for
//! architectures whose Wq/Wk rows are stored in GGUF's interleaved-RoPE order (Llama) the rows of
//! `B` for `q_proj`/`k_proj` are permuted the same way ([`permute_rope_rows`]), since PEFT's `B`
//! is in Hugging Face's order.

use crate::gguf::LlamaConfig;
use crate::models::decoder::arch::RopeMode;
use crate::models::decoder::weights::permute_rope_rows;
use crate::peft::{LoraModule, PeftAdapter};
use crate::{Error, Result};

/// One adapted projection, ready to apply: `A` (`rank × cols`) and `s · B` (`rows × rank`).
#[derive(Debug, Clone)]
pub struct LoraMat {
    a: Vec<f32>,
    b: Vec<f32>,
    rank: usize,
    cols: usize,
    rows: usize,
}

impl LoraMat {
    /// `y[o] += Σ_k B[o,k] · (Σ_i A[k,i] · x[i])` for one row (`x`: `cols` inputs, `y`: the
    /// module's `rows` outputs); `t` is scratch.
    fn apply_row(&self, x: &[f32], y: &mut [f32], t: &mut Vec<f32>) {
        t.resize(self.rank, 0.0);
        for (k, tk) in t.iter_mut().enumerate() {
            *tk = dot(&self.a[k * self.cols..(k + 1) * self.cols], x);
        }
        for (o, yo) in y.iter_mut().enumerate() {
            *yo += dot(&self.b[o * self.rank..(o + 1) * self.rank], t);
        }
    }
}

/// A dot product in a fixed order (eight partial sums, then their sum left to right).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// An adapter laid out for one decoder (see the module docs).
#[derive(Debug, Clone)]
pub struct Lora {
    /// Per layer, per [`LoraModule`] (by [`LoraModule::index`]).
    layers: Vec<[Option<LoraMat>; 7]>,
    /// (hidden, q width, kv width, ffn width) of the decoder it was made for.
    dims: [usize; 4],
}

fn dims(c: &LlamaConfig) -> [usize; 4] {
    [
        c.hidden_size,
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
        c.intermediate_size,
    ]
}

impl Lora {
    /// Lay `adapter` out for a decoder of configuration `c`; every pair's shape is checked
    /// against `c` (the error names the tensor).
    pub fn new(adapter: &PeftAdapter, c: &LlamaConfig) -> Result<Self> {
        let scale = adapter.config.scale();
        let mut layers: Vec<[Option<LoraMat>; 7]> =
            (0..c.num_layers).map(|_| Default::default()).collect();
        for (layer, module, p) in adapter.pairs() {
            let (cols, rows) = module.features(c);
            let name = module.key(layer, false);
            if layer >= c.num_layers {
                return Err(Error::Config {
                    path: adapter.dir.clone(),
                    message: format!(
                        "tensor {name} is for layer {layer}, but the base model has {} layers",
                        c.num_layers
                    ),
                });
            }
            if p.in_features != cols || p.out_features != rows {
                return Err(Error::TensorShape {
                    path: adapter.dir.join(crate::peft::WEIGHTS_FILE),
                    name,
                    expected: vec![rows, p.rank],
                    found: p.b_shape().to_vec(),
                });
            }
            let mut b: Vec<f32> = p.b.iter().map(|v| v * scale).collect();
            if c.arch.rope == RopeMode::Interleaved {
                match module {
                    LoraModule::QProj => b = permute_rope_rows(&b, c.num_heads, p.rank),
                    LoraModule::KProj => b = permute_rope_rows(&b, c.num_kv_heads, p.rank),
                    _ => {}
                }
            }
            layers[layer][module.index()] = Some(LoraMat {
                a: p.a.clone(),
                b,
                rank: p.rank,
                cols,
                rows,
            });
        }
        Ok(Self {
            layers,
            dims: dims(c),
        })
    }

    /// Whether this adapter was laid out for a decoder of configuration `c`.
    pub fn fits(&self, c: &LlamaConfig) -> bool {
        self.layers.len() == c.num_layers && self.dims == dims(c)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .flatten()
            .map(|m| 4 * (m.a.len() + m.b.len()))
            .sum()
    }

    fn get(&self, layer: usize, m: LoraModule) -> Option<&LoraMat> {
        self.layers[layer][m.index()].as_ref()
    }
}

/// Where the decoder applies adapters in one layer: each call adds the deltas of the modules
/// that write the output `y` (row stride `y_stride`) from the input `x`, for the rows of each
/// step that has an adapter.
pub(crate) struct Apply<'a> {
    /// Per step: its adapter and its rows.
    pub steps: &'a [(Option<&'a Lora>, std::ops::Range<usize>)],
    pub t: &'a mut Vec<f32>,
}

impl Apply<'_> {
    /// Whether any step runs under an adapter.
    pub fn any(&self) -> bool {
        self.steps.iter().any(|(l, _)| l.is_some())
    }

    /// Add the deltas of `modules` (each with its column offset in `y`) in `layer`.
    pub fn add(
        &mut self,
        layer: usize,
        modules: &[(LoraModule, usize)],
        x: &[f32],
        x_stride: usize,
        y: &mut [f32],
        y_stride: usize,
    ) {
        for (lora, rows) in self.steps {
            let Some(lora) = lora else { continue };
            for &(m, offset) in modules {
                let Some(mat) = lora.get(layer, m) else {
                    continue;
                };
                for r in rows.clone() {
                    let xr = &x[r * x_stride..r * x_stride + mat.cols];
                    let at = r * y_stride + offset;
                    mat.apply_row(xr, &mut y[at..at + mat.rows], self.t);
                }
            }
        }
    }
}
