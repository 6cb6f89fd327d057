//! [`Scorer`]: what an attribution method needs of a model — a batched, differentiable forward
//! pass `x: [B, ...sample] -> scores: [B, K]` — and the one gradient every gradient method takes.

use std::sync::Arc;

use candle_core::{Tensor, Var};
use candle_nn::ModuleT;
use lepton_nn::kernels::PiecewiseNet;

use crate::error::{during, Error, Result};

/// A model as the attribution methods see it: scores `[B, K]` (logits for a classifier, `K = 1`
/// for a regression) for a batch `[B, ...sample]`, in eval mode. The forward pass must be
/// differentiable in its input (lepton-nn's kernels are; see `kernels::conv2d`).
pub trait Scorer: Sync {
    /// Scores `[B, K]` of a batch.
    fn scores(&self, x: &Tensor) -> candle_core::Result<Tensor>;

    /// The model as a [`PiecewiseNet`] when it is one (convolutions, linear layers, batch
    /// norms, ReLUs, max-pools): the gradient methods then run its forward and input-gradient
    /// passes instead of candle autograd. Default `None`: the generic path.
    fn piecewise_net(&self) -> Option<Arc<PiecewiseNet<f32>>> {
        None
    }
}

impl Scorer for lepton_nn::Model {
    fn scores(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.forward_t(x, false)?;
        let b = y.dim(0)?;
        y.reshape((b, ()))
    }

    /// Built from the current weights on each call (a few hundred microseconds for the MNIST
    /// CNN), so never stale; an [`crate::Explainer`] keeps it for a loaded model instead. A
    /// model it cannot express, or that fails to compile, takes the generic path, which reports
    /// any real error.
    fn piecewise_net(&self) -> Option<Arc<PiecewiseNet<f32>>> {
        self.piecewise::<f32>().ok().flatten().map(Arc::new)
    }
}

/// A closure as a [`Scorer`] (tests, and models that are not a `lepton_nn::Model`).
pub struct FnScorer<F>(pub F);

impl<F> Scorer for FnScorer<F>
where
    F: Fn(&Tensor) -> candle_core::Result<Tensor> + Sync,
{
    fn scores(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        (self.0)(x)
    }
}

/// The `target` column of `scores: [B, K]` as a vector; the error names `target` when it is out
/// of range.
pub(crate) fn column(scores: &Tensor, target: usize) -> Result<Vec<f32>> {
    let k = scores
        .dim(1)
        .map_err(during("reading the model's scores"))?;
    check_target(target, k)?;
    scores
        .narrow(1, target, 1)
        .and_then(|c| {
            c.flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1()
        })
        .map_err(during("reading the model's scores"))
}

/// An error naming `target` when it is not one of `k` outputs.
pub(crate) fn check_target(target: usize, k: usize) -> Result<()> {
    if target >= k {
        return Err(Error::invalid(
            "target",
            format!("class {target} is out of range: the model has {k} outputs"),
        ));
    }
    Ok(())
}

/// Scores of the `target` output for a batch (no gradient).
pub(crate) fn target_scores(model: &dyn Scorer, x: &Tensor, target: usize) -> Result<Vec<f32>> {
    let y = model.scores(&x.detach()).map_err(during("forward pass"))?;
    column(&y, target)
}

/// `∂ scores[b, target] / ∂ x[b]` for each sample of the batch `x` (one forward and one
/// backward pass; the samples do not interact in eval mode), and the scores themselves.
pub(crate) fn target_gradient(
    model: &dyn Scorer,
    x: &Tensor,
    target: usize,
) -> Result<(Tensor, Vec<f32>)> {
    if let Some(net) = model.piecewise_net() {
        check_target(target, net.output_len())?;
        let n = x.dim(0).map_err(during("preparing the input"))?;
        let (g, scores) = net
            .input_gradient(&values(x)?, n, target)
            .map_err(during("input gradient"))?;
        let g = Tensor::from_vec(g, x.dims(), x.device()).map_err(during("input gradient"))?;
        return Ok((g, scores));
    }
    let var = Var::from_tensor(&x.detach()).map_err(during("preparing the input"))?;
    let y = model
        .scores(var.as_tensor())
        .map_err(during("forward pass"))?;
    let scores = column(&y, target)?;
    let grads = y
        .narrow(1, target, 1)
        .and_then(|t| t.sum_all())
        .and_then(|s| s.backward())
        .map_err(during("backward pass"))?;
    let g = grads
        .get(var.as_tensor())
        .cloned()
        .ok_or_else(|| Error::Model {
            op: "backward pass",
            source: candle_core::Error::Msg(
                "the model's output does not depend on its input".into(),
            ),
        })?;
    Ok((g, scores))
}

/// The sample `x` (shape `sample`) as a batch of one.
pub(crate) fn batch_of_one(x: &Tensor) -> Result<Tensor> {
    x.unsqueeze(0).map_err(during("preparing the input"))
}

/// The values of a tensor as f32.
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32)?.to_vec1())
        .map_err(during("reading a tensor"))
}
