//! lepton-track's integration tests: the dashboard API, TensorBoard export read by `tensorboard`,
//! and the dashboard in headless Chromium, all over run directories made by real (short) training.

mod api;
mod browser;
mod support;
mod tensorboard;
