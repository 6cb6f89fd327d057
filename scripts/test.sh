#!/usr/bin/env bash
# The project's test command (README, CI): installs what the tests need, then runs format check,
# lints and the whole test suite. Heavy runs (full MNIST training, load tests, fuzzing) live in
# bench/ and scripts/, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# No file-level import cycles inside any crate (the checker tests itself first).
python3 scripts/check-import-cycles.py --self-test
python3 scripts/check-import-cycles.py
# Pretrained models for lepton-llm's tests (pinned, cached; the tests fail without them).
scripts/fetch-assets.sh models >/dev/null
cargo test --workspace --locked
# Data-parallel training over Open MPI (the optional `distributed` feature: 2 ranks under mpirun).
cargo clippy -p lepton-cli -p lepton-dist --features lepton-cli/distributed --all-targets --locked -- -D warnings
cargo test -p lepton-cli --features distributed --locked --test it distributed
