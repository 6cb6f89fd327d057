//! The loss and correct-count sums of the steps since the last read-back: kept as tensors so a
//! step never waits for a device-to-host copy, read back every `log-every` steps, at
//! checkpoints and at epoch ends, and summed over the ranks then.

use candle_core::{DType, Tensor};
use lepton_nn::LossSpec;

use crate::checkpoint::EpochTotals;
use crate::distributed::Distributed;
use crate::error::{Result, TensorContext};
use crate::evaluate;

/// Loss and correct-count sums since the last read-back.
#[derive(Default)]
pub(crate) struct Pending {
    loss: Option<Tensor>,
    correct: Option<Tensor>,
    samples: u64,
}

impl Pending {
    pub(crate) fn add(
        &mut self,
        loss: &Tensor,
        bs: usize,
        classify: Option<(&Tensor, &Tensor, &LossSpec)>,
    ) -> Result<()> {
        let l = (loss.detach() * bs as f64).op("accumulating the loss")?;
        self.loss = Some(match self.loss.take() {
            Some(acc) => (acc + l).op("accumulating the loss")?,
            None => l,
        });
        if let Some((logits, y, spec)) = classify {
            let c = evaluate::correct_count(logits, y, spec)?;
            self.correct = Some(match self.correct.take() {
                Some(acc) => (acc + c).op("accumulating the accuracy")?,
                None => c,
            });
        }
        self.samples += bs as u64;
        Ok(())
    }

    /// Read the sums back, sum them over the ranks, add them to `totals`, return the window's
    /// averages.
    pub(crate) fn flush(
        &mut self,
        totals: &mut EpochTotals,
        dist: &mut dyn Distributed,
    ) -> Result<(f64, Option<f64>)> {
        let loss = match self.loss.take() {
            Some(t) => t
                .to_dtype(DType::F64)
                .and_then(|t| t.to_scalar::<f64>())
                .op("reading the loss")?,
            None => 0.0,
        };
        let correct = match self.correct.take() {
            Some(t) => Some(
                t.to_dtype(DType::F64)
                    .and_then(|t| t.to_scalar::<f64>())
                    .op("reading the accuracy")?,
            ),
            None => None,
        };
        let mut sums = [loss, correct.unwrap_or(0.0), self.samples as f64];
        dist.all_reduce_sum(&mut sums)?;
        let [loss, c, samples] = sums;
        let correct = correct.map(|_| c);
        self.samples = samples as u64;
        let n = self.samples.max(1) as f64;
        totals.loss_sum += loss;
        totals.correct += correct.unwrap_or(0.0);
        totals.samples += self.samples;
        let out = (loss / n, correct.map(|c| c / n));
        self.samples = 0;
        Ok(out)
    }
}
