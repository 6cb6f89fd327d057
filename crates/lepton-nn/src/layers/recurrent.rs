//! The recurrent family (`lstm`, `gru`, `rnn`): the settings they share, their shape rule and
//! budget, their parameters, and the stacked, optionally bidirectional loop over time. The cells
//! (one time step) are in `recurrent_cells.rs`, the layer configs in `lstm.rs`, `gru.rs`, `rnn.rs`.
//!
//! # Shapes
//! Per sample `[T, F]` (time steps, features) -> `[T, hidden-size * dirs]` when
//! `return-sequences`, else `[hidden-size * dirs]`: the final hidden state of each direction of
//! the top layer (PyTorch's `h_n[-dirs:]`: the forward direction after step `T - 1`, the reverse
//! direction after step 0), `dirs` being 2 when `bidirectional`.
//!
//! # Parameters
//! PyTorch's `nn.LSTM` / `nn.GRU` / `nn.RNN` `state_dict` names under the layer's prefix, for each
//! layer `k` (and `_reverse` for the reverse direction): `weight_ih_l{k}: [G*H, in]`,
//! `weight_hh_l{k}: [G*H, H]`, `bias_ih_l{k}: [G*H]`, `bias_hh_l{k}: [G*H]`, with `G` gates in
//! PyTorch's order (LSTM i, f, g, o; GRU r, z, n; RNN 1) and `in` the features (layer 0) or
//! `H * dirs`. Initialised U(-1/sqrt(H), 1/sqrt(H)) as PyTorch (see [`crate::init_seeded`]).
//!
//! # Computation
//! Per layer and direction, the input projections of all steps in one GEMM
//! `[B*T, in] x [in, G*H]` ([`kernels::linear`]), then the loop over time as one fused op with its
//! own backward through time ([`kernels::recurrent`], f32 and f64 on the CPU): one
//! `[B, H] x [H, G*H]` GEMM per step plus one pass over the gates. Other dtypes and devices run
//! the same loop as plain candle ops (the cells of `recurrent_cells.rs`), which is also the
//! reference the tests hold the kernel to. The initial states are zero.
//!
//! An `embedding` right before the layer is folded into it by the fusion pass (`fuse.rs`): the
//! layer then reads the token ids `[B, T]` and, when the table has no more rows than the batch
//! has tokens, projects the table once (`table·W_ihᵀ + b_ih: [V, G*H]`) and gathers its rows,
//! which replaces the first layer's three largest GEMMs (the projection, its `dx` and `dW_ih`,
//! each `B*T x F x G*H`) by ones over `V` rows.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::embedding;
use super::recurrent_cells as cells;
use super::{one, yes, ShapeCtx, Values};
use crate::kernels::{self, Activation};
use crate::layers::{Ctx, Layer};

/// The settings shared by `lstm`, `gru` and `rnn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecurrentConfig {
    /// The size `H` of the hidden state (at least 1).
    pub hidden_size: usize,
    /// Stacked layers, each reading the outputs of the one below (at least 1). Default 1.
    #[serde(default = "one")]
    pub num_layers: usize,
    /// Also run each layer from the last step to the first and concatenate both directions'
    /// outputs (`2 * hidden-size` features). Default `false`.
    #[serde(default)]
    pub bidirectional: bool,
    /// Output the top layer's hidden state at every step `[T, H * dirs]` (`true`), or only the
    /// final hidden state of each direction `[H * dirs]` (`false`). Default `true`.
    #[serde(default = "yes")]
    pub return_sequences: bool,
}

/// Which recurrent cell (its gate count and order are the kernel's).
pub use crate::kernels::RecurrentCell as Cell;

