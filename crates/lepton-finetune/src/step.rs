//! One training step by hand: the decoder's forward on plain rows, keeping what the backward
//! needs, then the backward straight to the LoRA gradients, without candle's autograd.
//!
//! candle's backward adds every gradient into a fresh zero tensor (`zeros_like` + `add` per
//! edge of the graph, ~35 edges of `[N, D]`-`[N, I]` tensors per layer, single-threaded), and
//! the forward graph carried reshape/broadcast/copy nodes (the KV heads repeated to `H`). Here
//! each layer is a fixed sequence of fused kernels: the frozen linears and LoRA pairs
//! (`lora_op.rs`), RMSNorm, RoPE and SwiGLU ([`crate::fused`]), grouped-query attention
//! (`attention.rs`), and the LM head with the loss ([`crate::loss::head_cross_entropy`]).
//! The same formulas as [`Decoder::loss`] (tested against its autograd gradients), the same
//! dropout draws in the same order.
//!
//! # Saved per layer (`N = B·T` rows)
//! the layer input `x`, `n1 = RMSNorm(x)`, roped `q`, `k`, `v`, the attention probabilities,
//! the attention output, `x_mid = x + o(att)`, `n2 = RMSNorm(x_mid)`, the gate and up outputs.
//! The backward stops at the lowest layer that holds an adapter, and computes no input gradient
//! below it.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use crate::attention::{self, Dims};
use crate::decoder::{Block, Decoder};
use crate::error::{CandleContext, Result};
use crate::fused::{self, RmsNorm, Rope};
use crate::lora::{dropout_mask, LoraLinear};
use crate::lora_op::LoraOp;
use crate::weight::FrozenWeight;

/// What the backward of one layer needs.
struct Saved {
    x: Vec<f32>,
    n1: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    p: Vec<f32>,
    att: Vec<f32>,
    x_mid: Vec<f32>,
    n2: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    /// The dropout masks of q, k, v, o, gate, up, down (adapted linears with dropout only).
    masks: [Option<Vec<f32>>; 7],
}

/// The op of an adapted linear (or `None` for a frozen one).
fn op(lin: &LoraLinear, mask: Option<&Vec<f32>>, x_grad: bool) -> Option<LoraOp> {
    lin.lora.as_ref().map(|l| LoraOp {
        base: lin.base.clone(),
        scale: l.scale as f32,
        mask: mask.map(|m| std::sync::Arc::new(m.clone())),
        x_grad,
    })
}

fn values(t: &Tensor, what: &str) -> Result<Vec<f32>> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .ctx(&format!("reading {what}"))
}

/// `y = lin(x)`, drawing its dropout mask from `rng` as [`LoraLinear::forward`] does.
fn linear(
    lin: &LoraLinear,
    x: &[f32],
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let Some(l) = &lin.lora else {
        return Ok((
            lin.base.forward_rows(x).ctx("running a frozen linear")?,
            None,
        ));
    };
    let mask = dropout_mask(rng, l.dropout, x.len());
    let o = op(lin, mask.as_ref(), false).expect("adapted");
    let y = o
        .forward_values(
            x,
            &values(l.a.as_tensor(), "LoRA A")?,
            &values(l.b.as_tensor(), "LoRA B")?,
            l.rank(),
            lin.out_features(),
        )
        .ctx("running a LoRA linear")?;
    Ok((y, mask))
}

/// The input gradient of `lin` at input `x` for the output gradient `dy` (when `need_dx`),
/// adding its adapter's gradients to `grads`.
fn linear_grad(
    lin: &LoraLinear,
    x: &[f32],
    mask: Option<&Vec<f32>>,
    dy: &[f32],
    need_dx: bool,
    grads: &mut GradStore,
) -> Result<Option<Vec<f32>>> {
    let Some(l) = &lin.lora else {
        return if need_dx {
            Ok(Some(
                lin.base
                    .input_grad_rows(dy)
                    .ctx("the input gradient of a frozen linear")?,
            ))
        } else {
            Ok(None)
        };
    };
    let o = op(lin, mask, need_dx).expect("adapted");
    let (r, out, k) = (l.rank(), lin.out_features(), lin.in_features());
    let (dx, da, db) = o
        .backward_values(
            x,
            &values(l.a.as_tensor(), "LoRA A")?,
            &values(l.b.as_tensor(), "LoRA B")?,
            dy,
            r,
            out,
        )
        .ctx("the gradient of a LoRA linear")?;
    let dev = Device::Cpu;
    let da = Tensor::from_vec(da, (r, k), &dev).ctx("storing a LoRA A gradient")?;
    let db = Tensor::from_vec(db, (out, r), &dev).ctx("storing a LoRA B gradient")?;
    grads.insert(l.a.as_tensor(), da);
    grads.insert(l.b.as_tensor(), db);
    Ok(dx)
}

