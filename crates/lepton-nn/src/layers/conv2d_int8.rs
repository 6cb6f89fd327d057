//! `conv2d-int8`: a `conv2d` (groups 1) with per-output-channel symmetric int8 weights, run as
//! u8 × i8 → i32 products (`lepton_quant::PackedI8`: AVX-512 VNNI, AVX2 or the portable loop).
//! Written by `lepton compress --quantize`; inference only.
//!
//! Each image is quantized once, with the calibrated `activation-scale` (static) or its own
//! `max |x| / 127` (dynamic), into a zero-padded height × width × channels image of codes that
//! the kernel reads in place (an implicit im2col, `kernels/conv_int8.rs`); the weights are
//! packed once at load in the order it reads them. The epilogue takes the folded max-pool on
//! the integer sums, then `y = s_x s_j · P + b_j` and the folded ReLU.
//!
//! # Codes between layers
//! With `output-scale` the output is the next int8 layer's u8 codes. When the fusion pass finds
//! that the next int8 layer (past flattens and dropouts) can read them in height × width ×
//! channels order ([`Layer::take_hwc_codes`]: a convolution reads them as its image rows, a
//! linear layer permutes its weight columns once), they are written so: a `u8` tensor
//! `[N, H', W', C']`, with no transposition on either side. Otherwise `[N, C', H', W']`.
//!
//! # Shapes
//! `[C, H, W]` -> `[out-channels, H', W']` as `conv2d`; tensors `weight: [out-channels, C·K·K]`
//! (u8 holding the i8 codes, PyTorch's `[out, C, K, K]` flattened), `weight_scale: [out-channels]`,
//! `bias: [out-channels]` (f32).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use lepton_quant::{ActScale, PackedI8};
use serde::{Deserialize, Serialize};

use super::linear_int8::{
    act_scale, blocks, input_tensor, input_view, int8_codes, is_symmetric, out_scale, symmetric,
    zero_point_bias, zero_points, Activations, Input, Output,
};
use super::{one, yes, BuildCtx, Conv2dConfig, Ctx, Fold, Layer, LayerConfig, ShapeCtx, Values};
use crate::kernels::{ConvDst, ConvInt8Geom, ConvScratch, ConvSrc};
use rayon::prelude::*;

/// The `conv2d-int8` settings (those of `conv2d`, groups 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Conv2dInt8Config {
    /// Output channels (at least 1).
    pub out_channels: usize,
    /// Kernel size (square, at least 1).
    pub kernel: usize,
    /// Default 1.
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding on each side. Default 0.
    #[serde(default)]
    pub padding: usize,
    /// Default 1.
    #[serde(default = "one")]
    pub dilation: usize,
    /// Add a bias. Default `true`.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Static quantization: the input scale `max|x| / 127` from calibration (finite, > 0).
    /// Default: none, each image is quantized with its own `max|x| / 127` at run time (dynamic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_scale: Option<f32>,
    /// The input scale of the next int8 layer, when only a ReLU and a max-pool (both folded
    /// here), flattens or dropouts lie between (`lepton compress` writes it): the output is
    /// then that layer's codes (a `u8` tensor, see `lepton_quant::code_u8`) instead of f32, and
    /// the next layer reads them as they are. Default: none (f32 output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_scale: Option<f32>,
    /// Static only: the input codes' zero point (as `linear-int8`'s): 0 for inputs calibrated
    /// never negative; the padding border is then the code 0. Default 128 (symmetric codes).
    #[serde(default = "symmetric", skip_serializing_if = "is_symmetric")]
    pub input_zero_point: u8,
    /// With `output-scale`: the next int8 layer's `input-zero-point`. Default 128.
    #[serde(default = "symmetric", skip_serializing_if = "is_symmetric")]
    pub output_zero_point: u8,
}

impl Conv2dInt8Config {
    fn as_f32(&self) -> Conv2dConfig {
        Conv2dConfig {
            out_channels: self.out_channels,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: 1,
            bias: self.bias,
        }
    }
}

