//! Photon packages behind the inference contract (`lepton-infer`): [`PhotonBackend`] predicts,
//! and a language-model photon also generates through [`PhotonLanguageModel`].

mod backend;
mod text_generation;

pub use backend::PhotonBackend;
pub use text_generation::PhotonLanguageModel;
