#!/usr/bin/env bash
# The Canterbury table of BENCHMARKS.md (issue 4): `lmz bench` on each text in its own run, so
# every finished file's rows are kept even if a later one is interrupted (each takes 50 min to
# 2 h on 2 cores). Appends to OUT (default ~/.cache/lmz/bench-canterbury.md) with the commit,
# the start/end times and the load average; run it on a quiet machine.
#   bash scripts/bench-canterbury.sh [FILE...]     (default: alice29 asyoulik lcet10 plrabn12)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${CORPUS:-../shared/corpus/canterbury}"
out="${OUT:-$HOME/.cache/lmz/bench-canterbury.md}"
# The binary of this checkout (cargo build is a no-op when it is up to date: a binary left
# from an older commit would measure that commit), unless LMZ_BIN names one.
if [ -z "${LMZ_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
    cargo build --release -q -p lmz-cli
fi
bin="${LMZ_BIN:-$CARGO_TARGET_DIR/release/lmz}"
[ $# -gt 0 ] || set -- alice29 asyoulik lcet10 plrabn12
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "# lmz bench at $(git rev-parse --short HEAD), binary $bin ($(date -u -r "$bin" +%FT%TZ)), $(date -u +%FT%TZ), load $(load)" >> "$out"
for f in "$@"; do
    echo "## $f start $(date -u +%T) load $(load)" >> "$out"
    "$bin" bench "$corpus/$f.txt" >> "$out"
    echo "## $f end $(date -u +%T) load $(load)" >> "$out"
done
echo "rows appended to $out"
