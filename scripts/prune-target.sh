#!/usr/bin/env bash
# Deletes superseded test and bench executables from cargo's release deps dir.
# Every relink after a change leaves the previous executable (hundreds of MB with
# debug info) behind; on a machine that keeps its target dir between runs they
# filled a 250 GB disk. Keeps the newest executable of each name; never touches
# libraries (.rlib/.rmeta/.so/.d), so nothing is recompiled, at worst relinked.
set -euo pipefail
deps="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release/deps"
[ -d "$deps" ] || exit 0
find "$deps" -maxdepth 1 -type f -perm -u+x -regextype posix-extended \
  -regex '.*/[^./]+-[0-9a-f]{16}' -printf '%T@ %f\n' | sort -n |
  awk '{ n = $2; sub(/-[0-9a-f]+$/, "", n); file[NR] = $2; base[NR] = n; newest[n] = $2 }
       END { for (i = 1; i <= NR; i++) if (file[i] != newest[base[i]]) print file[i] }' |
  while read -r f; do rm -f -- "$deps/$f"; done
