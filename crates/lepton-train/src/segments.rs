//! The backward pass in segments, so that data-parallel training can start reducing the last
//! layers' gradients while the first layers are still being differentiated.
//!
//! candle's `Tensor::backward()` returns every gradient at once. Here the model's top-level
//! layers are split into `K` contiguous segments of about equal parameter bytes
//! ([`SegmentPlan::new`]); the forward pass runs segment by segment, each segment's input a fresh
//! [`Var`] holding the previous segment's output (detached), so its gradient is returned. The
//! backward pass then runs from the last segment: the loss's backward first, then segment `s`
//! seeded with `sum(out_s * g_{s+1})`, where `g_{s+1}` is the (detached) gradient of segment
//! `s + 1`'s input. `d/d out_s` of that seed is `1 * g_{s+1}`, bit for bit the gradient plain
//! backward propagates through `out_s` (a top-level layer's output has one consumer, the next
//! layer), so every parameter gradient equals plain `backward()`'s. Dropout masks (seeded by
//! the model seed, the step and the layer's number) and batch-norm batch statistics are those of
//! the one forward pass both paths run.
//!
//! A parameter's gradient is complete once the segment of the layer that owns it
//! ([`lepton_nn::Model::layer_of`]) is differentiated: a layer tied to an earlier layer's table
//! adds to that table's gradient in a later segment first, and the owner's segment completes it.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use lepton_nn::Model;

use crate::error::{Error, Result, TensorContext};

/// How long the training thread sleeps between two progress calls while a segment's backward
/// runs on the compute pool.
const POLL: Duration = Duration::from_micros(200);

/// Contiguous ranges of top-level layers and the parameters each one completes.
#[derive(Debug, Clone)]
pub struct SegmentPlan {
    /// Layer ranges, in forward order, covering `0..layer_count`.
    pub ranges: Vec<Range<usize>>,
    /// Per segment, the parameters owned by its layers (in the order of `params` given to
    /// [`SegmentPlan::new`]).
    pub params: Vec<Vec<(String, Var)>>,
}

