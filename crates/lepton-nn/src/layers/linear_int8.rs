//! `linear-int8`: `y = s ⊙ (Q x̂) + b`, a `linear` layer with per-output-channel symmetric int8
//! weights, run as integer products accumulated in i32 (AVX-512 VNNI, AVX2 or the portable
//! kernel). Written by `lepton compress --quantize`; inference only.
//!
//! - Static (the spec has the calibrated `activation-scale` `d`): each input row becomes u8 codes
//!   `round(x / d) + 128` and runs on `lepton_quant::PackedI8` (weights packed once at load),
//!   `y_j = d s_j · P_j + b_j`.
//! - Dynamic: the input is quantized per 32-value block at run time (`lepton_quant::Int8Matrix`).
//!
//! A following ReLU is folded into the epilogue. With `output-scale` (static chains written by
//! `lepton compress`) the output is the next int8 layer's u8 codes (a `u8` tensor), which that
//! layer reads as they are: consecutive int8 layers (`conv2d-int8` too) hand over codes, not f32
//! tensors quantized again (`Input`, `Output` and `Activations` here serve both).
//!
//! # Shapes
//! `[..., in]` -> `[..., out-features]`; tensors `weight: [out-features, in]` (u8 holding the i8
//! codes, two's complement), `weight_scale: [out-features]` (f32), `bias: [out-features]` (f32).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use lepton_quant::{ActScale, Int8Matrix, PackedI8};

use crate::kernels::code_at;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{yes, BuildCtx, Ctx, Fold, Layer, LayerConfig, LinearConfig, ShapeCtx, Values};

/// The `linear-int8` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LinearInt8Config {
    /// Output features (at least 1).
    pub out_features: usize,
    /// Input features: inferred from the input shape; when given it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_features: Option<usize>,
    /// Add a bias. Default `true`.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Static quantization: the input scale `max|x| / 127` from calibration (finite, > 0).
    /// Default: none, the input is quantized per block at run time (dynamic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_scale: Option<f32>,
    /// The input scale of the next int8 layer, when only a ReLU (folded here), flattens or
    /// dropouts lie between (`lepton compress` writes it): the output is then that layer's codes
    /// (a `u8` tensor) instead of f32. Default: none (f32 output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_scale: Option<f32>,
    /// Static only: the input codes' zero point `z`, `code = round(x / d) + z` (see
    /// [`crate::kernels::code_at`]); 0 for inputs calibrated never negative (post-ReLU), so all 256
    /// codes cover `[0, 255 d]`. Default 128: symmetric codes, `d = max|x| / 127` (packages
    /// written before this field run unchanged).
    #[serde(default = "symmetric", skip_serializing_if = "is_symmetric")]
    pub input_zero_point: u8,
    /// With `output-scale`: the next int8 layer's `input-zero-point` (its codes are written
    /// here). Default 128.
    #[serde(default = "symmetric", skip_serializing_if = "is_symmetric")]
    pub output_zero_point: u8,
}

/// The zero point of symmetric codes, the default.
pub(super) fn symmetric() -> u8 {
    128
}

pub(super) fn is_symmetric(z: &u8) -> bool {
    *z == 128
}

/// `input-zero-point` / `output-zero-point`, checked: other than 128 only for static codes.
pub(super) fn zero_points(
    act: Option<f32>,
    zin: u8,
    out: Option<f32>,
    zout: u8,
    ctx: &ShapeCtx,
) -> crate::Result<()> {
    if act.is_none() && zin != 128 {
        return Err(ctx.error(format!(
            "input-zero-point = {zin} needs a static activation-scale (dynamic codes are symmetric)"
        )));
    }
    if out.is_none() && zout != 128 {
        return Err(ctx.error(format!("output-zero-point = {zout} needs an output-scale")));
    }
    Ok(())
}

