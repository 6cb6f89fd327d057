//! Where [`super::Llama::load`] reads its tensors from: a GGUF file or a Hugging Face safetensors
//! folder ([`crate::hf_llama::SafetensorsWeights`]).
//!
//! Tensors are asked for by their GGUF names (`token_embd.weight`, `blk.{i}.attn_q.weight`, ...) and
//! in the GGUF layout: Wq and Wk rows in the order [`super::ops::rope_interleaved`] expects. A source
//! in another layout maps the names and rearranges the rows itself.

use crate::gguf::GgufFile;
use crate::quant::QMatrix;
use crate::Result;

/// A source of decoder weights.
pub trait WeightSource {
    /// Whether the source has tensor `name` (only asked for the optional `output.weight`).
    fn has_tensor(&self, name: &str) -> bool;
    /// Matrix `name` of `rows` outputs × `cols` inputs; errors name the file and the tensor.
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix>;
    /// 1-D tensor `name` (a norm's weight) of length `len`.
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>>;
}

impl WeightSource for GgufFile {
    fn has_tensor(&self, name: &str) -> bool {
        GgufFile::has_tensor(self, name)
    }
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        GgufFile::matrix(self, name, rows, cols)
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        GgufFile::vector(self, name, len)
    }
}

/// Reorder the rows of a Hugging Face Wq or Wk (`heads × head_dim` rows of `cols` values) into
/// the GGUF order: HF's RoPE rotates value `j` of a head with value `j + head_dim / 2` (rotate-half),
/// GGUF's with its neighbour (`2j` with `2j + 1`). Row `h·d + 2j + s` of the result is row
/// `h·d + s·d/2 + j` of the input (`s` ∈ {0, 1}), as llama.cpp's `convert_hf_to_gguf.py` `permute`
/// (`w.reshape(n_head, 2, d / 2, cols).swapaxes(1, 2)`). Attention scores are dot products of `q`
/// and `k` rows permuted alike, so they are unchanged.
pub fn permute_rope_rows(values: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = values.len() / cols;
    let d = rows / heads;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for j in 0..d / 2 {
            for s in 0..2 {
                let to = h * d + 2 * j + s;
                let from = h * d + s * (d / 2) + j;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::ops::rope_interleaved;

    /// HF's RoPE (`q·cos + rotate_half(q)·sin`, frequencies `theta^(-2i/d)` for the first half).
    fn rope_half(x: &mut [f32], d: usize, pos: usize, theta: f32) {
        for head in x.chunks_exact_mut(d) {
            let orig = head.to_vec();
            for i in 0..d / 2 {
                let angle = pos as f32 * theta.powf(-2.0 * i as f32 / d as f32);
                let (sin, cos) = angle.sin_cos();
                head[i] = orig[i] * cos - orig[i + d / 2] * sin;
                head[i + d / 2] = orig[i + d / 2] * cos + orig[i] * sin;
            }
        }
    }

    #[test]
    fn permuted_rows_turn_rotate_half_rope_into_interleaved_rope() {
        let (heads, d, pos, theta) = (3, 8, 5, 10_000.0);
        // A "weight" with one column: the projection's output is the column itself.
        let q: Vec<f32> = (0..heads * d)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let mut hf = q.clone();
        rope_half(&mut hf, d, pos, theta);
        let mut ours = permute_rope_rows(&q, heads, 1);
        rope_interleaved(&mut ours, d, pos, theta);
        let want = permute_rope_rows(&hf, heads, 1);
        for (a, b) in ours.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{ours:?}\n{want:?}");
        }
        // And it is a real rearrangement: the identity would not pass.
        let mut plain = q.clone();
        rope_interleaved(&mut plain, d, pos, theta);
        assert!(plain.iter().zip(&hf).any(|(a, b)| (a - b).abs() > 1e-3));
    }

    #[test]
    fn permutation_moves_whole_rows() {
        // 1 head of 4 rows × 2 columns: HF rows [0, 1 | 2, 3] become [0, 2, 1, 3].
        let w: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(
            permute_rope_rows(&w, 1, 2),
            vec![0., 1., 4., 5., 2., 3., 6., 7.]
        );
    }
}
