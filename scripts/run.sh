#!/usr/bin/env bash
# Fetches the model, builds lmz and evaluates a sample text with the integer model.
# (The demo page arrives with the browser build; see the README.)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
cargo build --release -q -p lmz
lmz="$CARGO_TARGET_DIR/release/lmz"
"$lmz" model fetch
"$lmz" model
"$lmz" eval "${1:-samples/alice-chapter1.txt}"
