#!/usr/bin/env bash
# The main job: a local 4-validator CometBFT testnet running the kv server guest,
# a few inputs from a client, the answers, and the app-hash agreement table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
make -s -C wasm_programs
cargo build --release -p replicode
R="$REPLICODE_BIN"
D="${REPLICODE_DEMO_DIR:-$(mktemp -d /tmp/replicode-demo.XXXXXX)}"
trap '"$R" testnet down --dir "$D" >/dev/null 2>&1 || true' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "4 validators on 127.0.0.1 (home: $D)"
"$R" testnet up --validators 4 --dir "$D" --genesis genesis/app_state.json
step "the funded key testnet up made (every transaction is signed; --from default)"
"$R" keys list --testnet "$D"
ADDR="$("$R" keys show default --address --testnet "$D")"
step "install the kv server at /bin/kv_server (owned by $ADDR)"
"$R" tx --testnet "$D" install wasm_programs/build/kv_server.wasm /bin/kv_server
step "spawn it as a public service (its / is /home/$ADDR; the log is /kv.log there)"
"$R" tx --testnet "$D" spawn --public /bin/kv_server /kv.log
for cmd in "SET greeting hello" "SET answer 42" "GET greeting" "SCAN" "DEL answer" "GET answer"; do
  step "stdin to pid 1: $cmd"
  "$R" tx --testnet "$D" stdin 1 "$cmd"
done
step "the account: its next sequence and the fuel it has left"
"$R" query --testnet "$D" account default
step "the server's log file, with a Merkle proof checked against the validators' signatures"
"$R" query --testnet "$D" file "/home/$ADDR/kv.log" --prove
step "every validator's app hash at every height"
"$R" verify --testnet "$D"