/// The bias with the zero point folded in: the kernel sums `(u − 128) w`, and
/// `Σ (u − z) w = Σ (u − 128) w + (128 − z) Σ w`, so `b_j + d s_j (128 − z) Σ_k w_jk`
/// (in f64, then rounded once). Unchanged for `z = 128`. `codes` row-major `[rows][cols]`.
pub(super) fn zero_point_bias(
    bias: Option<Vec<f32>>,
    codes: &[i8],
    scales: &[f32],
    d: f32,
    zero: u8,
) -> Option<Vec<f32>> {
    if zero == 128 || scales.is_empty() {
        return bias;
    }
    let cols = codes.len() / scales.len();
    let shift = 128.0 - f64::from(zero);
    let b = bias.unwrap_or_else(|| vec![0.0; scales.len()]);
    Some(
        b.iter()
            .zip(scales)
            .zip(codes.chunks_exact(cols))
            .map(|((&b, &s), w)| {
                let sum: i64 = w.iter().map(|&v| i64::from(v)).sum();
                (f64::from(b) + f64::from(d) * f64::from(s) * shift * sum as f64) as f32
            })
            .collect(),
    )
}

impl LinearInt8Config {
    fn as_f32(&self) -> LinearConfig {
        LinearConfig {
            out_features: self.out_features,
            in_features: self.in_features,
            bias: self.bias,
            tie: None,
        }
    }
}

/// The activation quantization of a spec's `activation-scale`, checked.
pub(super) fn act_scale(scale: Option<f32>, ctx: &ShapeCtx) -> crate::Result<ActScale> {
    match scale {
        None => Ok(ActScale::Dynamic),
        Some(s) if s.is_finite() && s > 0.0 => Ok(ActScale::Static(s)),
        Some(s) => Err(ctx.error(format!("activation-scale = {s} must be finite and > 0"))),
    }
}

/// The `output-scale` of a spec, checked.
pub(super) fn out_scale(scale: Option<f32>, ctx: &ShapeCtx) -> crate::Result<()> {
    match scale {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            Err(ctx.error(format!("output-scale = {s} must be finite and > 0")))
        }
        _ => Ok(()),
    }
}

/// An int8 layer's input block: f32 values, or u8 codes at the layer's own input scale (the
/// output of an int8 layer before it with `output-scale`).
#[derive(Clone, Copy)]
pub(super) enum Input<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
}

impl<'a> Input<'a> {
    pub(super) fn len(&self) -> usize {
        match self {
            Input::F32(x) => x.len(),
            Input::U8(x) => x.len(),
        }
    }

    /// The values in blocks of `per`.
    pub(super) fn chunks(self, per: usize) -> Vec<Input<'a>> {
        match self {
            Input::F32(x) => x.chunks(per).map(Input::F32).collect(),
            Input::U8(x) => x.chunks(per).map(Input::U8).collect(),
        }
    }

    pub(super) fn slice(self, at: usize, len: usize) -> Input<'a> {
        match self {
            Input::F32(x) => Input::F32(&x[at..at + len]),
            Input::U8(x) => Input::U8(&x[at..at + len]),
        }
    }
}

/// An int8 layer's output block: f32 values, or the next layer's codes (with `1 / output-scale`
/// and the output zero point).
pub(super) enum Output<'a> {
    F32(&'a mut [f32]),
    U8(&'a mut [u8], f32, u8),
}

impl Output<'_> {
    pub(super) fn slice(&mut self, at: usize, len: usize) -> Output<'_> {
        match self {
            Output::F32(x) => Output::F32(&mut x[at..at + len]),
            Output::U8(x, inv, z) => Output::U8(&mut x[at..at + len], *inv, *z),
        }
    }
}

/// `x` as an int8 layer reads it: a contiguous `u8` tensor (codes, which only a static layer can
/// read) or f32 tensor (converted when of another type). [`input_view`] then borrows its values.
pub(super) fn input_tensor(x: &Tensor, what: &str, act: ActScale) -> Result<Tensor> {
    if x.dtype() == DType::U8 {
        if act == ActScale::Dynamic {
            candle_core::bail!(
                "{what}: u8 codes as input need the static activation-scale they were written at"
            );
        }
        return x.contiguous();
    }
    x.to_dtype(DType::F32)?.contiguous()
}

