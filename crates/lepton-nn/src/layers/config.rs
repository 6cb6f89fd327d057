//! [`LayerConfig`]: what each layer's spec settings provide (shape rule, size, builder), and the
//! passes over a list of layers that use it: shape inference against a [`Budget`] and building.

use std::fmt::Debug;

use candle_nn::VarBuilder;

use super::{fuse, Layer};
use crate::budget::{self, Budget};
use crate::error::{Error, Result};
use crate::spec::LayerSpec;

/// The values a layer allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Values {
    /// Trained parameters (weights, biases, norm scales).
    pub trainable: u64,
    /// Buffers (running statistics).
    pub buffers: u64,
}

/// A layer's settings, as read from the spec: its shape rule, its size and its builder.
pub trait LayerConfig: Debug {
    /// The `type` name in the spec (kebab-case).
    fn kind(&self) -> &'static str;

    /// The per-sample output shape for the per-sample `input`, or an error made by `ctx`. Sizes
    /// computed from settings use checked arithmetic.
    fn output_shape(&self, input: &[usize], ctx: &mut ShapeCtx) -> Result<Vec<usize>>;

    /// The values the layer allocates for `input` (which [`LayerConfig::output_shape`]
    /// accepted); an overflow is an error naming the field ([`ShapeCtx::count`]).
    fn values(&self, input: &[usize], ctx: &ShapeCtx) -> Result<Values> {
        let _ = (input, ctx);
        Ok(Values::default())
    }

    /// The setting that sets this layer's size, named when the model goes over its budget.
    fn size_field(&self) -> Option<&'static str> {
        None
    }

    /// The shape `[rows, cols]` of the table a later top-level layer may share (tie) with this
    /// one, for `input`: an `embedding`'s `[num-embeddings, embedding-dim]` weight.
    fn shared_table(&self, input: &[usize]) -> Option<[usize; 2]> {
        let _ = input;
        None
    }

    /// Build the layer for `input`, its tensors under `vb` (PyTorch `state_dict` names).
    fn build(
        &self,
        input: &[usize],
        vb: VarBuilder,
        ctx: &mut BuildCtx,
    ) -> candle_core::Result<Box<dyn Layer>>;
}

/// Running totals of shape inference.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub trainable: u64,
    pub values: u64,
    pub activations: u64,
}

/// Shape inference state: the budget, the totals so far, and the layer being checked (for
/// errors).
#[derive(Debug)]
pub struct ShapeCtx<'a> {
    budget: &'a Budget,
    pub(crate) totals: Totals,
    index: String,
    kind: &'static str,
    /// The shareable table of each top-level layer checked so far ([`LayerConfig::shared_table`]).
    tables: Vec<Option<[usize; 2]>>,
}

impl<'a> ShapeCtx<'a> {
    pub(crate) fn new(budget: &'a Budget) -> Self {
        Self {
            budget,
            totals: Totals::default(),
            index: String::new(),
            kind: "",
            tables: Vec::new(),
        }
    }

    /// Whether the current layer is a top-level one (`model.layers[i]`, not nested in a block).
    pub fn is_top_level(&self) -> bool {
        !self.index.contains(']')
    }

    /// The shareable table `[rows, cols]` of top-level layer `index`, if it comes before the
    /// current layer and has one.
    pub fn shared_table(&self, index: usize) -> Option<[usize; 2]> {
        self.tables.get(index).copied().flatten()
    }