impl RecurrentConfig {
    fn dirs(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// The shape rule; also counts the per-step activations the loop keeps for the backward.
    pub(crate) fn output_shape(
        &self,
        cell: Cell,
        x: &[usize],
        ctx: &mut ShapeCtx,
    ) -> crate::Result<Vec<usize>> {
        let &[t, f] = x else {
            return Err(ctx.error(format!(
                "expects a per-sample input [time steps, features], got {x:?} ({} dimensions); \
                 put an `embedding` before it for token ids",
                x.len()
            )));
        };
        if t == 0 || f == 0 {
            return Err(ctx.error(format!("the input {x:?} has no time steps or no features")));
        }
        if self.hidden_size == 0 {
            return Err(ctx.size_error("hidden-size", "must be at least 1"));
        }
        if self.num_layers == 0 {
            return Err(ctx.size_error("num-layers", "must be at least 1"));
        }
        let width = self
            .hidden_size
            .checked_mul(self.dirs())
            .ok_or_else(|| ctx.size_error("hidden-size", "hidden-size * 2 overflows"))?;
        // Kept for the backward, per layer, direction and step: the gate pre-activations and
        // activations, the hidden (and LSTM cell) state.
        let per_step = (2 * cell.gates() + 2)
            .checked_mul(self.hidden_size)
            .ok_or_else(|| ctx.size_error("hidden-size", "the gate width overflows"))?;
        let kept = ctx.count("hidden-size", &[self.num_layers, self.dirs(), t, per_step])?;
        ctx.activations(kept, Some("hidden-size"))?;
        Ok(if self.return_sequences {
            vec![t, width]
        } else {
            vec![width]
        })
    }

    /// The parameter count.
    pub(crate) fn values(&self, cell: Cell, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        let field = "hidden-size";
        let h = self.hidden_size;
        let gh = ctx.count(field, &[cell.gates(), h])?;
        let overflow = || ctx.size_error(field, "the parameter count overflows 64 bits");
        let mut total: u64 = 0;
        for k in 0..self.num_layers {
            let input = if k == 0 {
                x.get(1).copied().unwrap_or(1) as u64
            } else {
                (h as u64) * self.dirs() as u64
            };
            // weight_ih + weight_hh + two biases.
            let per_dir = input
                .checked_add(h as u64)
                .and_then(|n| n.checked_add(2))
                .and_then(|n| n.checked_mul(gh))
                .ok_or_else(overflow)?;
            total = per_dir
                .checked_mul(self.dirs() as u64)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(overflow)?;
        }
        Ok(Values {
            trainable: total,
            buffers: 0,
        })
    }

    /// Build the layer for the per-sample input `x` (which the shape rule accepted).
    pub(crate) fn build(&self, cell: Cell, x: &[usize], vb: VarBuilder) -> Result<Box<dyn Layer>> {
        Ok(Box::new(self.build_recurrent(cell, x, vb)?))
    }

    fn build_recurrent(&self, cell: Cell, x: &[usize], vb: VarBuilder) -> Result<Recurrent> {
        let h = self.hidden_size;
        let gh = cell.gates() * h;
        let b = 1.0 / (h as f64).sqrt();
        let init = Init::Uniform { lo: -b, up: b };
        let mut layers = Vec::with_capacity(self.num_layers);
        for k in 0..self.num_layers {
            let input = if k == 0 { x[1] } else { h * self.dirs() };
            let mut dirs = Vec::with_capacity(self.dirs());
            for suffix in ["", "_reverse"].into_iter().take(self.dirs()) {
                dirs.push(Direction {
                    w_ih: vb.get_with_hints(
                        (gh, input),
                        &format!("weight_ih_l{k}{suffix}"),
                        init,
                    )?,
                    w_hh: vb.get_with_hints((gh, h), &format!("weight_hh_l{k}{suffix}"), init)?,
                    b_ih: vb.get_with_hints(gh, &format!("bias_ih_l{k}{suffix}"), init)?,
                    b_hh: vb.get_with_hints(gh, &format!("bias_hh_l{k}{suffix}"), init)?,
                });
            }
            layers.push(dirs);
        }
        Ok(Recurrent {
            cell,
            hidden: h,
            layers,
            return_sequences: self.return_sequences,
            fused: true,
            lookup: None,
        })
    }
}

/// One direction of one layer.
#[derive(Debug, Clone)]
struct Direction {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

/// A built `lstm`, `gru` or `rnn`.
#[derive(Debug, Clone)]
pub struct Recurrent {
    cell: Cell,
    hidden: usize,
    /// `layers[k][d]`: layer `k`, direction `d` (0 forward, 1 reverse).
    layers: Vec<Vec<Direction>>,
    return_sequences: bool,
    /// Run each layer-direction as the fused kernel ([`kernels::recurrent`]) where it supports
    /// the dtype and device; `false` keeps the plain composition (the reference in the tests).
    fused: bool,
    /// The table of the `embedding` before this layer when the fusion pass folded it in
    /// ([`Layer::fold_lookup`]): the input is then token ids `[B, T]`.
    lookup: Option<Tensor>,
}

impl Recurrent {
    /// Run one direction over `x: [B, T, in]`: the outputs `[B, T, H]` (in time order) and the
    /// final hidden state `[B, H]`.
    fn direction(&self, x: &Tensor, p: &Direction, reverse: bool) -> Result<(Tensor, Tensor)> {
        if !(self.fused && kernels::recurrent_supported(x)) {
            return self.direction_plain(x, p, reverse);
        }
        // All steps' input projections in one GEMM; its backward gives dx, dW_ih and db_ih.
        let xp = kernels::linear(x, &p.w_ih, Some(&p.b_ih), Activation::Identity)?;
        self.direction_fused(&xp, p, reverse)
    }

