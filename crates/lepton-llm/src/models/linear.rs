//! [`EncoderLinear`]: one Linear layer of an encoder, f32 (packed for the GEMM microkernels) or
//! dynamic int8 (per-output-channel int8 weights on the VNNI/AVX2 kernels of `lepton-quant`).
//!
//! # Shapes
//! `forward(x [.., in]) -> [.., out]`, `act(x Wᵀ + b)`.
//!
//! The int8 product is `y[r][j] = s_j · Σ_i q_ji · x̂_ri + b_j` with `x̂` the row `r` of `x`
//! quantized per 32-value block at run time ([`ActScale::Dynamic`]); rows are split over rayon's
//! threads in tasks of 64 rows by [`Int8Matrix::matmul`].

use candle_core::{Tensor, D};
use lepton_nn::kernels::{math, Activation, PackedLinear};
use lepton_quant::{ActScale, Int8Matrix};

/// A Linear layer of an encoder in either precision.
pub enum EncoderLinear {
    F32(PackedLinear),
    Int8(Int8Linear),
}

impl EncoderLinear {
    /// `act(x Wᵀ + b)`.
    pub fn forward(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        match self {
            EncoderLinear::F32(l) => l.forward(x, act),
            EncoderLinear::Int8(l) => l.forward(x, act),
        }
    }
}

/// Int8 weights with their f32 bias.
pub struct Int8Linear {
    w: Int8Matrix,
    bias: Vec<f32>,
}

impl Int8Linear {
    /// `w` is `out × in`; `bias` has `out` values.
    pub fn new(w: Int8Matrix, bias: Vec<f32>) -> candle_core::Result<Self> {
        if bias.len() != w.rows() {
            candle_core::bail!("{} bias values for {} outputs", bias.len(), w.rows());
        }
        Ok(Self { w, bias })
    }

    /// The weights.
    pub fn weights(&self) -> &Int8Matrix {
        &self.w
    }

    /// `act(x Wᵀ + b)` on the int8 kernels.
    pub fn forward(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        let cols = x.dim(D::Minus1)?;
        if cols != self.w.cols() {
            candle_core::bail!(
                "int8 linear takes {} inputs per row, got shape {:?}",
                self.w.cols(),
                x.dims()
            );
        }
        let m = x.elem_count() / cols.max(1);
        let n = self.w.rows();
        let mut out = vec![0f32; m * n];
        {
            let x = x.contiguous()?;
            let (storage, layout) = x.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("int8 linear runs on the CPU only");
            };
            let data = cpu.as_slice::<f32>()?;
            let xs = &data[layout.start_offset()..layout.start_offset() + m * cols];
            self.w
                .matmul(xs, ActScale::Dynamic, &mut out, &mut Vec::new());
        }
        for row in out.chunks_exact_mut(n) {
            math::zip_map_inplace(row, &self.bias, |y, b| y + b);
        }
        match act {
            Activation::Identity => {}
            Activation::Relu => math::map_inplace(&mut out, |v| v.max(0.0)),
            Activation::GeluErf => math::map_inplace(&mut out, math::gelu_erf),
            Activation::GeluTanh => math::map_inplace(&mut out, math::gelu_tanh),
        }
        let mut shape = x.dims().to_vec();
        *shape.last_mut().expect("at least one dim") = n;
        Tensor::from_vec(out, shape, x.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Integer weights and integer inputs in [-127, 127] with a block maximum of 127 quantize
    /// exactly (scale 1), so the layer must return the exact integer product plus the bias.
    #[test]
    fn int8_linear_equals_the_exact_integer_reference() {
        let (m, k, n) = (5, 70, 9);
        let codes: Vec<i8> = (0..n * k)
            .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
            .collect();
        // Every 32-block of every row holds a ±127, so its dynamic scale is exactly 1.
        let x: Vec<f32> = (0..m * k)
            .map(|idx| match idx % k {
                i if i % 32 == 3 => 127.0,
                _ => ((idx * 53 % 255) as i32 - 127) as f32,
            })
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 - 4.0).collect();
        let w = Int8Matrix::new(n, k, &codes, vec![1.0; n], "w").unwrap();
        let l = Int8Linear::new(w, bias.clone()).unwrap();
        let xt = Tensor::from_vec(x.clone(), (1, m, k), &Device::Cpu).unwrap();
        let y = l.forward(&xt, Activation::Identity).unwrap();
        assert_eq!(y.dims(), &[1, m, n]);
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for r in 0..m {
            for j in 0..n {
                let want: i64 = (0..k)
                    .map(|i| codes[j * k + i] as i64 * x[r * k + i] as i64)
                    .sum();
                assert_eq!(y[r * n + j], want as f32 + bias[j], "({r}, {j})");
            }
        }
        let relu = l.forward(&xt, Activation::Relu).unwrap();
        assert!(relu
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|v| *v >= 0.0));
    }

    #[test]
    fn a_wrong_input_width_is_an_error() {
        let w = Int8Matrix::new(2, 3, &[1; 6], vec![1.0; 2], "w").unwrap();
        let l = Int8Linear::new(w, vec![0.0; 2]).unwrap();
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(l.forward(&x, Activation::Identity).is_err());
        let w = Int8Matrix::new(2, 3, &[1; 6], vec![1.0; 2], "w").unwrap();
        assert!(Int8Linear::new(w, vec![0.0; 3]).is_err());
    }
}
