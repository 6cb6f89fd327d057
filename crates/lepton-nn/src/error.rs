//! The crate's error type.

/// Errors from building models, inferring shapes and computing losses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer cannot take the shape it is given, or its settings are impossible.
    #[error("model.layers[{index}] ({kind}): {message}")]
    Layer {
        index: String,
        kind: &'static str,
        message: String,
    },
    /// A size in a layer's settings overflows, or makes the model exceed its
    /// [`crate::Budget`]; `field` is the setting to change.
    #[error("model.layers[{index}].{field} ({kind}): {message}")]
    Size {
        index: String,
        kind: &'static str,
        field: &'static str,
        message: String,
    },
    /// A spec-level problem (missing input shape, empty model, ...).
    #[error("model: {0}")]
    Spec(String),
    /// Loss inputs that do not fit the loss.
    #[error("loss ({kind}): {message}")]
    Loss { kind: &'static str, message: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// The dotted spec key an error is about (`model.layers[3]`, `model.layers[1].out-features`,
    /// `model.layers[0].layers[2]`), for callers that locate keys in the spec file; `None` for
    /// errors about no single key.
    pub fn spec_key(&self) -> Option<String> {
        match self {
            Error::Layer { index, .. } => Some(format!("model.layers[{index}]")),
            Error::Size { index, field, .. } => Some(format!("model.layers[{index}].{field}")),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use crate::ModelSpec;

    #[test]
    fn spec_key_names_the_layer_and_the_field() {
        let key = |text: &str, input: &[usize]| {
            toml::from_str::<ModelSpec>(text)
                .unwrap()
                .shapes(input)
                .unwrap_err()
                .spec_key()
        };
        assert_eq!(
            key(
                r#"layers = [{ type = "relu" }, { type = "linear", out-features = 1000000000000 }]"#,
                &[4]
            ),
            Some("model.layers[1].out-features".into())
        );
        assert_eq!(
            key(
                r#"layers = [{ type = "residual", layers = [{ type = "relu" }, { type = "flatten" }, { type = "batch-norm2d" }] }]"#,
                &[4, 2]
            ),
            Some("model.layers[0].layers[2]".into())
        );
        assert_eq!(key(r#"layers = []"#, &[4]), None);
    }
}
