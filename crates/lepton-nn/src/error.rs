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

pub type Result<T, E = Error> = std::result::Result<T, E>;
