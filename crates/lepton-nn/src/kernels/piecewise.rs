//! [`PiecewiseNet`]: an eval-mode sequential model made only of affine maps (convolution, linear,
//! eval batch norm, flatten) and the piecewise-linear ReLU and max-pool, compiled for what
//! explanations need: batched forward passes and the gradient of one output with respect to the
//! input, with no autograd graph and no parameter gradient.
//!
//! Compilation ([`PiecewiseNet::new`], from the layers' [`Piece`]s): a ReLU next to a max-pool
//! becomes part of the pool (they commute), which then records only the window argmax (or "no
//! gradient" where the pooled value is ≤ 0). Nothing else is merged: every op rounds as the
//! model's own eval forward does (a convolution through the same per-image kernel, a batch norm
//! as the same `x·a + b` with the same `a`, `b`; not folded into the convolution before it,
//! since `(W·a)·x` rounds differently from `(W·x)·a`), so the ReLU masks and pool argmaxes,
//! which decide the gradient, are exactly the model's, near-ties included.
//!
//! Execution: runs of per-sample ops (convolution as im2col + GEMM, batch-norm scale, ReLU,
//! max-pool) go sample by sample through per-thread buffers that stay in cache, samples in
//! parallel; a linear layer is one GEMM over the batch. The forward records only the ReLU masks
//! and pool argmaxes (the *tape*); the backward needs nothing else, since no weight gradient is
//! formed: `dx = Wᵀ·dy` (col2im for a convolution), the mask, the scatter to the argmax.
//!
//! Integrated gradients ([`PiecewiseNet::path_gradient`]) run the whole net forward at each
//! point `b + α_k·(x − b)` (formed and rounded as the autograd path forms it), and use that the
//! leading affine ops `P` (before the first ReLU or pool) are linear in the backward pass:
//! `Σ_k w_k Jᵀ_P u_k = Jᵀ_P Σ_k w_k u_k`, so `P`'s input gradient runs once on the weighted sum
//! of the per-step gradients at its output. (Sharing `P`'s forward as `(1 − α)·P(b) + α·P(x)`
//! is exact in real arithmetic but not in floating point: it decided a max-pool near-tie of one
//! MNIST image in 40 the other way than the model, a 2.8e-3 relative attribution error.)
//!
//! # Shapes
//! Inputs are `[n, ...input]` flattened row-major (NCHW for images); outputs `[n, K]` with `K` the
//! number of output values per sample.

use std::sync::Mutex;

use candle_core::{Result, Tensor, WithDType};
use gemm::Parallelism;
use rayon::prelude::*;

use super::blas::{inner_parallelism, matmul, Elem, Mat};
use super::conv::Geom;
use super::maxpool::Geometry as PoolGeom;
use super::piecewise_conv::SLACK;
use super::piecewise_ops::{Op, SPARSE};
pub use super::piecewise_piece::Piece;
use super::sparse_grad;

/// Backward passes accumulate into at most this many partial sums (a fixed partition of the
/// batch, summed in order: the result does not depend on thread scheduling).
const PARTIALS: usize = 8;

/// What the forward pass reads: a batch, or the points `b + α·d` of the straight path from `b`
/// along `d = x − b`, rounded as the autograd path (and captum) form them: `α·d`, then `+ b`.
#[derive(Clone, Copy)]
enum Input<'a, T> {
    Batch(&'a [T]),
    Path {
        base: &'a [T],
        diff: &'a [T],
        alphas: &'a [T],
    },
}

impl<T: Elem> Input<'_, T> {
    /// Sample `s` into `dst`.
    fn sample(&self, s: usize, dst: &mut [T]) {
        let len = dst.len();
        match *self {
            Input::Batch(x) => dst.copy_from_slice(&x[s * len..(s + 1) * len]),
            Input::Path { base, diff, alphas } => {
                let a = alphas[s];
                for ((v, &b), &d) in dst.iter_mut().zip(base).zip(diff) {
                    *v = a * d + b;
                }
            }
        }
    }

    fn materialise(&self, n: usize, len: usize) -> Vec<T> {
        let mut v = vec![T::ZERO; n * len];
        v.par_chunks_mut(len.max(1))
            .enumerate()
            .for_each(|(s, d)| self.sample(s, d));
        v
    }
}

