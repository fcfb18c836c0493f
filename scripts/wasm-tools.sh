# Sourced by scripts/test.sh and scripts/build-web.sh (not run by itself): installs, when
# missing, what the browser build needs from Rust — idempotent, quick when all is there:
#   - the wasm32-unknown-unknown target of the default toolchain;
#   - wasm-bindgen-cli at exactly the version crate/wasm pins (its own cached install under
#     ~/.cache/lmz/tools when the one on PATH differs; ~5 min, once);
#   - the pinned nightly toolchain with rust-src for the threaded build (`-Z build-std`).
# Sets WASM_BINDGEN (the pinned version) and THREADS_TOOLCHAIN, and puts the cached
# wasm-bindgen first on PATH when it is the one used.

WASM_BINDGEN="$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' crate/wasm/Cargo.toml)"
# The toolchain of the threaded wasm build (nightly for `-Z build-std`), pinned so builds repeat.
THREADS_TOOLCHAIN=nightly-2026-05-19

bindgen_version() { wasm-bindgen --version 2>/dev/null | awk '{print $2}'; }

ensure_wasm_tools() {
    rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
    if [ "$(bindgen_version)" != "$WASM_BINDGEN" ]; then
        export PATH="$HOME/.cache/lmz/tools/bin:$PATH"
        if [ "$(bindgen_version)" != "$WASM_BINDGEN" ]; then
            cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN" --root "$HOME/.cache/lmz/tools"
        fi
    fi
    rustup component list --toolchain "$THREADS_TOOLCHAIN" --installed 2>/dev/null | grep -q '^rust-src' ||
        rustup toolchain install "$THREADS_TOOLCHAIN" --profile minimal --component rust-src
}
