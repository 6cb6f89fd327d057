//! Integration tests for lepton-nn: finite-difference gradient checks of every layer (f64), and
//! model-level behaviour (init determinism, batch-norm modes, dropout seeding, loading), size
//! budgets on adversarial specs, and the sequence layers.

mod budget;
mod gradcheck;
mod model;
mod piecewise;
mod recurrent;
mod recurrent_kernel;
mod sequence;
mod transformer;
