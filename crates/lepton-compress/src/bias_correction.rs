//! Bias correction for static int8: quantizing a layer's weights (`W → s ⊙ w̃`) and its input
//! (`x → q(x)`, the codes at the calibrated scale `d`) shifts the expected output of every
//! channel by `δ_j = Σ_k s_j w̃_jk E[q(x)_k] − Σ_k W_jk E[x_k]`, which the ReLU and pool after it
//! (and the argmax at the end) do not average away. The shift is measured on the calibration
//! samples and subtracted from the layer's bias (Nagel et al., "Data-Free Quantization Through
//! Weight Equalization and Bias Correction", 2019, the empirical variant; AIMET's
//! `bias_correction`), so the int8 layer's mean output per channel equals the f32 layer's on the
//! layer's f32 inputs.
//!
//! `E[x]` is the mean *patch* of a convolution (for each input channel and kernel tap, the
//! padded input value it reads, averaged over samples and output positions), the mean input row
//! of a linear layer; `E[q(x)]` the same over the dequantized codes (`(code − z) d`, z the input zero point, exactly
//! what the int8 kernels multiply, the zero padding staying zero).

use candle_core::Tensor;
use lepton_data::Dataset;
use lepton_nn::kernels::code_at;

use crate::error::{Error, Result};
use crate::net::{logits, Net};

/// Most samples per forward pass.
const BATCH: usize = 256;

/// A quantized layer's shape as the mean patch sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// A linear layer over the last `k` values of its input.
    Linear { k: usize },
    /// A convolution (groups 1) of a `[C, H, W]` input.
    Conv {
        c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    },
}

impl Reads {
    /// Values of one patch (the weight's columns).
    fn len(&self) -> usize {
        match *self {
            Reads::Linear { k } => k,
            Reads::Conv { c, kernel, .. } => c * kernel * kernel,
        }
    }
}

/// `(E[x], E[q(x)])` per patch value (see the module docs) of layer `i`'s input over the first
/// `samples` of `data`, the codes at scale `d` and zero point `zero`; the inputs are computed by `net` (f32) cut
/// before layer `i`.
pub(crate) fn input_means(
    net: &Net,
    i: usize,
    reads: Reads,
    (d, zero): (f32, u8),
    data: &Dataset,
    samples: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = samples.min(data.len());
    let upto = (i > 0)
        .then(|| {
            let spec = lepton_nn::ModelSpec {
                input: net.spec.input.clone(),
                layers: net.spec.layers[..i].to_vec(),
            };
            Net::new(spec, net.input.clone(), net.tensors.clone()).model("bias correction")
        })
        .transpose()?;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    let deq = |v: f32| (i32::from(code_at(v, inv, zero)) - i32::from(zero)) as f32 * d;
    let mut sx = vec![0f64; reads.len()];
    let mut sq = vec![0f64; reads.len()];
    let mut count = 0usize;
    for start in (0..n).step_by(BATCH) {
        let range = start..(start + BATCH).min(n);
        let x: Tensor = match &upto {
            Some(m) => logits(m, data, range.clone())?,
            None => {
                let per = data.sample_len();
                let mut shape = vec![range.len()];
                shape.extend_from_slice(&data.sample_shape);
                Tensor::from_slice(
                    &data.features[range.start * per..range.end * per],
                    shape,
                    &candle_core::Device::Cpu,
                )
                .map_err(Error::tensor("bias correction"))?
            }
        };
        let dims = x.dims().to_vec();
        let v: Vec<f32> = x
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(Error::tensor("bias correction"))?;
        let q: Vec<f32> = v.iter().map(|&v| deq(v)).collect();
        count += match reads {
            Reads::Linear { k } => {
                if v.len() % k != 0 {
                    return Err(shape_error(i, &dims, reads));
                }
                for (xr, qr) in v.chunks_exact(k).zip(q.chunks_exact(k)) {
                    for j in 0..k {
                        sx[j] += xr[j] as f64;
                        sq[j] += qr[j] as f64;
                    }
                }
                v.len() / k
            }
            Reads::Conv {
                c,
                kernel,
                stride,
                padding,
                dilation,
            } => {
                let &[_, cc, h, w] = dims.as_slice() else {
                    return Err(shape_error(i, &dims, reads));
                };
                if cc != c {
                    return Err(shape_error(i, &dims, reads));
                }
                let span = dilation * (kernel - 1) + 1;
                if h + 2 * padding < span || w + 2 * padding < span {
                    return Err(shape_error(i, &dims, reads));
                }
                let oh = (h + 2 * padding - span) / stride + 1;
                let ow = (w + 2 * padding - span) / stride + 1;
                // Tap (ky, kx) of output (y, x) reads input row y·s + ky·dl − p: the rows (and
                // columns) it reads inside the image, then the sums of those rectangles.
                let inside = |o: usize, t: usize, len: usize| {
                    let at = (o * stride + t * dilation) as isize - padding as isize;
                    (at >= 0 && (at as usize) < len).then_some(at as usize)
                };
                for (img_x, img_q) in v.chunks_exact(c * h * w).zip(q.chunks_exact(c * h * w)) {
                    for ci in 0..c {
                        let (px, pq) = (
                            &img_x[ci * h * w..(ci + 1) * h * w],
                            &img_q[ci * h * w..(ci + 1) * h * w],
                        );
                        for ky in 0..kernel {
                            for kx in 0..kernel {
                                let (mut a, mut b) = (0f64, 0f64);
                                for y in (0..oh).filter_map(|y| inside(y, ky, h)) {
                                    for x in (0..ow).filter_map(|x| inside(x, kx, w)) {
                                        a += px[y * w + x] as f64;
                                        b += pq[y * w + x] as f64;
                                    }
                                }
                                let at = (ci * kernel + ky) * kernel + kx;
                                sx[at] += a;
                                sq[at] += b;
                            }
                        }
                    }
                }
                (v.len() / (c * h * w)) * oh * ow
            }
        };
    }
    if count == 0 {
        return Err(Error::Data {
            what: "calibration data",
            message: format!("no input values for the bias correction of layer {i}"),
        });
    }
    let mean = |s: Vec<f64>| s.into_iter().map(|s| s / count as f64).collect();
    Ok((mean(sx), mean(sq)))
}

