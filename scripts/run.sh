#!/usr/bin/env bash
# Fetches the model, builds the CLI and round-trips a sample text through it, then builds the
# browser side (wasm, npm package, demo) and serves the demo on localhost, printing its URL.
#   bash scripts/run.sh [PORT]        (default 8080; Ctrl-C stops the server)
# The browser build installs the Rust tools it needs when missing (scripts/wasm-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
port="${1:-8080}"
cargo build --release -q -p lmz-cli
lmz="$CARGO_TARGET_DIR/release/lmz"
"$lmz" model fetch
"$lmz" model
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
head -c 512 samples/alice-chapter1.txt > "$tmp/sample.txt"
"$lmz" -v -k "$tmp/sample.txt"
"$lmz" info "$tmp/sample.txt.lmz"
"$lmz" -d -c "$tmp/sample.txt.lmz" > "$tmp/back.txt"
cmp "$tmp/sample.txt" "$tmp/back.txt" && echo "round trip: identical"

bash scripts/build-web.sh
echo "== the demo (WebGPU where the browser has it, else wasm-CPU; the first visit downloads the 99 MB model once)"
exec node scripts/serve.mjs out/site "$port"