/// The values of a tensor from [`input_tensor`] (its storage and layout), borrowed: no copy.
pub(super) fn input_view<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
    what: &str,
) -> Result<Input<'a>> {
    use candle_core::{CpuStorage, Storage};
    let Some((a, b)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what}: the input is not contiguous");
    };
    match storage {
        Storage::Cpu(CpuStorage::U8(v)) => Ok(Input::U8(&v[a..b])),
        Storage::Cpu(CpuStorage::F32(v)) => Ok(Input::F32(&v[a..b])),
        _ => candle_core::bail!("{what}: the input must be a CPU u8 or f32 tensor"),
    }
}

/// A whole batch of an int8 layer's inputs or outputs.
pub(super) enum Activations {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

impl Activations {
    /// `len` zeros, codes (of zero point `zero`) when `codes`.
    pub(super) fn zeros(len: usize, codes: bool, zero: u8) -> Self {
        if codes {
            Activations::U8(vec![zero; len])
        } else {
            Activations::F32(vec![0.0; len])
        }
    }

    pub(super) fn into_tensor(self, shape: &[usize], dev: &candle_core::Device) -> Result<Tensor> {
        match self {
            Activations::F32(v) => Tensor::from_vec(v, shape, dev),
            Activations::U8(v) => Tensor::from_vec(v, shape, dev),
        }
    }
}

/// `out` and `x` cut into matching blocks of `per_out` and `per_in` values (the work of one
/// task each); `out_scale` and `out_zero` are the scale and zero point of codes written to a
/// `u8` output.
pub(super) fn blocks<'a>(
    out: &'a mut Activations,
    out_scale: Option<f32>,
    out_zero: u8,
    per_out: usize,
    x: Input<'a>,
    per_in: usize,
) -> Vec<(Output<'a>, Input<'a>)> {
    let inputs = x.chunks(per_in);
    let outputs: Vec<Output> = match out {
        Activations::F32(o) => o.chunks_mut(per_out).map(Output::F32).collect(),
        Activations::U8(o) => {
            let inv = 1.0 / out_scale.expect("codes out only with an output scale");
            o.chunks_mut(per_out)
                .map(|o| Output::U8(o, inv, out_zero))
                .collect()
        }
    };
    outputs.into_iter().zip(inputs).collect()
}

/// Read the int8 weight `weight` (u8 codes `[rows, cols]`) and `weight_scale` (`[rows]`) under
/// `vb`: the codes (row-major i8) and the scales.
pub(super) fn int8_codes(vb: &VarBuilder, rows: usize, cols: usize) -> Result<(Vec<i8>, Vec<f32>)> {
    let zero = Init::Const(0.0);
    let codes = vb.get_with_hints_dtype((rows, cols), "weight", zero, DType::U8)?;
    let scales = vb.get_with_hints_dtype(rows, "weight_scale", zero, DType::F32)?;
    let codes: Vec<i8> = codes
        .flatten_all()?
        .to_vec1::<u8>()?
        .into_iter()
        .map(|c| c as i8)
        .collect();
    Ok((codes, scales.to_vec1()?))
}

fn quant_error(e: lepton_quant::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl LayerConfig for LinearInt8Config {
    fn kind(&self) -> &'static str {
        "linear-int8"
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
        Some("out-features")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let cols = *x.last().expect("shapes checked");
        let (codes, scales) = int8_codes(&vb, self.out_features, cols)?;
        let what = format!("{}.weight", vb.prefix());
        let zero = self.input_zero_point;
        let zero_scales = scales.clone();
        let weight = match self.activation_scale {
            Some(d) => Kernel::Static(
                PackedI8::new(self.out_features, cols, &codes, scales, &what)
                    .map_err(quant_error)?,
                d,
                zero,
            ),
            None => Kernel::Dynamic(
                Int8Matrix::new(self.out_features, cols, &codes, scales, &what)
                    .map_err(quant_error)?,
            ),
        };
        let bias = if self.bias {
            Some(
                vb.get_with_hints_dtype(self.out_features, "bias", Init::Const(0.0), DType::F32)?
                    .to_vec1()?,
            )
        } else {
            None
        };
        let bias = match self.activation_scale {
            Some(d) => zero_point_bias(bias, &codes, &zero_scales, d, zero),
            None => bias,
        };
        Ok(Box::new(LinearInt8 {
            weight,
            bias,
            relu: false,
            out: self.output_scale,
            out_zero: self.output_zero_point,
        }))
    }
}