/// Projections that share an input, stacked once per run ([`FrozenWeight::concat`]): on a
/// quantized base each layer's q/k/v and gate/up run as one matmul with one activation
/// quantization, and their input gradients as one (f32 weights run one by one).
pub struct Plan {
    /// Per layer: the stacked `[Wq; Wk; Wv]` and `[Wgate; Wup]` (`None`: run them one by one).
    layers: Vec<(Option<FrozenWeight>, Option<FrozenWeight>)>,
}

impl Plan {
    /// Stack every layer's quantized q/k/v and gate/up base weights (the copies, ~120 MB for
    /// SmolLM2's Q4_1 file with their Q8_0 transposes, live as long as the plan).
    pub fn new(decoder: &Decoder) -> Result<Self> {
        let mut layers = Vec::with_capacity(decoder.layers.len());
        for (i, l) in decoder.layers.iter().enumerate() {
            let qkv = FrozenWeight::concat(
                &[&l.q.base, &l.k.base, &l.v.base],
                &format!("layer {i} q/k/v"),
            )?;
            let gate_up =
                FrozenWeight::concat(&[&l.gate.base, &l.up.base], &format!("layer {i} gate/up"))?;
            layers.push((qkv, gate_up));
        }
        Ok(Self { layers })
    }

    /// Every projection on its own.
    pub fn unstacked(decoder: &Decoder) -> Self {
        Self {
            layers: vec![(None, None); decoder.layers.len()],
        }
    }
}

/// The outputs of `lins` (one input `x`) and their dropout masks, drawn in order; through the
/// stacked base weight when given (the same numbers).
#[allow(clippy::type_complexity)]
fn project(
    lins: &[&LoraLinear],
    stacked: Option<&FrozenWeight>,
    x: &[f32],
    rng: &mut ChaCha8Rng,
) -> Result<Vec<(Vec<f32>, Option<Vec<f32>>)>> {
    let Some(w) = stacked else {
        return lins.iter().map(|l| linear(l, x, rng)).collect();
    };
    let y = w.forward_rows(x).ctx("running stacked projections")?;
    let total = w.dims().0;
    let mut out = Vec::with_capacity(lins.len());
    let mut start = 0;
    for lin in lins {
        let n = lin.out_features();
        let mut part: Vec<f32> = y
            .chunks_exact(total)
            .flat_map(|row| &row[start..start + n])
            .copied()
            .collect();
        start += n;
        let mut mask = None;
        if let Some(l) = &lin.lora {
            mask = dropout_mask(rng, l.dropout, x.len());
            op(lin, mask.as_ref(), false).expect("adapted").add_low(
                x,
                &values(l.a.as_tensor(), "LoRA A")?,
                &values(l.b.as_tensor(), "LoRA B")?,
                l.rank(),
                n,
                &mut part,
            );
        }
        out.push((part, mask));
    }
    Ok(out)
}

