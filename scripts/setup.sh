#!/usr/bin/env bash
# Installs everything a bare Debian (bookworm) machine lacks to build and test RepliCode.
# Idempotent and quick when everything is already present.
#   - clang/lld 14, wasi-libc, wasm32 compiler-rt builtins (one LLVM version: 14)
#   - libclang-dev (bindgen for librocksdb-sys)
#   - binaryen is NOT needed: the node links binaryen through the wasm-opt crate
#   - CometBFT v0.38.25 via `go install`
#   - with --bench: also CometBFT's `abci-cli` (same version), the out-of-process
#     kvstore baseline of `cargo bench -p replicode-e2e --bench testnet`
set -euo pipefail

WITH_BENCH_TOOLS=0
for arg in "$@"; do
  case "$arg" in
    --bench) WITH_BENCH_TOOLS=1 ;;
    *) printf 'setup: unknown option %s (known: --bench)\n' "$arg" >&2; exit 2 ;;
  esac
done

COMETBFT_VERSION="v0.38.25"
APT_PACKAGES=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 libclang-14-dev make cmake pkg-config)

log() { printf 'setup: %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

GOBIN_DIR="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
if ! "$GOBIN_DIR/cometbft" version 2>/dev/null | grep -q "^${COMETBFT_VERSION#v}"; then
  command -v go >/dev/null || { log "go is required to install cometbft"; exit 1; }
  log "installing cometbft ${COMETBFT_VERSION}"
  go install "github.com/cometbft/cometbft/cmd/cometbft@${COMETBFT_VERSION}"
fi

if ((WITH_BENCH_TOOLS)) && ! [ -x "$GOBIN_DIR/abci-cli" ]; then
  log "installing abci-cli ${COMETBFT_VERSION} (benchmark baseline)"
  go install "github.com/cometbft/cometbft/abci/cmd/abci-cli@${COMETBFT_VERSION}"
fi

command -v cargo >/dev/null || { log "cargo (rustup) is required"; exit 1; }
# The test command checks formatting; rustup's default profile has rustfmt, a
# minimal one does not.
if ! cargo fmt --version >/dev/null 2>&1; then
  log "installing rustfmt"
  rustup component add rustfmt
fi
log "ok: clang-14, wasi-libc, cometbft $("$GOBIN_DIR/cometbft" version)"
