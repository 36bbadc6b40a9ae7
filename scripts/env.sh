# Sourced by the other scripts: one target dir shared by tests, demo and benchmarks,
# kept outside the clone so a fresh checkout on a machine that built before is quick.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/replicode/target}"
GOBIN_DIR="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
export PATH="$GOBIN_DIR:$HOME/.cargo/bin:$PATH"
export REPLICODE_BIN="$CARGO_TARGET_DIR/release/replicode"
