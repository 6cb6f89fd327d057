//! A sequential model built from a [`ModelSpec`].

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Tensor, WithDType, D};
use candle_nn::{ModuleT, VarBuilder};

use crate::error::Result;
use crate::kernels::{Elem, PiecewiseNet};
use crate::layers::{BuildCtx, Ctx, Layer};
use crate::spec::{LayerSpec, ModelSpec};

/// A model: layers in sequence. `forward_t(x, train)` switches dropout and batch norm.
#[derive(Debug)]
pub struct Model {
    layers: Vec<Box<dyn Layer>>,
    specs: Vec<LayerSpec>,
    shapes: Vec<Vec<usize>>,
    input: Vec<usize>,
    seed: AtomicU64,
    step: AtomicU64,
}

impl Model {
    /// Build for per-sample `input` shape. Works with a training `VarBuilder` (from a `VarMap`)
    /// and with an immutable one (safetensors) for inference.
    pub fn new(spec: &ModelSpec, input: &[usize], vb: VarBuilder) -> Result<Model> {
        let shapes = spec.shapes(input)?;
        let layers = BuildCtx::default().build_all(&spec.layers, input, &vb.pp("layers"))?;
        Ok(Model {
            layers,
            specs: spec.layers.clone(),
            shapes,
            input: input.to_vec(),
            seed: AtomicU64::new(0),
            step: AtomicU64::new(0),
        })
    }

    /// The seed dropout masks derive from.
    pub fn set_seed(&self, seed: u64) {
        self.seed.store(seed, Ordering::Relaxed);
    }

    /// The optimizer step the next training forward belongs to (dropout masks depend on it).
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input
    }

    /// Output shape per sample.
    pub fn output_shape(&self) -> &[usize] {
        self.shapes.last().expect("a model has at least one layer")
    }

    /// Number of trainable values (buffers excluded), from the spec alone: nothing is allocated,
    /// and a spec over the default [`crate::Budget`] is an error.
    pub fn parameter_count(spec: &ModelSpec, input: &[usize]) -> Result<usize> {
        let n = spec.parameter_count(input)?;
        Ok(usize::try_from(n).expect("within the budget, so within usize"))
    }

    /// One line per layer: index, type, output shape.
    pub fn summary(&self) -> String {
        let mut s = format!("{:<6} {:<16} {:?}\n", "", "input", self.input);
        for (i, (spec, shape)) in self.specs.iter().zip(&self.shapes).enumerate() {
            s += &format!("{:<6} {:<16} {:?}\n", i, spec.kind(), shape);
        }
        s
    }

    /// The model in eval mode as a [`PiecewiseNet`] (forward and input-gradient passes without
    /// autograd, rounding as the eval forward does: batch norms stay per-channel affines after
    /// their convolutions) when every layer is affine, a ReLU or a max-pool (conv2d, linear,
    /// batch norm, flatten, dropout, relu, max-pool2d); `None` otherwise. Built from the current
    /// weights on each call (it copies them); [`PiecewiseNet::frozen`] tells whether they can
    /// change after it (a training model's `Var`s can: a kept net would go stale).
    pub fn piecewise<T: Elem + WithDType>(&self) -> candle_core::Result<Option<PiecewiseNet<T>>> {
        let mut pieces = Vec::new();
        let mut variable = false;
        for layer in &self.layers {
            match layer.pieces()? {
                Some(p) => pieces.extend(p),
                None => return Ok(None),
            }
            // A batch norm's piece holds computed values, not its tensors: ask the layer.
            variable |= layer.eval_norm().is_some_and(|n| n.tracks_gradient());
        }
        let net = PiecewiseNet::new(pieces, &self.input)?;
        Ok(Some(if variable {
            net.with_variable_weights()
        } else {
            net
        }))
    }

    /// Predictions in eval mode, then `softmax` over classes when asked.
    pub fn predict(&self, x: &Tensor, softmax: bool) -> Result<Tensor> {
        let y = self.forward_t(x, false)?;
        Ok(if softmax {
            candle_nn::ops::softmax(&y, D::Minus1)?
        } else {
            y
        })
    }
}