/// The weights as the activation mode runs them.
#[derive(Debug, Clone)]
enum Kernel {
    /// Packed for u8 codes at the calibrated input scale and zero point (its sum `(128 − z) Σ w`
    /// folded into the bias).
    Static(PackedI8, f32, u8),
    /// Q8_0 layout, activations quantized per block at run time.
    Dynamic(Int8Matrix),
}

/// A built `linear-int8` layer.
#[derive(Debug, Clone)]
pub struct LinearInt8 {
    weight: Kernel,
    bias: Option<Vec<f32>>,
    /// The ReLU after this layer, computed in the epilogue (see `fuse.rs`).
    relu: bool,
    /// Output codes at this scale (the next int8 layer's input scale) instead of f32.
    out: Option<f32>,
    /// The output codes' zero point.
    out_zero: u8,
}

/// Input rows per task of a parallel static product.
const ROWS_PER_TASK: usize = 16;

/// Static `out = d s ⊙ (W q(x))` (`m × n`) for the rows of `x` (`m × k`; f32, or codes at scale
/// `d` and zero point `zero`), on this thread.
fn static_rows(
    w: &PackedI8,
    (d, zero): (f32, u8),
    x: Input,
    out: &mut [f32],
    buf: &mut (Vec<u8>, Vec<i32>),
) {
    let (k, n, np) = (w.cols(), w.rows(), w.padded_rows());
    let kp = k.next_multiple_of(4);
    let m = x.len() / k;
    let inv = 1.0 / d;
    let (codes, prod) = buf;
    // Rows of codes padded to whole 4-code groups: the codes as they came when already so.
    let src: &[u8] = match x {
        Input::U8(x) if k == kp => x,
        _ => {
            codes.clear();
            codes.resize(m * kp, zero);
            for (r, cr) in codes.chunks_exact_mut(kp).enumerate() {
                match x {
                    Input::F32(x) => {
                        for (c, &v) in cr.iter_mut().zip(&x[r * k..(r + 1) * k]) {
                            *c = code_at(v, inv, zero);
                        }
                    }
                    Input::U8(x) => cr[..k].copy_from_slice(&x[r * k..(r + 1) * k]),
                }
            }
            codes
        }
    };
    let rows: Vec<usize> = (0..m).map(|r| r * kp).collect();
    prod.resize(m * np, 0);
    w.products(src, &rows, &[0], prod);
    for (o, p) in out.chunks_exact_mut(n).zip(prod.chunks_exact(np)) {
        for ((o, &p), s) in o.iter_mut().zip(p).zip(w.scales()) {
            *o = p as f32 * (d * s);
        }
    }
}

impl LinearInt8 {
    fn rows(&self) -> usize {
        match &self.weight {
            Kernel::Static(w, ..) => w.rows(),
            Kernel::Dynamic(w) => w.rows(),
        }
    }

    fn cols(&self) -> usize {
        match &self.weight {
            Kernel::Static(w, ..) => w.cols(),
            Kernel::Dynamic(w) => w.cols(),
        }
    }
}

