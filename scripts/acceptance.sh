#!/usr/bin/env bash
# Round trips of issue 4's acceptance inputs through the real CLI and the real model:
# alice29, an empty file, 1 MiB of random bytes, an ELF binary, a UTF-16 text, a 1-byte
# file and a 200-byte note. Prints one line per input: sizes, bpb, times, and OK/FAIL of a
# byte-for-byte comparison. Slow on 2 cores (alice29 runs the model over 42k tokens twice).
#   bash scripts/acceptance.sh [LMZ_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
LMZ="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}/release/lmz}"
CORPUS="${CORPUS:-../shared/corpus/canterbury}"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
cp "$CORPUS/alice29.txt" "$W/alice29.txt"
: > "$W/empty"
head -c 1048576 /dev/urandom > "$W/random-1MiB"
cp "$(command -v ls)" "$W/elf-ls"
head -c 4000 "$CORPUS/alice29.txt" | iconv -f UTF-8 -t UTF-16LE > "$W/utf16.txt"
printf 'x' > "$W/one-byte"
printf '%s' "Remember: call the plumber on Tuesday about the kitchen sink, pick up the dry cleaning before six, and send Anna the photos from the lake trip. The wifi password is on the fridge. Also buy milk, eggs and bread." | head -c 200 > "$W/note-200"
printf '%-14s %9s %9s %8s %8s %8s  %s\n' input bytes lmz bpb comp_s decomp_s check
for f in empty one-byte note-200 utf16.txt elf-ls random-1MiB alice29.txt; do
    in="$W/$f"
    t0=$(date +%s.%N)
    "$LMZ" -k -q -f "$in"
    t1=$(date +%s.%N)
    "$LMZ" -d -c "$in.lmz" > "$W/out"
    t2=$(date +%s.%N)
    n=$(stat -c %s "$in"); c=$(stat -c %s "$in.lmz")
    ok=FAIL; cmp -s "$in" "$W/out" && ok=OK
    bpb=$(awk -v n="$n" -v c="$c" 'BEGIN { if (n > 0) printf "%.4f", 8 * c / n; else print "-" }')
    printf '%-14s %9d %9d %8s %8.1f %8.1f  %s\n' "$f" "$n" "$c" "$bpb" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$ok"
    [ "$f" = alice29.txt ] && "$LMZ" info "$in.lmz"
done
