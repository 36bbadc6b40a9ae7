#!/usr/bin/env bash
# Runs every test: unit, property, integration and the end-to-end testnet tests.
# Installs what a bare Debian machine lacks first (quick when already present).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
bash scripts/prune-target.sh
make -s -C wasm_programs
# Formatting is part of the contract (rustfmt ships with the toolchain).
cargo fmt --all --check
# The end-to-end tests drive the real binary, so build it before the tests run.
cargo build --release --workspace --bins
cargo test --release --workspace "$@"
