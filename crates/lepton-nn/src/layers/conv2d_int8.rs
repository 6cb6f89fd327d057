//! `conv2d-int8`: a `conv2d` (groups 1) with per-output-channel symmetric int8 weights, run as
//! u8 × i8 → i32 products (`lepton_quant::PackedI8`: AVX-512 VNNI, AVX2 or the portable loop).
//! Written by `lepton compress --quantize`; inference only.
//!
//! Each image is quantized once, with the calibrated `activation-scale` (static) or its own
//! `max |x| / 127` (dynamic), into a zero-padded height × width × channels image of codes.
//! With `C` a multiple of 4 the kernel reads each output position's patch straight from it (an
//! implicit im2col: a kernel row of `K · C` codes is contiguous, whole 4-code groups), so no
//! patch rows are built; otherwise (a first convolution over 1 or 3 channels) each position's
//! `K · K · C` codes are gathered into one row padded to 4. The weights are packed once at load
//! in the same `(ky, kx, c)` order. The epilogue takes the
//! folded max-pool on the integer sums (a scale ≥ 0, the bias and ReLU are monotone, so the max
//! commutes with them), then `y = s_x s_j · P + b_j` and the folded ReLU.
//!
//! # Shapes
//! `[C, H, W]` -> `[out-channels, H', W']` as `conv2d`; tensors `weight: [out-channels, C·K·K]`
//! (u8 holding the i8 codes, PyTorch's `[out, C, K, K]` flattened), `weight_scale: [out-channels]`,
//! `bias: [out-channels]` (f32).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use lepton_quant::{code_u8, ActScale, PackedI8};
use serde::{Deserialize, Serialize};

use super::linear_int8::{act_scale, blocks, int8_codes, out_scale, Activations, Input, Output};
use super::{one, yes, BuildCtx, Conv2dConfig, Ctx, Fold, Layer, LayerConfig, ShapeCtx, Values};
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
    /// Default: none, each patch is quantized per block at run time (dynamic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_scale: Option<f32>,
    /// The input scale of the next int8 layer, when only a ReLU and a max-pool (both folded
    /// here), flattens or dropouts lie between (`lepton compress` writes it): the output is
    /// then that layer's codes (a `u8` tensor, see `lepton_quant::code_u8`) instead of f32, and
    /// the next layer reads them as they are. Default: none (f32 output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_scale: Option<f32>,
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
        self.as_f32().output_shape(x, ctx)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        self.as_f32().values(x, ctx)
    }

    fn size_field(&self) -> Option<&'static str> {
        self.as_f32().size_field()
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let (c, k) = (x[0], self.kernel);
        let (codes, scales) = int8_codes(&vb, self.out_channels, c * k * k)?;
        // `[co][c][ky][kx]` -> `[co][ky][kx][c]`, the order the kernel reads codes.
        let mut packed = vec![0i8; self.out_channels * k * k * c];
        for (src, dst) in codes
            .chunks_exact(c * k * k)
            .zip(packed.chunks_exact_mut(k * k * c))
        {
            for ci in 0..c {
                for t in 0..k * k {
                    dst[t * c + ci] = src[ci * k * k + t];
                }
            }
        }
        let what = format!("{}.weight", vb.prefix());
        let weight = PackedI8::new(self.out_channels, k * k * c, &packed, scales, &what)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let bias = if self.bias {
            Some(
                vb.get_with_hints_dtype(self.out_channels, "bias", Init::Const(0.0), DType::F32)?
                    .to_vec1()?,
            )
        } else {
            None
        };
        Ok(Box::new(Conv2dInt8 {
            weight,
            bias,
            act: match self.activation_scale {
                Some(s) => ActScale::Static(s),
                None => ActScale::Dynamic,
            },
            in_channels: c,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            relu: false,
            pool: None,
            out: self.output_scale,
        }))
    }
}

/// Whether the patches of a `c`-channel input are gathered: when `c` is not a multiple of 4, a
/// kernel row of the image is not a whole number of 4-code groups, so each output position's
/// patch of `K · K · c` codes is gathered into one row padded to 4 (a first convolution over one
/// grey channel reads 12 codes per position, not 36 with its channels padded to 4).
fn gathers(c: usize) -> bool {
    c % 4 != 0
}

