//! The language-model objective: next-token cross-entropy over windows of text, its checks
//! against the vocabulary, and its evaluation (loss, perplexity, bits per token).
//!
//! # Shapes
//! A batch is `x: [B, T]` token ids and `y: [B, T]` next tokens; the model outputs logits
//! `[B, T, V]`. The loss is the mean over all `B·T` positions of `-log softmax(logits)[y]`,
//! computed exactly by reshaping to `[B·T, V]` / `[B·T]` and calling [`lepton_nn::loss()`]
//! (what nanoGPT's `F.cross_entropy(logits.view(-1, V), targets.view(-1))` does).
//!
//! # Metrics
//! With `L` the mean loss in nats per token: perplexity `exp(L)`, bits per token `L / ln 2`
//! (for a character vocabulary that is bits per character).

use candle_core::{DType, Tensor};
use candle_nn::ModuleT;
use lepton_data::text::{window_batch, window_starts};
use lepton_data::LanguageModelData;
use lepton_eval::LanguageModelReport;
use lepton_nn::{LossSpec, Model};

use crate::error::{Error, Result, TensorContext};
use crate::spec::Spec;

/// The mean next-token loss of a batch: logits `[B, T, V]`, targets `[B, T]`.
pub fn loss(spec: &LossSpec, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3().op("language-model logits [B, T, V]")?;
    let logits = logits.reshape((b * t, v)).op("flattening the logits")?;
    let targets = targets.reshape(b * t).op("flattening the targets")?;
    Ok(lepton_nn::loss(spec, &logits, &targets, None)?)
}

/// Check a language model against its data before training: the first layer embeds token ids
/// (`num-embeddings` = vocabulary size), the output is `[block-size, vocabulary size]`
/// (the last layer's `out-features`), and the loss is cross-entropy. Errors name the field.
pub fn check_model(
    spec: &Spec,
    lm: &LanguageModelData,
    loss: &LossSpec,
    output: &[usize],
) -> Result<()> {
    let v = lm.vocab.len();
    let t = lm.block_size;
    let kind = lm.vocab.kind();
    if !matches!(loss, LossSpec::CrossEntropy { .. }) {
        return Err(Error::spec(
            "loss.kind",
            format!(
                "a language model trains with cross-entropy, not {}",
                loss.kind()
            ),
        ));
    }
    check_embedding(spec, &lm.vocab)?;
    let last = spec.model.layers.len() - 1;
    match output {
        [ot, ov] if *ot == t && *ov == v => Ok(()),
        [ot, ov] if *ot == t => Err(Error::spec(
            format!("model.layers[{last}].out-features"),
            format!(
                "is {ov} but the {kind} vocabulary has {v} tokens: a language model predicts \
                 the next token (set out-features = {v})"
            ),
        )),
        _ => Err(Error::spec(
            format!("model.layers[{last}]"),
            format!(
                "the model outputs {output:?} per window; a language model needs logits \
                 [block-size, vocabulary] = [{t}, {v}] (recurrent layers need \
                 return-sequences = true)"
            ),
        )),
    }
}

/// A model over token ids (a language model or a text classifier) starts with an `embedding`
/// whose `num-embeddings` equals the vocabulary size; the error names the field.
pub fn check_embedding(spec: &Spec, vocab: &lepton_data::Vocab) -> Result<()> {
    let (v, kind) = (vocab.len(), vocab.kind());
    // Through the spec syntax (`type`, `num-embeddings`), which is fixed, not lepton-nn's types.
    let first = serde_json::to_value(&spec.model.layers[0]).unwrap_or_default();
    if first["type"] != "embedding" {
        return Err(Error::spec(
            "model.layers[0]",
            format!(
                "the data are token ids: the first layer must be an embedding, not {}",
                first["type"]
            ),
        ));
    }
    let n = first["num-embeddings"].as_u64().unwrap_or(0);
    if n != v as u64 {
        return Err(Error::spec(
            "model.layers[0].num-embeddings",
            format!("is {n} but the text's {kind} vocabulary has {v} tokens (they must be equal)"),
        ));
    }
    Ok(())
}

/// The loss over fixed windows of `tokens` (at most `max_windows`, see
/// [`lepton_data::text::window_starts`]) in batches of `batch_size` windows, without gradients.
/// `None` when the part is shorter than one window.
pub fn evaluate(
    model: &Model,
    loss_spec: &LossSpec,
    tokens: &[u32],
    block_size: usize,
    max_windows: usize,
    batch_size: usize,
) -> Result<Option<LanguageModelReport>> {
    let starts = window_starts(tokens.len(), block_size, max_windows);
    if starts.is_empty() {
        return Ok(None);
    }
    let mut sum = 0.0f64;
    for chunk in starts.chunks(batch_size.max(1)) {
        let batch = window_batch(tokens, chunk, block_size)?;
        let logits = model
            .forward_t(&batch.x, false)
            .op("evaluation forward pass")?;
        let l = loss(loss_spec, &logits, &batch.y)?
            .to_dtype(DType::F64)
            .and_then(|t| t.to_scalar::<f64>())
            .op("reading the loss")?;
        sum += l * chunk.len() as f64;
    }
    let windows = starts.len();
    Ok(Some(LanguageModelReport::new(
        sum / windows as f64,
        windows * block_size,
        windows,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn loss_is_the_mean_over_every_position() {
        // Two windows of two positions over a 3-token vocabulary.
        let logits = Tensor::from_vec(
            vec![
                0.0f32, 0.0, 0.0, //
                1.0, 0.0, 0.0, //
                0.0, 2.0, 0.0, //
                0.0, 0.0, 3.0,
            ],
            (2, 2, 3),
            &Device::Cpu,
        )
        .unwrap();
        let y = Tensor::from_vec(vec![0u32, 1, 1, 2], (2, 2), &Device::Cpu).unwrap();
        let got = loss(&LossSpec::default(), &logits, &y)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let nll =
            |z: [f64; 3], k: usize| -(z[k].exp() / z.iter().map(|v| v.exp()).sum::<f64>()).ln();
        let want = (nll([0., 0., 0.], 0)
            + nll([1., 0., 0.], 1)
            + nll([0., 2., 0.], 1)
            + nll([0., 0., 3.], 2))
            / 4.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