/// [`PiecewiseNet::path_gradient`]'s answer.
#[derive(Debug, Clone)]
pub struct PathGradient<T> {
    /// `Σ_k w_k ∂y_t/∂x (b + α_k (x − b))`, the input's shape.
    pub gradient: Vec<T>,
    /// `y_t(x)`.
    pub score_input: T,
    /// `y_t(b)`.
    pub score_baseline: T,
}

/// A linear op over at most this many rows (a saliency map's one sample, integrated gradients'
/// two ends) runs as dot products over the weight rows ([`Op::linear_rows`]) instead of a GEMM:
/// the MNIST CNN's 3136x128 layer at one row spent more time in the GEMM's packing and thread
/// hand-off than in the multiply-adds.
const FEW_ROWS: usize = 2;

/// One sample's buffers: two ping-pong activation buffers, the im2col columns, and indices.
type Scratch<T> = (Vec<T>, Vec<T>, Vec<T>, Vec<u32>);

/// See the module docs.
#[derive(Debug)]
pub struct PiecewiseNet<T> {
    ops: Vec<Op<T>>,
    /// `lens[i]`: values per sample entering op `i`; `lens[ops.len()]`: the output.
    lens: Vec<usize>,
    /// Offset of op `i`'s record in a sample's tape.
    tape_at: Vec<usize>,
    /// Tape entries per sample (at least 1, so per-sample chunks are never empty).
    tape_len: usize,
    /// The leading affine ops.
    prefix: usize,
    /// `fused[k]`: for a max-pool `k` right after a one-group convolution `c` (and a scale), `c`:
    /// the backward goes from the pool's output gradient to the convolution's input gradient in
    /// one sparse pass ([`sparse_grad::from_pool`]).
    fused: Vec<Option<usize>>,
    /// Scratch returned by finished tasks, reused by the next ones (zero-filling fresh buffers
    /// for every task of every pass was several MB of `memset` per batch).
    spare: Mutex<Vec<Scratch<T>>>,
    /// No piece's tensor is a candle variable; see [`PiecewiseNet::frozen`].
    frozen: bool,
}

/// Samples per parallel task: one. A sample is ~0.1 ms of work against a few µs of task and
/// scratch hand-over, and rayon then splits the samples evenly over the threads; with four
/// tasks per thread, 50 samples went as 7 × 7 + 1, i.e. 28 to one thread and 22 to the other.
fn samples_per_task(_n: usize) -> usize {
    1
}

/// How a pass over `n` samples runs: the parallelism of each sample's GEMMs, and whether the
/// samples run on the calling thread. One sample (a saliency map, integrated gradients' final
/// pass through the leading affine ops) runs on the caller with one-thread GEMMs: no hand-off
/// to the pool and back, and no split of a ~0.1 ms sample's GEMMs over threads. So does any
/// pass when the pool has one thread.
fn spread(n: usize) -> (Parallelism, bool) {
    if n <= 1 || rayon::current_num_threads() == 1 {
        (Parallelism::None, true)
    } else {
        (inner_parallelism(n), false)
    }
}

fn host<T: WithDType>(t: &Tensor) -> Result<Vec<T>> {
    t.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()
}