impl LayerConfig for Conv2dInt8Config {
    fn kind(&self) -> &'static str {
        "conv2d-int8"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        act_scale(self.activation_scale, ctx)?;
        out_scale(self.output_scale, ctx)?;
        zero_points(
            self.activation_scale,
            self.input_zero_point,
            self.output_scale,
            self.output_zero_point,
            ctx,
        )?;
        self.as_f32().output_shape(x, ctx)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        self.as_f32().values(x, ctx)
    }

    fn size_field(&self) -> Option<&'static str> {
        self.as_f32().size_field()
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let (c, k, co) = (x[0], self.kernel, self.out_channels);
        let (codes, scales) = int8_codes(&vb, co, c * k * k)?;
        let geom = ConvInt8Geom {
            c,
            kernel: k,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            pool: None,
            zero: self.input_zero_point,
        };
        let what = format!("{}.weight", vb.prefix());
        let packed = geom.pack_weights(&codes, co);
        let zero_scales = scales.clone();
        let weight = PackedI8::new(co, geom.packed_len(), &packed, scales, &what)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let bias = if self.bias {
            vb.get_with_hints_dtype(co, "bias", Init::Const(0.0), DType::F32)?
                .to_vec1()?
        } else {
            vec![0.0; co]
        };
        let bias = match self.activation_scale {
            Some(d) => zero_point_bias(Some(bias), &codes, &zero_scales, d, self.input_zero_point)
                .expect("a bias in, a bias out"),
            None => bias,
        };
        Ok(Box::new(Conv2dInt8 {
            weight,
            bias,
            act: match self.activation_scale {
                Some(s) => ActScale::Static(s),
                None => ActScale::Dynamic,
            },
            geom,
            input: [x[0], x[1], x[2]],
            relu: false,
            out: self.output_scale,
            out_zero: self.output_zero_point,
            hwc_in: false,
            hwc_out: false,
        }))
    }
}

/// A built `conv2d-int8` layer.
#[derive(Debug, Clone)]
pub struct Conv2dInt8 {
    /// Codes in the order `ConvInt8Geom::pack_weights` gives.
    weight: PackedI8,
    /// One value per output channel (zeros without a bias).
    bias: Vec<f32>,
    act: ActScale,
    /// The shape and the folded max-pool.
    geom: ConvInt8Geom,
    /// The input `[C, H, W]` of the spec.
    input: [usize; 3],
    relu: bool,
    /// Output codes at this scale (the next int8 layer's input scale) instead of f32.
    out: Option<f32>,
    /// The output codes' zero point.
    out_zero: u8,
    /// u8 inputs are codes in `[N, H, W, C]` order (else `[N, C, H, W]`).
    hwc_in: bool,
    /// Codes out in `[N, H', W', C']` order (else `[N, C', H', W']`).
    hwc_out: bool,
}

