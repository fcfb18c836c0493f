#!/usr/bin/env bash
# Builds the browser side: the wasm bindings (crate/wasm) with cargo and wasm-bindgen — four
# builds: SIMD128 (lmz_wasm_bg.wasm, every evergreen browser), SIMD128 + relaxed SIMD
# (lmz_wasm_relaxed_bg.wasm, picked at run time where the browser computes it right; the same
# JS glue, checked below; its own target dir, as its rustflags differ) and the same two
# threaded (wasm-threads/: shared memory, a pool of Web Workers; picked in a worker of a
# cross-origin-isolated page) —, the npm package (web/: tsc, then `npm pack` →
# out/lmz-VERSION.tgz), and the demo site (out/site/: www/demo with that tarball installed as a
# user would, the model pack linked next to it).
#
# Needs: rustup and cargo (the wasm32 target, wasm-bindgen-cli 0.2.130 and the threaded
# build's nightly are installed when missing: scripts/wasm-tools.sh), Node ≥ 20 with npm, and
# the model pack (`lmz model fetch`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
pack="${LMZ_MODEL:-${LMZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lmz}/smollm2-135m.lmz.safetensors}"
# The wasm32 target, the pinned wasm-bindgen-cli and the threaded build's nightly, installed
# when missing.
. scripts/wasm-tools.sh
ensure_wasm_tools
[ -f "$pack" ] || { echo "no model pack at $pack: run \`lmz model fetch\` (scripts/run.sh does)" >&2; exit 1; }

echo "== wasm bindings (cargo, wasm32-unknown-unknown, release): SIMD128, then SIMD128 + relaxed SIMD"
cargo build -q -p lmz-wasm --target wasm32-unknown-unknown --release
wasm-bindgen --target web --out-dir web/src/wasm --out-name lmz_wasm \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/lmz_wasm.wasm"
relaxed_dir="$CARGO_TARGET_DIR-relaxed-simd"
CARGO_TARGET_DIR="$relaxed_dir" CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
    cargo build -q -p lmz-wasm --target wasm32-unknown-unknown --release
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
wasm-bindgen --target web --out-dir "$tmp" --out-name lmz_wasm "$relaxed_dir/wasm32-unknown-unknown/release/lmz_wasm.wasm"
# One glue for both modules: the loader (web/src/engine.ts) passes either one to the same init.
# The code must be the same; comments may differ (they name internal shim numbers).
code() { grep -v '^[[:space:]]*//' "$1"; }
cmp -s <(code "$tmp/lmz_wasm.js") <(code web/src/wasm/lmz_wasm.js) || { echo "the relaxed-SIMD build's JS glue differs from the SIMD128 build's" >&2; exit 1; }
cp "$tmp/lmz_wasm_bg.wasm" web/src/wasm/lmz_wasm_relaxed_bg.wasm

# The threaded builds: SIMD128 (+ relaxed SIMD, or not) plus atomics and bulk memory, so their
# memory is shared with a pool of Web Workers (wasm-bindgen-rayon) that run the CPU kernels'
# parallel loops. std must be rebuilt with atomics (`-Z build-std`): the pinned nightly
# toolchain with rust-src (scripts/wasm-tools.sh). Their own glue (initThreadPool, shared
# memory) in web/src/wasm-threads/, one for both (checked as above). The linker makes the
# memory shared and imported (each worker instantiates the module on the same memory; up to
# 4 GiB) and exports the thread-local storage symbols wasm-bindgen needs to give every thread
# its own.
link=""
for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base; do
    link="$link -C link-arg=$a"
