//! lepton-nn

pub mod kernels;