    /// An error about the current layer: `model.layers[i] (kind): message`.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Layer {
            index: self.index.clone(),
            kind: self.kind,
            message: message.into(),
        }
    }

    /// An error about one size setting of the current layer: `model.layers[i].field (kind): ...`.
    pub fn size_error(&self, field: &'static str, message: impl Into<String>) -> Error {
        Error::Size {
            index: self.index.clone(),
            kind: self.kind,
            field,
            message: message.into(),
        }
    }

    /// The product of `factors`, or an overflow error naming `field`.
    pub fn count(&self, field: &'static str, factors: &[usize]) -> Result<u64> {
        budget::elements(factors).ok_or_else(|| {
            self.size_error(
                field,
                format!("the product of {factors:?} overflows 64 bits"),
            )
        })
    }

    /// The shapes after each of `layers` (nested in the current layer as `.layers[j]`), counted
    /// against the same budget.
    pub fn nested(&mut self, layers: &[LayerSpec], input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let prefix = format!("{}].layers[", self.index);
        let (index, kind) = (self.index.clone(), self.kind);
        let shapes = self.layers(layers, input, &prefix);
        (self.index, self.kind) = (index, kind);
        shapes
    }

    /// Account for `extra` activation values per sample produced by the current layer.
    pub fn activations(&mut self, extra: u64, field: Option<&'static str>) -> Result<()> {
        let total = self.totals.activations.saturating_add(extra);
        self.totals.activations = total;
        if total > self.budget.max_activations {
            return Err(self.over(
                field,
                format!(
                    "{extra} values per sample bring the activations to {total}, over the budget of {}",
                    self.budget.max_activations
                ),
            ));
        }
        Ok(())
    }

    fn over(&self, field: Option<&'static str>, message: String) -> Error {
        match field {
            Some(field) => self.size_error(field, message),
            None => self.error(message),
        }
    }

    /// Shape inference over `layers` with indices `{prefix}{i}`.
    pub(crate) fn layers(
        &mut self,
        layers: &[LayerSpec],
        input: &[usize],
        prefix: &str,
    ) -> Result<Vec<Vec<usize>>> {
        let mut out = Vec::with_capacity(layers.len());
        let mut x = input.to_vec();
        for (i, spec) in layers.iter().enumerate() {
            let layer = spec.config();
            self.index = format!("{prefix}{i}");
            self.kind = layer.kind();
            let y = layer.output_shape(&x, self)?;
            let v = layer.values(&x, self)?;
            let own = v.trainable.saturating_add(v.buffers);
            self.totals.trainable = self.totals.trainable.saturating_add(v.trainable);
            let total = self.totals.values.saturating_add(own);
            self.totals.values = total;
            if total > self.budget.max_parameters {
                return Err(self.over(
                    layer.size_field(),
                    format!(
                        "{own} parameter values for input {x:?} bring the model to {total}, over the budget of {}",
                        self.budget.max_parameters
                    ),
                ));
            }
            let n = budget::elements(&y).unwrap_or(u64::MAX);
            self.activations(n, layer.size_field())?;
            if prefix.is_empty() {
                self.tables.push(layer.shared_table(&x));
            }
            out.push(y.clone());
            x = y;
        }
        Ok(out)
    }
}

/// Building state: dropout layers are numbered in spec order (depth first) for their seeds; the
/// tables top-level layers share (an `embedding`'s weight) are kept for the layers tied to them.
#[derive(Debug, Default)]
pub struct BuildCtx {
    dropouts: u64,
    /// How many `build_all` calls are running (1 while building top-level layers).
    depth: usize,
    /// The table each top-level layer built so far shares, by index.
    tables: Vec<Option<candle_core::Tensor>>,
    /// The table shared by the layer being built ([`BuildCtx::share`]).
    sharing: Option<candle_core::Tensor>,
}

impl BuildCtx {
    /// Offer `table` (a parameter of the layer being built) to later top-level layers tied to it.
    pub fn share(&mut self, table: &candle_core::Tensor) {
        if self.depth == 1 {
            self.sharing = Some(table.clone());
        }
    }

    /// The table shared by top-level layer `index` (built before the current one).
    pub fn shared(&self, index: usize) -> Option<&candle_core::Tensor> {
        self.tables.get(index).and_then(Option::as_ref)
    }

    /// The next dropout layer's number (1, 2, ...).
    pub fn next_dropout(&mut self) -> u64 {
        self.dropouts += 1;
        self.dropouts
    }

    /// Build `specs` for per-sample `input`, layer `i` under `vb.pp("{i}")`, then fold what can be
    /// folded (see `fuse`).
    pub fn build_all(
        &mut self,
        specs: &[LayerSpec],
        input: &[usize],
        vb: &VarBuilder,
    ) -> candle_core::Result<Vec<Box<dyn Layer>>> {
        let shapes = ShapeCtx::new(&Budget::default())
            .layers(specs, input, "")
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut x = input;
        let mut out = Vec::with_capacity(specs.len());
        self.depth += 1;
        for (i, (spec, y)) in specs.iter().zip(&shapes).enumerate() {
            let layer = spec.config().build(x, vb.pp(i.to_string()), self);
            if self.depth == 1 {
                let shared = self.sharing.take();
                self.tables.push(shared);
            }
            let layer = match layer {
                Ok(layer) => layer,
                Err(e) => {
                    self.depth -= 1;
                    return Err(e);
                }
            };
            out.push(layer);
            x = y;
        }
        self.depth -= 1;
        fuse::fuse(&mut out);
        Ok(out)
    }
}