/// The input gradient of [`project`] for the output gradients `dys` (when `need_dx`), adding
/// the adapters' gradients to `grads`.
fn project_grad(
    lins: &[&LoraLinear],
    stacked: Option<&FrozenWeight>,
    x: &[f32],
    masks: &[&Option<Vec<f32>>],
    dys: &[&[f32]],
    need_dx: bool,
    grads: &mut GradStore,
) -> Result<Option<Vec<f32>>> {
    let Some(w) = stacked else {
        let mut dx: Option<Vec<f32>> = None;
        for ((lin, m), dy) in lins.iter().zip(masks).zip(dys) {
            if let Some(d) = linear_grad(lin, x, m.as_ref(), dy, need_dx, grads)? {
                match &mut dx {
                    Some(acc) => add_into(acc, &d),
                    None => dx = Some(d),
                }
            }
        }
        return Ok(dx);
    };
    let mut lows = Vec::new();
    for ((lin, m), dy) in lins.iter().zip(masks).zip(dys) {
        let Some(l) = &lin.lora else { continue };
        let (r, out, k) = (l.rank(), lin.out_features(), lin.in_features());
        let (ga, da, db) = op(lin, m.as_ref(), need_dx).expect("adapted").low_grads(
            x,
            &values(l.a.as_tensor(), "LoRA A")?,
            &values(l.b.as_tensor(), "LoRA B")?,
            dy,
            r,
            out,
            need_dx,
        );
        let dev = Device::Cpu;
        grads.insert(
            l.a.as_tensor(),
            Tensor::from_vec(da, (r, k), &dev).ctx("storing a LoRA A gradient")?,
        );
        grads.insert(
            l.b.as_tensor(),
            Tensor::from_vec(db, (out, r), &dev).ctx("storing a LoRA B gradient")?,
        );
        lows.extend(ga);
    }
    if !need_dx {
        return Ok(None);
    }
    let rows = x.len() / lins[0].in_features();
    let mut dy = Vec::with_capacity(rows * w.dims().0);
    for r in 0..rows {
        for (lin, d) in lins.iter().zip(dys) {
            let n = lin.out_features();
            dy.extend_from_slice(&d[r * n..(r + 1) * n]);
        }
    }
    let mut dx = w
        .input_grad_rows(&dy)
        .ctx("the input gradient of stacked projections")?;
    for ga in &lows {
        add_into(&mut dx, ga);
    }
    Ok(Some(dx))
}

/// `a += b`.
fn add_into(a: &mut [f32], b: &[f32]) {
    use rayon::prelude::*;
    a.par_chunks_mut(16_384)
        .zip(b.par_chunks(16_384))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}

fn has_adapter(l: &Block, names: &[&str]) -> bool {
    names
        .iter()
        .any(|m| l.module(m).is_some_and(|x| x.lora.is_some()))
}

