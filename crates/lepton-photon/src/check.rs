//! Consistency of a manifest, checked when a photon is opened, whatever its checksums say: the
//! preprocessor, the input schema it implies, the input shape, the model spec and the loss must
//! agree, and every size must fit the [`Limits`]. A re-signed file whose preprocessor makes
//! 60000x60000 inputs for a 28x28 model is refused here instead of hanging `predict`.
//!
//! Cheap checks come first: the numbers in the preprocessor are bounded before any shape is
//! multiplied; then lepton-nn's shape inference ([`ModelSpec::shapes_within`]) applies each layer's
//! own rule with overflow-checked arithmetic and its parameter and activation [`Budget`], each
//! top-level output must fit [`Limits::max_sample_values`], and [`lepton_nn::LossSpec::validate`] checks the
//! output against the classes.

use std::path::Path;

use lepton_data::preprocess::Column;
use lepton_data::{Preprocessor, Task};
use lepton_nn::{Budget, LayerSpec, ModelSpec};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::Manifest;

/// Check a parsed manifest against itself and the limits.
pub(crate) fn manifest(m: &Manifest, path: &Path, limits: &Limits) -> Result<()> {
    let bad = |field: &str, message: String| Error::Invalid {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let input = &m.input_shape;
    sample_size(input, limits).map_err(|msg| bad("input_shape", msg))?;
    preprocessor(&m.preprocessor, limits, &bad)?;
    let made = m.preprocessor.sample_shape();
    if &made != input {
        return Err(bad(
            "preprocessor",
            format!("makes inputs of shape {made:?} but the model takes input_shape {input:?}"),
        ));
    }
    if let Some(declared) = &m.model.input {
        if declared != input {
            return Err(bad(
                "model.input",
                format!("is {declared:?} but input_shape is {input:?}"),
            ));
        }
    }
    let output = model(&m.model, input, limits, &bad)?;
    if let Preprocessor::Text {
        vocab,
        max_len,
        class_names,
    } = &m.preprocessor
    {
        text_model(&m.model, vocab.len(), &bad)?;
        if class_names.is_empty() {
            // A language model: next-token logits at every position, trained by cross-entropy.
            let want = [*max_len, vocab.len()];
            if output != want {
                return Err(bad(
                    "model",
                    format!("a language model must output [max_len, vocab size] = {want:?} per sample, this one outputs {output:?}"),
                ));
            }
            if !matches!(m.loss, lepton_nn::LossSpec::CrossEntropy { .. }) {
                return Err(bad(
                    "loss",
                    format!(
                        "a language model is trained by cross-entropy, not {}",
                        m.loss.kind()
                    ),
                ));
            }
            return Ok(());
        }
    }
    let classes = match m.preprocessor.task() {
        Task::Classification => m.preprocessor.class_names().len(),
        Task::Regression => {
            if !m.preprocessor.class_names().is_empty() {
                return Err(bad(
                    "preprocessor.class_names",
                    "a regression model has no classes".into(),
                ));
            }
            0
        }
    };
    m.loss
        .validate(&output, classes)
        .map_err(|e| bad("loss", e.to_string()))
}

/// The number of values in a per-sample shape, within the budget.
fn sample_size(shape: &[usize], limits: &Limits) -> std::result::Result<usize, String> {
    if shape.is_empty() || shape.len() > limits.max_rank {
        return Err(format!(
            "{shape:?} must have 1 to {} dimensions",
            limits.max_rank
        ));
    }
    if shape.contains(&0) {
        return Err(format!("{shape:?} has a zero dimension"));
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= limits.max_sample_values)
        .ok_or_else(|| {
            format!(
                "{shape:?} is more than {} values per sample (the budget)",
                limits.max_sample_values
            )
        })
}

fn finite(x: f32) -> bool {
    x.is_finite()
}

fn positive(x: f32) -> bool {
    x.is_finite() && x > 0.0
}

fn preprocessor(
    p: &Preprocessor,
    limits: &Limits,
    bad: &impl Fn(&str, String) -> Error,
) -> Result<()> {
    let classes = p.class_names().len();
    if classes > limits.max_setting {
        return Err(bad(
            "preprocessor.class_names",
            format!("{classes} classes, more than {}", limits.max_setting),
        ));
    }
    match p {
        Preprocessor::Image {
            channels,
            height,
            width,
            mean,
            std,
            ..
        } => {
            if *channels != 1 && *channels != 3 {
                return Err(bad(
                    "preprocessor.channels",
                    format!("is {channels}; images have 1 (grey) or 3 (RGB) channels"),
                ));
            }
            sample_size(&[*channels, *height, *width], limits)
                .map_err(|msg| bad("preprocessor.height/width", msg))?;
            for (field, v, ok) in [
                ("mean", mean, finite as fn(f32) -> bool),
                ("std", std, positive),
            ] {
                if v.len() != *channels {
                    return Err(bad(
                        &format!("preprocessor.{field}"),
                        format!("has {} values for {channels} channels", v.len()),
                    ));
                }
                if let Some(x) = v.iter().find(|&&x| !ok(x)) {
                    return Err(bad(
                        &format!("preprocessor.{field}"),
                        format!("holds {x}, which is not a usable value"),
                    ));
                }
            }
        }
        Preprocessor::Text { max_len, .. } => {
            // The vocabulary was checked when it was read (`lepton_data::Vocab`'s own rules).
            sample_size(&[*max_len], limits).map_err(|msg| bad("preprocessor.max_len", msg))?;
        }
        Preprocessor::Tabular {
            columns,
            target_mean,
            target_std,
            ..
        } => {
            if columns.is_empty() || columns.len() > limits.max_setting {
                return Err(bad(
                    "preprocessor.columns",
                    format!(
                        "{} columns; a model takes 1 to {}",
                        columns.len(),
                        limits.max_setting
                    ),
                ));
            }
            let mut width = 0usize;
            for (i, c) in columns.iter().enumerate() {
                let field = format!("preprocessor.columns[{i}]");
                match c {
                    Column::Numeric {
                        mean, std, fill, ..
                    } => {
                        if !finite(*mean) || !positive(*std) || !finite(*fill) {
                            return Err(bad(
                                &field,
                                format!("mean {mean}, std {std}, fill {fill}: needs finite numbers and std > 0"),
                            ));
                        }
                        width += 1;
                    }
                    Column::Categorical { values, .. } => {
                        if values.is_empty() || values.len() > limits.max_setting {
                            return Err(bad(
                                &field,
                                format!(
                                    "{} categories; a column has 1 to {}",
                                    values.len(),
                                    limits.max_setting
                                ),
                            ));
                        }
                        width += values.len();
                    }
                }
            }
            if width > limits.max_sample_values {
                return Err(bad(
                    "preprocessor.columns",
                    format!(
                        "make {width} features, more than {} (the budget)",
                        limits.max_sample_values
                    ),
                ));
            }
            if !finite(*target_mean) || !positive(*target_std) {
                return Err(bad(
                    "preprocessor.target_std",
                    format!("target mean {target_mean}, std {target_std}: needs finite numbers and std > 0"),
                ));
            }
        }
    }
    Ok(())
}

/// A text model's first layer must be an embedding with a row for every token id of the
/// vocabulary (an id beyond it would fail at the first request instead of at open).
fn text_model(spec: &ModelSpec, vocab: usize, bad: &impl Fn(&str, String) -> Error) -> Result<()> {
    match spec.layers.first() {
        Some(LayerSpec::Embedding(e)) if e.num_embeddings < vocab => Err(bad(
            "model.layers[0].num-embeddings",
            format!(
                "is {} but the vocabulary has {vocab} tokens",
                e.num_embeddings
            ),
        )),
        Some(LayerSpec::Embedding(_)) => Ok(()),
        Some(other) => Err(bad(
            "model.layers[0]",
            format!(
                "is a {} layer; a text model starts with an embedding of its token ids",
                other.kind()
            ),
        )),
        None => Err(bad("model.layers", "a model has at least one layer".into())),
    }
}

/// The model's per-sample output shape. lepton-nn's shape inference owns the per-layer rules and
/// the size budget (checked arithmetic, parameters and activations counted before anything is
/// allocated); each top-level output must also fit this photon's per-sample limit.
fn model(
    spec: &ModelSpec,
    input: &[usize],
    limits: &Limits,
    bad: &impl Fn(&str, String) -> Error,
) -> Result<Vec<usize>> {
    let shapes = spec
        .shapes_within(input, &Budget::default())
        .map_err(|e| bad("model", e.to_string()))?;
    for (i, (layer, shape)) in spec.layers.iter().zip(&shapes).enumerate() {
        sample_size(shape, limits).map_err(|msg| {
            bad(
                &format!("model.layers[{i}]"),
                format!("({}) outputs {msg}", layer.kind()),
            )
        })?;
    }
    Ok(shapes.last().cloned().unwrap_or_else(|| input.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ModelSpec {
        toml::from_str(text).unwrap()
    }

    fn err(layers: &str, input: &[usize]) -> String {
        let limits = Limits::default();
        let bad = |field: &str, message: String| Error::Invalid {
            path: "m.photon".into(),
            field: field.into(),
            message,
        };
        model(&spec(layers), input, &limits, &bad)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn huge_layer_settings_are_refused_before_shape_arithmetic() {
        // `len + 2 * padding` would overflow inside the shape rule.
        let e = err(
            r#"layers = [{ type = "conv2d", out-channels = 2, kernel = 3, padding = 9223372036854775807 }]"#,
            &[1, 8, 8],
        );
        assert!(e.contains("model.layers[0].padding"), "{e}");
        let e = err(
            r#"layers = [{ type = "flatten" }, { type = "linear", out-features = 1000000000000 }]"#,
            &[4],
        );
        assert!(e.contains("model.layers[1].out-features"), "{e}");
    }

    #[test]
    fn an_activation_over_the_budget_names_the_layer() {
        // 1M channels of 64x64 = 2^32 values: refused at the conv, before flatten multiplies.
        let e = err(
            r#"layers = [{ type = "conv2d", out-channels = 1048576, kernel = 1 }, { type = "flatten" }]"#,
            &[1, 64, 64],
        );
        assert!(e.contains("model.layers[0]") && e.contains("budget"), "{e}");
        let e = err(
            r#"layers = [{ type = "residual", layers = [{ type = "layer-norm", eps = -1.0 }] }]"#,
            &[4],
        );
        assert!(
            e.contains("model.layers[0].layers[0]") && e.contains("eps = -1"),
            "{e}"
        );
    }

    #[test]
    fn sizes_overflowing_usize_are_refused() {
        let limits = Limits::default();
        assert!(sample_size(&[usize::MAX, 2], &limits)
            .unwrap_err()
            .contains("budget"));
        assert!(sample_size(&[1, 0], &limits).unwrap_err().contains("zero"));
        assert!(sample_size(&[], &limits).is_err());
        assert_eq!(sample_size(&[3, 4], &limits), Ok(12));
    }
}
