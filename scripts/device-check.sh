#!/usr/bin/env bash
# The GPU checks for a lent device machine (an NVIDIA H100/H200 through the `device` tool), as
# one prepared run: the GPU kernels' parity tests on real hardware, each kernel's time at the
# model's shapes (both matmul variants), and the whole engine against the CPU engine on a model
# of SmolLM2-135M's shapes (examples/gpu_speed.rs; the real model cannot travel there).
#
#   bash scripts/device-check.sh prepare   # here: build the binaries, fetch the Vulkan loader
#   # then, through the device tool, with carry [".dev", ".gl"]:
#   bash scripts/device-check.sh run       # there: writes $OUT/device-check.log
#
# `prepare` needs what scripts/test.sh installs (Rust, the Vulkan loader's .deb via apt);
# `run` needs only the carried files and the machine's NVIDIA driver (its Vulkan ICD). It
# also runs here, on lavapipe, as a dry run: `bash scripts/device-check.sh run --quick`.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmz/target}"
    cargo build --release -p lmz --features gpu --example gpu_speed --example gpu_kernels
    # The parity tests, without running them; the last line names the binary.
    test_bin=$(cargo test --release -p lmz --features gpu --test gpu --no-run --message-format json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])' | tail -1)
    rm -rf .dev && mkdir -p .dev
    for b in "$CARGO_TARGET_DIR/release/examples/gpu_speed" "$CARGO_TARGET_DIR/release/examples/gpu_kernels" "$test_bin"; do
        strip -o ".dev/$(basename "$b" | sed 's/-[0-9a-f]*$//')" "$b"
    done
    # The Vulkan loader (the device image has the driver and its ICD, maybe not the loader).
    mkdir -p .gl && (cd .gl && apt-get download libvulkan1 >/dev/null 2>&1 || apt-get download libvulkan1)
    du -sh .dev .gl
    echo "prepared: run 'bash scripts/device-check.sh run' on the device with carry [\".dev\", \".gl\"]"
    ;;
run)
    quick=${2:-}
    out="${OUT:-/tmp/device-check}"
    mkdir -p "$out"
    log="$out/device-check.log"
    {
        if [ -z "$quick" ]; then
            for f in .gl/*.deb; do dpkg -x "$f" /; done
            ldconfig
            icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
            [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
            nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
        fi
        nproc
        echo "== kernel parity on this adapter (the real-model tests need the model pack: skipped here)"
        ./.dev/gpu --test-threads 1 --skip real_model --skip cli_ 2>&1 | grep -v XDG_RUNTIME_DIR
        echo "== each kernel at the model's shapes, 256 tokens"
        ./.dev/gpu_kernels 256 2>&1 | grep -v XDG_RUNTIME_DIR
        echo "== the engine: GPU against CPU, model of SmolLM2-135M's shapes"
        if [ -n "$quick" ]; then
            ./.dev/gpu_speed --window 16 --windows 2 --slots 1,2 --steps 2 2>&1 | grep -v XDG_RUNTIME_DIR
        else
            ./.dev/gpu_speed --window 256 --windows 8 --slots 1,4,16,64 --steps 16 2>&1
        fi
    } 2>&1 | tee "$log"
    ;;
*)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
