#!/usr/bin/env bash
# Fetches the model, builds lmz, evaluates a sample text with the integer model, then
# compresses the sample's first 2 KB, shows the .lmz header and decompresses it back.
# (The demo page arrives with the browser build; see the README.)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
cargo build --release -q -p lmz
lmz="$CARGO_TARGET_DIR/release/lmz"
"$lmz" model fetch
"$lmz" model
sample="${1:-samples/alice-chapter1.txt}"
"$lmz" eval "$sample"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
head -c 2048 "$sample" > "$tmp/sample.txt"
"$lmz" -v -k "$tmp/sample.txt"
"$lmz" info "$tmp/sample.txt.lmz"
"$lmz" -v -d -c "$tmp/sample.txt.lmz" > "$tmp/back.txt"
cmp "$tmp/sample.txt" "$tmp/back.txt" && echo "round trip: identical"