fn shape_error(i: usize, dims: &[usize], reads: Reads) -> Error {
    Error::Model {
        step: "bias correction",
        message: format!("layer {i}'s input {dims:?} does not fit its weight ({reads:?})"),
    }
}

/// The corrected bias: `b_j − δ_j` with `δ_j` of the module docs, for f32 weights `w`
/// (`rows × k`), their codes and per-row scales, the mean input patch `mx` and mean dequantized
/// patch `mq`.
pub(crate) fn corrected_bias(
    bias: &[f32],
    w: &[f32],
    codes: &[i8],
    scales: &[f32],
    (mx, mq): (&[f64], &[f64]),
) -> Vec<f32> {
    let k = mx.len();
    bias.iter()
        .enumerate()
        .map(|(j, &b)| {
            let (wr, cr) = (&w[j * k..(j + 1) * k], &codes[j * k..(j + 1) * k]);
            let s = scales[j] as f64;
            let shift: f64 = (0..k)
                .map(|t| s * cr[t] as f64 * mq[t] - wr[t] as f64 * mx[t])
                .sum();
            (b as f64 - shift) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `δ` by hand on a 2 × 2 weight: codes and scales reproduce `W` but for one rounding, the
    /// quantized input's mean differs from the input's.
    #[test]
    fn the_shift_is_the_expected_output_difference() {
        let w = [1.0, 2.0, -1.0, 0.5];
        let codes = [127, 64, -127, 64];
        let scales = [2.0 / 127.0, 1.0 / 127.0];
        let (mx, mq) = ([0.5, 1.0], [0.5, 0.9]);
        let b = corrected_bias(&[0.1, -0.2], &w, &codes, &scales, (&mx, &mq));
        // Row 0: int8 0.5·2 + 0.9·(2·64/127) = 1.9070866, f32 0.5 + 2 = 2.5.
        let d0 = 0.5 * 2.0 + 0.9 * 2.0 * 64.0 / 127.0 - 2.5;
        // Row 1: int8 −0.5 + 0.9·64/127 = −0.0464567, f32 −0.5 + 0.5 = 0.
        let d1 = -0.5 + 0.9 * 64.0 / 127.0 - 0.0;
        assert!((b[0] as f64 - (0.1 - d0)).abs() < 1e-6, "{b:?}");
        assert!((b[1] as f64 - (-0.2 - d1)).abs() < 1e-6, "{b:?}");
    }
}
