//! The engines: the `Engine` a compressor runs on, and `open` for each feature set.

use lmz::backend::cpu::CpuBackend;
#[cfg(feature = "gpu")]
use lmz::backend::gpu::{self, Auto, Gpu, GpuBackend, GpuOptions};
#[cfg(not(feature = "gpu"))]
use lmz::Error;
use lmz::Model;
use wasm_bindgen::prelude::*;

#[cfg(feature = "gpu")]
use crate::errors::gpu_to_js;
use crate::errors::{codes, js_error, to_js};

/// Sequence slots the engine opens with (a call on a file of several model chunks takes up to
/// `DECODE_SLOTS` for its duration: [`Job::slots`]); positions per slot: the default policy's
/// window.
const SLOTS: usize = 1;

// One per compressor, so the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Engine {
    Cpu(CpuBackend),
    #[cfg(feature = "gpu")]
    Gpu(Box<GpuBackend>),
}

/// Runs `$body` with `$b` bound to the engine inside (`&mut` of its concrete type).
#[cfg(not(feature = "threads"))]
macro_rules! with_engine {
    ($e:expr, $b:ident => $body:expr) => {
        match $e {
            Engine::Cpu($b) => $body,
            #[cfg(feature = "gpu")]
            Engine::Gpu($b) => {
                let $b = &mut **$b;
                $body
            }
        }
    };
}
#[cfg(not(feature = "threads"))]
pub(crate) use with_engine;

/// Opens the engine `kind` names on `model`, which it consumes (the CPU engine makes its
/// weight layout in the model's memory). `auto`: a hardware WebGPU adapter, else the CPU.
#[cfg(feature = "gpu")]
pub(crate) async fn open(kind: &str, model: Model, cache_len: usize) -> Result<(Engine, String), JsValue> {
    let cpu = |m: Model| {
        CpuBackend::from_model(m, SLOTS, cache_len)
            .map(|b| (Engine::Cpu(b), "cpu".to_string()))
            .map_err(to_js)
    };
    match kind {
        "cpu" => cpu(model),
        "webgpu" => {
            let g = Gpu::new_async(GpuOptions::default()).await.map_err(gpu_to_js)?;
            let b = GpuBackend::on(g, &model, SLOTS, cache_len).map_err(gpu_to_js)?;
            Ok((Engine::Gpu(Box::new(b)), "webgpu".to_string()))
        }
        // The library's rule (`lmz::backend::gpu::auto`), the CLI's too.
        "auto" => match gpu::auto(Gpu::new_async(GpuOptions::default()).await).map_err(to_js)? {
            Auto::Gpu(g) => match GpuBackend::on(*g, &model, SLOTS, cache_len) {
                Ok(b) => Ok((Engine::Gpu(Box::new(b)), "webgpu".to_string())),
                Err(e) if gpu::auto_falls_back(&e) => cpu(model),
                Err(e) => Err(to_js(e)),
            },
            Auto::Cpu(_) => cpu(model),
        },
        other => Err(js_error(
            codes::INVALID_ARGUMENT,
            &format!("engine {other:?}: use \"auto\", \"webgpu\" or \"cpu\""),
        )),
    }
}

/// Opens the engine `kind` names on `model`, in a build without the GPU engine (the threaded
/// one: the package loads it for the CPU engine only, and `auto` is the CPU here).
#[cfg(not(feature = "gpu"))]
pub(crate) async fn open(kind: &str, model: Model, cache_len: usize) -> Result<(Engine, String), JsValue> {
    match kind {
        "cpu" | "auto" => CpuBackend::from_model(model, SLOTS, cache_len).map(|b| (Engine::Cpu(b), "cpu".to_string())).map_err(to_js),
        "webgpu" => Err(js_error(Error::GpuNoAdapter(String::new()).code(), "this build of lmz (the threaded wasm-CPU one) has no WebGPU engine; the package loads the other build for engine: 'webgpu'")),
        other => Err(js_error(codes::INVALID_ARGUMENT, &format!("engine {other:?}: use \"auto\", \"webgpu\" or \"cpu\""))),
    }
}