/// A built `conv2d-int8` layer.
#[derive(Debug, Clone)]
pub struct Conv2dInt8 {
    /// Codes in `(ky, kx, c padded to 4)` order.
    weight: PackedI8,
    bias: Option<Vec<f32>>,
    act: ActScale,
    in_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    relu: bool,
    pool: Option<(usize, usize, usize)>,
    /// Output codes at this scale (the next int8 layer's input scale) instead of f32.
    out: Option<f32>,
}

/// Where one image's codes are read from and its outputs go (the same for every image).
struct Plan {
    /// Input `(C, H, W)`, padded width.
    c: usize,
    h: usize,
    w: usize,
    wp: usize,
    /// Bytes of one image of codes.
    img: usize,
    /// Each output position's first code.
    rows: Vec<usize>,
    /// Each segment's offset from a position's first code.
    segs: Vec<usize>,
    /// Gathered patches: each kernel tap's offset from a position's first code in the image,
    /// and the padded patch length (empty and 0 when the image is read in place).
    taps: Vec<usize>,
    patch: usize,
    /// Convolution output `(H', W')`, and the stored output (after the folded pool).
    oh: usize,
    ow: usize,
    ph: usize,
    pw: usize,
}

/// Per-thread buffers: the image of codes, one plane's codes, the products `[H'·W'][padded
/// channels]`, one pooled position, the per-channel output scales, one position's outputs.
#[derive(Default)]
struct Scratch {
    codes: Vec<u8>,
    patches: Vec<u8>,
    plane: Vec<u8>,
    prod: Vec<i32>,
    pooled: Vec<i32>,
    scale: Vec<f32>,
    vals: Vec<f32>,
}

/// The input range covered by pool output `o` (kernel `k`, stride `s`, padding `p`) along an axis
/// of length `len` (as `max-pool2d`: padded cells are skipped).
fn span(o: usize, (k, s, p): (usize, usize, usize), len: usize) -> (usize, usize) {
    let start = (o * s) as isize - p as isize;
    (
        start.max(0) as usize,
        ((start + k as isize) as usize).min(len),
    )
}

impl Conv2dInt8 {
    fn plan(&self, dims: &[usize]) -> Result<Plan> {
        let &[_, c, h, w] = dims else {
            candle_core::bail!("conv2d-int8 expects [N, C, H, W], got {dims:?}")
        };
        let (k, s, p, d) = (self.kernel, self.stride, self.padding, self.dilation);
        if c != self.in_channels {
            candle_core::bail!(
                "conv2d-int8: input {dims:?} has {c} channels, the weight {}",
                self.in_channels
            );
        }
        let span = d * (k - 1) + 1;
        if h + 2 * p < span || w + 2 * p < span {
            candle_core::bail!("conv2d-int8: kernel {k} does not fit input {dims:?}");
        }
        let (oh, ow) = ((h + 2 * p - span) / s + 1, (w + 2 * p - span) / s + 1);
        let (ph, pw) = match self.pool {
            Some((pk, ps, pp)) => {
                if pk == 0 || ps == 0 || 2 * pp > pk || oh + 2 * pp < pk || ow + 2 * pp < pk {
                    candle_core::bail!(
                        "max-pool2d: kernel {pk}, stride {ps}, padding {pp} do not fit the conv2d-int8 output {oh}x{ow}"
                    );
                }
                ((oh + 2 * pp - pk) / ps + 1, (ow + 2 * pp - pk) / ps + 1)
            }
            None => (oh, ow),
        };
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let first = |i: usize| ((i / ow) * s * wp + (i % ow) * s) * c;
        let tap = |t: usize| ((t / k) * d * wp + (t % k) * d) * c;
        let (rows, segs, taps, patch) = if gathers(c) {
            let patch = (k * k * c).next_multiple_of(4);
            let rows = (0..oh * ow).map(|i| i * patch).collect();
            (rows, vec![0], (0..k * k).map(tap).collect(), patch)
        } else {
            // A kernel row of `K · C` codes is contiguous unless the kernel is dilated.
            let segs = if d == 1 {
                (0..k).map(|ky| ky * wp * c).collect()
            } else {
                (0..k * k).map(tap).collect()
            };
            ((0..oh * ow).map(first).collect(), segs, Vec::new(), 0)
        };
        Ok(Plan {
            c,
            h,
            w,
            wp,
            img: hp * wp * c,
            rows,
            segs,
            taps,
            patch,
            oh,
            ow,
            ph,
            pw,
        })
    }

