#!/usr/bin/env bash
# The main job: a local 4-validator CometBFT testnet running the kv server guest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
make -s -C wasm_programs
cargo build --release -p replicode
exec "$REPLICODE_BIN" demo "$@"
