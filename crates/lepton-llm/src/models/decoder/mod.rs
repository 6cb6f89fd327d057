//! The one decoder (Llama/Mistral, Qwen2, Qwen3, Phi-3, Gemma 2, Gemma 3) on GGUF weights, with per-sequence KV caches and batched
//! steps. Where architectures differ, [`arch::ArchParts`] says what to do (embedding scale,
//! activation, QK-norm, post-norms, RoPE pairing, sliding-window layers).
//!
//! # Maths (Llama, per layer, for every token row `x` of width `hidden`)
//! ```text
//! h = RMSNorm(x) · w_attn_norm
//! q, k, v = h Wqᵀ, h Wkᵀ, h Wvᵀ            (fused into one matmul: [q | k | v])
//! q, k = RoPE(q, pos), RoPE(k, pos)         (interleaved pairs, theta = rope_theta)
//! a_h = softmax(q_h · K_gᵀ / sqrt(d)) V_g   (head h reads KV head g = h / (heads / kv_heads),
//!                                            causal: positions 0..=pos of its own sequence)
//! x = x + [a_1 .. a_H] Woᵀ
//! h = RMSNorm(x) · w_ffn_norm
//! x = x + (SiLU(h Wgateᵀ) ⊙ h Wupᵀ) Wdownᵀ   (gate and up fused)
//! ```
//! then `logits = RMSNorm(x_last) · w_norm · Woutᵀ` (the embedding matrix when the file ties them).
//!
//! Gemma 3 scales the embeddings by `sqrt(hidden)`, normalises `q` and `k` per head before RoPE
//! (`RMSNorm(q_h) · w_q_norm`), normalises the attention and FFN outputs before each residual add
//! (`x = x + RMSNorm(a Woᵀ) · w_post_attn`), uses GeGLU, and lets its local layers see only the
//! last `sliding_window` positions.
//!
//! # Batching
//! [`Llama::forward`] takes several [`Step`]s — a prompt to prefill (many tokens) or one token to
//! decode — for different sequences, stacks all their rows through the matmuls (each weight block
//! is read once for the whole batch) and runs attention per sequence against its own [`KvCache`].
//! Every row goes through the same operations whatever else is in the batch, so a sequence's
//! logits are bit-identical batched or alone.

pub mod arch;
pub mod lora;
pub mod ops;
pub mod weights;

pub use crate::runtime::kv_cache::KvCache;
pub use lora::Lora;
pub use weights::WeightSource;

use std::cell::RefCell;

use crate::runtime::pool::{split, Pool};

use crate::gguf::LlamaConfig;
use crate::peft::LoraModule;
use crate::quant::QMatrix;
use crate::{Error, Result};
use arch::{FfnActivation, RopeMode};

struct Layer {
    attn_norm: Vec<f32>,
    /// Wq, Wk, Wv stacked (or separately when their types differ).
    qkv: Vec<QMatrix>,
    /// The biases of `[q | k | v]`, when the architecture has them.
    qkv_bias: Option<Vec<f32>>,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    /// Wgate, Wup stacked (or separately when their types differ).
    gate_up: Vec<QMatrix>,
    down: QMatrix,
    /// QK-norm weights (`head_dim` each), when the architecture has them.
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    /// Post-attention and post-FFN norms, when the architecture has them.
    post_attn_norm: Option<Vec<f32>>,
    post_ffn_norm: Option<Vec<f32>>,
}