    /// One image `[C, H, W]` into its output `[CO, H'', W'']` (after the folded pool).
    fn image(&self, plan: &Plan, x: Input, mut dst: Output, buf: &mut Scratch) {
        let p = self.padding;
        let d = match (self.act, &x) {
            (ActScale::Static(d), _) => d,
            (ActScale::Dynamic, Input::F32(x)) => {
                x.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0
            }
            (ActScale::Dynamic, Input::U8(_)) => unreachable!("checked in forward"),
        };
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        // The image of codes: each plane quantized in one vectorizable pass (or taken as the
        // codes the layer before wrote), then spread to every `C`-th byte; the zero code (128) in
        // the border.
        buf.codes.clear();
        buf.codes.resize(plan.img, 128);
        buf.plane.resize(plan.h * plan.w, 128);
        for ci in 0..plan.c {
            let plane = match x {
                Input::F32(x) => {
                    for (q, &v) in buf.plane.iter_mut().zip(&x[ci * plan.h * plan.w..]) {
                        *q = code_u8(v, inv);
                    }
                    &buf.plane[..]
                }
                Input::U8(x) => &x[ci * plan.h * plan.w..(ci + 1) * plan.h * plan.w],
            };
            for (y, row) in plane.chunks_exact(plan.w).enumerate() {
                let at = ((y + p) * plan.wp + p) * plan.c + ci;
                for (xx, &q) in row.iter().enumerate() {
                    buf.codes[at + xx * plan.c] = q;
                }
            }
        }
        let np = self.weight.padded_rows();
        let co = self.weight.rows();
        buf.prod.resize(plan.rows.len() * np, 0);
        if plan.taps.is_empty() {
            self.weight
                .products(&buf.codes, &plan.rows, &plan.segs, &mut buf.prod);
        } else {
            // Each position's `K · K · C` codes in `(ky, kx, c)` order, padded with zero codes.
            let (c, s) = (plan.c, self.stride);
            buf.patches.clear();
            buf.patches.resize(plan.rows.len() * plan.patch, 128);
            for (i, row) in buf.patches.chunks_exact_mut(plan.patch).enumerate() {
                let at = ((i / plan.ow) * s * plan.wp + (i % plan.ow) * s) * plan.c;
                for (dst, &off) in row.chunks_exact_mut(c).zip(&plan.taps) {
                    for (q, &u) in dst.iter_mut().zip(&buf.codes[at + off..]) {
                        *q = u;
                    }
                }
            }
            self.weight
                .products(&buf.patches, &plan.rows, &plan.segs, &mut buf.prod);
        }
        // y = (d s_j) P + b_j, then ReLU, the pool's max taken on P first (across the channels
        // of a position at once: contiguous), each output position's channels then scattered.
        buf.scale.clear();
        buf.scale.extend(self.weight.scales().iter().map(|s| d * s));
        buf.pooled.resize(np, 0);
        buf.vals.resize(co, 0.0);
        let l = plan.ph * plan.pw;
        for i in 0..l {
            let acc: &[i32] = match self.pool {
                None => &buf.prod[i * np..(i + 1) * np],
                Some(g) => {
                    let (ylo, yhi) = span(i / plan.pw, g, plan.oh);
                    let (xlo, xhi) = span(i % plan.pw, g, plan.ow);
                    buf.pooled.fill(i32::MIN);
                    for y in ylo..yhi {
                        for xx in xlo..xhi {
                            let pos = y * plan.ow + xx;
                            for (m, &v) in buf
                                .pooled
                                .iter_mut()
                                .zip(&buf.prod[pos * np..(pos + 1) * np])
                            {
                                *m = (*m).max(v);
                            }
                        }
                    }
                    &buf.pooled
                }
            };
            for ((v, &a), &s) in buf.vals.iter_mut().zip(acc).zip(&buf.scale) {
                *v = a as f32 * s;
            }
            if let Some(b) = &self.bias {
                for (v, b) in buf.vals.iter_mut().zip(b) {
                    *v += b;
                }
            }
            if self.relu {
                for v in buf.vals.iter_mut() {
                    *v = v.max(0.0);
                }
            }
            match &mut dst {
                Output::F32(dst) => {
                    for (j, &v) in buf.vals.iter().enumerate() {
                        dst[j * l + i] = v;
                    }
                }
                Output::U8(dst, inv) => {
                    // The codes in one contiguous (vectorized) pass, then scattered.
                    buf.plane.clear();
                    buf.plane.extend(buf.vals.iter().map(|&v| code_u8(v, *inv)));
                    for (j, &q) in buf.plane.iter().enumerate() {
                        dst[j * l + i] = q;
                    }
                }
            }
        }
    }
}