impl Layer for LinearInt8 {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = self.cols();
        if dims.last() != Some(&k) {
            candle_core::bail!("linear-int8 expects [..., {k}], got {dims:?}");
        }
        let act = match &self.weight {
            Kernel::Static(_, d, _) => ActScale::Static(*d),
            Kernel::Dynamic(_) => ActScale::Dynamic,
        };
        let held = input_tensor(x, "linear-int8", act)?;
        let held = held.storage_and_layout();
        let xs = input_view(&held.0, held.1, "linear-int8")?;
        let n = self.rows();
        let m = xs.len() / k;
        let mut out = vec![0f32; m * n];
        match (&self.weight, xs) {
            (Kernel::Static(w, d, z), _) if m <= ROWS_PER_TASK => {
                static_rows(w, (*d, *z), xs, &mut out, &mut Default::default())
            }
            (Kernel::Static(w, d, z), _) => out
                .par_chunks_mut(ROWS_PER_TASK * n)
                .zip(xs.chunks(ROWS_PER_TASK * k))
                .for_each_init(Default::default, |buf, (o, x)| {
                    static_rows(w, (*d, *z), x, o, buf)
                }),
            (Kernel::Dynamic(w), Input::F32(xs)) => {
                w.matmul(xs, ActScale::Dynamic, &mut out, &mut Vec::new())
            }
            (Kernel::Dynamic(_), Input::U8(_)) => unreachable!("input_tensor refuses codes"),
        }
        epilogue(&mut out, n, self.bias.as_deref(), self.relu);
        let mut shape = dims;
        *shape.last_mut().expect("checked") = n;
        let out = match self.out {
            Some(o) => Activations::U8(
                out.iter()
                    .map(|&v| code_at(v, 1.0 / o, self.out_zero))
                    .collect(),
            ),
            None => Activations::F32(out),
        };
        out.into_tensor(&shape, x.device())
    }

    fn fold(&mut self, op: Fold, _: bool) -> bool {
        if op == Fold::Relu && !self.relu {
            self.relu = true;
            return true;
        }
        false
    }

    /// Static layers take codes of a `[C, H, W]` activation in height × width × channels order
    /// by permuting their weight columns once (so the products are the same).
    fn take_hwc_codes(&mut self, [c, h, w]: [usize; 3]) -> bool {
        let Kernel::Static(weight, ..) = &mut self.weight else {
            return false;
        };
        let k = c * h * w;
        if weight.cols() != k {
            return false;
        }
        let codes = weight.codes();
        let mut hwc = vec![0i8; codes.len()];
        for (src, dst) in codes.chunks_exact(k).zip(hwc.chunks_exact_mut(k)) {
            for ci in 0..c {
                for p in 0..h * w {
                    dst[p * c + ci] = src[ci * h * w + p];
                }
            }
        }
        let scales = weight.scales().to_vec();
        match PackedI8::new(weight.rows(), k, &hwc, scales, "linear-int8 weight") {
            Ok(w) => {
                *weight = w;
                true
            }
            Err(_) => false,
        }
    }
}

