#!/usr/bin/env bash
# Lists dependencies whose enabled features differ between `cargo -p <member>` selections.
# Each such package makes cargo rebuild everything above it (RocksDB, Binaryen,
# wasmtime) once per selection; workspace-hack/Cargo.toml must list it with the union.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for sel in merkle-fs replicode-runtime replicode-abci replicode replicode-e2e; do
  cargo tree -p "$sel" -e normal,build,dev,features --format '{p}|{f}' --prefix none \
    --no-dedupe --target x86_64-unknown-linux-gnu | grep '|' | sort -u > "$tmp/$sel.txt"
done
python3 - "$tmp" <<'PY'
import collections, glob, re, sys
variants = collections.defaultdict(set)
for f in glob.glob(sys.argv[1] + "/*.txt"):
    for line in open(f):
        pkg, feats = line.rstrip("\n").split("|", 1)
        m = re.match(r"(\S+) v(\S+)", pkg)
        if m and "(/" not in pkg:
            variants[m.groups()].add(frozenset(x for x in feats.split(",") if x))
bad = [(n, v, sorted(set().union(*s))) for (n, v), s in sorted(variants.items()) if len(s) > 1]
for n, v, union in bad:
    print(f"{n} {v}: union {union}")
sys.exit(1 if bad else 0)
PY
echo "feature sets agree across selections"