/// The weights of a Llama-family decoder.
pub struct Llama {
    config: LlamaConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None` when the output projection is tied to the embedding.
    output: Option<QMatrix>,
}

/// One sequence's part of a forward pass: new tokens, appended after what its cache holds.
pub struct Step<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
}

/// Reusable buffers for [`Llama::forward`] (grown to the largest batch, then reused).
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    gu: Vec<f32>,
    act: Vec<f32>,
    last: Vec<f32>,
    q8: Vec<u8>,
    /// RoPE `(sin, cos)` per row, `head_dim / 2` each.
    rope: Vec<(f32, f32)>,
    /// A LoRA row's `A x` (see [`lora`]).
    lora_t: Vec<f32>,
}

fn resize(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// Stack neighbouring matrices that share a type (Gemma's Q5_0 Wq and Wk beside a Q8_0 Wv: one
/// activation quantization and one parallel loop for the two), keeping the order.
fn fuse(parts: Vec<QMatrix>) -> Vec<QMatrix> {
    let mut out: Vec<Vec<QMatrix>> = Vec::new();
    for p in parts {
        match out.last_mut() {
            Some(run) if run[0].qtype() == p.qtype() && run[0].cols() == p.cols() => run.push(p),
            _ => out.push(vec![p]),
        }
    }
    out.into_iter()
        .map(|run| QMatrix::concat_rows(&run).expect("same type and width"))
        .collect()
}

/// `out (m × Σ rows) = x Wᵀ` for matrices stacked along the output columns.
fn matmul_parts(parts: &[QMatrix], x: &[f32], out: &mut [f32], q8: &mut Vec<u8>) {
    let stride: usize = parts.iter().map(QMatrix::rows).sum();
    let mut offset = 0;
    for p in parts {
        p.matmul_strided(x, out, stride, offset, q8);
        offset += p.rows();
    }
}

impl Llama {
    /// Load the weights (GGUF names and layout, see [`WeightSource`]), checking every tensor's shape.
    pub fn load(file: &mut impl WeightSource, config: LlamaConfig) -> Result<Self> {
        let c = &config;
        let (hd, kvd, ff) = (
            c.hidden_size,
            c.num_kv_heads * c.head_dim,
            c.intermediate_size,
        );
        let qd = c.num_heads * c.head_dim;
        let ap = &c.arch;
        let embed = file.matrix("token_embd.weight", c.vocab_size, hd)?;
        let output = if file.has_tensor("output.weight") {
            Some(file.matrix("output.weight", c.vocab_size, hd)?)
        } else {
            None
        };
        // Grown layer by layer (each from its tensors), never sized by the count alone.
        let mut layers = Vec::new();
        for i in 0..c.num_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let (q_norm, k_norm) = if ap.qk_norm {
                (
                    Some(file.vector(&n("attn_q_norm"), c.head_dim)?),
                    Some(file.vector(&n("attn_k_norm"), c.head_dim)?),
                )
            } else {
                (None, None)
            };
            let (post_attn_norm, post_ffn_norm) = if ap.post_norms {
                (
                    Some(file.vector(&n("post_attention_norm"), hd)?),
                    Some(file.vector(&n("post_ffw_norm"), hd)?),
                )
            } else {
                (None, None)
            };
            // One `attn_qkv` (Phi-3) or three matrices.
            let qkv = if file.has_tensor(&n("attn_qkv")) {
                vec![file.matrix(&n("attn_qkv"), qd + 2 * kvd, hd)?]
            } else {
                fuse(vec![
                    file.matrix(&n("attn_q"), qd, hd)?,
                    file.matrix(&n("attn_k"), kvd, hd)?,
                    file.matrix(&n("attn_v"), kvd, hd)?,
                ])
            };
            let qkv_bias = if ap.qkv_bias {
                let b = |s: &str| format!("blk.{i}.{s}.bias");
                let mut bias = file.vector(&b("attn_q"), qd)?;
                bias.extend(file.vector(&b("attn_k"), kvd)?);
                bias.extend(file.vector(&b("attn_v"), kvd)?);
                Some(bias)
            } else {
                None
            };
            // Gate and up: one `ffn_up` of both (gate first, Phi-3) or two matrices.
            let gate_up = if ap.fused_gate_up {
                vec![file.matrix(&n("ffn_up"), 2 * ff, hd)?]
            } else {
                fuse(vec![
                    file.matrix(&n("ffn_gate"), ff, hd)?,
                    file.matrix(&n("ffn_up"), ff, hd)?,
                ])
            };
            layers.push(Layer {
                qkv,
                qkv_bias,
                gate_up,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
                attn_norm: file.vector(&n("attn_norm"), hd)?,
                wo: file.matrix(&n("attn_output"), hd, qd)?,
                ffn_norm: file.vector(&n("ffn_norm"), hd)?,
                down: file.matrix(&n("ffn_down"), hd, ff)?,
            });
        }
        let norm = file.vector("output_norm.weight", hd)?;
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            output,
        })
    }

    /// Bytes the weights hold in memory (matrices as stored plus the f32 norms).
    pub fn weight_bytes(&self) -> usize {
        let norms = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, |v| 4 * v.len());
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.qkv
                    .iter()
                    .chain(&l.gate_up)
                    .map(QMatrix::bytes)
                    .sum::<usize>()
                    + l.wo.bytes()
                    + l.down.bytes()
                    + 4 * (l.attn_norm.len() + l.ffn_norm.len())
                    + norms(&l.q_norm)
                    + norms(&l.k_norm)
                    + norms(&l.post_attn_norm)
                    + norms(&l.post_ffn_norm)
                    + norms(&l.qkv_bias)
            })
            .sum();
        layers
            + self.embed.bytes()
            + self.output.as_ref().map_or(0, QMatrix::bytes)
            + 4 * self.norm.len()
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// An empty cache for a sequence of at most `capacity` positions; sliding-window layers keep
    /// only their window (see [`KvCache`]).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        let c = &self.config;
        let windows = (0..c.num_layers)
            .map(|l| c.arch.sliding_window.filter(|_| c.arch.is_local(l)))
            .collect();
        KvCache::with_windows(c.num_kv_heads, c.head_dim, capacity, windows)
    }

    /// An empty cache that keeps every position on every layer, sliding-window ones included
    /// (the same outputs as [`Llama::new_cache`] in more memory).
    pub fn new_full_cache(&self, capacity: usize) -> KvCache {
        let c = &self.config;
        KvCache::new(c.num_layers, c.num_kv_heads, c.head_dim, capacity)
    }

    /// Bytes a cache of `positions` positions takes (made by [`Llama::new_cache`]).
    pub fn cache_bytes(&self, positions: usize) -> usize {
        self.new_cache(0).bytes_at(positions)
    }

    /// Run `steps` through the model; `logits` gets `steps.len() × vocab` values, the next-token
    /// logits after each step's last token. Each step's cache advances by its token count.
    pub fn forward(
        &self,
        steps: &mut [Step<'_>],
        scratch: &mut Scratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        self.forward_with(steps, &[], scratch, logits)
    }

    /// [`Llama::forward`] with a LoRA adapter per step (`adapters[i]` for `steps[i]`; an empty
    /// slice: none). Rows of steps without an adapter are computed exactly as by `forward`.
    pub fn forward_with(
        &self,
        steps: &mut [Step<'_>],
        adapters: &[Option<&Lora>],
        scratch: &mut Scratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        if steps.iter().all(|s| s.tokens.len() <= s.cache.max_step()) {
            return self.forward_pass(steps, adapters, scratch, logits);
        }
        // A sliding-window ring cannot take the whole step at once: passes of at most
        // `max_step` tokens per sequence (every row is computed alone, so the bits are those of
        // one pass). Checked first, so that no pass runs when a later one would fail.
        let vocab = self.config.vocab_size;
        for s in steps.iter() {
            if s.tokens.is_empty() {
                return Err(Error::InvalidRequest {
                    field: "prompt",
                    message: "no tokens to run".into(),
                });
            }
            s.cache.check_room(s.tokens.len())?;
            if let Some(&t) = s.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::InvalidRequest {
                    field: "prompt",
                    message: format!("token id {t} is not below the vocabulary size {vocab}"),
                });
            }
        }
        if !adapters.is_empty() && adapters.len() != steps.len() {
            return self.forward_pass(steps, adapters, scratch, logits);
        }
        resize(logits, steps.len() * vocab).fill(0.0);
        let mut done = vec![0usize; steps.len()];
        let mut part = Vec::new();
        loop {
            let mut which = Vec::new();
            let mut sub = Vec::new();
            let mut sub_adapters = Vec::new();
            for (i, s) in steps.iter_mut().enumerate() {
                let total = s.tokens.len();
                if done[i] == total {
                    continue;
                }
                let n = (total - done[i]).min(s.cache.max_step());
                which.push((i, done[i] + n == total));
                sub.push(Step {
                    tokens: &s.tokens[done[i]..done[i] + n],
                    cache: &mut *s.cache,
                });
                if !adapters.is_empty() {
                    sub_adapters.push(adapters[i]);
                }
                done[i] += n;
            }
            if sub.is_empty() {
                break;
            }
            self.forward_pass(&mut sub, &sub_adapters, scratch, &mut part)?;
            for (k, &(i, last)) in which.iter().enumerate() {
                if last {
                    logits[i * vocab..(i + 1) * vocab]
                        .copy_from_slice(&part[k * vocab..(k + 1) * vocab]);
                }
            }
        }
        Ok(())
    }

    /// One pass of [`Llama::forward_with`]: every step's tokens at once.
    fn forward_pass(
        &self,
        steps: &mut [Step<'_>],
        adapters: &[Option<&Lora>],
        scratch: &mut Scratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let c = &self.config;
        if !adapters.is_empty() && adapters.len() != steps.len() {
            return Err(Error::InvalidRequest {
                field: "adapter",
                message: format!(
                    "{} adapters given for {} sequences",
                    adapters.len(),
                    steps.len()
                ),
            });
        }
        if adapters.iter().flatten().any(|l| !l.fits(c)) {
            return Err(Error::InvalidRequest {
                field: "adapter",
                message: format!("an adapter was made for another base model than {}", c.name),
            });
        }
        let ap = &c.arch;
        let (hd, d) = (c.hidden_size, c.head_dim);
        let kvd = c.num_kv_heads * d;
        let qd = c.num_heads * d;
        let qkv_w = qd + 2 * kvd;
        let ff = c.intermediate_size;
        for s in steps.iter() {
            if s.tokens.is_empty() {
                return Err(Error::InvalidRequest {
                    field: "prompt",
                    message: "no tokens to run".into(),
                });
            }
            if let Some(&t) = s.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(Error::InvalidRequest {
                    field: "prompt",
                    message: format!(
                        "token id {t} is not below the vocabulary size {}",
                        c.vocab_size
                    ),
                });
            }
            s.cache.check_room(s.tokens.len())?;
        }
        // (first row, row count, first position) of each step.
        let mut spans = Vec::with_capacity(steps.len());
        let mut rows = 0;
        for s in steps.iter() {
            spans.push((rows, s.tokens.len(), s.cache.len()));
            rows += s.tokens.len();
        }
        let Scratch {
            x,
            h,
            qkv,
            att,
            gu,
            act,
            last,
            q8,
            rope,
            lora_t,
        } = scratch;
        let lora_steps: Vec<_> = (0..steps.len())
            .map(|si| {
                let (r0, n, _) = spans[si];
                (adapters.get(si).copied().flatten(), r0..r0 + n)
            })
            .collect();
        let mut lora = lora::Apply {
            steps: &lora_steps,
            t: lora_t,
        };
        let adapted = lora.any();
        // The rotary angles of every row's position, once for all layers: the global base, then
        // (with local layers) the local base.
        let half = d / 2;
        let local = ap.sliding_window.is_some();
        let tables = if local { 2 } else { 1 };
        rope.resize(tables * rows * half, (0.0, 0.0));
        for (ti, theta) in [c.rope_theta, ap.rope_theta_local]
            .into_iter()
            .take(tables)
            .enumerate()
        {
            for &(r0, n, p0) in &spans {
                for j in 0..n {
                    let at = (ti * rows + r0 + j) * half;
                    ops::rope_table(d, p0 + j, theta, &mut rope[at..at + half]);
                }
            }
        }
        let x = resize(x, rows * hd);
        for (row, &t) in steps.iter().flat_map(|s| s.tokens).enumerate() {
            let xr = &mut x[row * hd..(row + 1) * hd];
            self.embed.dequantize_row(t as usize, xr);
            if let Some(scale) = ap.embed_scale {
                xr.iter_mut().for_each(|v| *v *= scale);
            }
        }
        let h = resize(h, rows * hd);
        let qkv = resize(qkv, rows * qkv_w);
        let att = resize(att, rows * qd);
        let gu = resize(gu, rows * 2 * ff);
        let act = resize(act, rows * ff);
        let scale = ap.attn_scale.unwrap_or(1.0 / (d as f32).sqrt());
        // Queries scaled before their f16 rounding, or scores after (see `ArchParts::scale_queries`).
        let (q_scale, scale) = if ap.scale_queries {
            (Some(scale), 1.0)
        } else {
            (None, scale)
        };
        let softcap = ap.attn_softcap;
        let group = c.num_heads / c.num_kv_heads;
        for (li, layer) in self.layers.iter().enumerate() {
            for (xr, hr) in x.chunks_exact(hd).zip(h.chunks_exact_mut(hd)) {
                ops::rms_norm(xr, &layer.attn_norm, c.rms_norm_eps, hr);
            }
            matmul_parts(&layer.qkv, h, qkv, q8);
            if let Some(bias) = &layer.qkv_bias {
                for row in qkv.chunks_exact_mut(qkv_w) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
            }
            if adapted {
                let qkv_parts = [
                    (LoraModule::QProj, 0),
                    (LoraModule::KProj, qd),
                    (LoraModule::VProj, qd + kvd),
                ];
                lora.add(li, &qkv_parts, h, hd, qkv, qkv_w);
            }
            let is_local = ap.is_local(li);
            let rope_fn = match ap.rope {
                RopeMode::Interleaved => ops::rope_apply,
                RopeMode::Neox => ops::rope_apply_neox,
            };
            for (si, s) in steps.iter_mut().enumerate() {
                let (r0, n, p0) = spans[si];
                for j in 0..n {
                    let row = &mut qkv[(r0 + j) * qkv_w..(r0 + j + 1) * qkv_w];
                    let (q, kv) = row.split_at_mut(qd);
                    let at = (usize::from(is_local) * rows + r0 + j) * half;
                    let table = &rope[at..at + half];
                    let (k, v) = kv.split_at_mut(kvd);
                    if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                        ops::rms_norm_heads(q, qn, c.rms_norm_eps);
                        ops::rms_norm_heads(k, kn, c.rms_norm_eps);
                    }
                    rope_fn(q, d, table);
                    rope_fn(k, d, table);
                    if let Some(f) = q_scale {
                        q.iter_mut().for_each(|v| *v *= f);
                    }
                    ops::round_f16(q);
                    ops::round_f16(k);
                    ops::round_f16(v);
                    s.cache.store(li, p0 + j, k, v);
                }
            }
            // Attention: (sequence, head unit, row) units dealt round-robin to the team. With
            // enough work a unit serves the query heads that share a KV head (one pass over its
            // keys and values); with few rows (decoding one sequence) one query head each, so
            // that the team's shares stay even.
            let qkv_ref: &[f32] = qkv;
            let steps_ref: &[Step<'_>] = steps;
            let att_ptr = SendPtr(att.as_mut_ptr());
            let pool = Pool::global();
            let parts = pool.threads();
            let per_unit = if rows * c.num_kv_heads >= 4 * parts {
                group
            } else {
                1
            };
            pool.run(&|part| {
                let att_ptr = &att_ptr;
                SCORES.with_borrow_mut(|scores| {
                    let mut unit = 0;
                    for (si, s) in steps_ref.iter().enumerate() {
                        let (r0, n, p0) = spans[si];
                        for u in 0..c.num_heads / per_unit {
                            for j in 0..n {
                                unit += 1;
                                if unit % parts != part {
                                    continue;
                                }
                                let row = r0 + j;
                                let (h0, h1) = (u * per_unit * d, (u + 1) * per_unit * d);
                                let q = &qkv_ref[row * qkv_w + h0..row * qkv_w + h1];
                                // SAFETY: each (row, head unit) slice of `att` is written by one unit.
                                let out = unsafe {
                                    std::slice::from_raw_parts_mut(
                                        att_ptr.0.add(row * qd + h0),
                                        h1 - h0,
                                    )
                                };
                                // Keys from the first position the layer lets this row see.
                                let first = ap.first_visible(li, p0 + j);
                                let len = p0 + j + 1 - first;
                                let (k, v) = s.cache.window(li, u * per_unit / group, first, len);
                                ops::attend_group(q, d, k, v, len, scale, softcap, scores, out);
                            }
                        }
                    }
                });
            });
            layer.wo.matmul(att, h, q8);
            if adapted {
                lora.add(li, &[(LoraModule::OProj, 0)], att, qd, h, hd);
            }
            if let Some(w) = &layer.post_attn_norm {
                ops::rms_norm_rows(h, w, c.rms_norm_eps);
            }
            for (xv, hv) in x.iter_mut().zip(h.iter()) {
                *xv += hv;
            }
            for (xr, hr) in x.chunks_exact(hd).zip(h.chunks_exact_mut(hd)) {
                ops::rms_norm(xr, &layer.ffn_norm, c.rms_norm_eps, hr);
            }
            matmul_parts(&layer.gate_up, h, gu, q8);
            if adapted {
                let gu_parts = [(LoraModule::GateProj, 0), (LoraModule::UpProj, ff)];
                lora.add(li, &gu_parts, h, hd, gu, 2 * ff);
            }
            let gu_ref: &[f32] = gu;
            let act_ptr = SendPtr(act.as_mut_ptr());
            pool.run(&|part| {
                let act_ptr = &act_ptr;
                // A contiguous share of all rows × ff outputs, cut at row ends.
                let all = split(rows * ff, parts, part, 16);
                let mut e = all.start;
                while e < all.end {
                    let (r, col) = (e / ff, e % ff);
                    let len = (ff - col).min(all.end - e);
                    let g = &gu_ref[r * 2 * ff + col..r * 2 * ff + col + len];
                    let u = &gu_ref[r * 2 * ff + ff + col..r * 2 * ff + ff + col + len];
                    // SAFETY: the parts' ranges of `act` are disjoint.
                    let a = unsafe { std::slice::from_raw_parts_mut(act_ptr.0.add(e), len) };
                    match ap.ffn {
                        FfnActivation::Silu => ops::silu_mul(g, u, a),
                        FfnActivation::GeluTanh => ops::gelu_mul(g, u, a),
                    }
                    e += len;
                }
            });
            layer.down.matmul(act, h, q8);
            if adapted {
                lora.add(li, &[(LoraModule::DownProj, 0)], act, ff, h, hd);
            }
            if let Some(w) = &layer.post_ffn_norm {
                ops::rms_norm_rows(h, w, c.rms_norm_eps);
            }
            for (xv, hv) in x.iter_mut().zip(h.iter()) {
                *xv += hv;
            }
        }
        let last = resize(last, steps.len() * hd);
        for (si, &(r0, n, _)) in spans.iter().enumerate() {
            let row = r0 + n - 1;
            ops::rms_norm(
                &x[row * hd..(row + 1) * hd],
                &self.norm,
                c.rms_norm_eps,
                &mut last[si * hd..(si + 1) * hd],
            );
        }
        let logits = resize(logits, steps.len() * c.vocab_size);
        self.output
            .as_ref()
            .unwrap_or(&self.embed)
            .matmul(last, logits, q8);
        if let Some(cap) = ap.final_softcap {
            // As ggml: scale by 1/cap, tanh, scale by cap.
            let inv = 1.0 / cap;
            logits.iter_mut().for_each(|l| *l = (*l * inv).tanh() * cap);
        }
        for (s, &(_, n, _)) in steps.iter_mut().zip(&spans) {
            s.cache.advance(n);
        }
        Ok(())
    }
}

thread_local! {
    /// Attention scores of one query row, per thread.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

struct SendPtr(*mut f32);
// SAFETY: used only for disjoint writes inside one `forward` call.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}