    /// The fused kernel over the input projections `xp: [B, T, G*H]` (with `b_ih`).
    fn direction_fused(
        &self,
        xp: &Tensor,
        p: &Direction,
        reverse: bool,
    ) -> Result<(Tensor, Tensor)> {
        let t = xp.dim(1)?;
        let hs = kernels::recurrent(xp, &p.w_hh, &p.b_hh, self.cell, reverse)?;
        let last = hs
            .narrow(1, if reverse { 0 } else { t - 1 }, 1)?
            .squeeze(1)?;
        Ok((hs, last))
    }

    /// The input of the first layer from the token ids `x: [B, T]` when the embedding before is
    /// folded in: the embedded batch `[B, T, F]`, or, for the fused kernel when the table has
    /// no more rows than the batch has tokens, `None` and the flat ids (the first layer then
    /// projects the table once, `table·W_ihᵀ + b_ih: [V, G*H]`, and gathers its rows: one small
    /// GEMM instead of one over every token, forward and backward).
    fn lookup(&self, table: &Tensor, x: &Tensor) -> Result<(Option<Tensor>, Tensor)> {
        let (b, t) = match x.dims() {
            &[b, t] => (b, t),
            dims => candle_core::bail!(
                "recurrent layer after an embedding: expects token ids [B, time steps], got {dims:?}"
            ),
        };
        let (vocab, f) = table.dims2()?;
        let ids = embedding::token_ids(x, vocab)?;
        if self.fused && kernels::recurrent_supported(table) && vocab <= b * t {
            return Ok((None, ids));
        }
        Ok((Some(table.index_select(&ids, 0)?.reshape((b, t, f))?), ids))
    }

