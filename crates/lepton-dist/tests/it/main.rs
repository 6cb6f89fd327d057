//! lepton-dist integration tests: data-parallel training over the in-process group.

mod common;
mod equivalence;