/// Bias and ReLU over rows of `n` outputs.
pub(super) fn epilogue(out: &mut [f32], n: usize, bias: Option<&[f32]>, relu: bool) {
    for row in out.chunks_exact_mut(n) {
        if let Some(b) = bias {
            for (o, b) in row.iter_mut().zip(b) {
                *o += b;
            }
        }
        if relu {
            for o in row.iter_mut() {
                *o = o.max(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Tensor};
    use candle_nn::ModuleT;

    use crate::{Model, ModelSpec};

    /// Static `linear-int8` with integer inputs, codes and bias and scales 1: exactly the i64
    /// product (+ ReLU), on shapes with reduction lengths not a multiple of 4 or 32, output counts
    /// not a multiple of the channel tiles, and row counts on both sides of the parallel split.
    #[test]
    fn static_int8_linear_equals_the_exact_integer_product() {
        let dev = Device::Cpu;
        let mut state = 9u64;
        let mut int = |lo: i32, hi: i32| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((state >> 33) % (hi - lo + 1) as u64) as i32
        };
        // Symmetric codes (128, the default), zero point 0 (never-negative inputs: x in 0..=255)
        // and an odd one (x in -37..=218): the kernel's `Σ (u − 128) w` plus the folded
        // `(128 − z) Σ w` must be the exact `Σ x w`.
        let cases = [
            (1, 1, 1, false),
            (5, 7, 10, true),
            (40, 33, 33, false),
            (17, 3136, 128, true),
            (3, 130, 65, false),
        ];
        for (zero, (m, k, n, relu)) in [128u8, 0, 37]
            .into_iter()
            .flat_map(|z| cases.into_iter().map(move |c| (z, c)))
        {
            let codes: Vec<i32> = (0..n * k).map(|_| int(-127, 127)).collect();
            let bias: Vec<i32> = (0..n).map(|_| int(-3000, 3000)).collect();
            let lo = -i32::from(zero.min(127));
            let x: Vec<i32> = (0..m * k).map(|_| int(lo, 255 - i32::from(zero))).collect();
            let f = |v: &[i32]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
            let bytes: Vec<u8> = codes.iter().map(|&c| c as i8 as u8).collect();
            let tensors = HashMap::from([
                (
                    "layers.0.weight".to_string(),
                    Tensor::from_vec(bytes, (n, k), &dev).unwrap(),
                ),
                (
                    "layers.0.weight_scale".to_string(),
                    Tensor::from_vec(vec![1f32; n], n, &dev).unwrap(),
                ),
                (
                    "layers.0.bias".to_string(),
                    Tensor::from_vec(f(&bias), n, &dev).unwrap(),
                ),
            ]);
            let relu_layer = if relu { r#", { type = "relu" }"# } else { "" };
            let spec: ModelSpec = toml::from_str(&format!(
                r#"layers = [{{ type = "linear-int8", out-features = {n}, activation-scale = 1.0, input-zero-point = {zero} }}{relu_layer}]"#
            ))
            .unwrap();
            let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &dev);
            let model = Model::new(&spec, &[k], vb).unwrap();
            let xt = Tensor::from_vec(f(&x), (m, k), &dev).unwrap();
            let got: Vec<f32> = model
                .forward_t(&xt, false)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut want = Vec::with_capacity(m * n);
            for r in 0..m {
                for j in 0..n {
                    let acc: i64 = bias[j] as i64
                        + (0..k)
                            .map(|i| x[r * k + i] as i64 * codes[j * k + i] as i64)
                            .sum::<i64>();
                    want.push(if relu { acc.max(0) } else { acc } as f32);
                }
            }
            assert_eq!(got, want, "{m}x{k} -> {n}, zero point {zero}");
        }
    }

    /// A package written before the zero points (fields absent) reads as symmetric codes (128)
    /// and writes back without them, byte for byte; a zero point without a static scale is an
    /// error naming the field.
    #[test]
    fn zero_points_default_to_128_and_are_not_written_then() {
        let old = r#"layers = [{ type = "linear-int8", out-features = 4, activation-scale = 0.5, output-scale = 0.25 }, { type = "linear-int8", out-features = 2, activation-scale = 0.25 }]"#;
        let spec: ModelSpec = toml::from_str(old).unwrap();
        let crate::LayerSpec::LinearInt8(c) = &spec.layers[0] else {
            panic!("{spec:?}")
        };
        assert_eq!((c.input_zero_point, c.output_zero_point), (128, 128));
        let back = toml::to_string(&spec).unwrap();
        assert!(!back.contains("zero-point"), "{back}");
        let again: ModelSpec = toml::from_str(&back).unwrap();
        assert_eq!(again, spec);
        let bad: ModelSpec = toml::from_str(
            r#"layers = [{ type = "linear-int8", out-features = 4, input-zero-point = 0 }]"#,
        )
        .unwrap();
        let e = bad.output_shape(&[3]).unwrap_err().to_string();
        assert!(e.contains("input-zero-point"), "{e}");
        let bad: ModelSpec = toml::from_str(
            r#"layers = [{ type = "linear-int8", out-features = 4, activation-scale = 1.0, output-zero-point = 0 }]"#,
        )
        .unwrap();
        let e = bad.output_shape(&[3]).unwrap_err().to_string();
        assert!(e.contains("output-zero-point"), "{e}");
        assert!(toml::from_str::<ModelSpec>(
            r#"layers = [{ type = "linear-int8", out-features = 4, input-zero-point = 300 }]"#
        )
        .is_err());
    }
}
