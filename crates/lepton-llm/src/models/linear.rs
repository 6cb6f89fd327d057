//! [`EncoderLinear`]: one Linear layer of an encoder, f32 (packed for the GEMM microkernels) or
//! dynamic int8 (per-output-channel int8 weights on the VNNI/AVX2 kernels of `lepton-quant`).
//!
//! # Shapes
//! `forward(x [.., in]) -> [.., out]`, `act(x Wᵀ + b)`.
//!
//! The int8 product is `y[r][j] = s_j · d_r · Σ_i q_ji · (c_ri − 128) + b_j`: row `r` of `x`
//! quantized at run time with one scale `d_r = max_i |x_ri| / 127` into u8 codes `c_ri`
//! ([`code_u8`]), the sum taken exactly in i32 over the whole row by [`PackedI8`] (weights packed
//! once at load; VNNI/AVX2/scalar give the same integers); rows are split over rayon's threads in
//! tasks of `ROWS_PER_TASK` rows.

use candle_core::{Tensor, D};
use lepton_nn::kernels::{math, Activation, PackedLinear};
use lepton_quant::{code_u8, PackedI8};
use rayon::prelude::*;

/// Input rows per parallel task of an int8 product.
const ROWS_PER_TASK: usize = 16;

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
    w: PackedI8,
    bias: Vec<f32>,
}

impl Int8Linear {
    /// `w` is `out × in`; `bias` has `out` values.
    pub fn new(w: PackedI8, bias: Vec<f32>) -> candle_core::Result<Self> {
        if bias.len() != w.rows() {
            candle_core::bail!("{} bias values for {} outputs", bias.len(), w.rows());
        }
        Ok(Self { w, bias })
    }

    /// The weights.
    pub fn weights(&self) -> &PackedI8 {
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
            out.par_chunks_mut(ROWS_PER_TASK * n)
                .zip(xs.par_chunks(ROWS_PER_TASK * cols))
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |buf, (o, x)| dynamic_rows(&self.w, x, o, buf),
                );
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

/// `out = (d ⊙ s) (W c(x))` for the rows of `x` (`m × k`) on this thread, each row quantized with
/// its own scale `max |x_r| / 127` (1 for an all-zero row).
fn dynamic_rows(w: &PackedI8, x: &[f32], out: &mut [f32], buf: &mut (Vec<u8>, Vec<i32>)) {
    let (k, n, np) = (w.cols(), w.rows(), w.padded_rows());
    let kp = k.next_multiple_of(4);
    let m = x.len() / k;
    let (codes, prod) = buf;
    codes.clear();
    codes.resize(m * kp, 128);
    let mut d = Vec::with_capacity(m);
    for (xr, cr) in x.chunks_exact(k).zip(codes.chunks_exact_mut(kp)) {
        let amax = xr.iter().fold(0f32, |a, v| a.max(v.abs()));
        let dr = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        let inv = 1.0 / dr;
        for (c, &v) in cr.iter_mut().zip(xr) {
            *c = code_u8(v, inv);
        }
        d.push(dr);
    }
    let rows: Vec<usize> = (0..m).map(|r| r * kp).collect();
    prod.clear();
    prod.resize(m * np, 0);
    w.products(codes, &rows, &[0], prod);
    for ((o, p), dr) in out.chunks_exact_mut(n).zip(prod.chunks_exact(np)).zip(d) {
        for ((o, &p), s) in o.iter_mut().zip(p).zip(w.scales()) {
            *o = p as f32 * (dr * s);
        }
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
        // Every row holds a 127, so its dynamic scale is exactly 1.
        let x: Vec<f32> = (0..m * k)
            .map(|idx| match idx % k {
                i if i % 32 == 3 => 127.0,
                _ => ((idx * 53 % 255) as i32 - 127) as f32,
            })
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 - 4.0).collect();
        let w = PackedI8::new(n, k, &codes, vec![1.0; n], "w").unwrap();
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
        let w = PackedI8::new(2, 3, &[1; 6], vec![1.0; 2], "w").unwrap();
        let l = Int8Linear::new(w, vec![0.0; 2]).unwrap();
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(l.forward(&x, Activation::Identity).is_err());
        let w = PackedI8::new(2, 3, &[1; 6], vec![1.0; 2], "w").unwrap();
        assert!(Int8Linear::new(w, vec![0.0; 3]).is_err());
    }
}