/// The training loss of `tokens: [B, T]` against `targets`/`mask` (as [`Decoder::loss`] with
/// a generator) and the gradient of every LoRA variable.
pub fn loss_and_grads(
    decoder: &Decoder,
    plan: &Plan,
    tokens: &Tensor,
    targets: &[u32],
    mask: &[bool],
    rng: &mut ChaCha8Rng,
) -> Result<(f32, GradStore)> {
    let (b, t) = tokens.dims2().ctx("reading the batch shape")?;
    let c = &decoder.config;
    let (h, kv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
    let dims = Dims {
        b,
        t,
        heads: h,
        kv_heads: kv,
        head_dim: hd,
        scale: 1.0 / (hd as f32).sqrt(),
    };
    let eps = c.rms_norm_eps as f32;
    let (cos, sin) = fused::rope_angles(t, hd, c.rope_theta);
    let rope = |heads: usize| Rope {
        cos: cos.clone(),
        sin: sin.clone(),
        t,
        heads,
        hd,
    };
    let norm = |w: &Tensor| -> Result<RmsNorm> {
        Ok(RmsNorm {
            w: values(w, "a norm weight")?,
            eps,
        })
    };
    let ids = tokens.flatten_all().ctx("reading the batch")?;
    let mut x = values(
        &decoder.embed.rows(&ids).ctx("looking up the embedding")?,
        "the embedding",
    )?;

    // The forward, layer by layer.
    let lowest = decoder
        .layers
        .iter()
        .position(|l| has_adapter(l, &crate::decoder::MODULES));
    let mut saved: Vec<Saved> = Vec::with_capacity(decoder.layers.len());
    for (i, l) in decoder.layers.iter().enumerate() {
        let n1 = norm(&l.attn_norm)?.forward_rows(&x);
        let (qkv, gate_up) = &plan.layers[i];
        let mut outs = project(&[&l.q, &l.k, &l.v], qkv.as_ref(), &n1, rng)?.into_iter();
        let ((q, mq), (k, mk), (v, mv)) = (
            outs.next().expect("q"),
            outs.next().expect("k"),
            outs.next().expect("v"),
        );
        let (q, k) = (rope(h).apply(&q, 1.0), rope(kv).apply(&k, 1.0));
        let (att, p) = attention::forward(&q, &k, &v, dims);
        let (o, mo) = linear(&l.o, &att, rng)?;
        let mut x_mid = x.clone();
        add_into(&mut x_mid, &o);
        let n2 = norm(&l.ffn_norm)?.forward_rows(&x_mid);
        let mut outs = project(&[&l.gate, &l.up], gate_up.as_ref(), &n2, rng)?.into_iter();
        let ((g, mg), (u, mu)) = (outs.next().expect("gate"), outs.next().expect("up"));
        let (d, md) = linear(&l.down, &fused::swiglu_rows(&g, &u), rng)?;
        let mut x_out = x_mid.clone();
        add_into(&mut x_out, &d);
        saved.push(Saved {
            x: std::mem::replace(&mut x, x_out),
            n1,
            q,
            k,
            v,
            p,
            att,
            x_mid,
            n2,
            g,
            u,
            masks: [mq, mk, mv, mo, mg, mu, md],
        });
    }
    let final_norm = norm(&decoder.norm)?;
    let hidden = Var::from_vec(
        final_norm.forward_rows(&x),
        (b * t, c.hidden_size),
        &Device::Cpu,
    )
    .ctx("storing the final hidden states")?;
    let loss =
        crate::loss::head_cross_entropy(hidden.as_tensor(), decoder.head(), targets, mask, true)
            .ctx("computing the loss over the vocabulary")?;
    let loss_v = loss.to_scalar::<f32>().ctx("reading the loss")?;
    let mut grads = GradStore::default();
    let Some(lowest) = lowest else {
        return Ok((loss_v, grads));
    };
    let dh = loss.backward().ctx("the gradient of the loss")?;
    let dh = values(
        dh.get(hidden.as_tensor())
            .expect("the hidden states have a gradient"),
        "the hidden states' gradient",
    )?;
    let mut dx = final_norm.grad_rows(&x, &dh);

    // The backward, from the top layer down to the lowest adapted one.
    for (i, (l, s)) in decoder.layers.iter().zip(saved).enumerate().rev() {
        if i < lowest {
            break;
        }
        let below = i > lowest;
        let [mq, mk, mv, mo, mg, mu, md] = &s.masks;
        // x_out = x_mid + down(swiglu(g, u))
        let sw = if l.down.lora.is_some() {
            fused::swiglu_rows(&s.g, &s.u)
        } else {
            Vec::new()
        };
        let ds = linear_grad(&l.down, &sw, md.as_ref(), &dx, true, &mut grads)?
            .expect("asked for the input gradient");
        let (dg, du) = fused::swiglu_grad_rows(&s.g, &s.u, &ds);
        let (qkv, gate_up) = &plan.layers[i];
        let dn2 = project_grad(
            &[&l.gate, &l.up],
            gate_up.as_ref(),
            &s.n2,
            &[mg, mu],
            &[&dg, &du],
            true,
            &mut grads,
        )?
        .expect("asked for the input gradient");
        add_into(&mut dx, &norm(&l.ffn_norm)?.grad_rows(&s.x_mid, &dn2));
        // x_mid = x + o(attention(rope(q(n1)), rope(k(n1)), v(n1)))
        if !below && !has_adapter(l, &["q_proj", "k_proj", "v_proj", "o_proj"]) {
            break;
        }
        let datt = linear_grad(&l.o, &s.att, mo.as_ref(), &dx, true, &mut grads)?
            .expect("asked for the input gradient");
        let (dq, dk, dv) = attention::backward(&s.q, &s.k, &s.v, &s.p, &s.att, &datt, dims);
        let (dq, dk) = (rope(h).apply(&dq, -1.0), rope(kv).apply(&dk, -1.0));
        let dn1 = project_grad(
            &[&l.q, &l.k, &l.v],
            qkv.as_ref(),
            &s.n1,
            &[mq, mk, mv],
            &[&dq, &dk, &dv],
            below,
            &mut grads,
        )?;
        if let Some(dn1) = dn1 {
            add_into(&mut dx, &norm(&l.attn_norm)?.grad_rows(&s.x, &dn1));
        }
    }
    Ok((loss_v, grads))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::decoder::{DecoderConfig, MODULES};
    use crate::lora::LoraPair;

    fn config() -> DecoderConfig {
        DecoderConfig {
            vocab_size: 64,
            hidden_size: 64,
            intermediate_size: 96,
            num_layers: 3,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            context_length: 64,
        }
    }

    /// Adapters on `targets` of the layers from `from` on, with B random (B = 0 would leave A
    /// without a gradient).
    fn adapt(d: &mut Decoder, targets: &[&str], from: usize, dropout: f32) -> anyhow::Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for l in d.layers.iter_mut().skip(from) {
            for t in targets {
                let lin = l.module_mut(t).unwrap();
                let (i, o) = (lin.in_features(), lin.out_features());
                let mut pair = LoraPair::init(&mut rng, 4, i, o, 8.0, dropout)?;
                let b: Vec<f32> = (0..o * 4).map(|_| rng.random_range(-0.1f32..0.1)).collect();
                pair.b = Var::from_vec(b, (o, 4), &Device::Cpu)?;
                lin.lora = Some(pair);
            }
        }
        Ok(())
    }

    /// The loss and every adapter gradient of [`loss_and_grads`] against candle autograd on
    /// [`Decoder::loss`] (same dropout draws).
    fn check(d: &Decoder) -> anyhow::Result<()> {
        let (b, t) = (2, 12);
        let ids: Vec<u32> = (0..b * t).map(|i| ((i * 7 + 3) % 50) as u32).collect();
        let targets: Vec<u32> = ids.iter().map(|i| (i * 3 + 1) % 50).collect();
        let mask: Vec<bool> = (0..b * t).map(|i| i % 5 != 4).collect();
        let tokens = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
        let rng = || ChaCha8Rng::seed_from_u64(11);
        let want = d.loss(&tokens, &targets, &mask, Some(&mut rng()))?;
        let want_grads = want.backward()?;
        let want = want.to_scalar::<f32>()?;
        let stacked = Plan::new(d)?;
        // Not vacuous: a quantized base's projections are all stacked (f32 ones never).
        let quantized = d.layers[0].q.base.as_tensor().is_none();
        assert!(stacked
            .layers
            .iter()
            .all(|(a, b)| a.is_some() == quantized && b.is_some() == quantized));
        for plan in [stacked, Plan::unstacked(d)] {
            let (loss, grads) = loss_and_grads(d, &plan, &tokens, &targets, &mask, &mut rng())?;
            // The forward runs the same operations in the same order: the same loss, bit for bit.
            assert_eq!(loss.to_bits(), want.to_bits(), "loss {loss} vs {want}");
            let adapters = d.adapters();
            assert!(!adapters.is_empty());
            for (layer, module, pair) in adapters {
                for (name, v) in [("A", &pair.a), ("B", &pair.b)] {
                    let got = grads.get(v.as_tensor()).expect("a gradient");
                    let w = want_grads.get(v.as_tensor()).expect("a reference gradient");
                    let scale = w.abs()?.max_all()?.to_scalar::<f32>()?;
                    assert!(scale > 0.0, "layer {layer} {module} {name}: zero gradient");
                    let diff = (got - w)?.abs()?.max_all()?.to_scalar::<f32>()?;
                    assert!(
                        diff <= 1e-4 * scale,
                        "layer {layer} {module} {name}: differs by {diff} (max {scale})"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn hand_written_step_equals_autograd_for_q_v_adapters() -> anyhow::Result<()> {
        let mut d = Decoder::random(config(), 1)?;
        adapt(&mut d, &["q_proj", "v_proj"], 0, 0.0)?;
        check(&d)
    }

    #[test]
    fn hand_written_step_equals_autograd_for_every_module_with_dropout() -> anyhow::Result<()> {
        let mut d = Decoder::random(config(), 2)?;
        adapt(&mut d, &MODULES, 0, 0.2)?;
        check(&d)
    }

    #[test]
    fn hand_written_step_equals_autograd_on_a_quantized_base() -> anyhow::Result<()> {
        let mut d = Decoder::random(config(), 3)?.quantized(lepton_quant::QType::Q8_0)?;
        adapt(&mut d, &["q_proj", "v_proj", "down_proj"], 0, 0.1)?;
        check(&d)
    }

    #[test]
    fn hand_written_step_stops_at_the_lowest_adapted_layer() -> anyhow::Result<()> {
        let mut d = Decoder::random(config(), 4)?;
        adapt(&mut d, &["v_proj"], 1, 0.0)?;
        check(&d)?;
        let mut d = Decoder::random(config(), 5)?;
        adapt(&mut d, &["up_proj"], 2, 0.0)?;
        check(&d)
    }
}
