//! lepton-eval