    /// [`Self::direction`] by plain candle ops: one matmul and the cell's element-wise ops per
    /// step.
    fn direction_plain(
        &self,
        x: &Tensor,
        p: &Direction,
        reverse: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t, f) = x.dims3()?;
        let gh = p.w_ih.dim(0)?;
        // All steps' input projections in one matmul.
        let xp = x
            .reshape((b * t, f))?
            .matmul(&p.w_ih.t()?)?
            .broadcast_add(&p.b_ih)?
            .reshape((b, t, gh))?;
        let w_hh = p.w_hh.t()?;
        let mut h = Tensor::zeros((b, self.hidden), x.dtype(), x.device())?;
        let mut c = match self.cell {
            Cell::Lstm => Some(h.clone()),
            _ => None,
        };
        let mut outs: Vec<Option<Tensor>> = vec![None; t];
        for s in 0..t {
            let i = if reverse { t - 1 - s } else { s };
            let xi = xp.narrow(1, i, 1)?.squeeze(1)?;
            let hp = h.matmul(&w_hh)?.broadcast_add(&p.b_hh)?;
            h = match self.cell {
                Cell::Lstm => {
                    let (h2, c2) = cells::lstm(&xi, &hp, c.as_ref().expect("lstm has a cell"))?;
                    c = Some(c2);
                    h2
                }
                Cell::Gru => cells::gru(&xi, &hp, &h)?,
                Cell::Rnn => cells::rnn(&xi, &hp)?,
            };
            outs[i] = Some(h.clone());
        }
        let outs: Vec<Tensor> = outs
            .into_iter()
            .map(|o| o.expect("every step ran"))
            .collect();
        Ok((Tensor::stack(&outs, 1)?, h))
    }
}

impl Layer for Recurrent {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        // With the embedding folded in and the table projected once, `input` is unused by the
        // first layer, which gathers from the projected table by `ids`.
        let (mut input, ids) = match &self.lookup {
            Some(table) => match self.lookup(table, x)? {
                (Some(embedded), _) => (embedded, None),
                (None, ids) => (x.clone(), Some(ids)),
            },
            None if x.rank() == 3 => (x.contiguous()?, None),
            None => candle_core::bail!(
                "recurrent layer: expects a batch [B, time steps, features], got {:?}",
                x.dims()
            ),
        };
        let mut finals = Vec::new();
        for (k, dirs) in self.layers.iter().enumerate() {
            let mut outs = Vec::with_capacity(dirs.len());
            finals.clear();
            for (d, p) in dirs.iter().enumerate() {
                let (seq, last) = match (&ids, &self.lookup) {
                    (Some(ids), Some(table)) if k == 0 => {
                        let (b, t) = x.dims2()?;
                        let projected =
                            kernels::linear(table, &p.w_ih, Some(&p.b_ih), Activation::Identity)?;
                        let xp = projected.index_select(ids, 0)?.reshape((b, t, ()))?;
                        self.direction_fused(&xp, p, d == 1)?
                    }
                    _ => self.direction(&input, p, d == 1)?,
                };
                outs.push(seq);
                finals.push(last);
            }
            input = if outs.len() == 1 {
                outs.pop().expect("one direction")
            } else {
                Tensor::cat(&outs, 2)?
            };
        }
        if self.return_sequences {
            Ok(input)
        } else if finals.len() == 1 {
            Ok(finals.pop().expect("one direction"))
        } else {
            Tensor::cat(&finals, 1)
        }
    }

