#!/usr/bin/env bash
# Installs the system packages and toolchain components the build and tests need. Idempotent.
set -euo pipefail

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# The dashboard's browser test (lepton-track) drives Debian's Chromium through chromedriver.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# Data-parallel training (the optional `distributed` feature): Open MPI, and clang for rsmpi's bindgen.
command -v mpirun >/dev/null || need_apt+=(openmpi-bin)
dpkg -s libopenmpi-dev >/dev/null 2>&1 || need_apt+=(libopenmpi-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev clang)
if ((${#need_apt[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        echo "setup: please install: ${need_apt[*]}" >&2
        exit 1
    fi
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
