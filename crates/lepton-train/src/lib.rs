//! lepton-train
