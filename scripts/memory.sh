#!/usr/bin/env bash
# Peak resident memory of the `lmz` CLI on a 100 MB input (issue 8: ≤ 400 MB), measured with
# /usr/bin/time -v. Prints a Markdown table for BENCHMARKS.md.
#
#   bash scripts/memory.sh [--model-seconds N]      (default 600)
#
# The input is the corpus repeated to 100,000,000 bytes (dickens, the enwik8 prefix, the
# Canterbury texts), built once under ~/.cache/lmz/memory/.
#   1. zstd path (--use-model never): compress and decompress all 100 MB, round trip checked.
#      Reading, segmenting, tokenizing, spooling and writing: everything but the model.
#   2. model path, compressing: the same file for at most N seconds (on a CPU the model codes
#      ~300 B/s, so 100 MB takes days: the run shows the steady state once the first 8 MiB
#      segment is tokenized and coding has started; memory does not grow with progress).
#   3. model path, decompressing: 32 KB of alice29 in 4 model chunks of 2,100 tokens (more
#      than the window, so every slot's KV cache is filled: untouched pages do not count),
#      decoded in lock-step on 4 slots (the CLI decodes at most 4 chunks at once); a 100 MB file adds only its
#      compressed bytes (held whole) and one group of chunks' output.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
[ "${1:-}" = "--model-seconds" ] && seconds="$2"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
cargo build --release -q -p lmz-cli
bin="$CARGO_TARGET_DIR/release/lmz"
dir="$HOME/.cache/lmz/memory"
mkdir -p "$dir"
corpus=../shared/corpus
big="$dir/corpus100"
if [ "$(stat -c %s "$big" 2>/dev/null || echo 0)" != 100000000 ]; then
    { xz -dc "$corpus/silesia/dickens.xz"; xz -dc "$corpus/enwik8_first4154400.xz"; cat "$corpus"/canterbury/*.txt; } > "$dir/one"
    python3 -c "
import sys
one = open(sys.argv[1], 'rb').read()
with open(sys.argv[2], 'wb') as f:
    n = 0
    while n < 100_000_000:
        k = min(len(one), 100_000_000 - n)
        f.write(one[:k]); n += k
" "$dir/one" "$big"
fi
measure() { # label, then the command; prints a table row from /usr/bin/time -v
    local label="$1"; shift
    local t="$dir/time.txt" rc=0
    /usr/bin/time -v "$@" 2> "$t" || rc=$?
    local rss wall
    rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$t")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$t")
    printf '| %s | %s MB | %s | %s |\n' "$label" "$(( rss / 1024 ))" "$wall" "$rc"
}
echo "lmz $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | peak RSS | wall | exit |"
echo "|---|---|---|---|"
rm -f "$dir/z.lmz" "$dir/z.out"
measure "compress 100 MB, --use-model never" "$bin" -q -c --use-model never "$big" > "$dir/z.lmz"
measure "decompress it ($(stat -c %s "$dir/z.lmz") B)" "$bin" -q -dc "$dir/z.lmz" > "$dir/z.out"
cmp -s "$big" "$dir/z.out" && echo "| round trip | identical | | |" || echo "| round trip | **DIFFERENT** | | |"
rm -f "$dir/z.out"
# exit 124: stopped by the time limit, as intended.
measure "compress 100 MB with the model, stopped after ${seconds} s" timeout "$seconds" "$bin" -q -c "$big" > /dev/null
head -c 32000 "$corpus/canterbury/alice29.txt" > "$dir/alice32k"
"$bin" -q -c --use-model force --chunk-tokens 2100 "$dir/alice32k" > "$dir/alice32k.lmz"
chunks=$("$bin" info "$dir/alice32k.lmz" | awk '/^chunks:/ {print $2}')
measure "decompress ${chunks:-?} model chunks of 2,100 tokens (4 slots in lock-step)" "$bin" -q -dc "$dir/alice32k.lmz" > "$dir/alice32k.out"
cmp -s "$dir/alice32k" "$dir/alice32k.out" && echo "| round trip | identical | | |" || echo "| round trip | **DIFFERENT** | | |"