impl<T: Elem + WithDType> PiecewiseNet<T> {
    /// Compile `pieces` for per-sample `input` shape; an error names the piece that does not
    /// fit its input.
    pub fn new(pieces: Vec<Piece>, input: &[usize]) -> Result<Self> {
        let variable = |t: &Tensor| t.is_variable();
        let frozen = !pieces.iter().any(|p| match p {
            Piece::Conv { weight, bias, .. } | Piece::Linear { weight, bias } => {
                variable(weight) || bias.as_ref().is_some_and(variable)
            }
            _ => false,
        });
        let mut shape = input.to_vec();
        let mut ops: Vec<Op<T>> = Vec::new();
        let mut lens = vec![shape.iter().product::<usize>()];
        for (i, piece) in pieces.into_iter().enumerate() {
            let kind = piece.kind();
            let image = |shape: &[usize]| match *shape {
                [c, h, w] => Ok((c, h, w)),
                _ => {
                    candle_core::bail!("piece {i} ({kind}) needs an image [C, H, W], got {shape:?}")
                }
            };
            match piece {
                Piece::Conv {
                    ref weight,
                    ref bias,
                    params,
                } => {
                    let (c, h, w) = image(&shape)?;
                    let g = Geom::new(
                        &[1, c, h, w],
                        weight.dims(),
                        params.stride,
                        params.padding,
                        params.dilation,
                        params.groups,
                    )?;
                    let b = bias.as_ref().map(host).transpose()?;
                    if let Some(b) = b.as_ref().filter(|b| b.len() != g.co) {
                        candle_core::bail!(
                            "piece {i}: conv bias has {} values, expected {}",
                            b.len(),
                            g.co
                        );
                    }
                    ops.push(Op::Conv {
                        w: host(weight)?,
                        wt: Vec::new(),
                        b,
                        g,
                    });
                    shape = vec![g.co, g.oh, g.ow];
                }
                Piece::Linear {
                    ref weight,
                    ref bias,
                } => {
                    let inp = *shape.last().unwrap_or(&0);
                    let &[out, win] = weight.dims() else {
                        candle_core::bail!(
                            "piece {i}: linear weight must be [out, in], got {:?}",
                            weight.dims()
                        )
                    };
                    if win != inp {
                        candle_core::bail!(
                            "piece {i}: linear weight {:?} does not fit input {shape:?}",
                            weight.dims()
                        );
                    }
                    let b = match bias {
                        Some(b) => host(b)?,
                        None => vec![T::ZERO; out],
                    };
                    if b.len() != out {
                        candle_core::bail!(
                            "piece {i}: linear bias has {} values, expected {out}",
                            b.len()
                        );
                    }
                    ops.push(Op::Linear {
                        w: host(weight)?,
                        b,
                        inp,
                        out,
                    });
                    *shape.last_mut().expect("checked non-empty") = out;
                }
                Piece::Scale { scale, shift } => {
                    if shape.is_empty() || shape[0] != scale.len() || shift.len() != scale.len() {
                        candle_core::bail!(
                            "piece {i}: a per-channel scale of {} channels does not fit {shape:?}",
                            scale.len()
                        );
                    }
                    // Not folded into a convolution or linear layer before it: `W·s` rounds
                    // differently from the model's `(W·x)·s`, and a ReLU or max-pool after it
                    // could then decide a near-tie the other way than the model's own forward.
                    let inner = shape[1..].iter().product();
                    let cast = |v: Vec<f64>| v.into_iter().map(<T as Elem>::from_f64).collect();
                    ops.push(Op::Scale {
                        scale: cast(scale),
                        shift: cast(shift),
                        inner,
                    });
                }
                Piece::Relu => match ops.last_mut() {
                    Some(Op::Pool { relu, .. }) => *relu = true,
                    Some(Op::Relu) => {}
                    _ => ops.push(Op::Relu),
                },
                Piece::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    let (c, h, w) = image(&shape)?;
                    let g = PoolGeom::new(&[1, c, h, w], kernel, stride, padding)?;
                    // max-pool ∘ ReLU = ReLU ∘ max-pool (both monotone), with the same gradient.
                    let relu = matches!(ops.last(), Some(Op::Relu));
                    if relu {
                        ops.pop();
                    }
                    ops.push(Op::Pool { g, relu });
                    shape = vec![c, g.oh, g.ow];
                }
                Piece::Flatten => {
                    ops.push(Op::Reshape);
                    shape = vec![shape.iter().product()];
                }
            }
            lens.truncate(ops.len());
            lens.push(shape.iter().product());
        }
        for op in &mut ops {
            op.finish();
        }
        let mut tape_at = Vec::with_capacity(ops.len());
        let mut tape_len = 0;
        for (i, op) in ops.iter().enumerate() {
            tape_at.push(tape_len);
            tape_len += match op {
                Op::Relu => lens[i],
                Op::Pool { .. } => lens[i + 1],
                _ => 0,
            };
        }
        let prefix = ops.iter().take_while(|op| op.affine()).count();
        let conv = |c: usize| matches!(ops[c], Op::Conv { g, .. } if g.groups == 1);
        let fused = (0..ops.len())
            .map(|k| match (&ops[k], k.checked_sub(1).map(|k| &ops[k])) {
                (Op::Pool { .. }, Some(Op::Conv { .. })) if conv(k - 1) => Some(k - 1),
                (Op::Pool { .. }, Some(Op::Scale { .. })) if k >= 2 && conv(k - 2) => Some(k - 2),
                _ => None,
            })
            .collect();
        Ok(Self {
            ops,
            lens,
            tape_at,
            tape_len: tape_len.max(1),
            prefix,
            fused,
            spare: Mutex::new(Vec::new()),
            frozen,
        })
    }

    /// Whether the weights this net copied at compilation cannot change after it: no
    /// convolution or linear weight was a candle `Var` (a training model's weights are; a loaded
    /// model's, from `VarBuilder::from_tensors`, are plain tensors, which candle never mutates),
    /// and no [`PiecewiseNet::with_variable_weights`] since. A frozen net may be kept for the
    /// model's lifetime; any other one is stale after the next optimizer step.
    pub fn frozen(&self) -> bool {
        self.frozen
    }

    /// Marks the net as compiled from weights that may change (a batch norm's statistics or
    /// scale held in candle `Var`s, which [`Piece::Scale`] no longer shows): not
    /// [`PiecewiseNet::frozen`].
    pub fn with_variable_weights(mut self) -> Self {
        self.frozen = false;
        self
    }

    /// Values per input sample.
    pub fn input_len(&self) -> usize {
        self.lens[0]
    }

    /// Output values per sample (`K`).
    pub fn output_len(&self) -> usize {
        *self.lens.last().expect("lens has the input")
    }

    fn check(&self, x: &[T], n: usize, target: Option<usize>) -> Result<()> {
        if x.len() != n * self.input_len() {
            candle_core::bail!(
                "piecewise net: {} input values for {n} samples of {}",
                x.len(),
                self.input_len()
            );
        }
        if let Some(t) = target.filter(|&t| t >= self.output_len()) {
            candle_core::bail!(
                "piecewise net: target {t} out of range ({} outputs)",
                self.output_len()
            );
        }
        Ok(())
    }

    /// The outputs `[n, K]` of `n` samples `x: [n, ...input]`.
    pub fn forward(&self, x: &[T], n: usize) -> Result<Vec<T>> {
        self.check(x, n, None)?;
        let mut tape = vec![0u32; n * self.tape_len];
        Ok(self.forward_range(0, self.ops.len(), Input::Batch(x), n, &mut tape))
    }

    /// `∂y_target/∂x` per sample `[n, ...input]` and the target scores `[n]`.
    pub fn input_gradient(&self, x: &[T], n: usize, target: usize) -> Result<(Vec<T>, Vec<T>)> {
        self.check(x, n, Some(target))?;
        let mut tape = vec![0u32; n * self.tape_len];
        let y = self.forward_range(0, self.ops.len(), Input::Batch(x), n, &mut tape);
        let (seed, scores) = self.seed(&y, n, target);
        let g = self.backward_range(0, self.ops.len(), seed, n, &tape, None);
        Ok((g, scores))
    }

    /// `Σ_k weights[k]·∂y_target/∂x` at the points `b + alphas[k]·(x − b)` (integrated gradients'
    /// quadrature before the final `⊙ (x − b)`), `batch` points per pass, and `y_target` at both
    /// ends; see the module docs. Each point is formed as `alphas[k]·(x − b) + b` in `T` (as the
    /// autograd path forms it) and runs the whole net: its masks are the model's at that point.
    pub fn path_gradient(
        &self,
        x: &[T],
        b: &[T],
        alphas: &[f64],
        weights: &[f64],
        target: usize,
        batch: usize,
    ) -> Result<PathGradient<T>> {
        self.check(x, 1, Some(target))?;
        self.check(b, 1, None)?;
        if alphas.len() != weights.len() || batch == 0 {
            candle_core::bail!(
                "piecewise net: {} alphas, {} weights, batch {batch}",
                alphas.len(),
                weights.len()
            );
        }
        let (p, all) = (self.prefix, self.ops.len());
        let ends: Vec<T> = x.iter().chain(b).copied().collect();
        let mut tape = vec![0u32; 2 * self.tape_len];
        let y = self.forward_range(0, all, Input::Batch(&ends), 2, &mut tape);
        let k = self.output_len();
        let (score_input, score_baseline) = (y[target], y[k + target]);
        let diff: Vec<T> = x.iter().zip(b).map(|(&x, &b)| x - b).collect();
        let mut acc = vec![T::ZERO; self.lens[p]];
        let mut tape = vec![0u32; batch.min(alphas.len()) * self.tape_len];
        for (a, w) in alphas.chunks(batch).zip(weights.chunks(batch)) {
            let n = a.len();
            let a: Vec<T> = a.iter().map(|&v| <T as Elem>::from_f64(v)).collect();
            let w: Vec<T> = w.iter().map(|&v| <T as Elem>::from_f64(v)).collect();
            let input = Input::Path {
                base: b,
                diff: &diff,
                alphas: &a,
            };
            let tape = &mut tape[..n * self.tape_len];
            // The whole net per point, the leading affine ops included: the masks are those of
            // the model's forward at exactly these points.
            let y = self.forward_range(0, all, input, n, tape);
            let (seed, _) = self.seed(&y, n, target);
            let g = self.backward_range(p, all, seed, n, tape, Some(&w));
            for (s, v) in acc.iter_mut().zip(g) {
                *s += v;
            }
        }
        let gradient = self.backward_range(0, p, acc, 1, &vec![0; self.tape_len], None);
        Ok(PathGradient {
            gradient,
            score_input,
            score_baseline,
        })
    }

    /// The one-hot output gradient of `target` and the target scores.
    fn seed(&self, y: &[T], n: usize, target: usize) -> (Vec<T>, Vec<T>) {
        let k = self.output_len();
        let mut seed = vec![T::ZERO; n * k];
        let mut scores = Vec::with_capacity(n);
        for s in 0..n {
            seed[s * k + target] = T::ONE;
            scores.push(y[s * k + target]);
        }
        (seed, scores)
    }

    /// The end of the run of per-sample ops starting at `i` (before `to`).
    fn run_end(&self, i: usize, to: usize) -> usize {
        (i..to)
            .find(|&j| matches!(self.ops[j], Op::Linear { .. }))
            .unwrap_or(to)
    }

    /// Ops `from..to` over `n` samples, recording into `tape` (`n × tape_len`).
    fn forward_range(
        &self,
        from: usize,
        to: usize,
        input: Input<T>,
        n: usize,
        tape: &mut [u32],
    ) -> Vec<T> {
        let mut cur: Option<Vec<T>> = None;
        let mut i = from;
        while i < to {
            let src = match &cur {
                Some(v) => Input::Batch(v.as_slice()),
                None => input,
            };
            if let op @ Op::Linear { w, b, inp, out } = &self.ops[i] {
                let x = match src {
                    Input::Batch(x) => std::borrow::Cow::Borrowed(x),
                    path => std::borrow::Cow::Owned(path.materialise(n, self.lens[i])),
                };
                let rows = n * self.lens[i] / inp;
                if rows <= FEW_ROWS {
                    let mut y = vec![T::ZERO; rows * out];
                    op.linear_rows(&x, &mut y);
                    cur = Some(y);
                    i += 1;
                    continue;
                }
                let mut y = Vec::with_capacity(rows * out);
                for _ in 0..rows {
                    y.extend_from_slice(b);
                }
                matmul(
                    rows,
                    *out,
                    *inp,
                    &mut y,
                    Mat::rows(&x, *inp),
                    Mat::rows_t(w, *inp),
                    true,
                    Parallelism::Rayon(0),
                );
                cur = Some(y);
                i += 1;
            } else {
                let j = self.run_end(i, to);
                cur = Some(self.forward_run(i, j, src, n, tape));
                i = j;
            }
        }
        cur.unwrap_or_else(|| input.materialise(n, self.lens[from]))
    }

    /// Scratch for any op of one sample: a spare one, or new. Every op writes the parts of
    /// its buffers it reads back, so leftovers of an earlier sample do no harm.
    fn scratch(&self) -> Scratch<T> {
        let spare = self.spare.lock().expect("scratch lock").pop();
        spare.unwrap_or_else(|| {
            // The block patch copy reads past an activation's end.
            let big = self.lens.iter().copied().max().unwrap_or(0) + SLACK;
            let (mut cols, mut idx) = (0, 0);
            for (k, op) in self.ops.iter().enumerate() {
                cols = cols.max(op.scratch_len());
                idx = idx.max(op.index_len());
                if let (Some(c), Op::Pool { g: pg, .. }) = (self.fused[k], op) {
                    let Op::Conv { g, .. } = &self.ops[c] else {
                        unreachable!("fused pools follow a convolution")
                    };
                    cols = cols.max(self.lens[c] + sparse_grad::pool_work_len(g, pg));
                    idx = idx.max(sparse_grad::pool_index_len(g, pg));
                }
            }
            (
                vec![T::ZERO; big],
                vec![T::ZERO; big],
                vec![T::ZERO; cols],
                vec![0; idx],
            )
        })
    }

    fn give_back(&self, s: Scratch<T>) {
        self.spare.lock().expect("scratch lock").push(s);
    }

    fn forward_run(
        &self,
        i: usize,
        j: usize,
        input: Input<T>,
        n: usize,
        tape: &mut [u32],
    ) -> Vec<T> {
        let (len_in, len_out) = (self.lens[i], self.lens[j]);
        let (par, inline) = spread(n);
        let per = samples_per_task(n);
        let mut y = vec![T::ZERO; n * len_out];
        let task = |(c, (yc, tc)): (usize, (&mut [T], &mut [u32]))| {
            let (mut a, mut b, mut cols, idx) = self.scratch();
            let samples = yc.chunks_mut(len_out).zip(tc.chunks_mut(self.tape_len));
            for (s, (ys, ts)) in (c * per..).zip(samples) {
                input.sample(s, &mut a[..len_in]);
                for k in i..j {
                    let lens = (self.lens[k], self.lens[k + 1]);
                    let t = &mut ts[self.tape_at[k]..];
                    if self.ops[k].forward(lens, &mut a, &mut b, &mut cols, t, par) {
                        std::mem::swap(&mut a, &mut b);
                    }
                }
                ys.copy_from_slice(&a[..len_out]);
            }
            self.give_back((a, b, cols, idx));
        };
        let (yc, tc) = (per * len_out, per * self.tape_len);
        if inline {
            y.chunks_mut(yc)
                .zip(tape.chunks_mut(tc))
                .enumerate()
                .for_each(task);
        } else {
            y.par_chunks_mut(yc)
                .zip(tape.par_chunks_mut(tc))
                .enumerate()
                .for_each(task);
        }
        y
    }

    /// The gradient at the input of op `from` from `grad` at the output of op `to - 1`, for `n`
    /// samples recorded in `tape`. With `weights`, the per-sample gradients are summed, weighted:
    /// one input-sized vector.
    fn backward_range(
        &self,
        from: usize,
        to: usize,
        grad: Vec<T>,
        n: usize,
        tape: &[u32],
        weights: Option<&[T]>,
    ) -> Vec<T> {
        let mut g = grad;
        let mut j = to;
        while j > from {
            if let op @ Op::Linear { w, inp, out, .. } = &self.ops[j - 1] {
                let rows = n * self.lens[j - 1] / inp;
                let mut dx = vec![T::ZERO; rows * inp];
                if rows <= FEW_ROWS {
                    op.linear_rows_grad(&g, &mut dx);
                    g = dx;
                    j -= 1;
                    continue;
                }
                matmul(
                    rows,
                    *inp,
                    *out,
                    &mut dx,
                    Mat::rows(&g, *out),
                    Mat::rows(w, *inp),
                    false,
                    Parallelism::Rayon(0),
                );
                g = dx;
                j -= 1;
                continue;
            }
            let i = (from..j)
                .rev()
                .find(|&k| matches!(self.ops[k], Op::Linear { .. }))
                .map_or(from, |k| k + 1);
            let sum = if i == from { weights } else { None };
            g = self.backward_run(i, j, &g, n, tape, sum);
            if sum.is_some() {
                return g;
            }
            j = i;
        }
        match weights {
            None => g,
            Some(w) => {
                let len = self.lens[from];
                let mut acc = vec![T::ZERO; len];
                for (gs, &ws) in g.chunks(len).zip(w) {
                    for (a, &v) in acc.iter_mut().zip(gs) {
                        *a += ws * v;
                    }
                }
                acc
            }
        }
    }

    /// Ops `c..=k` backward at once (a convolution `c`, maybe a scale, the max-pool `k`, see
    /// `fused`), from the pool's output gradient in `a` into `b`, for one sample with tape `ts`;
    /// false (nothing written) when the gradient is too dense for the sparse pass to pay.
    #[allow(clippy::too_many_arguments)]
    fn pooled_conv_backward(
        &self,
        c: usize,
        k: usize,
        a: &[T],
        b: &mut [T],
        cols: &mut [T],
        idx: &mut [u32],
        ts: &[u32],
    ) -> bool {
        let (Op::Conv { wt, g, .. }, Op::Pool { g: pg, .. }) = (&self.ops[c], &self.ops[k]) else {
            unreachable!("fused ops are a convolution and a pool")
        };
        let scale = match &self.ops[c + 1] {
            Op::Scale { scale, .. } if c + 1 < k => Some(scale.as_slice()),
            _ => None,
        };
        let (dxt, work) = cols.split_at_mut(self.lens[c]);
        sparse_grad::from_pool(
            g,
            wt,
            scale,
            pg,
            &a[..self.lens[k + 1]],
            &ts[self.tape_at[k]..],
            SPARSE,
            b,
            dxt,
            work,
            idx,
        )
    }

    fn backward_run(
        &self,
        i: usize,
        j: usize,
        grad: &[T],
        n: usize,
        tape: &[u32],
        weights: Option<&[T]>,
    ) -> Vec<T> {
        let (len_in, len_out) = (self.lens[i], self.lens[j]);
        let (par, inline) = spread(n);
        // One sample: the gradient at op `stop`'s input, left in `a`.
        let one = |(a, b, cols, idx): &mut Scratch<T>, s: usize, stop: usize| {
            a[..len_out].copy_from_slice(&grad[s * len_out..(s + 1) * len_out]);
            let ts = &tape[s * self.tape_len..(s + 1) * self.tape_len];
            let mut k = j;
            while k > stop {
                k -= 1;
                if let Some(c) = self.fused[k].filter(|&c| c >= stop) {
                    if self.pooled_conv_backward(c, k, a, b, cols, idx, ts) {
                        std::mem::swap(a, b);
                        k = c;
                        continue;
                    }
                }
                if self.ops[k].backward(
                    (self.lens[k], self.lens[k + 1]),
                    a,
                    b,
                    (cols, idx),
                    &ts[self.tape_at[k]..],
                    par,
                ) {
                    std::mem::swap(a, b);
                }
            }
        };
        let Some(w) = weights else {
            let per = samples_per_task(n);
            let mut dx = vec![T::ZERO; n * len_in];
            let task = |(c, dc): (usize, &mut [T])| {
                let mut sc = self.scratch();
                for (s, d) in (c * per..).zip(dc.chunks_mut(len_in)) {
                    one(&mut sc, s, i);
                    d.copy_from_slice(&sc.0[..len_in]);
                }
                self.give_back(sc);
            };
            if inline {
                dx.chunks_mut(per * len_in).enumerate().for_each(task);
            } else {
                dx.par_chunks_mut(per * len_in).enumerate().for_each(task);
            }
            return dx;
        };
        // Chunk `c` of `chunks` holds samples `c·n/chunks..(c + 1)·n/chunks`: sizes that differ
        // by at most one, so that each half of the chunks (what rayon gives each of two
        // threads) has half the samples.
        let chunks = n.clamp(1, PARTIALS);
        let partial = |c: usize| {
            let mut sc = self.scratch();
            let mut acc = vec![T::ZERO; len_in];
            let (start, end) = (c * n / chunks, (c + 1) * n / chunks);
            for (s, &ws) in (start..end).zip(&w[start..end]) {
                // A first ReLU or pool adds its gradient into `acc` itself (no input-sized
                // pass, no zeroing); any other op's input gradient is added.
                let lens = (self.lens[i], self.lens[i + 1]);
                let ts = &tape[s * self.tape_len + self.tape_at[i]..];
                if self.ops[i].fused_sum() {
                    one(&mut sc, s, i + 1);
                    self.ops[i].add_backward(lens, &sc.0, ts, ws, &mut acc);
                } else {
                    one(&mut sc, s, i);
                    for (a, &v) in acc.iter_mut().zip(&sc.0[..len_in]) {
                        *a += ws * v;
                    }
                }
            }
            self.give_back(sc);
            acc
        };
        let partials: Vec<Vec<T>> = if inline {
            (0..chunks).map(partial).collect()
        } else {
            (0..chunks).into_par_iter().map(partial).collect()
        };
        let mut parts = partials.into_iter();
        let mut acc = parts.next().unwrap_or_else(|| vec![T::ZERO; len_in]);
        for p in parts {
            for (a, v) in acc.iter_mut().zip(p) {
                *a += v;
            }
        }
        acc
    }
}
