//! CPU == GPU, bit for bit: every WGSL kernel against the CPU kernel of the same name on
//! seeded random inputs and the extreme values, then whole forward passes (tiny models,
//! batched, stepped and with several sequence slots; the real model on a short text).
//!
//! These tests need a GPU adapter (the test command installs Mesa lavapipe: `apt-get install
//! mesa-vulkan-drivers libvulkan1`). Without one, each says why it skips — except in CI (`CI`
//! set), where they FAIL: nothing skips there. `LMZ_SKIP_GPU=1` skips them anywhere.
//!
//! [`kernels`]: each kernel against its CPU twin; [`passes`]: whole forward passes. Here: the
//! device they share.

use lmz::backend::gpu::{Gpu, GpuOptions};
use lmz::shaders::Dot4;

#[path = "../common/mod.rs"]
mod common;

mod kernels;
mod passes;

/// The device, or `None` when there is none outside CI (the test says why it skips; in CI,
/// which installs Mesa lavapipe, no adapter fails the test), or when `LMZ_SKIP_GPU=1`.
fn gpu_with(dot4: Option<Dot4>) -> Option<Gpu> {
    match Gpu::new(GpuOptions { dot4 }) {
        Ok(g) => {
            eprintln!("GPU: {}", g.describe());
            Some(g)
        }
        Err(e) if std::env::var("LMZ_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (LMZ_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => common::skip_outside_ci(&format!(
            "{e}\n(no GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1, as `bash scripts/test.sh rust` does)"
        )),
    }
}

fn gpu() -> Option<Gpu> {
    gpu_with(None)
}

/// Both matmul variants: dot4I8Packed where the instance has it, and the scalar fallback.
fn gpus_both_dot4() -> Vec<Gpu> {
    let Some(g) = gpu() else { return Vec::new() };
    let mut v = vec![gpu_with(Some(Dot4::Scalar)).expect("the adapter opened a moment ago")];
    if g.dot4() == Dot4::Packed {
        v.push(g);
    }
    v
}