impl Layer for Conv2dInt8 {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let plan = self.plan(x.dims())?;
        let n = x.dim(0)?;
        let xs = Activations::read(x, "conv2d-int8", self.act)?;
        let co = self.weight.rows();
        let per_out = co * plan.ph * plan.pw;
        let per_in = plan.c * plan.h * plan.w;
        let mut out = Activations::zeros(n * per_out, self.out.is_some());
        // One contiguous block of images per thread, its buffers reused across the block (in
        // cache); a single block runs on the calling thread, with no hand-off to the pool.
        let per_task = n.div_ceil(rayon::current_num_threads()).max(1);
        let run = |(mut dst, src): (Output, Input)| {
            let mut buf = Scratch::default();
            for i in 0..src.len() / per_in {
                let src = src.slice(i * per_in, per_in);
                self.image(&plan, src, dst.slice(i * per_out, per_out), &mut buf);
            }
        };
        let mut tasks = blocks(
            &mut out,
            self.out,
            per_task * per_out,
            &xs,
            per_task * per_in,
        );
        if tasks.len() == 1 {
            run(tasks.pop().expect("one block"));
        } else {
            tasks.into_par_iter().for_each(run);
        }
        out.into_tensor(&[n, co, plan.ph, plan.pw], x.device())
    }

    fn fold(&mut self, op: Fold, after_relu: bool) -> bool {
        match op {
            Fold::Relu if !self.relu && self.pool.is_none() => {
                self.relu = true;
                true
            }
            Fold::MaxPool(k, s, p) if self.pool.is_none() && (!after_relu || self.relu) => {
                self.pool = Some((k, s, p));
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Tensor};
    use candle_nn::{ModuleT, VarMap};

    use crate::{Model, ModelSpec};

    /// A small deterministic generator (no test dependency).
    struct Lcg(u64);
    impl Lcg {
        fn int(&mut self, lo: i32, hi: i32) -> i32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((self.0 >> 33) % (hi - lo + 1) as u64) as i32
        }
    }

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
        for (n, c, h, w, co, k, s, p, d, relu, pool) in cases {
            let kk = c * k * k;
            let codes: Vec<i32> = (0..co * kk).map(|_| g.int(-127, 127)).collect();
            let bias: Vec<i32> = (0..co).map(|_| g.int(-3000, 3000)).collect();
            let x: Vec<i32> = (0..n * c * h * w).map(|_| g.int(-127, 127)).collect();
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
                r#"{{ type = "conv2d-int8", out-channels = {co}, kernel = {k}, stride = {s}, padding = {p}, dilation = {d}, activation-scale = 1.0 }}"#
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
                "case {n}x{c}x{h}x{w} -> {co}, k {k} s {s} p {p} d {d}"
            );
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            assert_eq!(
                got, want,
                "case {n}x{c}x{h}x{w} -> {co}, k {k} s {s} p {p} d {d}"
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
        let spec = |chain: bool| -> ModelSpec {
            let o = |s: &str| {
                if chain {
                    format!(", output-scale = {s}")
                } else {
                    String::new()
                }
            };
            toml::from_str(&format!(
                r#"layers = [
                {{ type = "conv2d-int8", out-channels = 4, kernel = 3, padding = 1, activation-scale = 0.02{} }},
                {{ type = "relu" }}, {{ type = "max-pool2d", kernel = 2 }},
                {{ type = "conv2d-int8", out-channels = 8, kernel = 3, padding = 1, activation-scale = 0.015{} }},
                {{ type = "relu" }}, {{ type = "max-pool2d", kernel = 2 }},
                {{ type = "flatten" }}, {{ type = "linear-int8", out-features = 10, activation-scale = 0.05{} }},
                {{ type = "relu" }}, {{ type = "linear-int8", out-features = 3, activation-scale = 0.04 }}]"#,
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
            assert_eq!(got, want, "batch {n}");
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
