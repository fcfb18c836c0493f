#!/usr/bin/env bash
# The CPU engine natively and on wasm32 (SIMD128) in Node, back to back on this machine:
# matmul / attention kernels (GMAC/s, one thread, every implementation that runs) and the
# real model over the first 1,000 bytes of samples/alice-chapter1.txt (260 tokens, tokens/s;
# the tables' hash must be the same both ways). Needs the model pack (lmz model fetch),
# Node ≥ 16.4 and wasm-bindgen-test-runner 0.2.130 (scripts/test.sh installs it).
# Results: BENCHMARKS.md ("The CPU engine without AVX2: portable and wasm SIMD128").
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
# Where scripts/test.sh keeps its own wasm-bindgen-test-runner when none is on PATH.
export PATH="$PATH:$HOME/.cache/lmz/tools/bin"
args=(--lib bench_ -- --include-ignored --nocapture)
show='(native|wasm32|tokens|Portable|Avx2|AvxVnni|Avx512Vnni|Simd128)'
echo "== native ($(uname -m), $(nproc) cores)"
cargo test --release -p lmz "${args[@]}" --test-threads 1 2>&1 | grep -E "$show" | grep -v Running
echo "== wasm32-unknown-unknown, SIMD128, Node $(node --version)"
cargo test --release -p lmz --no-default-features --target wasm32-unknown-unknown "${args[@]}" 2>&1 | grep -E "$show" | grep -v Running