impl SegmentPlan {
    /// At most `segments` ranges of about equal parameter bytes: cut `j` at the layer boundary
    /// where the bytes after it are nearest to `j / segments` of the total (a cut with no
    /// parameters on one side is dropped, so a small model gets fewer segments). A parameter
    /// whose name names no layer joins segment 0, the last one completed.
    pub fn new(model: &Model, params: &[(String, Var)], segments: usize) -> SegmentPlan {
        let n = model.layer_count();
        let layer = |name: &str| Model::layer_of(name).filter(|&i| i < n);
        let mut bytes = vec![0usize; n];
        for (name, v) in params {
            if let Some(i) = layer(name) {
                bytes[i] += v.elem_count() * v.dtype().size_in_bytes();
            }
        }
        // `tail[b]`: the bytes of layers `b..n`, which a cut before layer `b` leaves after it.
        let mut tail = vec![0usize; n + 1];
        for i in (0..n).rev() {
            tail[i] = tail[i + 1] + bytes[i];
        }
        let total = tail[0];
        // Cut j lies at the layer boundary whose tail is nearest to j/K of the bytes (the later
        // boundary on a tie); a cut leaving no parameters after it, or none before it, is none.
        let k = segments.max(1);
        let mut cuts: Vec<usize> = (1..k)
            .filter_map(|j| {
                let want = total as f64 * j as f64 / k as f64;
                (1..n)
                    .filter(|&b| tail[b] > 0 && tail[b] < total)
                    .min_by(|&a, &b| {
                        let (da, db) =
                            ((tail[a] as f64 - want).abs(), (tail[b] as f64 - want).abs());
                        da.total_cmp(&db).then(b.cmp(&a))
                    })
            })
            .collect();
        cuts.extend([0, n]);
        cuts.sort_unstable();
        cuts.dedup();
        let ranges: Vec<Range<usize>> = cuts.windows(2).map(|w| w[0]..w[1]).collect();
        let mut owned = vec![Vec::new(); ranges.len()];
        for (name, v) in params {
            let s = layer(name)
                .and_then(|i| ranges.iter().position(|r| r.contains(&i)))
                .unwrap_or(0);
            owned[s].push((name.clone(), v.clone()));
        }
        SegmentPlan {
            ranges,
            params: owned,
        }
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are no segments (a model without layers).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// What [`forward_backward`] calls back.
pub trait SegmentSink {
    /// Segment `s`'s parameters (`plan.params[s]`) have their complete gradients in `grads`;
    /// its backward pass ran over `span`. Called on the calling thread, last segment first.
    fn segment_done(&mut self, s: usize, grads: &GradStore, span: [Instant; 2]) -> Result<()>;
    /// Called on the calling thread every `POLL` (200 µs) while a segment's backward runs on the
    /// compute pool; returns whether it wants to be called again during this segment.
    fn progress(&mut self) -> Result<bool> {
        Ok(false)
    }
}

/// Forward over `plan`'s segments (training mode), `loss` of the output, then the backward pass
/// segment by segment (see the module docs). Returns the logits, the loss and the gradients of
/// every parameter of `plan` that has one (the store holds parameter gradients only).
///
/// The forward pass and each segment's backward run on the rayon pool; `sink` is called on the
/// calling thread between them (MPI under `MPI_THREAD_FUNNELED` needs exactly that).
pub fn forward_backward(
    model: &Model,
    plan: &SegmentPlan,
    x: &Tensor,
    loss: impl FnOnce(&Tensor) -> Result<Tensor> + Send,
    sink: &mut dyn SegmentSink,
) -> Result<(Tensor, Tensor, GradStore)> {
    let k = plan.len();
    // Forward: inputs[s] is the input of segment s (a Var for s > 0 when it is a float tensor).
    let (inputs, outputs, loss) = rayon::scope(|_| {
        let mut inputs: Vec<Option<Var>> = Vec::with_capacity(k);
        let mut outputs: Vec<Tensor> = Vec::with_capacity(k);
        let mut h = x.clone();
        for (s, r) in plan.ranges.iter().enumerate() {
            let input = if s > 0 && h.dtype().is_float() {
                let v = Var::from_tensor(&h.detach()).op("detaching a segment's input")?;
                h = v.as_tensor().clone();
                Some(v)
            } else {
                h = h.detach();
                None
            };
            inputs.push(input);
            h = model
                .forward_range(&h, r.clone(), true)
                .op("forward pass")?;
            outputs.push(h.clone());
        }
        let l = loss(&h)?;
        Ok::<_, Error>((inputs, outputs, l))
    })?;
    let logits = outputs.last().cloned().unwrap_or_else(|| x.clone());
    let mut total = GradStore::default();
    // The gradient flowing into the output of segment s (from segment s + 1's input).
    let mut upstream: Option<Tensor> = None;
    for s in (0..k).rev() {
        let seed = if s + 1 == k {
            Some(loss.clone())
        } else {
            match upstream.take() {
                Some(g) => Some(
                    (&outputs[s] * g.detach())
                        .and_then(|t| t.sum_all())
                        .op("seeding a segment's backward pass")?,
                ),
                // Nothing flows back past an integer input (token ids): no gradient before it.
                None => None,
            }
        };
        let start = Instant::now();
        let grads = match seed {
            Some(seed) => on_pool(|| seed.backward().op("backward pass"), sink)?,
            None => GradStore::default(),
        };
        let end = Instant::now();
        if let Some(Some(v)) = inputs.get(s) {
            upstream = grads.get(v.as_tensor()).cloned();
        }
        // Every parameter this segment reached: its own, and tied tables of earlier segments.
        for seg in &plan.params[..=s] {
            for (name, var) in seg {
                let Some(g) = grads.get(var.as_tensor()) else {
                    continue;
                };
                let sum = match total.remove(var.as_tensor()) {
                    Some(acc) => (acc + g).op(format!("adding the tied gradient of `{name}`"))?,
                    None => g.clone(),
                };
                total.insert(var.as_tensor(), sum);
            }
        }
        sink.segment_done(s, &total, [start, end])?;
    }
    Ok((logits, loss, total))
}

/// Run `f` on the rayon pool while the calling thread calls `sink.progress()` every `POLL` (200 µs)
/// (until it returns `false`), then wait for `f`.
fn on_pool<T: Send>(f: impl FnOnce() -> Result<T> + Send, sink: &mut dyn SegmentSink) -> Result<T> {
    let done = AtomicBool::new(false);
    let mut out = None;
    let mut polled = Ok(());
    rayon::in_place_scope(|scope| {
        let (done, out) = (&done, &mut out);
        scope.spawn(move |_| {
            *out = Some(f());
            done.store(true, Ordering::Release);
        });
        while !done.load(Ordering::Acquire) {
            match sink.progress() {
                Ok(true) => std::thread::sleep(POLL),
                Ok(false) => break,
                Err(e) => {
                    polled = Err(e);
                    break;
                }
            }
        }
    });
    polled?;
    out.expect("the scope waited for the spawned job")
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{ModuleT, VarMap};
    use lepton_nn::ModelSpec;

    use crate::optim::trainable_params;

    /// A CNN with batch norm and dropout in training mode.
    fn cnn() -> (VarMap, Model) {
        let spec: ModelSpec = toml::from_str(
            r#"
            [[layers]]
            type = "conv2d"
            out-channels = 4
            kernel = 3
            [[layers]]
            type = "batch-norm2d"
            [[layers]]
            type = "relu"
            [[layers]]
            type = "max-pool2d"
            kernel = 2
            [[layers]]
            type = "conv2d"
            out-channels = 6
            kernel = 3
            padding = 1
            [[layers]]
            type = "relu"
            [[layers]]
            type = "dropout"
            p = 0.3
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "linear"
            out-features = 16
            [[layers]]
            type = "batch-norm1d"
            [[layers]]
            type = "relu"
            [[layers]]
            type = "dropout"
            p = 0.5
            [[layers]]
            type = "linear"
            out-features = 3
            "#,
        )
        .unwrap();
        let varmap = VarMap::new();
        let model = Model::new(&spec, &[1, 10, 10], lepton_nn::var_builder(&varmap, 7)).unwrap();
        model.set_seed(7);
        model.set_step(3);
        (varmap, model)
    }

    fn loss(logits: &Tensor) -> Result<Tensor> {
        logits.sqr().and_then(|t| t.mean_all()).op("a test loss")
    }

    struct Record(Vec<usize>);
    impl SegmentSink for Record {
        fn segment_done(&mut self, s: usize, _: &GradStore, span: [Instant; 2]) -> Result<()> {
            assert!(span[0] <= span[1]);
            self.0.push(s);
            Ok(())
        }
    }

    /// Segmented gradients equal plain `backward()`'s bit for bit, with the same dropout masks
    /// and batch statistics (the batch-norm running statistics move the same way too).
    #[test]
    fn segmented_gradients_equal_plain_backward() {
        let x = Tensor::randn(0f32, 1., (5, 1, 10, 10), &Device::Cpu).unwrap();
        let (plain_vars, plain_model) = cnn();
        let plain_logits = plain_model.forward_t(&x, true).unwrap();
        let plain = loss(&plain_logits).unwrap().backward().unwrap();
        let params_plain = trainable_params(&plain_vars);
        for k in [1, 2, 3, 5, 13, 40] {
            let (vars, model) = cnn();
            let params = trainable_params(&vars);
            let plan = SegmentPlan::new(&model, &params, k);
            assert!(
                plan.len() <= k.max(1) && !plan.is_empty(),
                "k {k}: {plan:?}"
            );
            assert_eq!(plan.ranges.first().unwrap().start, 0);
            assert_eq!(plan.ranges.last().unwrap().end, model.layer_count());
            let mut rec = Record(vec![]);
            let (logits, _, grads) = forward_backward(&model, &plan, &x, loss, &mut rec).unwrap();
            assert_eq!(rec.0, (0..plan.len()).rev().collect::<Vec<_>>());
            assert_eq!(
                logits.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                plain_logits
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
                "k {k}: the same forward (dropout masks, batch statistics)"
            );
            for ((name, v), (_, pv)) in params.iter().zip(&params_plain) {
                let a = grads.get(v.as_tensor()).unwrap();
                let b = plain.get(pv.as_tensor()).unwrap();
                let (a, b) = (
                    a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                assert!(a.iter().any(|v| *v != 0.0), "{name} has a gradient");
                assert_eq!(a, b, "k {k}: gradient of {name}");
            }
            // Batch-norm running statistics (buffers) were updated identically.
            let (d, pd) = (
                vars.data().lock().unwrap(),
                plain_vars.data().lock().unwrap(),
            );
            for (name, v) in d.iter().filter(|(n, _)| crate::optim::is_buffer(n)) {
                let a = v.as_tensor().flatten_all().unwrap();
                let b = pd[name].as_tensor().flatten_all().unwrap();
                assert_eq!(
                    a.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
                    b.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
                    "k {k}: {name}"
                );
            }
        }
    }

    /// Segments hold about equal parameter bytes, cut from the end; the big first linear layer
    /// of an MLP gets a segment of its own.
    #[test]
    fn segments_split_parameter_bytes_from_the_last_layer() {
        let (vars, model) = cnn();
        let params = trainable_params(&vars);
        let plan = SegmentPlan::new(&model, &params, 3);
        let owned: usize = plan.params.iter().map(Vec::len).sum();
        assert_eq!(owned, params.len(), "every parameter in one segment");
        for (r, p) in plan.ranges.iter().zip(&plan.params) {
            for (name, _) in p {
                assert!(
                    r.contains(&Model::layer_of(name).unwrap()),
                    "{name} in {r:?}"
                );
            }
        }
        // Values per layer: conv 40, bn 8, conv 222, linear 96 -> 16 1552, bn 32, linear 51 (of
        // 1905): the cuts nearest to 635 and 1270 values from the end are before the small head
        // (83) and before the big linear layer (1635), which gets a segment of its own.
        assert_eq!(plan.ranges, vec![0..8, 8..9, 9..13]);
        // Without parameters there is nothing to balance: one segment.
        assert_eq!(
            SegmentPlan::new(&model, &params[..0], 2).ranges,
            vec![0..13]
        );
        assert_eq!(SegmentPlan::new(&model, &params, 1).ranges, vec![0..13]);
    }
}