    /// Take an embedding's table for the first layer (when its width is that layer's input).
    fn fold_lookup(&mut self, table: &Tensor) -> bool {
        let fits = matches!(
            (table.dims(), self.layers.first().and_then(|d| d.first())),
            (&[_, f], Some(p)) if p.w_ih.dims().get(1) == Some(&f)
        );
        if fits {
            self.lookup = Some(table.clone());
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    use super::*;

    fn config(bidirectional: bool) -> RecurrentConfig {
        RecurrentConfig {
            hidden_size: 3,
            num_layers: 1,
            bidirectional,
            return_sequences: true,
        }
    }

    /// The fused kernel equals the plain candle composition, forward and every gradient (input
    /// and each weight and bias of every layer and direction), in f32 and f64, for each cell,
    /// stacked and bidirectional, with and without `return-sequences`, batch 1 and one step.
    #[test]
    fn fused_kernel_equals_the_plain_composition() {
        use crate::kernels::test_util::max_diff;
        let dev = Device::Cpu;
        for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
            for (b, t, f, h, layers, bidirectional, seqs) in [
                (3, 5, 4, 6, 2, true, true),
                (3, 5, 4, 6, 2, true, false),
                (2, 7, 3, 5, 1, false, true),
                (2, 7, 3, 5, 3, false, false),
                (1, 4, 2, 3, 2, true, true),
                (4, 1, 3, 4, 2, true, false),
                (1, 1, 1, 1, 1, false, true),
                (5, 9, 16, 32, 2, false, true),
            ] {
                for dtype in [DType::F32, DType::F64] {
                    let what = format!(
                        "{cell:?} {dtype:?} b={b} t={t} f={f} h={h} layers={layers} \
                         bidirectional={bidirectional} seqs={seqs}"
                    );
                    let cfg = RecurrentConfig {
                        hidden_size: h,
                        num_layers: layers,
                        bidirectional,
                        return_sequences: seqs,
                    };
                    let varmap = VarMap::new();
                    let vb = VarBuilder::from_varmap(&varmap, dtype, &dev);
                    let fused = cfg.build_recurrent(cell, &[t, f], vb).unwrap();
                    crate::init_seeded(&varmap, 11).unwrap();
                    assert!(kernels::recurrent_supported(
                        varmap.all_vars()[0].as_tensor()
                    ));
                    let plain = Recurrent {
                        fused: false,
                        ..fused.clone()
                    };
                    let x = candle_core::Var::from_tensor(
                        &Tensor::randn(0f32, 1.0, (b, t, f), &dev)
                            .unwrap()
                            .to_dtype(dtype)
                            .unwrap(),
                    )
                    .unwrap();
                    let yf = fused.forward(&x, &Ctx::EVAL).unwrap();
                    let yp = plain.forward(&x, &Ctx::EVAL).unwrap();
                    assert_eq!(yf.dims(), yp.dims(), "{what}");
                    assert!(
                        max_diff(&yf, &yp) < 1e-5,
                        "{what}: forward {}",
                        max_diff(&yf, &yp)
                    );
                    // A random weighting of the outputs probes every output's gradient.
                    let r = Tensor::randn(0f32, 1.0, yf.dims(), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let gf = (yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    let gp = (yp * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    let mut vars = varmap.data().lock().unwrap().clone();
                    vars.insert("input".into(), x);
                    assert_eq!(
                        vars.len(),
                        1 + 4 * layers * if bidirectional { 2 } else { 1 }
                    );
                    for (name, v) in &vars {
                        let (a, p) = (gf.get(v).unwrap(), gp.get(v).unwrap());
                        // Relative to the gradient's scale (sums over up to 9 steps in f32).
                        let scale = p
                            .abs()
                            .unwrap()
                            .max_all()
                            .unwrap()
                            .to_dtype(DType::F64)
                            .unwrap()
                            .to_scalar::<f64>()
                            .unwrap()
                            .max(1.0);
                        let d = max_diff(a, p) / scale;
                        assert!(d < 1e-5, "{what}: d/d{name} differs by {d}");
                    }
                }
            }
        }
    }

    /// An `embedding` folded into the recurrent layer after it (the table projected once, or
    /// looked up when it has more rows than the batch has tokens) equals the lookup followed by
    /// the layer: outputs and every gradient, f32 and f64; bad ids are still errors naming them.
    #[test]
    fn folded_embedding_equals_lookup_then_layer() {
        use crate::kernels::test_util::max_diff;
        use crate::layers::BuildCtx;
        use crate::ModelSpec;
        let dev = Device::Cpu;
        let (b, t) = (3, 4);
        // 5 rows <= 12 tokens: the projected table; 40 rows > 12: the lookup, then the layer.
        for vocab in [5, 40] {
            for (kind, bidirectional) in [("lstm", true), ("gru", false), ("rnn", true)] {
                for dtype in [DType::F32, DType::F64] {
                    let what = format!("{kind} vocab={vocab} {dtype:?}");
                    let spec: ModelSpec = toml::from_str(&format!(
                        r#"layers = [
                            {{ type = "embedding", num-embeddings = {vocab}, embedding-dim = 3 }},
                            {{ type = "{kind}", hidden-size = 4, num-layers = 2, bidirectional = {bidirectional} }},
                        ]"#
                    ))
                    .unwrap();
                    let varmap = VarMap::new();
                    let vb = VarBuilder::from_varmap(&varmap, dtype, &dev);
                    let folded = BuildCtx::default()
                        .build_all(&spec.layers, &[t], &vb)
                        .unwrap();
                    assert!(format!("{:?}", folded[0]).contains("TokenIds"), "{what}");
                    // The same layers (same variables) built one by one, without the fusion pass.
                    let mut ctx = BuildCtx::default();
                    let embed = spec.layers[0]
                        .config()
                        .build(&[t], vb.pp("0"), &mut ctx)
                        .unwrap();
                    let rnn = spec.layers[1]
                        .config()
                        .build(&[t, 3], vb.pp("1"), &mut ctx)
                        .unwrap();
                    crate::init_seeded(&varmap, 5).unwrap();
                    let ids: Vec<f32> = (0..b * t).map(|i| ((i * 7 + 3) % vocab) as f32).collect();
                    let x = Tensor::from_vec(ids, (b, t), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let run = |layers: &[&dyn Layer]| {
                        let mut y = x.clone();
                        for l in layers {
                            y = l.forward(&y, &Ctx::EVAL).unwrap();
                        }
                        y
                    };
                    let yf = run(&[folded[0].as_ref(), folded[1].as_ref()]);
                    let yp = run(&[embed.as_ref(), rnn.as_ref()]);
                    assert_eq!(yf.dims(), [b, t, 4 * if bidirectional { 2 } else { 1 }]);
                    assert!(max_diff(&yf, &yp) < 1e-5, "{what}: forward");
                    let r = Tensor::randn(0f32, 1.0, yf.dims(), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let gf = (yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    let gp = (yp * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    for (name, v) in varmap.data().lock().unwrap().iter() {
                        let d = max_diff(gf.get(v).unwrap(), gp.get(v).unwrap());
                        assert!(d < 1e-5, "{what}: d/d{name} differs by {d}");
                    }
                    let bad = Tensor::new(&[[0f32, vocab as f32]], &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let e = folded[1].forward(&bad, &Ctx::EVAL).unwrap_err().to_string();
                    assert!(
                        e.contains(&format!("token id {vocab}"))
                            && e.contains(&format!("num-embeddings = {vocab}")),
                        "{what}: {e}"
                    );
                }
            }
        }
    }

    /// The reverse direction is the forward direction run over the time-reversed input, with
    /// its outputs put back in time order; the final state is the one after step 0.
    #[test]
    fn reverse_direction_is_forward_over_reversed_time() {
        let dev = Device::Cpu;
        for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
            let both = config(true).build(cell, &[5, 2], vb).unwrap();
            crate::init_seeded(&varmap, 3).unwrap();
            let reverse: HashMap<String, Tensor> = varmap
                .data()
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(n, v)| {
                    n.strip_suffix("_reverse")
                        .map(|n| (n.to_string(), v.as_tensor().clone()))
                })
                .collect();
            assert_eq!(reverse.len(), 4);
            let vb = VarBuilder::from_tensors(reverse, DType::F64, &dev);
            let one = config(false).build(cell, &[5, 2], vb).unwrap();
            let x = Tensor::randn(0f64, 1.0, (2, 5, 2), &dev).unwrap();
            let rev_idx = Tensor::new(&[4u32, 3, 2, 1, 0], &dev).unwrap();
            let x_rev = x.index_select(&rev_idx, 1).unwrap();
            let y = both.forward(&x, &Ctx::EVAL).unwrap();
            assert_eq!(y.dims(), [2, 5, 6]);
            let expect = one
                .forward(&x_rev, &Ctx::EVAL)
                .unwrap()
                .index_select(&rev_idx, 1)
                .unwrap();
            let got = y.i((.., .., 3..)).unwrap();
            let diff = (got - expect)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(diff < 1e-12, "{cell:?}: {diff}");
        }
    }
}
