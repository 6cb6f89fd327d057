//! lepton-compress integration tests: folding, pruning, quantization and the gate on small
//! models trained here.

mod support;

mod compress;
mod encoder;