done
threaded() { # $1: target dir, $2: SIMD features, $3: wasm-bindgen output dir
    echo "== wasm bindings, threaded (toolchain $THREADS_TOOLCHAIN, -Z build-std): $2 + atomics"
    CARGO_TARGET_DIR="$1" \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=$2,+atomics,+bulk-memory,+mutable-globals$link" \
        cargo "+$THREADS_TOOLCHAIN" build -q -p lmz-wasm --no-default-features --features threads --target wasm32-unknown-unknown --release \
        -Z build-std=panic_abort,std 2>&1 | { grep -v "unstable feature specified for \`-Ctarget-feature\`: \`atomics\`\|this feature is not stably supported\|^  *|$\|^  *= note\|^$" || true; }
    wasm-bindgen --target web --out-dir "$3" --out-name lmz_wasm "$1/wasm32-unknown-unknown/release/lmz_wasm.wasm"
}
rm -rf web/src/wasm-threads
threaded "$CARGO_TARGET_DIR-threads" +simd128,+relaxed-simd web/src/wasm-threads
threaded "$CARGO_TARGET_DIR-threads-simd128" +simd128 "$tmp/threads-simd128"
cmp -s <(code "$tmp/threads-simd128/lmz_wasm.js") <(code web/src/wasm-threads/lmz_wasm.js) || { echo "the two threaded builds' JS glue differs" >&2; exit 1; }
cp "$tmp/threads-simd128/lmz_wasm_bg.wasm" web/src/wasm-threads/lmz_wasm_simd128_bg.wasm
# wasm-bindgen-rayon starts each pool worker from a blob: copy of its helper script (so that a
# helper on a CDN still starts). A page whose CSP allows no blob: workers cannot run that — an
# extension's pages may not allow them at all (Manifest V3) — so a helper on the page's own
# origin starts from its own URL; elsewhere the blob as before.
node - web/src/wasm-threads/snippets/*/src/workerHelpers.no-bundler.js <<'JS'
const fs = require('node:fs');
const file = process.argv[2];
// (The file has CRLF line ends: matched and kept as they are.)
const from = /let scriptBlob = await fetch\(import\.meta\.url\)\.then\(r => r\.blob\(\)\);(\r?\n)([ \t]*)let url = URL\.createObjectURL\(scriptBlob\);/;
const to = (_, eol, indent) =>
  [
    '// lmz (scripts/build-web.sh): same origin → its own URL (no blob: worker for the CSP).',
    // (A worker started from a blob: URL has a location but no path to resolve '/' against.)
    "const same = (() => { try { return new URL(import.meta.url).origin === self.location.origin; } catch { return false; } })();",
    'let url = same ? import.meta.url : URL.createObjectURL(await fetch(import.meta.url).then(r => r.blob()));',
  ].join(eol + indent);
const src = fs.readFileSync(file, 'utf8');
if (!from.test(src)) throw new Error(`${file}: the worker start to patch is not there (a new wasm-bindgen-rayon?)`);
fs.writeFileSync(file, src.replace(from, to));
JS

echo "== npm package (web/)"
mkdir -p out
(
    cd web
    [ -d node_modules/typescript ] || npm ci --no-audit --no-fund
    rm -rf dist
    npm run -s build
    npm pack -s --pack-destination ../out >/dev/null
)
version="$(node -p "require('./web/package.json').version")"
tarball="out/lmz-$version.tgz"

echo "== demo site (out/site: www/demo + $tarball installed + the model pack)"
rm -rf out/site
mkdir -p out/site/models
cp -r www/demo/. out/site/
(cd out/site && npm install -s --no-audit --no-fund --offline "../lmz-$version.tgz")
ln -sf "$pack" out/site/models/smollm2-135m.lmz.safetensors
for w in wasm/lmz_wasm_bg wasm/lmz_wasm_relaxed_bg wasm-threads/lmz_wasm_bg wasm-threads/lmz_wasm_simd128_bg; do
    printf '%s  %s.wasm (bytes): %s  gzip -9: %s\n' "$tarball" "$w" \
        "$(stat -c %s out/site/node_modules/lmz/dist/$w.wasm)" \
        "$(gzip -9c out/site/node_modules/lmz/dist/$w.wasm | wc -c)"
done