impl ModuleT for Model {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.forward_range(x, 0..self.layers.len(), train)
    }
}

/// Layer ranges: a forward pass over part of the model, for a backward pass run in segments
/// (data-parallel training reduces a segment's gradients while the segments before it are
/// still differentiated). `forward_range(x, 0..a) ` then `forward_range(y, a..n)` is the same
/// computation as `forward_t(x)`: the same layers with the same context (dropout masks depend
/// on the model seed, the step and the layer's own number, never on the range).
impl Model {
    /// Number of top-level layers (`model.layers` in the spec).
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Layers `range` over `x` (the output of the layer before `range.start`, or the model
    /// input); `train` as in `forward_t`.
    pub fn forward_range(
        &self,
        x: &Tensor,
        range: Range<usize>,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        if range.start > range.end || range.end > self.layers.len() {
            return Err(candle_core::Error::Msg(format!(
                "layer range {range:?} outside the model's {} layers",
                self.layers.len()
            )));
        }
        let ctx = Ctx {
            train,
            seed: self.seed.load(Ordering::Relaxed),
            step: self.step.load(Ordering::Relaxed),
        };
        let mut y = x.clone();
        for i in range {
            y = self.layers[i].forward(&y, &ctx).map_err(|e| {
                // Name the layer (`model.layers[i] (kind)`) above the layer's own message.
                e.context(format!("model.layers[{i}] ({})", self.specs[i].kind()))
            })?;
        }
        Ok(y)
    }

    /// The top-level layer a variable named `name` (as in the model's `VarMap`:
    /// `layers.{i}.…`) belongs to. A layer tied to an earlier layer's table (an output
    /// projection sharing an embedding) uses a variable of that earlier layer.
    pub fn layer_of(name: &str) -> Option<usize> {
        name.strip_prefix("layers.")?
            .split('.')
            .next()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    /// Two ranges in sequence are the whole forward pass, dropout and batch norm in training
    /// mode included; a range past the last layer is an error naming the layer count.
    #[test]
    fn ranges_in_sequence_are_the_whole_forward_pass() {
        let spec: ModelSpec = toml::from_str(
            r#"layers = [
                { type = "conv2d", out-channels = 3, kernel = 3 }, { type = "batch-norm2d" },
                { type = "relu" }, { type = "flatten" }, { type = "dropout", p = 0.5 },
                { type = "linear", out-features = 4 },
            ]"#,
        )
        .unwrap();
        let x = Tensor::randn(0f32, 1., (3, 1, 6, 6), &Device::Cpu).unwrap();
        let run = |cut: Option<usize>| {
            let varmap = VarMap::new();
            let m = Model::new(&spec, &[1, 6, 6], crate::var_builder(&varmap, 3)).unwrap();
            m.set_seed(9);
            m.set_step(2);
            let y = match cut {
                None => m.forward_t(&x, true).unwrap(),
                Some(c) => {
                    let h = m.forward_range(&x, 0..c, true).unwrap();
                    m.forward_range(&h, c..m.layer_count(), true).unwrap()
                }
            };
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let whole = run(None);
        for cut in 0..=6 {
            assert_eq!(run(Some(cut)), whole, "cut at {cut}");
        }
        let varmap = VarMap::new();
        let m = Model::new(&spec, &[1, 6, 6], crate::var_builder(&varmap, 3)).unwrap();
        let err = m.forward_range(&x, 2..7, false).unwrap_err().to_string();
        assert!(err.contains("2..7") && err.contains("6 layers"), "{err}");
        assert_eq!(Model::layer_of("layers.12.weight"), Some(12));
        assert_eq!(Model::layer_of("layers.3.cells.0.bias"), Some(3));
        assert_eq!(Model::layer_of("head.weight"), None);
    }
}
