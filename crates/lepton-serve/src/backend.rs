//! What the server needs from a model: the inference contract's [`Backend`] (features and a
//! batched forward pass), implemented next to the models (`lepton_photon::serving` for `.photon`
//! packages). The server never sees the trainer or the model crates.

pub use lepton_infer::{Backend, ModelInfo, Output};