impl Layer for Conv2dInt8 {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let dims = x.dims();
        let hwc = self.hwc_in && x.dtype() == DType::U8;
        let (n, c, h, w) = match (dims, hwc) {
            (&[n, h, w, c], true) => (n, c, h, w),
            (&[n, c, h, w], false) => (n, c, h, w),
            _ => candle_core::bail!(
                "conv2d-int8 expects [N, {}] ({}), got {dims:?}",
                if hwc { "H, W, C" } else { "C, H, W" },
                if hwc { "codes" } else { "values" }
            ),
        };
        if c != self.geom.c {
            candle_core::bail!(
                "conv2d-int8: input {dims:?} has {c} channels, the weight {}",
                self.geom.c
            );
        }
        let plan = self.geom.plan(h, w)?;
        let held = input_tensor(x, "conv2d-int8", self.act)?;
        let held = held.storage_and_layout();
        let xs = input_view(&held.0, held.1, "conv2d-int8")?;
        let co = self.weight.rows();
        let (ph, pw) = plan.out_hw();
        let per_out = co * ph * pw;
        let per_in = plan.in_len();
        let mut out = Activations::zeros(n * per_out, self.out.is_some(), self.out_zero);
        // One contiguous block of images per thread, its buffers reused across the block (in
        // cache); a single block runs on the calling thread, with no hand-off to the pool.
        let per_task = n.div_ceil(rayon::current_num_threads()).max(1);
        let run = |(mut dst, src): (Output, Input)| {
            let mut buf = ConvScratch::default();
            for i in 0..src.len() / per_in {
                let (src, dst) = (
                    src.slice(i * per_in, per_in),
                    dst.slice(i * per_out, per_out),
                );
                let d = match (self.act, src) {
                    (ActScale::Static(d), _) => d,
                    (ActScale::Dynamic, Input::F32(x)) => {
                        x.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0
                    }
                    (ActScale::Dynamic, Input::U8(_)) => unreachable!("refused by input_tensor"),
                };
                let src = match src {
                    Input::F32(x) => ConvSrc::F32(x, if d > 0.0 { 1.0 / d } else { 0.0 }),
                    Input::U8(x) if hwc => ConvSrc::Hwc(x),
                    Input::U8(x) => ConvSrc::Chw(x),
                };
                let dst = match dst {
                    Output::F32(o) => ConvDst::F32(o),
                    Output::U8(o, inv, z) if self.hwc_out => ConvDst::Hwc(o, inv, z),
                    Output::U8(o, inv, z) => ConvDst::Chw(o, inv, z),
                };
                plan.image(&self.weight, &self.bias, self.relu, d, src, dst, &mut buf);
            }
        };
        let mut tasks = blocks(
            &mut out,
            self.out,
            self.out_zero,
            per_task * per_out,
            xs,
            per_task * per_in,
        );
        if tasks.len() == 1 {
            run(tasks.pop().expect("one block"));
        } else {
            tasks.into_par_iter().for_each(run);
        }
        if self.hwc_out && self.out.is_some() {
            out.into_tensor(&[n, ph, pw, co], x.device())
        } else {
            out.into_tensor(&[n, co, ph, pw], x.device())
        }
    }

    fn fold(&mut self, op: Fold, after_relu: bool) -> bool {
        match op {
            Fold::Relu if !self.relu && self.geom.pool.is_none() => {
                self.relu = true;
                true
            }
            Fold::MaxPool(k, s, p) if self.geom.pool.is_none() && (!after_relu || self.relu) => {
                self.geom.pool = Some((k, s, p));
                true
            }
            _ => false,
        }
    }

    fn hwc_codes_out(&self) -> Option<[usize; 3]> {
        self.out?;
        let [_, h, w] = self.input;
        let (ph, pw) = self.geom.plan(h, w).ok()?.out_hw();
        Some([self.weight.rows(), ph, pw])
    }

    fn set_hwc_codes_out(&mut self) {
        self.hwc_out = true;
    }

    fn take_hwc_codes(&mut self, chw: [usize; 3]) -> bool {
        if self.act == ActScale::Dynamic || chw != self.input {
            return false;
        }
        self.hwc_in = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Tensor};
    use candle_nn::{ModuleT, VarMap};

    use crate::kernels::Lcg;
    use crate::{Model, ModelSpec};

    /// Integer inputs and codes with scales 1 (`activation-scale = 1`): the layer, with its folded
    /// ReLU and max-pool, must give exactly the plain i64 convolution + bias (+ ReLU) (+ max-pool)
    /// on random shapes: odd channel counts (1, 3, 5, 33: not multiples of 4 or of the 8/32-channel
    /// tiles), odd sizes, stride 2, padding, dilation 2, a pool with padding, batch 1 and 3.
    #[test]
    fn int8_conv_equals_the_exact_integer_convolution_on_random_shapes() {
        let dev = Device::Cpu;
        let mut g = Lcg(5);
        // (n, c, h, w, co, k, stride, padding, dilation, relu, pool (k, s, p))
        type Case = (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            bool,
            Option<(usize, usize, usize)>,
        );
        let cases: [Case; 8] = [
            (1, 1, 5, 4, 1, 1, 1, 0, 1, false, None),
            (3, 3, 9, 7, 5, 3, 1, 1, 1, true, Some((2, 2, 0))),
            (2, 5, 11, 8, 33, 3, 2, 1, 1, true, None),
            (1, 33, 6, 7, 7, 3, 1, 2, 2, false, None),
            (3, 4, 7, 9, 64, 2, 1, 0, 1, true, Some((3, 2, 1))),
            (2, 2, 8, 8, 3, 5, 3, 2, 1, false, Some((2, 1, 0))),
            (1, 32, 14, 14, 64, 3, 1, 1, 1, true, Some((2, 2, 0))),
            (2, 7, 5, 5, 9, 3, 1, 0, 2, true, None),
        ];
        // Symmetric codes (128), zero point 0 (x in 0..=255) and 37 (x in -37..=218): the padding
        // border is then the code of 0, and `(128 − z) Σ w` folded into the bias.
        for (zero, (n, c, h, w, co, k, s, p, d, relu, pool)) in [128u8, 0, 37]
            .into_iter()
            .flat_map(|z| cases.into_iter().map(move |c| (z, c)))
        {
            let kk = c * k * k;
            let codes: Vec<i32> = (0..co * kk).map(|_| g.int(-127, 127)).collect();
            let bias: Vec<i32> = (0..co).map(|_| g.int(-3000, 3000)).collect();
            let lo = -i32::from(zero.min(127));
            let x: Vec<i32> = (0..n * c * h * w)
                .map(|_| g.int(lo, 255 - i32::from(zero)))
                .collect();
            let mut tensors = HashMap::new();
            let bytes: Vec<u8> = codes.iter().map(|&c| c as i8 as u8).collect();
            let f = |v: &[i32]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
            tensors.insert(
                "layers.0.weight".to_string(),
                Tensor::from_vec(bytes, (co, kk), &dev).unwrap(),
            );
            tensors.insert(
                "layers.0.weight_scale".to_string(),
                Tensor::from_vec(vec![1f32; co], co, &dev).unwrap(),
            );
            tensors.insert(
                "layers.0.bias".to_string(),
                Tensor::from_vec(f(&bias), co, &dev).unwrap(),
            );
            let mut layers = format!(
                r#"{{ type = "conv2d-int8", out-channels = {co}, kernel = {k}, stride = {s}, padding = {p}, dilation = {d}, activation-scale = 1.0, input-zero-point = {zero} }}"#
            );
            if relu {
                layers += r#", { type = "relu" }"#;
            }
            if let Some((pk, ps, pp)) = pool {
                layers += &format!(
                    r#", {{ type = "max-pool2d", kernel = {pk}, stride = {ps}, padding = {pp} }}"#
                );
            }
            let spec: ModelSpec = toml::from_str(&format!("layers = [{layers}]")).unwrap();
            let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &dev);
            let model = Model::new(&spec, &[c, h, w], vb).unwrap();
            let xt = Tensor::from_vec(f(&x), (n, c, h, w), &dev).unwrap();
            let got = model.forward_t(&xt, false).unwrap();

            // The reference: plain integer arithmetic.
            let span = d * (k - 1) + 1;
            let (oh, ow) = ((h + 2 * p - span) / s + 1, (w + 2 * p - span) / s + 1);
            let mut conv = vec![0i64; n * co * oh * ow];
            for b in 0..n {
                for j in 0..co {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = bias[j] as i64;
                            for ci in 0..c {
                                for ky in 0..k {
                                    for kx in 0..k {
                                        let iy = (oy * s + ky * d) as isize - p as isize;
                                        let ix = (ox * s + kx * d) as isize - p as isize;
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize
                                        {
                                            continue;
                                        }
                                        let xv =
                                            x[((b * c + ci) * h + iy as usize) * w + ix as usize];
                                        acc += xv as i64
                                            * codes[j * kk + (ci * k + ky) * k + kx] as i64;
                                    }
                                }
                            }
                            conv[((b * co + j) * oh + oy) * ow + ox] =
                                if relu { acc.max(0) } else { acc };
                        }
                    }
                }
            }
            let (want, (ph, pw)) = match pool {
                None => (conv, (oh, ow)),
                Some((pk, ps, pp)) => {
                    let (ph, pw) = ((oh + 2 * pp - pk) / ps + 1, (ow + 2 * pp - pk) / ps + 1);
                    let mut out = vec![i64::MIN; n * co * ph * pw];
                    for bj in 0..n * co {
                        for py in 0..ph {
                            for px in 0..pw {
                                for dy in 0..pk {
                                    for dx in 0..pk {
                                        let y = (py * ps + dy) as isize - pp as isize;
                                        let xx = (px * ps + dx) as isize - pp as isize;
                                        if y < 0 || xx < 0 || y >= oh as isize || xx >= ow as isize
                                        {
                                            continue;
                                        }
                                        let o = &mut out[(bj * ph + py) * pw + px];
                                        *o = (*o)
                                            .max(conv[(bj * oh + y as usize) * ow + xx as usize]);
                                    }
                                }
                            }
                        }
                    }
                    (out, (ph, pw))
                }
            };
            assert_eq!(
                got.dims(),
                &[n, co, ph, pw],
                "case {n}x{c}x{h}x{w} -> {co}, k {k} s {s} p {p} d {d}, zero point {zero}"
            );
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            assert_eq!(
                got, want,
                "case {n}x{c}x{h}x{w} -> {co}, k {k} s {s} p {p} d {d}, zero point {zero}"
            );
        }
    }

    /// A static int8 chain (conv over 2 channels (gathered patches) + ReLU + pool, conv over 4
    /// (read in place) + ReLU + pool, flatten, linear + ReLU, linear) run with each layer handing the next its u8
    /// codes (`output-scale`) gives exactly the same logits as the same layers handing over f32
    /// tensors that the next layer quantizes: the same codes either way. Batch 1 and 5 (blocks
    /// per thread), odd sizes.
    #[test]
    fn code_hand_off_equals_the_per_layer_f32_path_bit_for_bit() {
        let dev = Device::Cpu;
        let mut g = Lcg(11);
        let input = [2, 11, 9];
        let shapes = [("layers.0", 4, 2 * 9), ("layers.3", 8, 4 * 9)];
        let mut tensors = HashMap::new();
        let mut put = |name: &str, rows: usize, cols: usize, g: &mut Lcg| {
            let codes: Vec<u8> = (0..rows * cols)
                .map(|_| g.int(-127, 127) as i8 as u8)
                .collect();
            let scales: Vec<f32> = (0..rows).map(|_| g.int(1, 100) as f32 * 1e-3).collect();
            let bias: Vec<f32> = (0..rows).map(|_| g.int(-100, 100) as f32 * 1e-2).collect();
            tensors.insert(
                format!("{name}.weight"),
                Tensor::from_vec(codes, (rows, cols), &dev).unwrap(),
            );
            tensors.insert(
                format!("{name}.weight_scale"),
                Tensor::from_vec(scales, rows, &dev).unwrap(),
            );
            tensors.insert(
                format!("{name}.bias"),
                Tensor::from_vec(bias, rows, &dev).unwrap(),
            );
        };
        for (name, rows, cols) in shapes {
            put(name, rows, cols, &mut g);
        }
        // 11x9 -> conv pad 1 -> 11x9 -> pool 2 -> 5x4 -> conv pad 1 -> 5x4 -> pool 2 -> 2x2.
        put("layers.7", 10, 8 * 2 * 2, &mut g);
        put("layers.9", 3, 10, &mut g);
        // Symmetric codes everywhere, and zero point 0 for the post-ReLU inputs (the chain
        // writing those codes).
        for zero in [128u8, 0] {
            let spec = |chain: bool| -> ModelSpec {
                let z = format!(", input-zero-point = {zero}");
                let o = |s: &str| {
                    if chain {
                        format!(", output-scale = {s}, output-zero-point = {zero}")
                    } else {
                        String::new()
                    }
                };
                toml::from_str(&format!(
                r#"layers = [
                {{ type = "conv2d-int8", out-channels = 4, kernel = 3, padding = 1, activation-scale = 0.02{} }},
                {{ type = "relu" }}, {{ type = "max-pool2d", kernel = 2 }},
                {{ type = "conv2d-int8", out-channels = 8, kernel = 3, padding = 1, activation-scale = 0.015{z}{} }},
                {{ type = "relu" }}, {{ type = "max-pool2d", kernel = 2 }},
                {{ type = "flatten" }}, {{ type = "linear-int8", out-features = 10, activation-scale = 0.05{z}{} }},
                {{ type = "relu" }}, {{ type = "linear-int8", out-features = 3, activation-scale = 0.04{z} }}]"#,
                o("0.015"),
                o("0.05"),
                o("0.04")
            ))
            .unwrap()
            };
            let build = |chain| {
                let vb = candle_nn::VarBuilder::from_tensors(tensors.clone(), DType::F32, &dev);
                Model::new(&spec(chain), &input, vb).unwrap()
            };
            let (plain, chained) = (build(false), build(true));
            for n in [1, 5] {
                let x = Tensor::randn(0f32, 1.0, (n, 2, 11, 9), &dev).unwrap();
                let run = |m: &Model| -> Vec<f32> {
                    let y = m.forward_t(&x, false).unwrap();
                    assert_eq!(y.dims(), &[n, 3]);
                    y.flatten_all().unwrap().to_vec1().unwrap()
                };
                let (want, got) = (run(&plain), run(&chained));
                assert!(want.iter().any(|&v| v != 0.0), "a degenerate test");
                assert_eq!(got, want, "batch {n}, zero point {zero}");
                // The chain hands its codes over in height × width × channels order: conv → conv
                // ([N, 5, 4, 4 channels], not [N, 4, 5, 4]) and conv → flatten → linear.
                for (end, dims) in [(3, [n, 5, 4, 4]), (6, [n, 2, 2, 8])] {
                    let y = chained.forward_range(&x, 0..end, false).unwrap();
                    assert_eq!(
                        (y.dtype(), y.dims()),
                        (DType::U8, &dims[..]),
                        "layers 0..{end}"
                    );
                }
            }
        }
    }

    /// A u8 tensor (codes) into a dynamic int8 layer is an error naming the layer, not garbage.
    #[test]
    fn codes_into_a_dynamic_layer_are_refused() {
        let dev = Device::Cpu;
        let tensors = HashMap::from([
            (
                "layers.0.weight".to_string(),
                Tensor::from_vec(vec![1u8; 6], (2, 3), &dev).unwrap(),
            ),
            (
                "layers.0.weight_scale".to_string(),
                Tensor::from_vec(vec![1f32; 2], 2, &dev).unwrap(),
            ),
        ]);
        let spec: ModelSpec = toml::from_str(
            r#"layers = [{ type = "linear-int8", out-features = 2, bias = false }]"#,
        )
        .unwrap();
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let model = Model::new(&spec, &[3], vb).unwrap();
        let x = Tensor::from_vec(vec![128u8; 3], (1, 3), &dev).unwrap();
        let e = model.forward_t(&x, false).unwrap_err().to_string();
        assert!(e.contains("linear-int8") && e.contains("codes"), "{e}");
    }

    /// An f32 conv + ReLU + pool + flatten + linear model against the same model with its
    /// weights quantized per channel: the outputs agree within the int8 rounding, dynamic and static.
    #[test]
    fn int8_conv_and_linear_match_the_f32_model_within_quantization_error() {
        let dev = Device::Cpu;
        let f32_spec: ModelSpec = toml::from_str(
            r#"layers = [
                { type = "conv2d", out-channels = 5, kernel = 3, padding = 1 },
                { type = "relu" }, { type = "max-pool2d", kernel = 2 },
                { type = "flatten" }, { type = "linear", out-features = 7 }]"#,
        )
        .unwrap();
        let varmap = VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let input = [3, 9, 7];
        let model = Model::new(&f32_spec, &input, vb).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, 3, 9, 7), &dev).unwrap();
        let want: Vec<f32> = model
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut tensors = HashMap::new();
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let t = var.as_tensor();
            if name.ends_with("weight") {
                let rows = t.dim(0).unwrap();
                let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                let cols = v.len() / rows;
                let (codes, scales) = lepton_quant::quantize_per_channel(rows, cols, &v);
                let codes: Vec<u8> = codes.into_iter().map(|c| c as u8).collect();
                tensors.insert(
                    name.clone(),
                    Tensor::from_vec(codes, (rows, cols), &dev).unwrap(),
                );
                tensors.insert(
                    name.replace("weight", "weight_scale"),
                    Tensor::from_vec(scales, rows, &dev).unwrap(),
                );
            } else {
                tensors.insert(name.clone(), t.clone());
            }
        }
        let scale = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!(", activation-scale = {s}")
            }
        };
        for (a, b) in [("", ""), ("0.03", "0.02")] {
            let spec: ModelSpec = toml::from_str(&format!(
                r#"layers = [
                {{ type = "conv2d-int8", out-channels = 5, kernel = 3, padding = 1{} }},
                {{ type = "relu" }}, {{ type = "max-pool2d", kernel = 2 }},
                {{ type = "flatten" }}, {{ type = "linear-int8", out-features = 7{} }}]"#,
                scale(a),
                scale(b)
            ))
            .unwrap();
            let vb = candle_nn::VarBuilder::from_tensors(tensors.clone(), DType::F32, &dev);
            let q = Model::new(&spec, &input, vb).unwrap();
            let got: Vec<f32> = q
                .forward_t(&x, false)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let size = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
            // Two int8 layers: a few percent of the output range, far from a wrong kernel.
            assert!(
                worst <= 0.05 * size,
                "scale {a:?}: worst {worst}, outputs up to {size}"
            );
            assert!(worst > 0.0, "int8 must differ from f32 somewhere");
        }
    }
}
