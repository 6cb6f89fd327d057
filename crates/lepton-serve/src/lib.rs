//! lepton-serve
