//! The crate's integration tests: the acceptance checks of issue 17 on real models.

mod completeness;
mod explainer;
mod mnist;
mod piecewise;
mod randomisation;
mod shapley;
