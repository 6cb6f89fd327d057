//! `conv2d-int8`: a `conv2d` (groups 1) with per-output-channel symmetric int8 weights, run as an
//! im2col matmul of i8 × i8 → i32 products (`lepton_quant::Int8Matrix`). Written by
//! `lepton compress --quantize`; inference only.
//!
//! # Shapes
//! `[C, H, W]` -> `[out-channels, H', W']` as `conv2d`; tensors `weight: [out-channels, C·K·K]`
//! (u8 holding the i8 codes, PyTorch's `[out, C, K, K]` flattened), `weight_scale: [out-channels]`,
//! `bias: [out-channels]` (f32). Each output position's patch (`C·K·K` values, channel-major like
//! the weight) is one activation row, quantized per 32-value block at run time or with the
//! calibrated `activation-scale`. A following ReLU and max-pool are folded in.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use lepton_quant::{ActScale, Int8Matrix};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::linear_int8::{act_scale, int8_weight};
use super::{one, yes, BuildCtx, Conv2dConfig, Ctx, Fold, Layer, LayerConfig, ShapeCtx, Values};
use crate::kernels;

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
        self.as_f32().output_shape(x, ctx)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        self.as_f32().values(x, ctx)
    }

    fn size_field(&self) -> Option<&'static str> {
        self.as_f32().size_field()
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let cols = x[0] * self.kernel * self.kernel;
        let weight = int8_weight(&vb, self.out_channels, cols)?;
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
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            relu: false,
            pool: None,
        }))
    }
}

/// A built `conv2d-int8` layer.
#[derive(Debug, Clone)]
pub struct Conv2dInt8 {
    weight: Int8Matrix,
    bias: Option<Vec<f32>>,
    act: ActScale,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    relu: bool,
    pool: Option<(usize, usize, usize)>,
}

/// One image's patches `[OH·OW, C·K·K]` (row-major; zeros outside the image).
#[allow(clippy::too_many_arguments)]
fn patches(
    img: &[f32],
    (c, h, w): (usize, usize, usize),
    (k, s, p, d): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [f32],
) {
    let kk = c * k * k;
    for oy in 0..oh {
        for ox in 0..ow {
            let row = &mut out[(oy * ow + ox) * kk..][..kk];
            for ci in 0..c {
                for ky in 0..k {
                    let iy = (oy * s + ky * d) as isize - p as isize;
                    let dst = &mut row[(ci * k + ky) * k..][..k];
                    if iy < 0 || iy >= h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &img[(ci * h + iy as usize) * w..][..w];
                    // The common case: the whole kernel row inside the image, one copy.
                    let x0 = (ox * s) as isize - p as isize;
                    if d == 1 && x0 >= 0 && x0 as usize + k <= w {
                        dst.copy_from_slice(&src[x0 as usize..x0 as usize + k]);
                        continue;
                    }
                    for (kx, v) in dst.iter_mut().enumerate() {
                        let ix = (ox * s + kx * d) as isize - p as isize;
                        *v = if ix < 0 || ix >= w as isize {
                            0.0
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

impl Conv2dInt8 {
    /// One image's products `[L, CO]` into its output `[CO, L]`, with bias and ReLU.
    fn store(&self, rows: &[f32], dst: &mut [f32], l: usize) {
        let co = self.weight.rows();
        for (pos, r) in rows.chunks_exact(co).enumerate() {
            for (j, v) in r.iter().enumerate() {
                let mut v = v + self.bias.as_ref().map_or(0.0, |b| b[j]);
                if self.relu {
                    v = v.max(0.0);
                }
                dst[j * l + pos] = v;
            }
        }
    }
}

impl Layer for Conv2dInt8 {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let &[n, c, h, w] = x.dims() else {
            candle_core::bail!("conv2d-int8 expects [N, C, H, W], got {:?}", x.dims())
        };
        let (k, s, p, d) = (self.kernel, self.stride, self.padding, self.dilation);
        let kk = c * k * k;
        if kk != self.weight.cols() {
            candle_core::bail!(
                "conv2d-int8: input {:?} does not fit a weight of {} columns",
                x.dims(),
                self.weight.cols()
            );
        }
        let span = d * (k - 1) + 1;
        if h + 2 * p < span || w + 2 * p < span {
            candle_core::bail!("conv2d-int8: kernel {k} does not fit input {:?}", x.dims());
        }
        let (oh, ow) = ((h + 2 * p - span) / s + 1, (w + 2 * p - span) / s + 1);
        let l = oh * ow;
        let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let co = self.weight.rows();
        let mut out = vec![0f32; n * co * l];
        let geom = ((c, h, w), (k, s, p, d), (oh, ow));
        if n == 1 {
            // One image: its patch rows split over the threads inside the matmul.
            let mut cols = vec![0f32; l * kk];
            patches(&xs, geom.0, geom.1, geom.2, &mut cols);
            let mut rows = vec![0f32; l * co];
            self.weight
                .matmul(&cols, self.act, &mut rows, &mut Vec::new());
            self.store(&rows, &mut out, l);
        } else {
            // One image per task, its buffers reused by the thread: patches, int8 rows and
            // products stay in cache, and no batch-sized buffer is allocated.
            out.par_chunks_mut(co * l)
                .zip(xs.par_chunks(c * h * w))
                .for_each_init(
                    || (vec![0f32; l * kk], vec![0f32; l * co], Vec::new()),
                    |(cols, rows, scratch), (dst, img)| {
                        patches(img, geom.0, geom.1, geom.2, cols);
                        self.weight.matmul_serial(cols, self.act, rows, scratch);
                        self.store(rows, dst, l);
                    },
                );
        }
        let y = Tensor::from_vec(out, (n, co, oh, ow), x.device())?;
        match self.pool {
            Some((k, s, p)) => kernels::max_pool2d(&y, k, s, p),
            None => Ok(y),
        }
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
